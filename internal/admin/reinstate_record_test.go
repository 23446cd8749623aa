package admin

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/ledger/ledgertest"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// TestReinstateRecordsTheSuspensionItLifts: a breaker's suspension that
// committed unrecorded (its answer lost, or the replica stopped between the
// write and the record) is recorded by the reinstatement that lifts it,
// before the reinstatement, once: the breaker's own record of it is the
// same record and is dropped as a duplicate.
func TestReinstateRecordsTheSuspensionItLifts(t *testing.T) {
	ctx := context.Background()
	f := newKeyFixture(t)
	db, at := f.db, f.at
	f.key(t, "key_a", "h1")
	f.suspend(t, "key_a")
	skey, _ := ledger.GenerateKey("test.example/log")
	lg, err := ledger.New(db, "t", skey, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	deps := f.deps()
	deps.Ledger = lg
	h := New(deps)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/v1/keys/key_a/reinstate", nil)
	req.SetPathValue("id", "key_a")
	if err := h.reinstateKey(rec, req, vkey.Key{ID: "key_admin"}); err != nil {
		t.Fatal(err)
	}
	if k, err := db.Key(ctx, "key_a"); err != nil || k.SuspendedAt != nil {
		t.Fatalf("after the reinstatement: %+v (%v)", k, err)
	}
	trips := ledgertest.RecordsOfKind(t, db, ledger.KindBreaker)
	if len(trips) != 1 || trips[0].KeyID != "key_a" || !trips[0].Time.Equal(at) || trips[0].Detail != "spent too much" {
		t.Fatalf("breaker records after the reinstatement: %+v; want the lifted suspension's, once", trips)
	}
	// The breaker's retry (or its answered trip) records the same suspension: dropped.
	if _, err := lg.Append(ctx, ledger.BreakerTrip("key_a", "spent too much", at)); !errors.Is(err, ledger.ErrAlreadyClosed) {
		t.Fatalf("the breaker's record of the same suspension: %v; want ErrAlreadyClosed", err)
	}
}
