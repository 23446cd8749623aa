package instance_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/instance"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
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

// TestHeartbeatReadsTheStoresClock: on PostgreSQL a heartbeat records the
// server's clock, not the replica's (an hour ahead here), and StoreNow's
// estimate of the server's time brackets the server's own readings taken
// around it, within its uncertainty.
func TestHeartbeatReadsTheStoresClock(t *testing.T) {
	db := pgtest.Open(t)
	ctx := context.Background()
	in := instance.New(db, "gw_pg", slog.New(slog.DiscardHandler))
	in.SetClock(func() time.Time { return time.Now().Add(time.Hour) }, nil)
	serverNow := func() time.Time {
		var us int64
		if err := db.SQL().QueryRow(`SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint`).Scan(&us); err != nil {
			t.Fatal(err)
		}
		return time.UnixMicro(us)
	}
	if _, _, err := in.StoreNow(); !errors.Is(err, instance.ErrClockUnknown) {
		t.Fatalf("before the first heartbeat: StoreNow = %v, want ErrClockUnknown", err)
	}
	before := serverNow()
	if err := in.Beat(ctx); err != nil {
		t.Fatal(err)
	}
	at, unc, err := in.StoreNow()
	after := serverNow()
	if err != nil {
		t.Fatal(err)
	}
	if at.Add(unc).Before(before) || at.Add(-unc).After(after) {
		t.Fatalf("StoreNow = %v ±%v; the server read %v before and %v after", at, unc, before, after)
	}
	var us int64
	if err := db.SQL().QueryRow(`SELECT heartbeat_at FROM instances WHERE id = $1`, in.ID()).Scan(&us); err != nil {
		t.Fatal(err)
	}
	if hb := time.UnixMicro(us); hb.Before(before) || hb.After(after) {
		t.Fatalf("heartbeat recorded at %v, outside the server's %v … %v (the replica's clock said %v)", hb, before, after, time.Now().Add(time.Hour))
	}
}

// TestStoreNowRefusesWhatItCannotKnow: on the embedded store the store's
// clock is the process's own, as the heartbeat read it. A wall clock that
// moves away from the monotonic one widens the uncertainty by as much, and
// beyond MaxStep StoreNow refuses until the next heartbeat; a reading older
// than Stale/2 is refused too.
func TestStoreNowRefusesWhatItCannotKnow(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	wall, mono := time.Date(2026, 12, 1, 23, 59, 0, 0, time.UTC), time.Hour
	var logs bytes.Buffer
	in := instance.New(db, "gw_a", slog.New(slog.NewTextHandler(&logs, nil)))
	in.SetClock(func() time.Time { return wall }, func() time.Duration { return mono })
	if err := in.Beat(ctx); err != nil {
		t.Fatal(err)
	}
	at, unc, err := in.StoreNow()
	if err != nil || !at.Equal(wall) || unc > time.Millisecond {
		t.Fatalf("StoreNow = %v ±%v, %v; want %v (the heartbeat's own clock)", at, unc, err, wall)
	}
	mono += 2 * time.Second
	wall = wall.Add(2*time.Second + 300*time.Millisecond) // 300 ms more on the wall clock
	at, unc, err = in.StoreNow()
	if err != nil || !at.Equal(time.Date(2026, 12, 1, 23, 59, 2, 0, time.UTC)) || unc < 300*time.Millisecond {
		t.Fatalf("after a 300 ms step: StoreNow = %v ±%v, %v; want 23:59:02 (monotonic) ±≥300ms", at, unc, err)
	}
	wall = wall.Add(24 * time.Hour)
	if _, _, err := in.StoreNow(); !errors.Is(err, instance.ErrClockStepped) {
		t.Fatalf("after the wall clock stepped a day: %v, want ErrClockStepped", err)
	}
	if strings.Contains(logs.String(), "store's clock moved") {
		t.Fatalf("a jump logged before the store's clock was read again: %s", logs.String())
	}
	if err := in.Beat(ctx); err != nil {
		t.Fatal(err)
	}
	// Here the store's clock is this host's wall clock: the step is a jump of
	// the store's clock against the monotonic one, which the heartbeat says.
	if !strings.Contains(logs.String(), "store's clock moved") {
		t.Fatalf("the store's clock jumped a day and nothing was logged: %q", logs.String())
	}
	if _, _, err := in.StoreNow(); err != nil {
		t.Fatalf("after the next heartbeat: %v", err)
	}
	mono += in.Stale/2 + time.Millisecond
	wall = wall.Add(in.Stale/2 + time.Millisecond)
	if _, _, err := in.StoreNow(); !errors.Is(err, instance.ErrClockStale) {
		t.Fatalf("a reading older than Stale/2: %v, want ErrClockStale", err)
	}
}
