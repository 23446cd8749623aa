package admin

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/alert"
	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/lockout"
	"github.com/gatehouse-gw/gatehouse/internal/mfa"
	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/store"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// A factor is changed only with a factor. Enrolling or replacing TOTP,
// registering or removing a passkey, regenerating recovery codes and changing
// one's password each need a fresh proof in the request itself:
//
//   - a user with TOTP: a current code (or an unused recovery code), checked
//     under the attempt limits;
//   - a user whose only second factor is a passkey: a session whose passkey
//     check is younger than the step-up window (log in with the passkey again);
//   - a user with no second factor: the password (password changes: the
//     current one), or for enrolment a session logged in within the window.
//
// The step-up window is step_up_max_age, or 5 minutes when that is off. A
// session's own MFA time is never refreshed by these (only logins and step-up
// set it). Each change ends the user's other sessions, is a ledger record (the
// admin-change record of the route) and an alert (kind "factor_changed").

// FactorStore is what factor changes need from storage beyond mfa.Store.
type FactorStore interface {
	// RevokeOtherSessions ends every session of a user but keep.
	RevokeOtherSessions(ctx context.Context, principalID, keep string, at time.Time) error
	// SetRecoveryCodes replaces a user's recovery codes (hashes).
	SetRecoveryCodes(ctx context.Context, principalID string, hashes []string) error
	// ResetFactors removes a user's TOTP (active and pending), recovery codes
	// and passkeys.
	ResetFactors(ctx context.Context, principalID string) error
}

// defaultFactorWindow is the step-up window when step_up_max_age is off.
const defaultFactorWindow = 5 * time.Minute

func (h *Handler) factorWindow() time.Duration {
	if h.d.StepUpMaxAge > 0 {
		return h.d.StepUpMaxAge
	}
	return defaultFactorWindow
}

func (h *Handler) factorRoutes() {
	m := h.mux
	m.HandleFunc("POST /v1/auth/totp/enroll", h.authed(h.enrollTOTP))
	m.HandleFunc("POST /v1/auth/totp/confirm", h.authed(h.confirmTOTP))
	m.HandleFunc("POST /v1/auth/recovery-codes", h.authed(h.regenerateRecoveryCodes))
	m.HandleFunc("POST /v1/auth/password", h.authed(h.changeOwnPassword))
	m.HandleFunc("POST /v1/principals/{id}/reset-factors", h.authed(h.resetFactors))
}

// FactorProof is the fresh proof a factor change carries: the JSON body of
// the factor routes (code, recovery_code, password). The console builds one
// with ProofOfCode and sends it as it is.
type FactorProof struct {
	Code         string `json:"code,omitempty"`
	RecoveryCode string `json:"recovery_code,omitempty"`
	Password     string `json:"password,omitempty"`
}

type factorProof = FactorProof

// ProofOfCode reads the one code a user typed where either second factor
// fits (the console's single field): up to 8 digits are a TOTP code, anything
// else a recovery code (RecoveryCodes issues hex with a dash), each checked
// under its own attempt counter. Surrounding white space is dropped; an empty
// code is no proof.
func ProofOfCode(s string) FactorProof {
	c := strings.TrimSpace(s)
	switch {
	case c == "":
		return FactorProof{}
	case len(c) <= 8 && strings.Trim(c, "0123456789") == "": // TOTP codes are 6 digits; a recovery code has 16 hex digits
		return FactorProof{Code: c}
	}
	return FactorProof{RecoveryCode: c}
}

var errOwnSession = badRequest("", "change your own factors from your own login session (gatehouse login); an administrator resets another user's with 'gatehouse users reset-factors'")

