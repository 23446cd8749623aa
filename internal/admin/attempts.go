package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/lockout"
	"github.com/gatehouse-gw/gatehouse/internal/mfa"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// Ledger record kinds of guessed secrets.
const (
	KindAuthFailure = "auth.failure" // a wrong password, code or client secret
	KindAuthLockout = "auth.lockout" // a subject locked after too many
)

// SourceAddr returns the caller's address: the connection's, or with
// trustProxy the rightmost X-Forwarded-For entry outside trusted (the same
// rule as the data plane: httpx.SourceAddr). Never the leftmost entry, which
// the caller writes itself.
func SourceAddr(r *http.Request, trustProxy bool, trusted []netip.Prefix) netip.Addr {
	return httpx.SourceAddr(r.RemoteAddr, r.Header, trustProxy, trusted)
}

// Guard applies attempt limits to one request's guesses and records every
// failure and lockout in the ledger. The token endpoint uses it too.
type Guard struct {
	Limiter *lockout.Limiter
	Ledger  interface {
		Append(ctx context.Context, e ledger.Entry) (int64, error)
	}
	TrustProxy     bool
	TrustedProxies []netip.Prefix // with TrustProxy: the proxies whose X-Forwarded-For entries are skipped
	Log            interface {
		Error(msg string, args ...any)
		Warn(msg string, args ...any)
	}
	Now func() time.Time
}

// attempt is one request's view of the guard.
type attempt struct {
	g           *Guard
	r           *http.Request
	src         netip.Addr
	principalID string
}

func (g *Guard) begin(r *http.Request) *attempt {
	if g == nil {
		return &attempt{r: r, src: SourceAddr(r, false, nil)}
	}
	return &attempt{g: g, r: r, src: SourceAddr(r, g.TrustProxy, g.TrustedProxies)}
}

// lockedError is the 429 for a locked subject: the same for a right guess.
func lockedError(le *lockout.LockedError) error {
	secs := int64(le.After / time.Second)
	e := httpx.Errorf(http.StatusTooManyRequests, "too_many_attempts",
		"Too many failed attempts; try again in %ds. An administrator can clear this: gatehouse users unlock.", secs)
	e.Header = http.Header{"Retry-After": {strconv.FormatInt(secs, 10)}}
	return e
}

func unavailable(err error) error {
	return httpx.Errorf(http.StatusServiceUnavailable, "auth_unavailable", "Authentication is unavailable; try again shortly.").WithCause(err)
}

// check refuses when the source or any subject is locked.
func (a *attempt) check(subjects ...string) error {
	if a.g == nil || a.g.Limiter == nil {
		return nil
	}
	err := a.g.Limiter.Check(a.r.Context(), append(subjects, lockout.SourceSubject(a.src))...)
	var le *lockout.LockedError
	switch {
	case errors.As(err, &le):
		return lockedError(le)
	case err != nil:
		return unavailable(err)
	}
	return nil
}

// reserve takes a place for one guess of subject.
func (a *attempt) reserve(subject string) (*lockout.Place, error) {
	if a.g == nil || a.g.Limiter == nil {
		return nil, nil
	}
	p, err := a.g.Limiter.Reserve(a.r.Context(), subject, a.src.String(), a.r.UserAgent())
	var le *lockout.LockedError
	switch {
	case errors.As(err, &le):
		if p != nil && p.Locked != nil {
			a.record(KindAuthLockout, subject, fmt.Sprintf("locked until %s after %d failures", le.Until.Format(time.RFC3339), p.Locked.Failures), http.StatusTooManyRequests)
		}
		return nil, lockedError(le)
	case err != nil:
		return nil, unavailable(err)
	}
	return p, nil
}

// release gives a place back after a right guess.
func (a *attempt) release(p *lockout.Place) {
	if p == nil {
		return
	}
	if err := p.Release(a.r.Context()); err != nil {
		a.g.Log.Error("lockout: a place was not given back", "err", err)
	}
}

// fail records a wrong guess of factor: a ledger record, and a failure of the
// source address (which may lock it: a lockout record).
func (a *attempt) fail(factor string, status int) {
	if a.g == nil {
		return
	}
	a.record(KindAuthFailure, factor, "wrong "+factor, status)
	if a.g.Limiter == nil {
		return
	}
	src := lockout.SourceSubject(a.src)
	st, err := a.g.Limiter.Fail(a.r.Context(), src, a.src.String(), a.r.UserAgent())
	if err != nil {
		a.g.Log.Error("lockout: a failure was not counted", "source", a.src.String(), "err", err)
		return
	}
	if st != nil {
		a.record(KindAuthLockout, src, fmt.Sprintf("source locked until %s", st.LockedUntil.Format(time.RFC3339)), http.StatusTooManyRequests)
	}
}

