package admin

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/lockout"
	"github.com/gatehouse-gw/gatehouse/internal/mfa"
	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/store"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// SessionPrefix marks a login session token; the admin API accepts it where an
// admin key goes.
const SessionPrefix = "gks_"

type ctxKey int

const (
	mfaAgeKey ctxKey = iota
	sessionKey
)

// mfaAge returns how long ago the request's credential last passed a second
// factor, in seconds; -1 for none (admin keys).
func mfaAge(ctx context.Context) int64 {
	if v, ok := ctx.Value(mfaAgeKey).(int64); ok {
		return v
	}
	return -1
}

func (h *Handler) loginRoutes() {
	m := h.mux
	m.HandleFunc("POST /v1/auth/login", h.throttled(h.login))
	m.HandleFunc("POST /v1/auth/logout", h.authed(h.logout))
	h.passkeyRoutes()
	m.HandleFunc("GET /v1/auth/oidc", h.open(h.oidcInfo))
	m.HandleFunc("POST /v1/auth/oidc", h.throttled(h.oidcLogin))
	m.HandleFunc("POST /v1/auth/step-up", h.authed(h.stepUp))
	h.factorRoutes()
	h.lockoutRoutes()
	m.HandleFunc("PUT /v1/principals/{id}/password", h.authed(h.setPassword))
	m.HandleFunc("DELETE /v1/principals/{id}/sessions", h.authed(h.endSessions))
}

// throttled is open with a per-source request limit: unauthenticated auth
// routes cost work (argon2id, ceremonies, ID-token checks) whoever calls.
func (h *Handler) throttled(fn func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
	return h.open(func(w http.ResponseWriter, r *http.Request) error {
		if ok, after := h.d.Throttle.Allow(r.Context(), SourceAddr(r, h.trustProxy(), h.trustedProxies())); !ok {
			secs := int64(after / time.Second)
			e := httpx.Errorf(http.StatusTooManyRequests, "rate_limited", "Too many authentication requests from this address; try again in %ds.", secs)
			e.Header = http.Header{"Retry-After": {strconv.FormatInt(secs, 10)}}
			return e
		}
		return fn(w, r)
	})
}

func (h *Handler) trustProxy() bool { return h.d.Guard != nil && h.d.Guard.TrustProxy }

func (h *Handler) trustedProxies() []netip.Prefix {
	if h.d.Guard == nil {
		return nil
	}
	return h.d.Guard.TrustedProxies
}

// sessionCaller authenticates a session token.
func (h *Handler) sessionCaller(r *http.Request, token string) (vkey.Key, *http.Request, error) {
	se, err := h.d.Store.SessionByHash(r.Context(), h.d.Verifier.Hasher().Hash(vkey.Secret(token)))
	now := h.d.Now()
	switch {
	case errors.Is(err, store.ErrNotFound):
		return vkey.Key{}, r, httpx.Errorf(http.StatusUnauthorized, "invalid_session", "Unknown session; log in again (gatehouse login).")
	case err != nil:
		return vkey.Key{}, r, httpx.Errorf(http.StatusServiceUnavailable, "auth_unavailable", "Authentication is unavailable; try again shortly.").WithCause(err)
	case se.RevokedAt != nil:
		return vkey.Key{}, r, httpx.Errorf(http.StatusUnauthorized, "session_revoked", "This session was ended; log in again.")
	case !now.Before(se.ExpiresAt):
		return vkey.Key{}, r, httpx.Errorf(http.StatusUnauthorized, "session_expired", "This session has expired; log in again.")
	}
	if p, err := h.d.Store.Principal(r.Context(), se.PrincipalID); err != nil || p.Disabled {
		return vkey.Key{}, r, httpx.Errorf(http.StatusUnauthorized, "session_revoked", "This user is disabled or gone; its sessions no longer work.")
	}
	age := int64(-1)
	if se.MFAAt != nil {
		age = int64(now.Sub(*se.MFAAt).Seconds())
	}
	ctx := context.WithValue(r.Context(), mfaAgeKey, age)
	ctx = context.WithValue(ctx, sessionKey, se)
	r = r.WithContext(ctx)
	return vkey.Key{ID: "session:" + se.ID, Kind: vkey.KindAdmin, PrincipalID: se.PrincipalID}, r, nil
}

