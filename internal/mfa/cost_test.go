package mfa

import (
	"context"
	"encoding/base64"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestDummyHashCostsARealCheck: the dummy parses with the parameters of real
// hashes, so a check against it runs argon2id in full.
func TestDummyHashCostsARealCheck(t *testing.T) {
	real, _ := HashPassword("correct horse battery staple")
	rp, dp := strings.Split(real, "$"), strings.Split(dummyHash, "$")
	if len(dp) != 6 || dp[1] != rp[1] || dp[2] != rp[2] || dp[3] != rp[3] {
		t.Fatalf("dummy %q does not match the parameters of %q", dummyHash, real)
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(dp[4])
	key, err2 := base64.RawStdEncoding.DecodeString(dp[5])
	if err1 != nil || err2 != nil || len(salt) != 16 || len(key) != argonKeyLen {
		t.Fatalf("dummy salt %d key %d: %v %v", len(salt), len(key), err1, err2)
	}
}

// TestGate: the gate is sized to memory, checks a missing hash against the
// dummy (never a match), and refuses with ErrBusy when no slot frees in time.
func TestGate(t *testing.T) {
	if n, want := NewGate(256<<20, time.Second, 100).Slots(), max(1, min(4, (runtime.GOMAXPROCS(0)-1)/argonThreads)); n != want {
		t.Fatalf("256 MiB on %d CPUs: %d slots, want %d", runtime.GOMAXPROCS(0), n, want)
	}
	if n := NewGate(1, time.Second, 100).Slots(); n != 1 {
		t.Fatalf("tiny: %d slots, want 1", n)
	}
	g := NewGate(HashMemory, 10*time.Millisecond, 100)
	ctx := context.Background()
	h, err := g.Hash(ctx, "correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := g.Check(ctx, h, "correct horse battery staple"); !ok || err != nil {
		t.Fatalf("right password: %v %v", ok, err)
	}
	if ok, err := g.Check(ctx, "", "correct horse battery staple"); ok || err != nil {
		t.Fatalf("no hash: %v %v", ok, err)
	}
	if err := g.acquire(ctx); err != nil { // hold the only slot
		t.Fatal(err)
	}
	if _, err := g.Check(ctx, h, "correct horse battery staple"); !errors.Is(err, ErrBusy) {
		t.Fatalf("full gate: %v", err)
	}
	if _, err := g.Hash(ctx, "correct horse battery staple"); !errors.Is(err, ErrBusy) {
		t.Fatalf("full gate, hash: %v", err)
	}
	g.release(0)
	if ok, err := g.Check(ctx, h, "correct horse battery staple"); !ok || err != nil {
		t.Fatalf("after release: %v %v", ok, err)
	}
}

// fakeTimers is a gate's clock and AfterFunc under the test's control: time
// moves only when the test says, and a delayed release runs only when fired.
type fakeTimers struct {
	mu      sync.Mutex
	t       time.Time
	pending []time.Duration
	fire    []func()
}

func (f *fakeTimers) now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.t }
func (f *fakeTimers) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t = f.t.Add(d)
}
func (f *fakeTimers) after(d time.Duration, fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pending, f.fire = append(f.pending, d), append(f.fire, fn)
}

func fakeGate(cpuPercent int) (*Gate, *fakeTimers) {
	g := NewGate(HashMemory, time.Hour, cpuPercent)
	ft := &fakeTimers{t: time.Unix(1e9, 0)}
	g.now, g.after = ft.now, ft.after
	return g, ft
}

// heldGate is fakeGate with its one slot taken; release gives it back.
func heldGate(t *testing.T, cpuPercent int) (*Gate, *fakeTimers, func()) {
	t.Helper()
	g, ft := fakeGate(cpuPercent)
	release, err := g.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return g, ft, release
}

// waiter starts an Acquire that has to wait, and returns once it waits; the
// channel yields its result.
func waiter(t *testing.T, g *Gate) <-chan error {
	t.Helper()
	got := make(chan error, 1)
	go func() {
		release, err := g.Acquire(context.Background())
		if err == nil {
			defer release()
		}
		got <- err
	}()
	for g.waiting.Load() == 0 {
		runtime.Gosched()
	}
	return got
}

