package admin

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/auth"
	"github.com/gatehouse-gw/gatehouse/internal/mfa"
	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// TestKeyChangesForgetTheKeyByID: every admin path that changes a key
// (revoke, rotate, reinstate) drops it from the cache that tokens
// exchanged for it read it through (auth.Authenticator.KeyByID), not only
// from the verifier's: a token read the key's old version (its old secret's
// state, a revocation or a suspension lifted) for the cache's TTL.
func TestKeyChangesForgetTheKeyByID(t *testing.T) {
	ctx := context.Background()
	db := openStore(t)
	at := time.Now().UTC()
	if err := db.CreateTeam(ctx, org.Team{ID: "team_a", Name: "a", CreatedAt: at, Version: 1}); err != nil {
		t.Fatal(err)
	}
	if err := db.CreatePrincipal(ctx, org.Principal{ID: "prn_a", Name: "agent", Kind: org.KindServiceAccount, Teams: []string{"team_a"}, Roles: []string{"member"}, CreatedAt: at, Version: 1}); err != nil {
		t.Fatal(err)
	}
	hasher, err := vkey.NewHasher([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	verifier := vkey.NewVerifier(db, hasher, vkey.VerifierOptions{})
	authn := auth.New(verifier, db, time.Hour) // a TTL longer than the test: only a Forget refreshes it
	h := New(Deps{Store: db, Passwords: mfa.NewGate(mfa.HashMemory, 5*time.Second, 100), Verifier: verifier,
		Log: slog.New(slog.DiscardHandler), ForgetKey: authn.ForgetKey, Now: time.Now})

	cases := []struct {
		name    string
		path    string
		prepare func(id string)
		call    func(*Handler) handlerFunc
	}{
		{"revoke", "/revoke", nil, func(h *Handler) handlerFunc { return h.revokeKey }},
		{"rotate", "/rotate", nil, func(h *Handler) handlerFunc { return h.rotateKey }},
		{"reinstate", "/reinstate", func(id string) {
			if first, err := db.SuspendKeyFirst(ctx, id, "spent too much", at, 0); err != nil || !first {
				t.Fatalf("suspend: %v %v", first, err)
			}
		}, func(h *Handler) handlerFunc { return h.reinstateKey }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := "key_" + c.name
			if err := db.CreateKey(ctx, vkey.Key{ID: id, Kind: vkey.KindVirtual, Name: "k", Hash: "h-" + c.name, Hint: "gk_abcd…", PrincipalID: "prn_a", TeamID: "team_a", CreatedAt: at, Version: 1}); err != nil {
				t.Fatal(err)
			}
			if c.prepare != nil {
				c.prepare(id)
			}
			before, err := authn.KeyByID(ctx, id) // cached now
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("POST", "/v1/keys/"+id+c.path, nil)
			req.SetPathValue("id", id)
			if err := c.call(h)(rec, req, vkey.Key{ID: "key_admin"}); err != nil {
				t.Fatal(err)
			}
			want, err := db.Key(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if want.Version == before.Version {
				t.Fatalf("the %s did not change the key's version (%d)", c.name, want.Version)
			}
			got, err := authn.KeyByID(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if got.Version != want.Version {
				t.Errorf("after the %s a token's key by id is at version %d, the store's at %d: the key cache was not told", c.name, got.Version, want.Version)
			}
		})
	}
}