// currentSession returns the session that authenticated r, if any.
func currentSession(r *http.Request) (mfa.Session, bool) {
	se, ok := r.Context().Value(sessionKey).(mfa.Session)
	return se, ok
}

// checker verifies TOTP and recovery codes against the store.
func (h *Handler) checker() mfa.Checker {
	return mfa.Checker{Store: h.d.Store, Opener: h.d.Keyring, Now: h.d.Now}
}

// checkSecondFactor verifies a TOTP code (or a recovery code) of a user under
// the attempt limits.
func (h *Handler) checkSecondFactor(r *http.Request, principalID, code, recovery string) error {
	return h.d.Guard.CheckSecondFactor(r, h.checker(), principalID, code, recovery)
}

// checkPassword verifies a user's password under the attempt limits and the
// hashing bound. subject is the user's (or, for an unknown name, the name's)
// password counter; hash "" (no such user, no password) is checked against a
// dummy so that it costs the same and fails.
func (h *Handler) checkPassword(a *attempt, subject, hash, password string) error {
	// The hashing slot first: a login shed by the bound (503) costs no store write.
	done, err := h.passwords().Acquire(a.r.Context())
	if err != nil {
		return busy(err)
	}
	defer done()
	place, err := a.reserve(subject)
	if err != nil {
		return err
	}
	ok := mfa.CheckHeld(hash, password)
	if !ok {
		a.fail("password", http.StatusUnauthorized)
		return errWrongLogin
	}
	a.release(place)
	return nil
}

var errWrongLogin = httpx.Errorf(http.StatusUnauthorized, "invalid_login", "Wrong user, password or code.")

func (h *Handler) passwords() *mfa.Gate {
	if h.d.Passwords != nil {
		return h.d.Passwords
	}
	return defaultGate
}

var defaultGate = mfa.NewGate(4*mfa.HashMemory, 2*time.Second, 50) // the defaults of config.DefaultLogin

// busy turns a full hashing gate into 503 with Retry-After.
func busy(err error) error {
	if errors.Is(err, mfa.ErrBusy) {
		e := httpx.Errorf(http.StatusServiceUnavailable, "login_busy", "Too many logins at once; try again in a moment.").WithCause(err)
		e.Header = http.Header{"Retry-After": {"1"}}
		return e
	}
	return err
}

func totpAAD(principalID string) []byte { return mfa.TOTPAAD(principalID) }

