package server

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/breaker"
)

// TestTripAfterAnUnheardEditSuspends: a key edited elsewhere (rotated by an
// admin) that this replica still holds at its old version (its tokens read
// it by id, cached for the TTL; the change notification not yet heard) trips
// the breaker: the trip is decided now, on spend made now, and must be
// stored, recorded and alerted. Taking the edit for a reinstatement since the
// trip would drop it (the breaker then forgets the spend that tripped it)
// and let the key spend a whole ceiling more unsuspended. A retry still
// writes only at the version of its trip.
func TestTripAfterAnUnheardEditSuspends(t *testing.T) {
	ctx := context.Background()
	s, db, _, now := suspendServer(t, "key_a", "key_b")

	// Its tokens hold the key at version 1; an admin rotates it (version 2).
	if _, err := s.auth.KeyByID(ctx, "key_a"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.RotateKey(ctx, "key_a", "hash-a2", "a2", now, now.Add(time.Hour), 0); err != nil {
		t.Fatal(err)
	}
	first, made, err := s.suspendKey(ctx, "key_a", breaker.Suspension{Reason: "spent too much"})
	if err != nil || !first {
		t.Fatalf("a trip after an edit this replica had not heard of: first %v, %v; want the key suspended", first, err)
	}
	if k, _ := db.Key(ctx, "key_a"); k.SuspendedAt == nil {
		t.Fatalf("key after its trip: %+v", k)
	}
	if made.Version != 1 || made.At.IsZero() {
		t.Fatalf("the trip was decided at %+v; want the version its tokens ran with (1)", made)
	}

	// A retry decided at version 1 of a key reinstated since does not
	// overrule the reinstatement.
	if _, err := s.auth.KeyByID(ctx, "key_b"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ReinstateKey(ctx, "key_b", 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.suspendKey(ctx, "key_b", breaker.Suspension{Reason: "spent too much", At: now, Version: 1}); err == nil {
		t.Fatal("a retry overruled a reinstatement made since its trip")
	}
	if k, _ := db.Key(ctx, "key_b"); k.SuspendedAt != nil {
		t.Fatalf("key after a retry from before its reinstatement: %+v", k)
	}
}
