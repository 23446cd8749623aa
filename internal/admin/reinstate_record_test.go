package admin

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/mfa"
	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// TestReinstateRecordsTheSuspensionItLifts: a breaker's suspension that
// committed unrecorded (its answer lost, or the replica stopped between the
// write and the record) is recorded by the reinstatement that lifts it,
// before the reinstatement, once: the breaker's own record of it is the
// same record and is dropped as a duplicate.
func TestReinstateRecordsTheSuspensionItLifts(t *testing.T) {
	ctx := context.Background()
	db := openStore(t)
	at := time.Now().UTC().Truncate(time.Microsecond)
	if err := db.CreateTeam(ctx, org.Team{ID: "team_a", Name: "a", CreatedAt: at, Version: 1}); err != nil {
		t.Fatal(err)
	}
	if err := db.CreatePrincipal(ctx, org.Principal{ID: "prn_a", Name: "agent", Kind: org.KindServiceAccount, Teams: []string{"team_a"}, Roles: []string{"member"}, CreatedAt: at, Version: 1}); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateKey(ctx, vkey.Key{ID: "key_a", Kind: vkey.KindVirtual, Name: "k", Hash: "h1", Hint: "gk_abcd…", PrincipalID: "prn_a", TeamID: "team_a", CreatedAt: at, Version: 1}); err != nil {
		t.Fatal(err)
	}
	if first, err := db.SuspendKeyFirst(ctx, "key_a", "spent too much", at, 0); err != nil || !first {
		t.Fatalf("suspend: %v %v", first, err)
	}
	hasher, err := vkey.NewHasher([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	skey, _ := ledger.GenerateKey("test.example/log")
	lg, err := ledger.New(db, "t", skey, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	h := New(Deps{Store: db, Passwords: mfa.NewGate(mfa.HashMemory, 5*time.Second, 100), Verifier: vkey.NewVerifier(db, hasher, vkey.VerifierOptions{}),
		Log: slog.New(slog.DiscardHandler), Ledger: lg})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/v1/keys/key_a/reinstate", nil)
	req.SetPathValue("id", "key_a")
	if err := h.reinstateKey(rec, req, vkey.Key{ID: "key_admin"}); err != nil {
		t.Fatal(err)
	}
	if k, err := db.Key(ctx, "key_a"); err != nil || k.SuspendedAt != nil {
		t.Fatalf("after the reinstatement: %+v (%v)", k, err)
	}
	n, err := db.LedgerSize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	data, err := db.LedgerEntries(ctx, 0, n)
	if err != nil {
		t.Fatal(err)
	}
	var trips []ledger.Record
	for _, d := range data {
		r, err := ledger.ParseRecord(d)
		if err != nil {
			t.Fatal(err)
		}
		if r.Kind == ledger.KindBreaker {
			trips = append(trips, r)
		}
	}
	if len(trips) != 1 || trips[0].KeyID != "key_a" || !trips[0].Time.Equal(at) || trips[0].Detail != "spent too much" {
		t.Fatalf("breaker records after the reinstatement: %+v; want the lifted suspension's, once", trips)
	}
	// The breaker's retry (or its answered trip) records the same suspension: dropped.
	if _, err := lg.Append(ctx, ledger.BreakerTrip("key_a", "spent too much", at)); !errors.Is(err, ledger.ErrAlreadyClosed) {
		t.Fatalf("the breaker's record of the same suspension: %v; want ErrAlreadyClosed", err)
	}
}