func (h *Handler) login(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		User         string `json:"user"`
		Password     string `json:"password"`
		Code         string `json:"code"`
		RecoveryCode string `json:"recovery_code"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	a := h.d.Guard.begin(r)
	// Every path below costs one counter check, one place and one argon2id
	// run, whether the user exists, has a password or not.
	var c mfa.Credentials
	subject := lockout.NameSubject(in.User)
	p, err := h.d.Store.Principal(r.Context(), in.User)
	known := err == nil && p.Kind == org.KindUser && !p.Disabled
	if known {
		subject = lockout.UserSubject(p.ID, "password")
		a.principalID = p.ID
		c, err = h.d.Store.Credentials(r.Context(), p.ID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return unavailable(err)
		}
	}
	if err := a.check(subject); err != nil {
		return err
	}
	if err := h.checkPassword(a, subject, c.PasswordHash, in.Password); err != nil {
		return err
	}
	if !known { // unreachable: the dummy never matches; kept so a bug cannot log anyone in
		return errWrongLogin
	}
	h.rehash(r, p.ID, c.PasswordHash, in.Password)
	now := h.d.Now().UTC()
	var mfaAt *time.Time
	switch {
	case c.TOTPSealed != nil:
		if in.Code == "" && in.RecoveryCode == "" {
			return httpx.Errorf(http.StatusUnauthorized, "mfa_required", "This user has TOTP: give the current code (or a recovery code).")
		}
		if err := a.secondFactor(h.checker(), p.ID, in.Code, in.RecoveryCode); err != nil {
			return loginFactorError(err)
		}
		mfaAt = &now
	case h.d.RequireMFA:
		keys, err := h.d.Store.Passkeys(r.Context(), p.ID)
		if err != nil {
			return unavailable(err)
		}
		if len(keys) > 0 {
			return httpx.Errorf(http.StatusForbidden, "mfa_required",
				"Multi-factor authentication is required and this user has a passkey: log in with it.")
		}
		return h.startEnrolmentSession(w, r, p.ID)
	}
	detail := "password"
	if mfaAt != nil {
		detail = "password+" + factorName(in.RecoveryCode)
	}
	return h.startSession(w, r, p.ID, mfaAt, detail)
}

// rehash replaces a password hash made with older parameters (mfa.NeedsRehash)
// after a right password: best effort, under the hashing bound; a busy gate
// or a failing store leaves the old hash, which still verifies.
func (h *Handler) rehash(r *http.Request, principalID, hash, password string) {
	if !mfa.NeedsRehash(hash) {
		return
	}
	nh, err := h.passwords().Hash(r.Context(), password)
	if err == nil {
		err = h.d.Store.SetPassword(context.WithoutCancel(r.Context()), principalID, nh)
	}
	if err != nil {
		h.d.Log.Warn("a password hash was not upgraded", "principal", principalID, "err", err)
	}
}

// loginFactorError keeps 429 and 503 and makes every wrong code the login's 401.
func loginFactorError(err error) error {
	var he *httpx.Error
	if errors.As(err, &he) {
		return err
	}
	return errWrongLogin
}

// startSession creates a login session for a principal, records the login in
// the ledger and answers with the session token (shown once).
func (h *Handler) startSession(w http.ResponseWriter, r *http.Request, principalID string, mfaAt *time.Time, detail string) error {
	now := h.d.Now().UTC()
	token := string(vkey.Generate(vkey.KindAdmin))
	token = SessionPrefix + strings.TrimPrefix(token, "gka_")
	se := mfa.Session{ID: vkey.NewID("ses"), Hash: h.d.Verifier.Hasher().Hash(vkey.Secret(token)), PrincipalID: principalID, CreatedAt: now,
		ExpiresAt: now.Add(h.sessionTTL()), MFAAt: mfaAt}
	if err := h.d.Store.CreateSession(r.Context(), se); err != nil {
		return err
	}
	h.recordLogin(r, principalID, se.ID, detail)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, 200, map[string]any{"session": token, "expires_at": se.ExpiresAt, "mfa": mfaAt != nil, "principal_id": principalID})
	return nil
}

// First enrolment under require_mfa. A user with no second factor yet, who
// gave the right password, gets an enrolment session: it lives only the
// step-up window (factorWindow, at least 5 minutes, so that a tight
// step_up_max_age still leaves time to scan a QR code), has no MFA time, and may do nothing but
// enrol a first factor (enrolmentRoutes); each enrolment in it needs the
// password again in the request (proveFactorChange), so a stolen enrolment
// session, or any other session without MFA, cannot enrol the thief's
// authenticator. Confirming does not give it an MFA time: the user logs in
// again with the new factor.

// enrolmentRoutes are what an enrolment session may call.
var enrolmentRoutes = map[string]bool{
	"POST /v1/auth/totp/enroll": true, "POST /v1/auth/totp/confirm": true,
	"POST /v1/auth/passkeys/register": true, "POST /v1/auth/passkeys/register/{ceremony}": true,
	"POST /v1/auth/logout": true,
}

// enrolmentOnly reports whether se may only enrol a first factor: with
// require_mfa, every session that never passed a second factor (enrolment
// sessions, and sessions made before require_mfa was turned on).
func (h *Handler) enrolmentOnly(se mfa.Session) bool { return h.d.RequireMFA && se.MFAAt == nil }

// errEnrolmentOnly refuses everything but enrolment to an enrolment session.
var errEnrolmentOnly = httpx.Errorf(http.StatusForbidden, "mfa_enrollment_required",
	"Multi-factor authentication is required and this session has not passed a second factor: it may only enrol one. "+
		"Enrol with your password (gatehouse users totp-enroll --password-stdin, then gatehouse users totp-confirm CODE), then log in again with the code.")

// startEnrolmentSession answers a right password of a user without a second
// factor under require_mfa with an enrolment session (see enrolmentRoutes).
func (h *Handler) startEnrolmentSession(w http.ResponseWriter, r *http.Request, principalID string) error {
	now := h.d.Now().UTC()
	token := SessionPrefix + strings.TrimPrefix(string(vkey.Generate(vkey.KindAdmin)), "gka_")
	se := mfa.Session{ID: vkey.NewID("ses"), Hash: h.d.Verifier.Hasher().Hash(vkey.Secret(token)), PrincipalID: principalID, CreatedAt: now,
		ExpiresAt: now.Add(min(max(h.factorWindow(), defaultFactorWindow), h.sessionTTL()))}
	if err := h.d.Store.CreateSession(r.Context(), se); err != nil {
		return err
	}
	h.recordLogin(r, principalID, se.ID, "password (enrolment only: require_mfa, no second factor yet)")
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, 200, map[string]any{"session": token, "expires_at": se.ExpiresAt, "mfa": false, "principal_id": principalID,
		"enrollment_only": true, "next": "multi-factor authentication is required: with this session, enrol TOTP with your password " +
			"(POST /v1/auth/totp/enroll {\"password\"}, then /v1/auth/totp/confirm {\"code\"}) or register a passkey, then log in again with it"})
	return nil
}

func (h *Handler) sessionTTL() time.Duration {
	if h.d.SessionTTL > 0 {
		return h.d.SessionTTL
	}
	return 12 * time.Hour
}

func sessionID(who vkey.Key) (string, bool) {
	id, ok := strings.CutPrefix(who.ID, "session:")
	return id, ok
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	id, ok := sessionID(who)
	if !ok {
		return badRequest("", "logout ends a login session; admin keys are revoked with keys revoke")
	}
	if err := h.d.Store.RevokeSession(r.Context(), id, h.d.Now().UTC()); err != nil {
		return err
	}
	writeJSON(w, 200, map[string]any{"logged_out": true})
	return nil
}

// stepUp checks a fresh second factor for the current session.
func (h *Handler) stepUp(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	id, ok := sessionID(who)
	if !ok {
		return badRequest("", "step-up applies to login sessions (gatehouse login)")
	}
	var in struct {
		Code         string `json:"code"`
		RecoveryCode string `json:"recovery_code"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	c, err := h.d.Store.Credentials(r.Context(), who.PrincipalID)
	if err != nil || c.TOTPSealed == nil {
		return badRequest("", "this user has no TOTP; enrol first (gatehouse mfa enroll)")
	}
	if err := h.checkSecondFactor(r, who.PrincipalID, in.Code, in.RecoveryCode); err != nil {
		var he *httpx.Error
		if errors.As(err, &he) {
			return err
		}
		return httpx.Errorf(http.StatusUnauthorized, "invalid_code", "Wrong or already used code.")
	}
	now := h.d.Now().UTC()
	if err := h.d.Store.SessionMFA(r.Context(), id, now); err != nil {
		return err
	}
	h.recordLogin(r, who.PrincipalID, id, "step-up "+factorName(in.RecoveryCode))
	writeJSON(w, 200, map[string]any{"mfa_at": now})
	return nil
}

