// Package ratelimit enforces requests per minute (RPM), tokens per minute (TPM)
// and concurrent requests per key, principal and team.
//
// RPM and TPM use GCRA (the generic cell rate algorithm, as redis_rate does): a
// limit of N per minute admits a burst of N and then one unit every minute/N.
// TPM is taken at admission for the call's estimated tokens and settled to the
// actual count afterwards (the difference is refunded, or taken).
//
// Two backends: Memory, per gateway process (the embedded default; with
// several replicas each holds the full limit), and Redis, shared by every
// replica (GCRA by github.com/go-redis/redis_rate; concurrency as a sorted set
// of in-flight calls, so a crashed replica's slots expire instead of leaking).
package ratelimit

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"
)

// Scope is what a limit applies to.
type Scope string

const (
	ScopeKey       Scope = "key"
	ScopePrincipal Scope = "principal"
	ScopeTeam      Scope = "team"
)

// MaxPerMinute is the largest RPM or TPM a limit may set: GCRA spaces units
// time.Minute/perMinute apart, which must stay a positive duration.
const MaxPerMinute = 1_000_000_000

// Limit is the rate limits of one scope; zero fields do not limit.
type Limit struct {
	ID         string    `json:"id"`
	Scope      Scope     `json:"scope"`
	ScopeID    string    `json:"scope_id"`
	RPM        int64     `json:"rpm"`
	TPM        int64     `json:"tpm"`
	Concurrent int64     `json:"concurrent"`
	CreatedAt  time.Time `json:"created_at"`
	Version    int64     `json:"version"`
}

// Validate checks l.
func (l Limit) Validate() error {
	switch l.Scope {
	case ScopeKey, ScopePrincipal, ScopeTeam:
	default:
		return fmt.Errorf("scope %q: want key, principal or team", l.Scope)
	}
	if l.ScopeID == "" {
		return fmt.Errorf("a %s limit names its %s", l.Scope, l.Scope)
	}
	if l.RPM < 0 || l.TPM < 0 || l.Concurrent < 0 {
		return fmt.Errorf("limits must not be negative")
	}
	if l.RPM > MaxPerMinute || l.TPM > MaxPerMinute {
		return fmt.Errorf("rpm and tpm must be at most %d (one unit per 60 ns)", int64(MaxPerMinute))
	}
	if l.RPM == 0 && l.TPM == 0 && l.Concurrent == 0 {
		return fmt.Errorf("set at least one of rpm, tpm, concurrent")
	}
	return nil
}

// Store is what ratelimit needs from storage.
type Store interface {
	// SetLimit creates or replaces the limit of a scope.
	SetLimit(ctx context.Context, l Limit) (Limit, error)
	ListLimits(ctx context.Context) ([]Limit, error)
	DeleteLimit(ctx context.Context, id string) error
}

// Result is one GCRA decision.
type Result struct {
	Allowed    bool
	Limit      int64
	Remaining  int64
	RetryAfter time.Duration // when refused: how long until n units fit
	ResetAfter time.Duration // until the bucket is full again
}

// Backend keeps the counters.
type Backend interface {
	// Take takes n units from the bucket key holding perMinute.
	Take(ctx context.Context, key string, perMinute, n int64) (Result, error)
	// Give returns n units (TPM settlement).
	Give(ctx context.Context, key string, perMinute, n int64) error
	// Acquire takes one of max concurrency slots for id; Release gives it back.
	Acquire(ctx context.Context, key, id string, max int64) (bool, error)
	Release(ctx context.Context, key, id string) error
}

// Call is who is calling.
type Call struct{ KeyID, PrincipalID, TeamID string }

// Limiter applies the limits in force.
type Limiter struct {
	backend Backend
	limits  func() []Limit
}

// New returns a Limiter over backend; limits returns the limits in force.
func New(b Backend, limits func() []Limit) *Limiter { return &Limiter{backend: b, limits: limits} }

func (l *Limiter) applicable(c Call) []Limit {
	var out []Limit
	for _, lim := range l.limits() {
		if (lim.Scope == ScopeKey && lim.ScopeID == c.KeyID) || (lim.Scope == ScopePrincipal && lim.ScopeID == c.PrincipalID) ||
			(lim.Scope == ScopeTeam && lim.ScopeID == c.TeamID && c.TeamID != "") {
			out = append(out, lim)
		}
	}
	return out
}

// Ticket is an admitted call's hold on the limits.
type Ticket struct {
	l       *Limiter
	id      string
	tokens  int64
	taken   []bucket
	slots   []string
	Headers http.Header // x-ratelimit-* for the response
}

type bucket struct {
	key       string
	perMinute int64
}

// Refusal says which limit refused a call.
type Refusal struct {
	Limit      Limit
	What       string // "requests", "tokens" or "concurrent requests"
	RetryAfter time.Duration
	Headers    http.Header
}

func (r *Refusal) Error() string {
	return fmt.Sprintf("rate limit: %s limit of %s %s reached", r.What, r.Limit.Scope, r.Limit.ScopeID)
}

type headerState struct {
	limit, remaining int64
	reset            time.Duration
	set              bool
}

func (h *headerState) note(r Result) {
	if !h.set || r.Remaining < h.remaining {
		h.limit, h.remaining, h.reset, h.set = r.Limit, r.Remaining, r.ResetAfter, true
	}
}

