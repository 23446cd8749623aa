package lockout_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/lockout"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
)

// backends runs fn on SQLite and, when configured, PostgreSQL.
func backends(t *testing.T, fn func(t *testing.T, open func(t *testing.T) lockout.Store)) {
	t.Run("sqlite", func(t *testing.T) {
		fn(t, func(t *testing.T) lockout.Store {
			db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "g.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		})
	})
	t.Run("postgres", func(t *testing.T) {
		fn(t, func(t *testing.T) lockout.Store { return pgtest.Open(t) })
	})
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newLimiter(s lockout.Store, c *clock) *lockout.Limiter {
	return &lockout.Limiter{Store: s, Credential: lockout.DefaultPolicy, Source: lockout.DefaultPolicy, Now: c.Now}
}

func lockedFor(err error) (time.Duration, bool) {
	var le *lockout.LockedError
	if errors.As(err, &le) {
		return le.RetryAfter(), true
	}
	return 0, false
}

// TestReserveLocksAfterLimit: five places, the sixth attempt locks for the
// backoff, the next lock doubles it, right guesses give places back.
func TestReserveLocksAfterLimit(t *testing.T) {
	backends(t, func(t *testing.T, open func(t *testing.T) lockout.Store) {
		ctx := context.Background()
		c := &clock{t: time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)}
		l := newLimiter(open(t), c)
		sub := lockout.UserSubject("prn_1", "totp")
		// A right guess gives its place back: any number of them never locks.
		for range 20 {
			p, err := l.Reserve(ctx, sub, "192.0.2.1", "ua")
			if err != nil {
				t.Fatalf("honest attempt: %v", err)
			}
			if err := p.Release(ctx); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 5 {
			if _, err := l.Reserve(ctx, sub, "192.0.2.1", "ua"); err != nil {
				t.Fatalf("wrong guess %d: %v", i+1, err)
			}
		}
		p, err := l.Reserve(ctx, sub, "192.0.2.1", "ua")
		d, ok := lockedFor(err)
		if !ok || d != 15*time.Minute || p == nil || p.Locked == nil {
			t.Fatalf("sixth attempt: %v %v (locked now: %v)", err, d, p != nil && p.Locked != nil)
		}
		c.Add(10 * time.Minute)
		if _, ok := lockedFor(l.Check(ctx, sub)); !ok {
			t.Fatal("Check during the lock")
		}
		p, err = l.Reserve(ctx, sub, "192.0.2.1", "ua")
		if d, ok := lockedFor(err); !ok || d != 5*time.Minute || p.Locked != nil {
			t.Fatalf("during the lock: %v %v", err, d)
		}
		// After the lock the window is over too: five more places, then a lock twice as long.
		c.Add(5*time.Minute + time.Second)
		if err := l.Check(ctx, sub); err != nil {
			t.Fatalf("after the lock: %v", err)
		}
		for i := range 5 {
			if _, err := l.Reserve(ctx, sub, "192.0.2.1", "ua"); err != nil {
				t.Fatalf("second round %d: %v", i+1, err)
			}
		}
		if d, ok := lockedFor(func() error { _, err := l.Reserve(ctx, sub, "192.0.2.1", "ua"); return err }()); !ok || d != 30*time.Minute {
			t.Fatalf("second lock: %v", d)
		}
		sts, err := l.List(ctx)
		if err != nil || len(sts) != 1 || sts[0].Subject != sub || sts[0].Locks != 2 || sts[0].LastSource != "192.0.2.1" {
			t.Fatalf("list: %+v %v", sts, err)
		}
		// Other subjects are untouched; clearing the user's subjects unlocks.
		if _, err := l.Reserve(ctx, lockout.UserSubject("prn_2", "totp"), "", ""); err != nil {
			t.Fatal(err)
		}
		if n, err := l.Clear(ctx, lockout.UserSubjects("prn_1")...); err != nil || n != 1 {
			t.Fatalf("clear: %d %v", n, err)
		}
		if _, err := l.Reserve(ctx, sub, "", ""); err != nil {
			t.Fatalf("after clear: %v", err)
		}
		// A day of quiet brings the backoff back to the start.
		c.Add(25 * time.Hour)
		for range 6 {
			_, err = l.Reserve(ctx, lockout.UserSubject("prn_2", "totp"), "", "")
		}
		if d, ok := lockedFor(err); !ok || d != 15*time.Minute {
			t.Fatalf("after quiet: %v", d)
		}
	})
}

// TestReserveRace: many concurrent wrong guesses (as from many replicas)
// take at most MaxFailures places; all others are refused.
func TestReserveRace(t *testing.T) {
	backends(t, func(t *testing.T, open func(t *testing.T) lockout.Store) {
		ctx := context.Background()
		c := &clock{t: time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)}
		l := newLimiter(open(t), c)
		var admitted, refused atomic.Int64
		var wg sync.WaitGroup
		for range 60 {
			wg.Go(func() {
				_, err := l.Reserve(ctx, "user:prn_race:totp", "198.51.100.7", "")
				switch _, locked := lockedFor(err); {
				case err == nil:
					admitted.Add(1)
				case locked:
					refused.Add(1)
				default:
					t.Errorf("reserve: %v", err)
				}
			})
		}
		wg.Wait()
		if admitted.Load() != 5 || refused.Load() != 55 {
			t.Fatalf("admitted %d refused %d, want 5 and 55", admitted.Load(), refused.Load())
		}
	})
}

// TestFailCountsAfterTheFact: source subjects count failures, lock on the
// one after the limit, and Check refuses while locked.
func TestFailCountsAfterTheFact(t *testing.T) {
	backends(t, func(t *testing.T, open func(t *testing.T) lockout.Store) {
		ctx := context.Background()
		c := &clock{t: time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)}
		l := newLimiter(open(t), c)
		l.Source.MaxFailures = 3
		sub := "source:203.0.113.9"
		for i := range 3 {
			if st, err := l.Fail(ctx, sub, "203.0.113.9", "curl"); err != nil || st != nil {
				t.Fatalf("failure %d: %v %v", i+1, st, err)
			}
			if err := l.Check(ctx, sub, "user:x:password"); err != nil {
				t.Fatalf("check after %d: %v", i+1, err)
			}
		}
		st, err := l.Fail(ctx, sub, "203.0.113.9", "curl")
		if err != nil || st == nil || !st.Locked(c.Now()) {
			t.Fatalf("fourth failure: %+v %v", st, err)
		}
		if _, ok := lockedFor(l.Check(ctx, "user:x:password", sub)); !ok {
			t.Fatal("check while locked")
		}
	})
}

// TestAtMostTenGuessesInAnyWindow is the promise as a property: an attacker
// guessing at random moments over six simulated hours, with the real user's
// right guesses interleaved, never lands more than 2×MaxFailures (10) wrong
// guesses in any 15 minutes, and the user's right guesses free none of them.
func TestAtMostTenGuessesInAnyWindow(t *testing.T) {
	backends(t, func(t *testing.T, open func(t *testing.T) lockout.Store) {
		ctx := context.Background()
		start := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
		c := &clock{t: start}
		l := newLimiter(open(t), c)
		rng := rand.New(rand.NewPCG(10, 10))
		var landed []time.Time
		for c.Now().Sub(start) < 6*time.Hour {
			c.Add(time.Duration(rng.Int64N(int64(90 * time.Second))))
			p, err := l.Reserve(ctx, "user:prn_p:totp", "", "")
			if _, locked := lockedFor(err); err != nil && !locked {
				t.Fatal(err)
			}
			if err != nil {
				continue
			}
			if rng.IntN(4) == 0 { // the real user's right code
				p.Release(ctx)
				continue
			}
			landed = append(landed, c.Now())
		}
		most := 0
		for i := range landed {
			n := 0
			for j := i; j < len(landed) && landed[j].Sub(landed[i]) < 15*time.Minute; j++ {
				n++
			}
			most = max(most, n)
		}
		if most > 10 || len(landed) == 0 {
			t.Fatalf("%d wrong guesses landed in one 15-minute window (of %d in 6h), want at most 10", most, len(landed))
		}
		t.Logf("%d wrong guesses landed in 6 hours; at most %d in any 15 minutes", len(landed), most)
	})
}

// TestSweep: counters untouched for longer than the window and the longest
// lock (a day by default) go, a recent one stays, and a swept subject starts
// again as if new.
func TestSweep(t *testing.T) {
	backends(t, func(t *testing.T, open func(t *testing.T) lockout.Store) {
		ctx := context.Background()
		c := &clock{t: time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)}
		l := newLimiter(open(t), c)
		for range 6 {
			l.Reserve(ctx, "user:locked:totp", "", "")
		}
		if _, err := l.Reserve(ctx, "name:random-1:password", "", ""); err != nil {
			t.Fatal(err)
		}
		c.Add(23 * time.Hour)
		if _, err := l.Reserve(ctx, "name:recent:password", "", ""); err != nil {
			t.Fatal(err)
		}
		c.Add(2 * time.Hour)
		if n, err := l.Sweep(ctx); err != nil || n != 2 {
			t.Fatalf("sweep: %d %v, want 2", n, err)
		}
		sts, _ := l.Store.LockoutStates(ctx, []string{"user:locked:totp", "name:random-1:password", "name:recent:password"})
		if len(sts) != 1 || sts[0].Subject != "name:recent:password" {
			t.Fatalf("after sweep: %+v", sts)
		}
		for i := range 5 {
			if _, err := l.Reserve(ctx, "user:locked:totp", "", ""); err != nil {
				t.Fatalf("swept subject, attempt %d: %v", i+1, err)
			}
		}
		if d, ok := lockedFor(func() error { _, err := l.Reserve(ctx, "user:locked:totp", "", ""); return err }()); !ok || d != 15*time.Minute {
			t.Fatalf("swept subject locks at the first backoff: %v", d)
		}
	})
}

