package admin

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/mfa"
	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// keyFixture is the store the key-changing handlers' tests start from: a
// SQLite store with team team_a and service account prn_a, made at at, and a
// hasher and verifier over it.
type keyFixture struct {
	db       *sqlstore.DB
	at       time.Time // microseconds: what the store keeps of a time
	verifier *vkey.Verifier
}

func newKeyFixture(t *testing.T) keyFixture {
	t.Helper()
	ctx := context.Background()
	f := keyFixture{db: openStore(t), at: time.Now().UTC().Truncate(time.Microsecond)}
	if err := f.db.CreateTeam(ctx, org.Team{ID: "team_a", Name: "a", CreatedAt: f.at, Version: 1}); err != nil {
		t.Fatal(err)
	}
	if err := f.db.CreatePrincipal(ctx, org.Principal{ID: "prn_a", Name: "agent", Kind: org.KindServiceAccount, Teams: []string{"team_a"}, Roles: []string{"member"}, CreatedAt: f.at, Version: 1}); err != nil {
		t.Fatal(err)
	}
	hasher, err := vkey.NewHasher([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	f.verifier = vkey.NewVerifier(f.db, hasher, vkey.VerifierOptions{})
	return f
}

// key creates virtual key id of prn_a, stored with hash.
func (f keyFixture) key(t *testing.T, id, hash string) {
	t.Helper()
	if err := f.db.CreateKey(context.Background(), vkey.Key{ID: id, Kind: vkey.KindVirtual, Name: "k", Hash: hash, Hint: "gk_abcd…", PrincipalID: "prn_a", TeamID: "team_a", CreatedAt: f.at, Version: 1}); err != nil {
		t.Fatal(err)
	}
}

// suspend suspends key id as the breaker does ("spent too much", at f.at).
func (f keyFixture) suspend(t *testing.T, id string) {
	t.Helper()
	if first, err := f.db.SuspendKeyFirst(context.Background(), id, "spent too much", f.at, 0); err != nil || !first {
		t.Fatalf("suspend: %v %v", first, err)
	}
}

// deps are the handler's dependencies over the fixture: its store and
// verifier, a password gate and a discarding log; tests add the rest.
func (f keyFixture) deps() Deps {
	return Deps{Store: f.db, Passwords: mfa.NewGate(mfa.HashMemory, 5*time.Second, 100), Verifier: f.verifier, Log: slog.New(slog.DiscardHandler)}
}
