// Package lockout limits guesses of secrets people and clients can guess:
// passwords, TOTP codes, recovery codes, token-endpoint client secrets.
//
// # Subjects and counters
//
// A subject names one guessable secret of one credential ("user:prn_…:totp",
// "user:prn_…:password", "name:bob:password" for a login name that matches
// nobody) or one source address ("source:203.0.113.9"). Each subject has a
// counter in the store, shared by every replica, with a fixed window
// (Policy.Window, 15 minutes by default).
//
// A guess of a credential's secret first Reserves a place in the counter: an
// atomic increment in one SQL statement (no read-modify-write), refused when
// the counter already holds Policy.MaxFailures. A right guess gives its place
// back (Release); a wrong one keeps it. So at most MaxFailures wrong guesses
// land in a window however many callers race, and an honest user's successes
// never free an attacker's places. Source addresses count only failures (Fail),
// after the fact, so that many honest concurrent logins behind one NAT do not
// lock each other out.
//
// The attempt after the limit locks the subject for Policy.Backoff; each new
// lock of the same subject doubles it, up to Policy.MaxBackoff, and a subject
// quiet for MaxBackoff starts again at Backoff. A locked subject refuses every
// attempt, right or wrong, with a *LockedError carrying Retry-After. So per
// subject at most 2×MaxFailures guesses fit in any Window (MaxFailures at the
// end of one window, MaxFailures at the start of the next), then none for at
// least Backoff.
//
// Counters untouched for longer than the window and the longest lock are
// swept (once every 1024 attempts), so random names and addresses do not
// pile up. Errors of the store fail closed: no guess is checked without its
// counter.
package lockout

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"
)

// Policy is one kind of counter's limit.
type Policy struct {
	MaxFailures int           // places in a window (default 5)
	Window      time.Duration // fixed window (default 15m)
	Backoff     time.Duration // first lock (default 15m); doubles per lock
	MaxBackoff  time.Duration // longest lock (default 24h)
}

// DefaultPolicy is 5 failures in 15 minutes, then 15 minutes locked, doubling
// up to a day.
var DefaultPolicy = Policy{MaxFailures: 5, Window: 15 * time.Minute, Backoff: 15 * time.Minute, MaxBackoff: 24 * time.Hour}

// Validate checks p.
func (p Policy) Validate() error {
	if p.MaxFailures < 1 || p.Window <= 0 || p.Backoff <= 0 || p.MaxBackoff < p.Backoff {
		return errors.New("lockout: max_failures must be at least 1, window and lockout positive, max_lockout at least lockout")
	}
	return nil
}

// State is a subject's counter as stored.
type State struct {
	Subject       string     `json:"subject"`
	Failures      int        `json:"failures"` // places taken in the current window
	WindowStart   time.Time  `json:"window_start"`
	LockedUntil   *time.Time `json:"locked_until,omitempty"`
	LockedAt      *time.Time `json:"locked_at,omitempty"`
	Locks         int        `json:"locks"` // times locked so far
	LastSource    string     `json:"last_source,omitempty"`
	LastUserAgent string     `json:"last_user_agent,omitempty"`
	UpdatedAt     time.Time  `json:"updated_at"`
}

// Locked reports whether s refuses attempts at now.
func (s State) Locked(now time.Time) bool { return s.LockedUntil != nil && s.LockedUntil.After(now) }

// Attempt is what the store records of an attempt.
type Attempt struct {
	Subject   string
	At        time.Time
	Source    string
	UserAgent string
}

// Store keeps the counters. Implementations make Take one atomic statement.
type Store interface {
	// TakeLockoutPlace counts one attempt of a.Subject under p: it takes a
	// place and returns the state after it, unless the subject is locked or
	// its window is full, in which case it takes none, locks the subject when
	// not yet locked, and returns the locked state.
	TakeLockoutPlace(ctx context.Context, a Attempt, p Policy) (State, error)
	// GiveLockoutPlace gives back a place taken in the window that began at
	// windowStart (a right guess).
	GiveLockoutPlace(ctx context.Context, subject string, windowStart time.Time) error
	// LockoutStates returns the stored states of subjects (absent ones are
	// not returned).
	LockoutStates(ctx context.Context, subjects []string) ([]State, error)
	// ListLockouts returns subjects locked at now or with failures in a
	// window begun after since.
	ListLockouts(ctx context.Context, now, since time.Time) ([]State, error)
	// SweepLockouts deletes subjects untouched since before and not locked
	// at now (they are as good as absent) and returns how many.
	SweepLockouts(ctx context.Context, now, before time.Time) (int64, error)
	// ClearLockouts deletes every subject starting with prefix when prefix
	// ends in ':', else the one subject named, and returns how many.
	ClearLockouts(ctx context.Context, prefix string) (int64, error)
}