// FormatReset renders a duration as OpenAI does in x-ratelimit-reset-*: "1s",
// "6m0s", "20ms".
func FormatReset(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	if d < time.Second {
		return strconv.FormatInt(int64(math.Ceil(float64(d)/float64(time.Millisecond))), 10) + "ms"
	}
	return d.Round(time.Millisecond).String()
}

// headers returns the x-ratelimit-* headers of a call. They are built on
// every admitted call, so the map is sized once and the values share one
// backing array, each capped at its length (appending to one, as the
// refusal's Retry-After does to the map, cannot reach another).
func headers(req, tok headerState) http.Header {
	h := make(http.Header, 7)
	vals := make([]string, 0, 6)
	set := func(k, v string) { // k is canonical
		vals = append(vals, v)
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	if req.set {
		set("X-Ratelimit-Limit-Requests", strconv.FormatInt(req.limit, 10))
		set("X-Ratelimit-Remaining-Requests", strconv.FormatInt(max(req.remaining, 0), 10))
		set("X-Ratelimit-Reset-Requests", FormatReset(req.reset))
	}
	if tok.set {
		set("X-Ratelimit-Limit-Tokens", strconv.FormatInt(tok.limit, 10))
		set("X-Ratelimit-Remaining-Tokens", strconv.FormatInt(max(tok.remaining, 0), 10))
		set("X-Ratelimit-Reset-Tokens", FormatReset(tok.reset))
	}
	return h
}

// Admit checks every limit that applies to c, taking one request and tokens
// estimated tokens. It returns a nil Ticket when no limit applies. On a
// refusal nothing stays taken.
func (l *Limiter) Admit(ctx context.Context, id string, c Call, tokens int64) (*Ticket, error) {
	lims := l.applicable(c)
	if len(lims) == 0 {
		return nil, nil
	}
	t := &Ticket{l: l, id: id, tokens: tokens}
	var req, tok headerState
	refuse := func(lim Limit, what string, r Result) error {
		t.Release(ctx) // undo what was taken
		t.Headers = nil
		h := headers(req, tok)
		retry := max(r.RetryAfter, time.Second)
		h.Set("Retry-After", strconv.FormatInt(int64(math.Ceil(retry.Seconds())), 10))
		return &Refusal{Limit: lim, What: what, RetryAfter: retry, Headers: h}
	}
	for _, lim := range lims {
		scopeKey := string(lim.Scope) + ":" + lim.ScopeID
		// Concurrency first: a slot is given back exactly on every backend,
		// while Redis cannot refund a GCRA take.
		if lim.Concurrent > 0 {
			ok, err := l.backend.Acquire(ctx, "conc:"+scopeKey, id, lim.Concurrent)
			if err != nil {
				t.Release(ctx)
				return nil, err
			}
			if !ok {
				return nil, refuse(lim, "concurrent requests", Result{RetryAfter: time.Second})
			}
			t.slots = append(t.slots, "conc:"+scopeKey)
		}
		if lim.RPM > 0 {
			r, err := l.backend.Take(ctx, "rpm:"+scopeKey, lim.RPM, 1)
			if err != nil {
				t.Release(ctx)
				return nil, err
			}
			req.note(r)
			if !r.Allowed {
				return nil, refuse(lim, "requests per minute", r)
			}
			t.taken = append(t.taken, bucket{"rpm:" + scopeKey, lim.RPM})
		}
		if lim.TPM > 0 {
			n := min(tokens, lim.TPM) // a call larger than the whole minute waits for a full bucket
			r, err := l.backend.Take(ctx, "tpm:"+scopeKey, lim.TPM, n)
			if err != nil {
				t.Release(ctx)
				return nil, err
			}
			tok.note(r)
			if !r.Allowed {
				return nil, refuse(lim, "tokens per minute", r)
			}
			t.taken = append(t.taken, bucket{"tpm:" + scopeKey, lim.TPM})
		}
	}
	t.Headers = headers(req, tok)
	return t, nil
}

// Settle corrects the token buckets to the call's actual tokens.
func (t *Ticket) Settle(ctx context.Context, actual int64) {
	if t == nil {
		return
	}
	for _, b := range t.taken {
		if b.key[:4] != "tpm:" {
			continue
		}
		taken := min(t.tokens, b.perMinute)
		switch {
		case actual < taken:
			t.l.backend.Give(ctx, b.key, b.perMinute, taken-actual)
		case actual > taken:
			t.l.backend.Take(ctx, b.key, b.perMinute, actual-taken) // accounted, not refused: the call is over
		}
	}
}

// Release gives back concurrency slots (and, before admission completes, the
// requests and tokens taken so far).
func (t *Ticket) Release(ctx context.Context) {
	if t == nil {
		return
	}
	ctx = context.WithoutCancel(ctx)
	for _, s := range t.slots {
		t.l.backend.Release(ctx, s, t.id)
	}
	t.slots = nil
	if t.Headers == nil { // refused during Admit: undo the buckets too
		for _, b := range t.taken {
			n := int64(1)
			if b.key[:4] == "tpm:" {
				n = min(t.tokens, b.perMinute)
			}
			t.l.backend.Give(ctx, b.key, b.perMinute, n)
		}
		t.taken = nil
	}
}
