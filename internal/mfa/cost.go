package mfa

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// HashMemory is the memory one argon2id hash or check takes (argonMemory KiB).
const HashMemory = argonMemory * 1024

// ErrBusy: every hashing slot stayed taken for the gate's whole wait.
var ErrBusy = errors.New("mfa: password hashing is at capacity")

// dummyHash has the parameters of real hashes, so checking against it costs
// what a real check costs.
const dummyHash = "$argon2id$v=19$m=65536,t=3,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"

// Gate bounds the memory and the CPU of password hashing: at most Slots
// argon2id runs at once (each takes HashMemory); a caller waits up to Wait for
// a slot and then gets ErrBusy. Checks against a missing hash run against a
// dummy, so unknown users and users without a password take the time of real
// ones.
//
// Under contention a slot also keeps a duty cycle: when a run ends while
// others wait, the slot is given back only after a pause, so that a slot hashes
// at most cpuPercent of the time (a run of d is followed by a pause of
// d × (100 − cpuPercent) / cpuPercent, d being the whole time the slot was
// held, the attempt-limit write before the run included). A run that ends with
// nobody waiting gives its slot back at once, so logins one at a time never
// pause; a flood gets fewer runs a second and more 503s, each run as costly as
// before. Why: one run holds a whole CPU for its duration, and on a 2-CPU
// gateway the data plane's p99 rose about 2× (4× on a busy machine) while a
// flood kept one slot busy back to back (docs/benchmarks.md, "Logins under a
// flood").
type Gate struct {
	slots      chan struct{}
	wait       time.Duration
	cpuPercent int
	waiting    atomic.Int64 // callers in acquire's timed wait

	now   func() time.Time                // time.Now; tests set a fake
	after func(d time.Duration, f func()) // time.AfterFunc; tests set a fake
}

// NewGate returns a gate sized to memoryBytes and to the CPUs: each run uses
// argonThreads lanes (one CPU each), and one CPU is left to the data plane,
// so at most (CPUs-1)/argonThreads slots; at least one. cpuPercent (1-100) is
// the duty cycle of a slot under contention; 100 gives a slot back at once.
func NewGate(memoryBytes int64, wait time.Duration, cpuPercent int) *Gate {
	n := max(1, min(memoryBytes/HashMemory, int64((runtime.GOMAXPROCS(0)-1)/argonThreads)))
	return &Gate{slots: make(chan struct{}, n), wait: wait, cpuPercent: min(100, max(1, cpuPercent)),
		now: time.Now, after: func(d time.Duration, f func()) { time.AfterFunc(d, f) }}
}

// Slots is how many hashes may run at once.
func (g *Gate) Slots() int { return cap(g.slots) }

func (g *Gate) acquire(ctx context.Context) error {
	select {
	case g.slots <- struct{}{}:
		return nil
	default:
	}
	g.waiting.Add(1)
	defer g.waiting.Add(-1)
	t := time.NewTimer(g.wait)
	defer t.Stop()
	select {
	case g.slots <- struct{}{}:
		return nil
	case <-t.C:
		return ErrBusy
	case <-ctx.Done():
		return ctx.Err()
	}
}

// release gives back a slot held for held: at once if nobody waits (or the
// duty cycle is 100%), else after the pause that keeps the slot's share.
func (g *Gate) release(held time.Duration) {
	if g.cpuPercent >= 100 || g.waiting.Load() == 0 || held <= 0 {
		<-g.slots
		return
	}
	g.after(held*time.Duration(100-g.cpuPercent)/time.Duration(g.cpuPercent), func() { <-g.slots })
}

// Check compares pw with hash under the bound; an empty hash is checked
// against a dummy and never matches.
func (g *Gate) Check(ctx context.Context, hash, pw string) (bool, error) {
	release, err := g.Acquire(ctx)
	if err != nil {
		return false, err
	}
	defer release()
	return CheckHeld(hash, pw), nil
}

// Acquire takes a hashing slot (waiting up to the gate's wait); call release
// when done (once; later calls do nothing). Callers that must do work between taking the slot and hashing
// (the attempt limits) use it, so that a flood shed by the gate costs nothing
// else.
func (g *Gate) Acquire(ctx context.Context) (release func(), err error) {
	if err := g.acquire(ctx); err != nil {
		return nil, err
	}
	start := g.now()
	var once sync.Once
	return func() { once.Do(func() { g.release(g.now().Sub(start)) }) }, nil
}

// CheckHeld is CheckPassword for a caller holding a slot: an empty hash is
// checked against the dummy and never matches.
func CheckHeld(hash, pw string) bool {
	if hash == "" {
		CheckPassword(dummyHash, pw)
		return false
	}
	return CheckPassword(hash, pw)
}

// Hash hashes a new password under the bound.
func (g *Gate) Hash(ctx context.Context, pw string) (string, error) {
	if len(pw) < MinPasswordLength { // refuse before spending memory
		return HashPassword(pw)
	}
	release, err := g.Acquire(ctx)
	if err != nil {
		return "", err
	}
	defer release()
	return HashPassword(pw)
}