// TestGateDutyCycle: while others wait, a slot that hashed for d is given
// back only after d × (100 − p) / p; a lone caller's slot, and every slot at
// 100%, is given back at once.
func TestGateDutyCycle(t *testing.T) {
	t.Run("contended", func(t *testing.T) {
		g, ft, release := heldGate(t, 25)
		got := waiter(t, g)
		ft.advance(100 * time.Millisecond)
		release()
		release() // a second call gives nothing back twice
		if len(ft.pending) != 1 || ft.pending[0] != 300*time.Millisecond {
			t.Fatalf("pauses %v, want one of 300ms (100ms at 25%%)", ft.pending)
		}
		if len(g.slots) != 1 {
			t.Fatal("the slot was given back before its pause")
		}
		select {
		case err := <-got:
			t.Fatalf("the waiter got the slot during the pause: %v", err)
		default:
		}
		ft.fire[0]()
		if err := <-got; err != nil {
			t.Fatalf("waiter after the pause: %v", err)
		}
	})
	t.Run("alone", func(t *testing.T) {
		g, ft, release := heldGate(t, 25)
		ft.advance(100 * time.Millisecond)
		release()
		if len(ft.pending) != 0 || len(g.slots) != 0 {
			t.Fatalf("uncontended: pauses %v, %d slots held", ft.pending, len(g.slots))
		}
	})
	t.Run("100%", func(t *testing.T) {
		g, ft, release := heldGate(t, 100)
		got := waiter(t, g)
		ft.advance(100 * time.Millisecond)
		release()
		if len(ft.pending) != 0 {
			t.Fatalf("at 100%%: pauses %v", ft.pending)
		}
		if err := <-got; err != nil {
			t.Fatalf("waiter: %v", err)
		}
	})
	t.Run("no time held", func(t *testing.T) {
		g, ft, release := heldGate(t, 50)
		got := waiter(t, g)
		release()
		if err := <-got; err != nil || len(ft.pending) != 0 {
			t.Fatalf("zero-length hold: %v, pauses %v", err, ft.pending)
		}
	})
}

// TestGateWaitersThatGiveUpLeakNoSlot is the attack "leak hashing slots
// under a flood": callers that give up while waiting (their request
// cancelled, or the wait over) take no slot and leave no count behind; a
// slot given back after its pause while nobody waits any more is free, and
// releasing it twice gives back nothing more.
func TestGateWaitersThatGiveUpLeakNoSlot(t *testing.T) {
	g, ft, release := heldGate(t, 50)
	const n = 20
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, n)
	for range n {
		go func() {
			r, err := g.Acquire(ctx)
			if err == nil {
				r()
			}
			errs <- err
		}()
	}
	for g.waiting.Load() != n {
		runtime.Gosched()
	}
	ft.advance(100 * time.Millisecond)
	release() // contended: given back after a pause
	release()
	cancel() // every waiter gives up before the pause ends
	for range n {
		if err := <-errs; !errors.Is(err, context.Canceled) {
			t.Fatalf("a waiter whose request ended: %v, want context.Canceled", err)
		}
	}
	if g.waiting.Load() != 0 {
		t.Fatalf("%d callers still counted as waiting", g.waiting.Load())
	}
	if len(ft.fire) != 1 {
		t.Fatalf("%d delayed releases, want 1", len(ft.fire))
	}
	ft.fire[0]()
	if len(g.slots) != 0 {
		t.Fatalf("%d slots held after every caller left", len(g.slots))
	}
	// The wait over (ErrBusy): no slot kept either.
	short := NewGate(HashMemory, time.Millisecond, 50)
	r, _ := short.Acquire(context.Background())
	if _, err := short.Acquire(context.Background()); !errors.Is(err, ErrBusy) {
		t.Fatalf("a full gate after its wait: %v, want ErrBusy", err)
	}
	r()
	if len(short.slots) != 0 || short.waiting.Load() != 0 {
		t.Fatalf("after ErrBusy: %d slots held, %d waiting", len(short.slots), short.waiting.Load())
	}
}
