package instance_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/instance"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
)

// TestFencedInstanceStartsANewEpoch: an instance is not live before its
// first heartbeat; once another replica claimed it, its next heartbeat moves
// it to a new epoch (a new id) and it is live again as that.
func TestFencedInstanceStartsANewEpoch(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	in := instance.New(db, "gw_a", slog.New(slog.DiscardHandler))
	if err := in.Live(); !errors.Is(err, instance.ErrNotLive) {
		t.Fatalf("before the first heartbeat: Live = %v", err)
	}
	if err := in.Beat(ctx); err != nil {
		t.Fatal(err)
	}
	if err := in.Live(); err != nil || in.ID() != "gw_a.1" {
		t.Fatalf("after a heartbeat: Live = %v, id %s", err, in.ID())
	}
	// Another replica sweeps: every instance silent "since the future" is claimed.
	if _, err := db.Abandoned(ctx, "gw_b.1", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := in.Beat(ctx); err != nil {
		t.Fatal(err)
	}
	if in.ID() != "gw_a.2" || in.Epoch() != 2 {
		t.Fatalf("after being claimed: id %s epoch %d, want gw_a.2", in.ID(), in.Epoch())
	}
	if err := in.Live(); err != nil {
		t.Fatalf("live in the new epoch: %v", err)
	}
}

// TestLivenessLapsesWithoutHeartbeats: with no successful heartbeat for half
// of Stale the instance stops admitting.
func TestLivenessLapsesWithoutHeartbeats(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	in := instance.New(db, "gw_a", slog.New(slog.DiscardHandler))
	in.Stale = 200 * time.Millisecond
	if err := in.Beat(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for in.Live() == nil {
		if time.Now().After(deadline) {
			t.Fatal("still live 5 s after the last heartbeat with Stale = 200 ms")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := in.Beat(ctx); err != nil || in.Live() != nil {
		t.Fatalf("a fresh heartbeat did not restore liveness: %v, %v", err, in.Live())
	}
}
