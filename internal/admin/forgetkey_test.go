package admin

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/auth"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// TestKeyChangesForgetTheKeyByID: every admin path that changes a key
// (revoke, rotate, reinstate) drops it from the cache that tokens
// exchanged for it read it through (auth.Authenticator.KeyByID), not only
// from the verifier's: a token read the key's old version (its old secret's
// state, a revocation or a suspension lifted) for the cache's TTL.
func TestKeyChangesForgetTheKeyByID(t *testing.T) {
	ctx := context.Background()
	f := newKeyFixture(t)
	db := f.db
	authn := auth.New(f.verifier, db, time.Hour) // a TTL longer than the test: only a Forget refreshes it
	deps := f.deps()
	deps.ForgetKey, deps.Now = authn.ForgetKey, time.Now
	h := New(deps)

	cases := []struct {
		name    string
		path    string
		prepare func(id string)
		call    func(*Handler) handlerFunc
	}{
		{"revoke", "/revoke", nil, func(h *Handler) handlerFunc { return h.revokeKey }},
		{"rotate", "/rotate", nil, func(h *Handler) handlerFunc { return h.rotateKey }},
		{"reinstate", "/reinstate", func(id string) { f.suspend(t, id) }, func(h *Handler) handlerFunc { return h.reinstateKey }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := "key_" + c.name
			f.key(t, id, "h-"+c.name)
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
