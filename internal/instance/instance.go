// Package instance keeps a gateway process's liveness in the shared store and
// fences it: the process admits calls only while its liveness is fresh.
//
// An instance has a base name and an epoch; its id is "<base>.<epoch>", and
// the reservations and open log records it makes carry that id. Run writes a
// heartbeat every Heartbeat. Recovery on another replica claims an instance
// whose heartbeat is older than Stale (the store's claim and heartbeat exclude
// each other under a row lock), and only then closes its leftovers; a claimed
// instance can never beat again. So:
//
//   - Live returns an error, and a gateway on a shared store admits nothing
//     (503), when the
//     last successful heartbeat is older than Stale/2 (the store is away), or
//     after the instance learnt it was claimed; it is live again only after a
//     fresh heartbeat succeeds.
//   - An instance that was claimed starts a new epoch (a new id, a new row)
//     before it admits again: the sweep closes the old epoch's calls, never
//     the new one's. A call of the old epoch that was still running settles
//     as a no-op and its end record is dropped (one end per request).
//
// The store's clock (StoreNow). Replicas' clocks may differ by any amount:
// nothing that one replica compares with another's reads a replica's clock.
// Each heartbeat records the store's own time (PostgreSQL's clock_timestamp(),
// read by the heartbeat's statement; SQLite, one gateway: this process's
// clock), the sweeps compare heartbeats with a cutoff in that clock, and
// budget periods follow it: StoreNow estimates the store's time from the last
// heartbeat's reading plus the monotonic time since, with an uncertainty
// (half the round trip, a drift bound on the time since, and any
// disagreement of the wall clock with the monotonic one). It refuses (an
// error, never a guess) before the first reading, when the reading is older
// than Stale/2, and when the wall clock moved more than MaxStep away from the
// monotonic clock since the reading (the clock was stepped, or the process
// was suspended and its monotonic clock stood still); the next heartbeat
// reads the store's clock again. A reading that disagrees with the last one
// by more than both uncertainties (the store's clock was stepped) is logged.
package instance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/store"
)

// Store is what an instance needs: a heartbeat that fails with
// store.ErrFenced once the instance was claimed, and returns the time it
// recorded: the store's clock where it has one of its own, else at.
type Store interface {
	Heartbeat(ctx context.Context, instance string, at time.Time) (time.Time, error)
}

// ErrNotLive is returned by Live while the instance must not admit calls.
var ErrNotLive = errors.New("instance: liveness not established with the store")

// Instance is this process's identity and liveness.
type Instance struct {
	store Store
	base  string
	log   *slog.Logger
	now   func() time.Time

	// Heartbeat is the interval between heartbeats (default 5 s); Stale is
	// the silence after which other replicas sweep (default 20 s); Timeout
	// bounds one heartbeat (default 5 s).
	Heartbeat, Stale, Timeout time.Duration
	// OnLive, when set, is called (from Run) when the instance becomes live
	// again after it was not: the moment to flush what waited for the store.
	OnLive func()

	mu     sync.Mutex
	epoch  int
	id     atomic.Pointer[string]
	last   atomic.Int64 // monotonic nanoseconds since start of the last good heartbeat; 0: none
	start  time.Time
	mono   func() time.Duration // the monotonic clock: time since start
	fenced atomic.Bool
	clock  atomic.Pointer[reading] // the store's clock at the last good heartbeat
}

// reading is the store's clock as one heartbeat read it.
type reading struct {
	store time.Time     // the store's time, estimated at mono
	half  time.Duration // half the heartbeat's round trip: store is within ±half
	mono  time.Duration // this process's monotonic clock when the answer came
	wall  time.Time     // this process's wall clock then (no monotonic reading)
}

// New returns an instance named base (unique per process) at epoch 1.
func New(st Store, base string, log *slog.Logger) *Instance {
	i := &Instance{store: st, base: base, log: log, now: time.Now, Heartbeat: 5 * time.Second, Stale: 20 * time.Second,
		Timeout: 5 * time.Second, epoch: 1, start: time.Now()}
	i.mono = func() time.Duration { return time.Since(i.start) }
	id := base + ".1"
	i.id.Store(&id)
	return i
}

// ID returns the current id (base and epoch).
func (i *Instance) ID() string { return *i.id.Load() }

// Epoch returns the current epoch.
func (i *Instance) Epoch() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.epoch
}

// Live returns nil when the instance may admit calls.
func (i *Instance) Live() error {
	if i.fenced.Load() {
		return fmt.Errorf("%w: fenced, starting a new epoch", ErrNotLive)
	}
	last := i.last.Load()
	if last == 0 {
		return fmt.Errorf("%w: no heartbeat yet", ErrNotLive)
	}
	if age := i.mono() - time.Duration(last); age > i.Stale/2 {
		return fmt.Errorf("%w: last heartbeat %v ago", ErrNotLive, age.Round(time.Millisecond))
	}
	return nil
}