// LockedError refuses an attempt on a locked subject.
type LockedError struct {
	Subject string
	Until   time.Time
	After   time.Duration
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("lockout: %s locked for %s", e.Subject, e.After)
}

// RetryAfter is how long the caller must wait.
func (e *LockedError) RetryAfter() time.Duration { return e.After }

// ErrUnavailable wraps store failures: fail closed.
var ErrUnavailable = errors.New("lockout: store unavailable")

// Subjects.

// UserSubject names a factor of a user: "password", "totp" or "recovery".
func UserSubject(principalID, factor string) string { return "user:" + principalID + ":" + factor }

// Factors are the guessable factors a user has a counter for.
var Factors = []string{"password", "totp", "recovery"}

// UserSubjects names every counter of a user, exactly (one per factor).
// Unlocking a user clears these and nothing else: a prefix would also clear
// subjects that merely start like them.
func UserSubjects(principalID string) []string {
	out := make([]string, len(Factors))
	for i, f := range Factors {
		out[i] = UserSubject(principalID, f)
	}
	return out
}

// NameSubject names the password of a login name that matches no user, so
// unknown names are limited (and answer) exactly as real ones. The name is
// taken exactly as written, as the store matches names: folding spellings
// together (case) for unknown names only would let an attacker tell them
// from real users, whose other spellings match nobody and count apart.
// Names longer than maxSubjectName are named by their SHA-256, so a caller
// cannot store a megabyte per counter.
func NameSubject(name string) string { return "name:" + subjectName(name) + ":password" }

// maxSubjectName is the longest login name kept as written in a subject.
const maxSubjectName = 128

