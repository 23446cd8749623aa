package admin

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/mfa"
	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// TestReinstateResetsTheBreakerFirst: the breaker's windows are emptied
// while the key is still suspended, before the store reinstates it. In the
// other order a flush on any replica between the two (or in flight,
// answered after) judged the key on the spend that suspended it and
// suspended it again at once.
func TestReinstateResetsTheBreakerFirst(t *testing.T) {
	ctx := context.Background()
	db := openStore(t)
	at := time.Now().UTC()
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
	resets := 0
	h := New(Deps{Store: db, Passwords: mfa.NewGate(mfa.HashMemory, 5*time.Second, 100), Verifier: vkey.NewVerifier(db, hasher, vkey.VerifierOptions{}),
		Log: slog.New(slog.DiscardHandler), ForgetKey: func(string) {},
		ResetBreaker: func(id string) {
			resets++
			k, err := db.Key(ctx, id)
			if err != nil || k.SuspendedAt == nil {
				t.Errorf("the breaker was reset after the key was reinstated (%v): a flush meanwhile suspends it again", err)
			}
		}})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/v1/keys/key_a/reinstate", nil)
	req.SetPathValue("id", "key_a")
	if err := h.reinstateKey(rec, req, vkey.Key{ID: "key_admin"}); err != nil {
		t.Fatal(err)
	}
	if k, err := db.Key(ctx, "key_a"); err != nil || k.SuspendedAt != nil || resets != 1 {
		t.Fatalf("after the reinstatement: suspended %v (%v), %d resets", k.SuspendedAt, err, resets)
	}
}
