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
// Clocks of replicas may differ by less than Stale/2.
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
// store.ErrFenced once the instance was claimed.
type Store interface {
	Heartbeat(ctx context.Context, instance string, at time.Time) error
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
	fenced atomic.Bool
}

// New returns an instance named base (unique per process) at epoch 1.
func New(st Store, base string, log *slog.Logger) *Instance {
	i := &Instance{store: st, base: base, log: log, now: time.Now, Heartbeat: 5 * time.Second, Stale: 20 * time.Second,
		Timeout: 5 * time.Second, epoch: 1, start: time.Now()}
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
	if age := time.Since(i.start) - time.Duration(last); age > i.Stale/2 {
		return fmt.Errorf("%w: last heartbeat %v ago", ErrNotLive, age.Round(time.Millisecond))
	}
	return nil
}

// Beat writes one heartbeat; when the instance was claimed it moves to a new
// epoch and beats as that. It returns whether the instance is live after it.
func (i *Instance) Beat(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, i.Timeout)
	defer cancel()
	sent := time.Since(i.start)
	err := i.store.Heartbeat(ctx, i.ID(), i.now())
	if errors.Is(err, store.ErrFenced) {
		i.fenced.Store(true)
		i.mu.Lock()
		i.epoch++
		id := i.base + "." + strconv.Itoa(i.epoch)
		i.id.Store(&id)
		i.mu.Unlock()
		i.log.Warn("instance: another replica declared this one gone and closed its calls; starting a new epoch", "instance", id)
		err = i.store.Heartbeat(ctx, id, i.now())
	}
	if err != nil {
		return fmt.Errorf("instance: heartbeat: %w", err)
	}
	// Liveness counts from when the heartbeat was sent, not when it returned.
	i.last.Store(int64(max(sent, 1)))
	i.fenced.Store(false)
	return nil
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