func subjectName(name string) string {
	if len(name) <= maxSubjectName {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return "sha256-" + hex.EncodeToString(sum[:])
}

// SourceSubject names a source address. An IPv6 source counts as its /64:
// one host, customer or container is routinely given a whole /64 and can
// rotate through 2^64 addresses, so a per-address counter would limit
// nothing ("source:2001:db8:1:2::/64"). IPv4 (and IPv4-mapped IPv6) counts
// per address.
func SourceSubject(a netip.Addr) string {
	if !a.IsValid() {
		return "source:unknown"
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.WithZone("").Prefix(64)
		return "source:" + p.String()
	}
	return "source:" + a.String()
}

// Limiter applies policies to subjects.
type Limiter struct {
	Store Store
	// Credential limits each factor of a user (password, TOTP, recovery codes).
	Credential Policy
	// Source limits the failures of one source address over every factor.
	Source Policy
	Now    func() time.Time

	attempts atomic.Int64
}

// sweepEvery is how many counted attempts pass between sweeps of stale
// counters (random login names and addresses would otherwise pile up).
const sweepEvery = 1024

// maybeSweep deletes stale counters once every sweepEvery attempts: a row
// untouched for longer than both the window and the longest lock holds no
// failure and no lock that still counts, and would restart at the first
// backoff, exactly as a missing row does.
func (l *Limiter) maybeSweep(ctx context.Context, now time.Time) {
	if l.attempts.Add(1)%sweepEvery != 0 {
		return
	}
	stale := max(l.Credential.Window, l.Credential.MaxBackoff, l.Source.Window, l.Source.MaxBackoff)
	l.Store.SweepLockouts(context.WithoutCancel(ctx), now, now.Add(-stale))
}

// Sweep deletes stale counters now (see maybeSweep); it returns how many.
func (l *Limiter) Sweep(ctx context.Context) (int64, error) {
	now := l.now()
	stale := max(l.Credential.Window, l.Credential.MaxBackoff, l.Source.Window, l.Source.MaxBackoff)
	return l.Store.SweepLockouts(ctx, now, now.Add(-stale))
}

// Place is a reserved attempt; Release it after a right guess.
type Place struct {
	l       *Limiter
	subject string
	window  time.Time
	// Locked is set when this reservation locked the subject.
	Locked *State
}

// Reserve takes a place for one guess of a credential subject. It returns a
// *LockedError when the subject is locked (or becomes locked now: then the
// returned Place's Locked says so, for the ledger).
func (l *Limiter) Reserve(ctx context.Context, subject, source, userAgent string) (*Place, error) {
	now := l.now()
	l.maybeSweep(ctx, now)
	st, err := l.Store.TakeLockoutPlace(ctx, Attempt{Subject: subject, At: now, Source: source, UserAgent: userAgent}, l.Credential)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if st.Locked(now) {
		p := &Place{l: l, subject: subject}
		if st.LockedAt != nil && st.LockedAt.Equal(now) {
			p.Locked = &st
		}
		return p, &LockedError{Subject: subject, Until: *st.LockedUntil, After: ceilSecond(st.LockedUntil.Sub(now))}
	}
	return &Place{l: l, subject: subject, window: st.WindowStart}, nil
}

// Release gives the place back: the guess was right.
func (p *Place) Release(ctx context.Context) error {
	if p == nil || p.window.IsZero() {
		return nil
	}
	return p.l.Store.GiveLockoutPlace(context.WithoutCancel(ctx), p.subject, p.window)
}

// Check refuses with a *LockedError when any subject is locked now.
func (l *Limiter) Check(ctx context.Context, subjects ...string) error {
	now := l.now()
	sts, err := l.Store.LockoutStates(ctx, subjects)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	var worst *LockedError
	for _, s := range sts {
		if s.Locked(now) && (worst == nil || s.LockedUntil.After(worst.Until)) {
			worst = &LockedError{Subject: s.Subject, Until: *s.LockedUntil, After: ceilSecond(s.LockedUntil.Sub(now))}
		}
	}
	if worst != nil {
		return worst
	}
	return nil
}

// Fail counts a failure of a source subject after the fact. It returns the
// state when this failure locked the subject (for the ledger), else nil.
func (l *Limiter) Fail(ctx context.Context, subject, source, userAgent string) (*State, error) {
	now := l.now()
	l.maybeSweep(ctx, now)
	st, err := l.Store.TakeLockoutPlace(context.WithoutCancel(ctx), Attempt{Subject: subject, At: now, Source: source, UserAgent: userAgent}, l.Source)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if st.LockedAt != nil && st.LockedAt.Equal(now) {
		return &st, nil
	}
	return nil, nil
}

// List returns the subjects that are locked or have failures now.
func (l *Limiter) List(ctx context.Context) ([]State, error) {
	now := l.now()
	w := max(l.Credential.Window, l.Source.Window)
	return l.Store.ListLockouts(ctx, now, now.Add(-w))
}

// ErrNotASubject refuses to clear something that is not one exact subject.
var ErrNotASubject = errors.New("lockout: clear needs exact subjects (not empty, not ending in ':')")

// Clear removes the counters of exactly the subjects named and returns how
// many existed. It never clears by prefix: unlocking the login name "bob"
// must not unlock "bob:x" (a name may contain ':'), so a subject ending in
// ':' (which the store would read as a prefix) is refused.
func (l *Limiter) Clear(ctx context.Context, subjects ...string) (int64, error) {
	for _, s := range subjects {
		if s == "" || strings.HasSuffix(s, ":") {
			return 0, fmt.Errorf("%w: %q", ErrNotASubject, s)
		}
	}
	var n int64
	for _, s := range subjects {
		m, err := l.Store.ClearLockouts(ctx, s)
		if err != nil {
			return n, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		n += m
	}
	return n, nil
}

func (l *Limiter) now() time.Time {
	if l.Now != nil {
		return l.Now().UTC().Truncate(time.Microsecond)
	}
	return time.Now().UTC().Truncate(time.Microsecond)
}

func ceilSecond(d time.Duration) time.Duration {
	if r := d % time.Second; r != 0 {
		d += time.Second - r
	}
	return max(d, time.Second)
}

// Throttle limits requests per source address to unauthenticated routes
// (logins, the token endpoint), whether they succeed or not: it bounds the
// work a flood from one address can cause.
type Throttle struct {
	Take      func(ctx context.Context, key string, perMinute int64) (allowed bool, retryAfter time.Duration, err error)
	PerMinute int64
}

// Allow takes one request of source; false with how long to wait when over.
// A failing backend admits (the attempt limits behind it still hold).
func (t *Throttle) Allow(ctx context.Context, source netip.Addr) (bool, time.Duration) {
	if t == nil || t.Take == nil || t.PerMinute <= 0 {
		return true, 0
	}
	ok, after, err := t.Take(ctx, "authsrc:"+SourceSubject(source), t.PerMinute)
	if err != nil || ok {
		return true, 0
	}
	return false, ceilSecond(after)
}