// record appends a failure or lockout record with the caller's address and
// user agent (never the guess).
func (a *attempt) record(kind, target, detail string, status int) {
	a.g.Log.Warn("auth: "+kind, "principal", a.principalID, "subject", target, "source", a.src.String(), "user_agent", a.r.UserAgent(), "detail", detail)
	if a.g.Ledger == nil {
		return
	}
	now := time.Now
	if a.g.Now != nil {
		now = a.g.Now
	}
	rec := ledger.Record{Kind: kind, Time: now(), RequestID: httpx.RequestID(a.r.Context()), PrincipalID: a.principalID,
		SourceIP: a.src.String(), UserAgent: truncateUA(a.r.UserAgent()), Action: a.r.Method + " " + a.r.URL.Path, Target: target, Detail: detail, Status: status}
	if _, err := a.g.Ledger.Append(context.WithoutCancel(a.r.Context()), ledger.Entry{Data: rec.Marshal(), RequestID: rec.RequestID}); err != nil {
		a.g.Log.Error("ledger: an authentication failure was not recorded", "kind", kind, "err", err)
	}
}

func truncateUA(s string) string {
	if len(s) > 256 {
		return s[:256]
	}
	return s
}

// CheckSecondFactor verifies a user's TOTP code or recovery code under the
// limits: the user's counter for that factor takes a place first (refused
// while locked, even for the right code), a right code gives it back, a
// wrong one is recorded. Store is the credentials store.
func (g *Guard) CheckSecondFactor(r *http.Request, c mfa.Checker, principalID, code, recovery string) error {
	a := g.begin(r)
	a.principalID = principalID
	return a.secondFactor(c, principalID, code, recovery)
}

func (a *attempt) secondFactor(c mfa.Checker, principalID, code, recovery string) error {
	factor := "totp"
	if recovery != "" {
		factor = "recovery"
	}
	if err := a.check(); err != nil {
		return err
	}
	place, err := a.reserve(lockout.UserSubject(principalID, factor))
	if err != nil {
		return err
	}
	err = c.Check(a.r.Context(), principalID, code, recovery)
	switch {
	case err == nil:
		a.release(place)
		return nil
	case errors.Is(err, mfa.ErrBadCode), errors.Is(err, mfa.ErrNoTOTP):
		a.fail(factor, http.StatusUnauthorized)
		return err
	}
	a.release(place) // the store failed: no guess was checked
	return unavailable(err)
}

// Lockout admin routes.

func (h *Handler) lockoutRoutes() {
	m := h.mux
	m.HandleFunc("GET /v1/lockouts", h.authed(h.listLockouts))
	m.HandleFunc("DELETE /v1/lockouts/{subject...}", h.authed(h.clearLockout))
	m.HandleFunc("DELETE /v1/principals/{id}/lockouts", h.authed(h.unlockUser))
}

func (h *Handler) limiter() (*lockout.Limiter, error) {
	if h.d.Guard == nil || h.d.Guard.Limiter == nil {
		return nil, httpx.Errorf(http.StatusNotFound, "not_found", "Attempt limits are not configured.")
	}
	return h.d.Guard.Limiter, nil
}

// listLockouts shows every subject that is locked or has failures in its window.
func (h *Handler) listLockouts(w http.ResponseWriter, r *http.Request, _ vkey.Key) error {
	l, err := h.limiter()
	if err != nil {
		return err
	}
	sts, err := l.List(r.Context())
	if err != nil {
		return err
	}
	now := h.d.Now()
	type view struct {
		lockout.State
		Locked bool `json:"locked"`
	}
	out := make([]view, len(sts))
	for i, s := range sts {
		out[i] = view{State: s, Locked: s.Locked(now)}
	}
	writeJSON(w, 200, list(out))
	return nil
}

// unlockUser clears every counter of a user (and of its login name).
func (h *Handler) unlockUser(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	l, err := h.limiter()
	if err != nil {
		return err
	}
	p, err := h.d.Store.Principal(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	// Exactly the user's counters and its login name's: a prefix would also
	// clear "name:bob:x:password" when unlocking bob.
	n, err := l.Clear(r.Context(), append(lockout.UserSubjects(p.ID), lockout.NameSubject(p.Name))...)
	if err != nil {
		return err
	}
	h.d.Log.Warn("lockout cleared", "principal", p.ID, "by", who.ID)
	writeJSON(w, 200, map[string]any{"principal_id": p.ID, "cleared": n})
	return nil
}

// clearLockout clears one subject, such as source:203.0.113.9.
func (h *Handler) clearLockout(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	l, err := h.limiter()
	if err != nil {
		return err
	}
	sub := r.PathValue("subject")
	if (!strings.HasPrefix(sub, "source:") && !strings.HasPrefix(sub, "user:") && !strings.HasPrefix(sub, "name:")) || strings.HasSuffix(sub, ":") {
		return badRequest("subject", "subject %q: want one exact subject, source:ADDR, user:ID:FACTOR or name:NAME:password (see GET /v1/lockouts)", sub)
	}
	n, err := l.Clear(r.Context(), sub)
	if err != nil {
		return err
	}
	h.d.Log.Warn("lockout cleared", "subject", sub, "by", who.ID)
	writeJSON(w, 200, map[string]any{"subject": sub, "cleared": n})
	return nil
}

// CheckSource refuses when r's source address is locked.
func (g *Guard) CheckSource(r *http.Request) error { return g.begin(r).check() }

// Failed records a wrong guess of factor from r that no credential counter
// took a place for (client secrets): the ledger record and the address's
// failure.
func (g *Guard) Failed(r *http.Request, principalID, factor string) {
	a := g.begin(r)
	a.principalID = principalID
	a.fail(factor, http.StatusUnauthorized)
}