// endSessions ends every login session of a user (a lost laptop), leaving its
// password, second factors and keys alone.
func (h *Handler) endSessions(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	p, err := h.d.Store.Principal(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := h.d.Store.RevokeSessions(r.Context(), p.ID, h.d.Now().UTC()); err != nil {
		return err
	}
	h.d.Log.Warn("sessions ended", "principal", p.ID, "by", who.ID)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// factorName names the second factor a login or step-up passed, for its
// ledger record: a recovery code when one was given (mfa.Checker checks it
// instead of the code), else TOTP. The names are the request fields' and
// docs/identity.md lists them.
func factorName(recovery string) string {
	if recovery != "" {
		return "recovery_code"
	}
	return "totp"
}

// recordLogin puts a login or step-up in the ledger (logins are admin actions).
func (h *Handler) recordLogin(r *http.Request, principalID, sessionID, detail string) {
	if h.d.Ledger == nil {
		return
	}
	rec := ledger.Record{Kind: ledger.KindAdmin, Time: h.d.Now(), RequestID: httpx.RequestID(r.Context()), PrincipalID: principalID,
		Action: r.Method + " " + r.URL.Path, Target: sessionID, Detail: detail, Status: http.StatusOK}
	if _, err := h.d.Ledger.Append(context.WithoutCancel(r.Context()), ledger.Entry{Data: rec.Marshal(), RequestID: rec.RequestID}); err != nil {
		h.d.Log.Error("ledger: a login was not recorded", "principal", principalID, "err", err)
	}
}