// Beat writes one heartbeat; when the instance was claimed it moves to a new
// epoch and beats as that. It returns whether the instance is live after it.
// A heartbeat that succeeds is also a reading of the store's clock.
func (i *Instance) Beat(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, i.Timeout)
	defer cancel()
	sent := i.mono()
	at, err := i.store.Heartbeat(ctx, i.ID(), i.now())
	if errors.Is(err, store.ErrFenced) {
		i.fenced.Store(true)
		i.mu.Lock()
		i.epoch++
		id := i.base + "." + strconv.Itoa(i.epoch)
		i.id.Store(&id)
		i.mu.Unlock()
		i.log.Warn("instance: another replica declared this one gone and closed its calls; starting a new epoch", "instance", id)
		// The reading is this heartbeat's alone: its round trip starts now.
		sent = i.mono()
		at, err = i.store.Heartbeat(ctx, id, i.now())
	}
	if err != nil {
		return fmt.Errorf("instance: heartbeat: %w", err)
	}
	got, wall := i.mono(), i.now().Round(0)
	// The store read its clock somewhere within the round trip: at its
	// middle, give or take half of it.
	half := (got - sent + 1) / 2
	r := &reading{store: at.Add(half), half: half, mono: got, wall: wall}
	if prev := i.clock.Swap(r); prev != nil {
		// The store's clock should have moved as this host's monotonic one
		// did, within both readings' uncertainty. More: the store's clock
		// was stepped (or this host was suspended), and replicas that read
		// it on either side of the step disagree until they read it again.
		since := got - prev.mono
		moved := r.store.Sub(prev.store.Add(since))
		if moved < 0 {
			moved = -moved
		}
		if moved > prev.half+half+since/1e6*driftPPM+time.Millisecond {
			i.log.Warn("instance: the store's clock moved against this host's monotonic clock between two heartbeats; budget periods follow the new reading",
				"instance", i.ID(), "by", moved.Round(time.Millisecond))
		}
	}
	// Liveness counts from when the heartbeat was sent, not when it returned.
	i.last.Store(int64(max(sent, 1)))
	i.fenced.Store(false)
	return nil
}

// Errors of StoreNow: the store's time is not known well enough to read a
// budget period from it.
var (
	ErrClockUnknown = errors.New("instance: the store's clock has not been read yet")
	ErrClockStale   = errors.New("instance: the store's clock was read too long ago")
	ErrClockStepped = errors.New("instance: this host's wall clock moved away from its monotonic clock since the store's clock was read")
)

// MaxStep is the most the wall clock may move away from the monotonic clock
// between a reading and StoreNow; within it the difference widens the
// uncertainty, beyond it StoreNow refuses until the next heartbeat.
const MaxStep = time.Second

// driftPPM bounds how fast this host's monotonic clock and the store's clock
// run apart, in parts per million: NTP slews each by at most 500 ppm.
const driftPPM = 1000

// StoreNow returns the store's time now, as the last heartbeat read it plus
// the monotonic time since, and its uncertainty: the store's clock reads
// within ±uncertainty of at. It fails (ErrClockUnknown, ErrClockStale,
// ErrClockStepped) rather than guess. Cheap: no store call.
func (i *Instance) StoreNow() (at time.Time, uncertainty time.Duration, err error) {
	r := i.clock.Load()
	if r == nil {
		return time.Time{}, 0, ErrClockUnknown
	}
	age := i.mono() - r.mono
	if age > i.Stale/2 {
		return time.Time{}, 0, fmt.Errorf("%w: %v ago (bound %v)", ErrClockStale, age.Round(time.Millisecond), i.Stale/2)
	}
	step := i.now().Round(0).Sub(r.wall) - age
	if step < 0 {
		step = -step
	}
	if step > MaxStep {
		return time.Time{}, 0, fmt.Errorf("%w: by %v (bound %v)", ErrClockStepped, step.Round(time.Millisecond), MaxStep)
	}
	// Either clock may be the one that is wrong (a stepped wall clock, or a
	// monotonic clock that stood still while the host was suspended), so
	// the store's time is within step of what the monotonic clock says.
	return r.store.Add(age), r.half + age/1e6*driftPPM + step + time.Microsecond, nil
}

// SetClock replaces the instance's wall and monotonic clocks (tests, and
// simulations of a host whose clock is skewed or stepped); nil keeps one.
// Call it before the instance runs.
func (i *Instance) SetClock(wall func() time.Time, mono func() time.Duration) {
	if wall != nil {
		i.now = wall
	}
	if mono != nil {
		i.mono = mono
	}
}

// Run beats every Heartbeat until ctx ends; after a failure it retries with
// backoff (at most a second apart) so that liveness returns as soon as the
// store does.
func (i *Instance) Run(ctx context.Context) error {
	wasLive := i.Live() == nil
	for {
		wait := i.Heartbeat
		err := i.Beat(ctx)
		if ctx.Err() != nil {
			return nil
		}
		live := i.Live() == nil
		switch {
		case err != nil:
			i.log.Warn("instance: heartbeat failed", "instance", i.ID(), "err", err)
			wait = min(i.Heartbeat, time.Second)
		case live && !wasLive:
			i.log.Info("instance: liveness re-established; admitting calls", "instance", i.ID())
			if i.OnLive != nil {
				i.OnLive()
			}
		}
		wasLive = live
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}