// proveFactorChange checks pr for a change of the session user's factors.
// passwordOnly: for users without a second factor, only the password in pr
// proves (password changes); else a recent login does too.
func (h *Handler) proveFactorChange(r *http.Request, who vkey.Key, pr factorProof, passwordOnly bool) error {
	se, ok := currentSession(r)
	if !ok {
		return errOwnSession
	}
	c, err := h.d.Store.Credentials(r.Context(), who.PrincipalID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	keys, err := h.d.Store.Passkeys(r.Context(), who.PrincipalID)
	if err != nil {
		return err
	}
	now, window := h.d.Now(), h.factorWindow()
	switch {
	case c.TOTPSealed != nil:
		if pr.Code == "" && pr.RecoveryCode == "" {
			return httpx.Errorf(http.StatusForbidden, "factor_proof_required",
				"Changing a factor needs a fresh proof with the one you have: give the current TOTP code (code) or a recovery code (recovery_code).")
		}
		if err := h.checkSecondFactor(r, who.PrincipalID, pr.Code, pr.RecoveryCode); err != nil {
			var he *httpx.Error
			if errors.As(err, &he) {
				return err
			}
			return httpx.Errorf(http.StatusUnauthorized, "invalid_code", "Wrong or already used code.")
		}
		return nil
	case len(keys) > 0:
		if se.MFAAt == nil || now.Sub(*se.MFAAt) > window {
			return httpx.Errorf(http.StatusForbidden, "factor_proof_required",
				"Changing a factor needs a fresh proof with your passkey: log in with it again (within %s) and retry from that session.", window)
		}
		return nil
	case pr.Password != "":
		a := h.d.Guard.begin(r)
		a.principalID = who.PrincipalID
		subject := lockout.UserSubject(who.PrincipalID, "password")
		if err := a.check(subject); err != nil {
			return err
		}
		if err := h.checkPassword(a, subject, c.PasswordHash, pr.Password); err != nil {
			if errors.Is(err, errWrongLogin) {
				return httpx.Errorf(http.StatusUnauthorized, "invalid_password", "Wrong password.")
			}
			return err
		}
		return nil
	case !passwordOnly && now.Sub(se.CreatedAt) <= window && !h.enrolmentOnly(se):
		// A user without a second factor, who logged in moments ago. Not an
		// enrolment session (require_mfa): there the first factor opens
		// everything, so it takes the password itself.
		return nil
	}
	if h.enrolmentOnly(se) {
		return httpx.Errorf(http.StatusForbidden, "factor_proof_required",
			"Enrolling a first factor needs your password in the request (password).")
	}
	return httpx.Errorf(http.StatusForbidden, "factor_proof_required",
		"Changing a factor needs a fresh proof: give your password (password), or log in again (within %s) and retry.", window)
}

// factorChanged ends the user's other sessions and sends the alert; the
// ledger record is the route's own admin-change record.
func (h *Handler) factorChanged(r *http.Request, principalID, change string) error {
	keep := ""
	if se, ok := currentSession(r); ok {
		keep = se.ID
	}
	if fs, ok := h.d.Store.(FactorStore); ok {
		if err := fs.RevokeOtherSessions(r.Context(), principalID, keep, h.d.Now().UTC()); err != nil {
			return err
		}
	} else if err := h.d.Store.RevokeSessions(r.Context(), principalID, h.d.Now().UTC()); err != nil {
		return err
	}
	h.alertFactor(r, principalID, change)
	return nil
}

// alertFactor sends a "factor_changed" alert; notify carries the user's
// address when the user's name is one, for the receiver to forward.
func (h *Handler) alertFactor(r *http.Request, principalID, change string) {
	if h.d.Alerts == nil {
		return
	}
	details := map[string]any{"principal_id": principalID, "change": change,
		"source_ip": SourceAddr(r, h.trustProxy(), h.trustedProxies()).String(), "user_agent": truncateUA(r.UserAgent()), "request_id": httpx.RequestID(r.Context())}
	name := principalID
	if p, err := h.d.Store.Principal(r.Context(), principalID); err == nil {
		name = p.Name
		details["user"] = p.Name
		if strings.Contains(p.Name, "@") {
			details["notify"] = p.Name
		}
	}
	h.d.Alerts.Send(alert.Alert{Kind: "factor_changed", Time: h.d.Now().UTC(), Message: name + ": " + change, Details: details})
}

func (h *Handler) factorStore() (FactorStore, error) {
	fs, ok := h.d.Store.(FactorStore)
	if !ok {
		return nil, errors.New("admin: the store cannot change factors")
	}
	return fs, nil
}

func (h *Handler) enrollTOTP(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	var pr factorProof
	if err := decodeOptional(w, r, &pr); err != nil {
		return err
	}
	if err := h.proveFactorChange(r, who, pr, false); err != nil {
		return err
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

// confirmTOTP makes the pending secret active. Its code is a guess like any
// other (a session holder must not brute-force the owner's pending secret to
// collect the recovery codes): it counts on the user's TOTP counter.
func (h *Handler) confirmTOTP(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	var in struct {
		Code string `json:"code"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if _, ok := currentSession(r); !ok {
		return errOwnSession
	}
	c, err := h.d.Store.Credentials(r.Context(), who.PrincipalID)
	if err != nil || c.PendingTOTP == nil {
		return badRequest("", "nothing to confirm: enrol first")
	}
	secret, err := h.d.Keyring.Open(c.PendingTOTP, totpAAD(who.PrincipalID))
	if err != nil {
		return err
	}
	a := h.d.Guard.begin(r)
	a.principalID = who.PrincipalID
	if err := a.check(); err != nil {
		return err
	}
	place, err := a.reserve(lockout.UserSubject(who.PrincipalID, "totp"))
	if err != nil {
		return err
	}
	step, err := mfa.CheckTOTP(string(secret), in.Code, h.d.Now(), c.LastStep)
	if err != nil {
		a.fail("totp", http.StatusUnauthorized)
		return httpx.Errorf(http.StatusUnauthorized, "invalid_code", "Wrong code; check the authenticator's clock and try the current code.")
	}
	a.release(place)
	codes, hashes := mfa.RecoveryCodes(10)
	if err := h.d.Store.ConfirmTOTP(r.Context(), who.PrincipalID, hashes, step); err != nil {
		return err
	}
	// The session's MFA time is not refreshed: confirming proves the new
	// authenticator, not the person (step up with it to act).
	if err := h.factorChanged(r, who.PrincipalID, "totp enrolled"); err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, 200, map[string]any{"enabled": true, "recovery_codes": codes, "other_sessions_ended": true})
	return nil
}

func (h *Handler) regenerateRecoveryCodes(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	var pr factorProof
	if err := decodeOptional(w, r, &pr); err != nil {
		return err
	}
	c, err := h.d.Store.Credentials(r.Context(), who.PrincipalID)
	if err != nil || c.TOTPSealed == nil {
		return badRequest("", "recovery codes come with TOTP; enrol first")
	}
	if err := h.proveFactorChange(r, who, pr, false); err != nil {
		return err
	}
	fs, err := h.factorStore()
	if err != nil {
		return err
	}
	codes, hashes := mfa.RecoveryCodes(10)
	if err := fs.SetRecoveryCodes(r.Context(), who.PrincipalID, hashes); err != nil {
		return err
	}
	if err := h.factorChanged(r, who.PrincipalID, "recovery codes regenerated"); err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, 200, map[string]any{"recovery_codes": codes, "other_sessions_ended": true})
	return nil
}

// changeOwnPassword: {"new_password", "current_password" | "code" | "recovery_code"}.
func (h *Handler) changeOwnPassword(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	var in struct {
		NewPassword     string `json:"new_password"`
		CurrentPassword string `json:"current_password"`
		Code            string `json:"code"`
		RecoveryCode    string `json:"recovery_code"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if len(in.NewPassword) < mfa.MinPasswordLength {
		return badRequest("new_password", "a password needs at least %d characters", mfa.MinPasswordLength)
	}
	if err := h.proveFactorChange(r, who, factorProof{Code: in.Code, RecoveryCode: in.RecoveryCode, Password: in.CurrentPassword}, true); err != nil {
		return err
	}
	hash, err := h.passwords().Hash(r.Context(), in.NewPassword)
	if err != nil {
		return busy(err)
	}
	if err := h.d.Store.SetPassword(r.Context(), who.PrincipalID, hash); err != nil {
		return err
	}
	if err := h.factorChanged(r, who.PrincipalID, "password changed"); err != nil {
		return err
	}
	writeJSON(w, 200, map[string]any{"password_set": true, "other_sessions_ended": true})
	return nil
}

// setPassword is an administrator setting a user's password: it ends every
// session of the user and alerts. A user changes their own with
// POST /v1/auth/password, which needs a proof.
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
	if _, own := currentSession(r); own && p.ID == who.PrincipalID {
		return badRequest("id", "change your own password with POST /v1/auth/password (gatehouse users change-password): it needs your current password or second factor")
	}
	hash, err := h.passwords().Hash(r.Context(), in.Password)
	if errors.Is(err, mfa.ErrBusy) {
		return busy(err)
	}
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
	h.alertFactor(r, p.ID, "password set by an administrator ("+who.ID+")")
	writeJSON(w, 200, map[string]any{"password_set": true, "sessions_ended": true})
	return nil
}

// resetFactors is an administrator removing a user's TOTP, recovery codes and
// passkeys (a lost phone): its own Cedar action (principals.reset_factors,
// sensitive under step_up_max_age), ending every session of the user,
// revoking its access tokens and clearing the user's lockouts. The password
// stays.
func (h *Handler) resetFactors(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	p, err := h.d.Store.Principal(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if p.Kind != org.KindUser {
		return badRequest("id", "only users have second factors")
	}
	if _, own := currentSession(r); own && p.ID == who.PrincipalID {
		return badRequest("id", "an administrator resets another user's factors; change your own with your existing factor")
	}
	fs, err := h.factorStore()
	if err != nil {
		return err
	}
	if err := fs.ResetFactors(r.Context(), p.ID); err != nil {
		return err
	}
	now := h.d.Now().UTC()
	if err := h.d.Store.RevokeSessions(r.Context(), p.ID, now); err != nil {
		return err
	}
	// The user's access tokens too: those of mfa_required keys vouch for a
	// factor now declared lost (gh_mfa), and whoever phished it holds them.
	if err := h.d.Store.RevokeTokensBefore(r.Context(), p.ID, now); err != nil {
		return err
	}
	if err := h.d.Reload(r.Context()); err != nil {
		return err
	}
	if l := h.d.Guard; l != nil && l.Limiter != nil {
		if _, err := l.Limiter.Clear(r.Context(), lockout.UserSubjects(p.ID)...); err != nil {
			return err
		}
	}
	h.d.Log.Warn("factors reset", "principal", p.ID, "by", who.ID)
	h.alertFactor(r, p.ID, "second factors reset by an administrator ("+who.ID+")")
	writeJSON(w, 200, map[string]any{"principal_id": p.ID, "factors_reset": true, "sessions_ended": true, "tokens_revoked": true})
	return nil
}

// decodeOptional is decode for bodies that may be empty.
func decodeOptional(w http.ResponseWriter, r *http.Request, v any) error {
	if r.ContentLength == 0 {
		return nil
	}
	return decode(w, r, v)
}