// TestSourceSubjectCountsIPv6Per64: every address of one IPv6 /64 is one
// source (an attacker rotating through its /64 is one attacker); IPv4 and
// IPv4-mapped IPv6 count per address; zones are dropped.
func TestSourceSubjectCountsIPv6Per64(t *testing.T) {
	for _, c := range []struct{ addr, want string }{
		{"203.0.113.9", "source:203.0.113.9"},
		{"::ffff:203.0.113.9", "source:203.0.113.9"},
		{"2001:db8:1:2::1", "source:2001:db8:1:2::/64"},
		{"2001:db8:1:2:dead:beef:1:1", "source:2001:db8:1:2::/64"},
		{"fe80::1%eth0", "source:fe80::/64"},
		{"2001:db8:1:3::1", "source:2001:db8:1:3::/64"},
	} {
		if got := lockout.SourceSubject(netip.MustParseAddr(c.addr)); got != c.want {
			t.Errorf("SourceSubject(%s) = %s, want %s", c.addr, got, c.want)
		}
	}
	if got := lockout.SourceSubject(netip.Addr{}); got != "source:unknown" {
		t.Errorf("no address: %s", got)
	}
}

// TestNameSubjectIsExact: unknown login names count exactly as written (as
// the store matches them), so spellings of an unknown name count apart as
// spellings of a real user's name do; very long names are hashed.
func TestNameSubjectIsExact(t *testing.T) {
	if lockout.NameSubject("frank") == lockout.NameSubject("FRANK") {
		t.Fatal("spellings of an unknown name share a counter")
	}
	long := strings.Repeat("x", 1<<20)
	if s := lockout.NameSubject(long); len(s) > 100 || s != lockout.NameSubject(long) || !strings.HasPrefix(s, "name:sha256-") {
		t.Fatalf("a megabyte name: %d bytes %.80q", len(s), s)
	}
	if lockout.NameSubject(long) == lockout.NameSubject(long+"y") {
		t.Fatal("two long names share a counter")
	}
}

