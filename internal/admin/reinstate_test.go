package admin

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// TestReinstateResetsTheBreakerFirst: the breaker's windows are emptied
// while the key is still suspended, before the store reinstates it. In the
// other order a flush on any replica between the two (or in flight,
// answered after) judged the key on the spend that suspended it and
// suspended it again at once.
func TestReinstateResetsTheBreakerFirst(t *testing.T) {
	ctx := context.Background()
	f := newKeyFixture(t)
	db := f.db
	f.key(t, "key_a", "h1")
	f.suspend(t, "key_a")
	resets := 0
	deps := f.deps()
	deps.ForgetKey = func(string) {}
	deps.ResetBreaker = func(id string) {
		resets++
		k, err := db.Key(ctx, id)
		if err != nil || k.SuspendedAt == nil {
			t.Errorf("the breaker was reset after the key was reinstated (%v): a flush meanwhile suspends it again", err)
		}
	}
	h := New(deps)
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
