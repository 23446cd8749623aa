package admin

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/mfa"
	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/store"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// SessionPrefix marks a login session token; the admin API accepts it where an
// admin key goes.
const SessionPrefix = "gks_"

type ctxKey int

const mfaAgeKey ctxKey = 0

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
	m.HandleFunc("POST /v1/auth/login", h.open(h.login))
	m.HandleFunc("POST /v1/auth/logout", h.authed(h.logout))
	h.passkeyRoutes()
	m.HandleFunc("GET /v1/auth/oidc", h.open(h.oidcInfo))
	m.HandleFunc("POST /v1/auth/oidc", h.open(h.oidcLogin))
	m.HandleFunc("POST /v1/auth/step-up", h.authed(h.stepUp))
	m.HandleFunc("POST /v1/auth/totp/enroll", h.authed(h.enrollTOTP))
	m.HandleFunc("POST /v1/auth/totp/confirm", h.authed(h.confirmTOTP))
	m.HandleFunc("PUT /v1/principals/{id}/password", h.authed(h.setPassword))
	m.HandleFunc("DELETE /v1/principals/{id}/sessions", h.authed(h.endSessions))
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
	r = r.WithContext(context.WithValue(r.Context(), mfaAgeKey, age))
	return vkey.Key{ID: "session:" + se.ID, Kind: vkey.KindAdmin, PrincipalID: se.PrincipalID}, r, nil
}

// checkSecondFactor verifies a TOTP code (or a recovery code) of a user.
func (h *Handler) checkSecondFactor(ctx context.Context, c mfa.Credentials, code, recovery string) error {
	return mfa.Checker{Store: h.d.Store, Opener: h.d.Keyring, Now: h.d.Now}.Check(ctx, c.PrincipalID, code, recovery)
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
	fail := httpx.Errorf(http.StatusUnauthorized, "invalid_login", "Wrong user, password or code.")
	p, err := h.d.Store.Principal(r.Context(), in.User)
	if err != nil || p.Kind != org.KindUser || p.Disabled {
		mfa.CheckPassword("$argon2id$v=19$m=65536,t=3,p=2$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g", in.Password) // same time either way
		return fail
	}
	c, err := h.d.Store.Credentials(r.Context(), p.ID)
	if err != nil || c.PasswordHash == "" || !mfa.CheckPassword(c.PasswordHash, in.Password) {
		return fail
	}
	now := h.d.Now().UTC()
	var mfaAt *time.Time
	switch {
	case c.TOTPSealed != nil:
		if in.Code == "" && in.RecoveryCode == "" {
			return httpx.Errorf(http.StatusUnauthorized, "mfa_required", "This user has TOTP: give the current code (or a recovery code).")
		}
		if err := h.checkSecondFactor(r.Context(), c, in.Code, in.RecoveryCode); err != nil {
			return fail
		}
		mfaAt = &now
	case h.d.RequireMFA:
		return httpx.Errorf(http.StatusForbidden, "mfa_enrollment_required",
			"Multi-factor authentication is required: an administrator must reset this user, or log in once with a session to enrol TOTP.")
	}
	detail := "password"
	if mfaAt != nil {
		detail = "password+totp"
	}
	return h.startSession(w, r, p.ID, mfaAt, detail)
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
	if err := h.checkSecondFactor(r.Context(), c, in.Code, in.RecoveryCode); err != nil {
		return httpx.Errorf(http.StatusUnauthorized, "invalid_code", "Wrong or already used code.")
	}
	now := h.d.Now().UTC()
	if err := h.d.Store.SessionMFA(r.Context(), id, now); err != nil {
		return err
	}
	h.recordLogin(r, who.PrincipalID, id, "step-up totp")
	writeJSON(w, 200, map[string]any{"mfa_at": now})
	return nil
}

func (h *Handler) enrollTOTP(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	if _, ok := sessionID(who); !ok {
		return badRequest("", "enrol TOTP from your own login session (gatehouse login)")
	}
	p, err := h.d.Store.Principal(r.Context(), who.PrincipalID)
	if err != nil {
		return err
	}
	secret, url, err := mfa.NewTOTP("Gatehouse", p.Name)
	if err != nil {
		return err
	}
	sealed, err := h.d.Keyring.Seal([]byte(secret), totpAAD(p.ID))
	if err != nil {
		return err
	}
	if err := h.d.Store.SetPendingTOTP(r.Context(), p.ID, sealed); err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, 200, map[string]any{"secret": secret, "otpauth_url": url, "next": "confirm with the current code: POST /v1/auth/totp/confirm"})
	return nil
}

func (h *Handler) confirmTOTP(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	var in struct {
		Code string `json:"code"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	c, err := h.d.Store.Credentials(r.Context(), who.PrincipalID)
	if err != nil || c.PendingTOTP == nil {
		return badRequest("", "nothing to confirm: enrol first")
	}
	secret, err := h.d.Keyring.Open(c.PendingTOTP, totpAAD(who.PrincipalID))
	if err != nil {
		return err
	}
	step, err := mfa.CheckTOTP(string(secret), in.Code, h.d.Now(), c.LastStep)
	if err != nil {
		return httpx.Errorf(http.StatusUnauthorized, "invalid_code", "Wrong code; check the authenticator's clock and try the current code.")
	}
	codes, hashes := mfa.RecoveryCodes(10)
	if err := h.d.Store.ConfirmTOTP(r.Context(), who.PrincipalID, hashes, step); err != nil {
		return err
	}
	if id, ok := sessionID(who); ok {
		h.d.Store.SessionMFA(r.Context(), id, h.d.Now().UTC())
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, 200, map[string]any{"enabled": true, "recovery_codes": codes})
	return nil
}

func (h *Handler) setPassword(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	var in struct {
		Password string `json:"password"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	p, err := h.d.Store.Principal(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if p.Kind != org.KindUser {
		return badRequest("id", "only users have passwords; service accounts use keys or workload identity")
	}
	hash, err := mfa.HashPassword(in.Password)
	if err != nil {
		return badRequest("password", "%s", err)
	}
	if err := h.d.Store.SetPassword(r.Context(), p.ID, hash); err != nil {
		return err
	}
	if err := h.d.Store.RevokeSessions(r.Context(), p.ID, h.d.Now().UTC()); err != nil {
		return err
	}
	h.d.Log.Warn("password set", "principal", p.ID, "by", who.ID)
	writeJSON(w, 200, map[string]any{"password_set": true, "sessions_ended": true})
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