// TestUnlockingBobLeavesBobColonX: clearing a user's and a login name's
// counters clears exactly those, never subjects that merely start like them
// (a login name may contain ':', so "name:bob:" is a prefix of the counter of
// the name "bob:x"; a principal id may be a prefix of another's), and a
// prefix-shaped subject is refused rather than read as a prefix.
func TestUnlockingBobLeavesBobColonX(t *testing.T) {
	backends(t, func(t *testing.T, open func(t *testing.T) lockout.Store) {
		ctx := context.Background()
		c := &clock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
		l := newLimiter(open(t), c)
		lock := func(sub string) {
			for range 6 {
				l.Reserve(ctx, sub, "192.0.2.1", "ua")
			}
			if _, ok := lockedFor(l.Check(ctx, sub)); !ok {
				t.Fatalf("%s not locked", sub)
			}
		}
		bob, bobx := lockout.NameSubject("bob"), lockout.NameSubject("bob:x")
		others := []string{bobx, lockout.NameSubject("bob:"), lockout.UserSubject("prn_1x", "password"),
			lockout.UserSubject("prn_1:totp", "password"), "source:192.0.2.1"}
		lock(bob)
		for _, f := range lockout.Factors {
			lock(lockout.UserSubject("prn_1", f))
		}
		for _, s := range others {
			lock(s)
		}
		for _, bad := range []string{"", "name:bob:", "user:prn_1:", "source:"} {
			if _, err := l.Clear(ctx, bad); !errors.Is(err, lockout.ErrNotASubject) {
				t.Fatalf("Clear(%q): %v, want ErrNotASubject", bad, err)
			}
		}
		n, err := l.Clear(ctx, append(lockout.UserSubjects("prn_1"), bob)...)
		if err != nil || n != 4 {
			t.Fatalf("clear: %d %v, want 4", n, err)
		}
		if err := l.Check(ctx, append(lockout.UserSubjects("prn_1"), bob)...); err != nil {
			t.Fatalf("still locked after unlock: %v", err)
		}
		for _, s := range others {
			if _, ok := lockedFor(l.Check(ctx, s)); !ok {
				t.Errorf("%s was cleared by unlocking bob / prn_1", s)
			}
		}
	})
}
