package admin

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/mfa"
	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/store"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// ceremonyTTL bounds how long a passkey registration or login may take.
const ceremonyTTL = 5 * time.Minute

func (h *Handler) passkeyRoutes() {
	m := h.mux
	m.HandleFunc("GET /v1/auth/passkeys", h.authed(h.listPasskeys))
	m.HandleFunc("POST /v1/auth/passkeys/register", h.authed(h.beginPasskeyRegistration))
	m.HandleFunc("POST /v1/auth/passkeys/register/{ceremony}", h.authed(h.finishPasskeyRegistration))
	m.HandleFunc("DELETE /v1/auth/passkeys/{id}", h.authed(h.deletePasskey))
	m.HandleFunc("POST /v1/auth/passkeys/login", h.throttled(h.beginPasskeyLogin))
	m.HandleFunc("POST /v1/auth/passkeys/login/{ceremony}", h.throttled(h.finishPasskeyLogin))
}

// passkeyUser adapts a user and its passkeys to go-webauthn.
type passkeyUser struct {
	p     org.Principal
	creds []webauthn.Credential
}

func (u passkeyUser) WebAuthnID() []byte                         { return []byte(u.p.ID) }
func (u passkeyUser) WebAuthnName() string                       { return u.p.Name }
func (u passkeyUser) WebAuthnDisplayName() string                { return u.p.Name }
func (u passkeyUser) WebAuthnCredentials() []webauthn.Credential { return u.creds }

func (h *Handler) webauthnReady() error {
	if h.d.WebAuthn == nil {
		return httpx.Errorf(http.StatusNotFound, "passkeys_not_configured", "Passkeys are not configured (webauthn in the configuration file).")
	}
	return nil
}

// passkeyUserOf loads a user with its passkeys.
func (h *Handler) passkeyUserOf(r *http.Request, idOrName string) (passkeyUser, error) {
	p, err := h.d.Store.Principal(r.Context(), idOrName)
	if err != nil {
		return passkeyUser{}, err
	}
	keys, err := h.d.Store.Passkeys(r.Context(), p.ID)
	if err != nil {
		return passkeyUser{}, err
	}
	u := passkeyUser{p: p}
	for _, k := range keys {
		var c webauthn.Credential
		if err := json.Unmarshal(k.Credential, &c); err != nil {
			return passkeyUser{}, err
		}
		u.creds = append(u.creds, c)
	}
	return u, nil
}

// startCeremony stores the go-webauthn session and answers with the options
// for the browser (navigator.credentials.create or .get) and the ceremony id.
func (h *Handler) startCeremony(w http.ResponseWriter, r *http.Request, principalID, kind string, sd *webauthn.SessionData, options any) error {
	data, err := json.Marshal(sd)
	if err != nil {
		return err
	}
	c := mfa.Ceremony{ID: vkey.NewID("cer"), PrincipalID: principalID, Kind: kind, Data: data, ExpiresAt: h.d.Now().Add(ceremonyTTL)}
	if err := h.d.Store.PutCeremony(r.Context(), c); err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, 200, map[string]any{"ceremony": c.ID, "options": options, "expires_at": c.ExpiresAt.UTC()})
	return nil
}

// takeCeremony returns the go-webauthn session of a ceremony of kind, once.
func (h *Handler) takeCeremony(r *http.Request, kind string) (mfa.Ceremony, webauthn.SessionData, error) {
	c, err := h.d.Store.TakeCeremony(r.Context(), r.PathValue("ceremony"))
	if errors.Is(err, store.ErrNotFound) || (err == nil && (c.Kind != kind || !h.d.Now().Before(c.ExpiresAt))) {
		return c, webauthn.SessionData{}, httpx.Errorf(http.StatusBadRequest, "invalid_ceremony", "Unknown, used or expired %s ceremony; start again.", kind)
	}
	if err != nil {
		return c, webauthn.SessionData{}, err
	}
	var sd webauthn.SessionData
	return c, sd, json.Unmarshal(c.Data, &sd)
}

func (h *Handler) listPasskeys(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	keys, err := h.d.Store.Passkeys(r.Context(), who.PrincipalID)
	if err != nil {
		return err
	}
	writeJSON(w, 200, list(keys))
	return nil
}

// beginPasskeyRegistration starts adding a passkey to the session's own user.
func (h *Handler) beginPasskeyRegistration(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	if err := h.webauthnReady(); err != nil {
		return err
	}
	if _, ok := sessionID(who); !ok {
		return badRequest("", "add a passkey from your own login session (gatehouse login)")
	}
	var pr factorProof
	if err := decodeOptional(w, r, &pr); err != nil {
		return err
	}
	if err := h.proveFactorChange(r, who, pr, false); err != nil {
		return err
	}
	u, err := h.passkeyUserOf(r, who.PrincipalID)
	if err != nil {
		return err
	}
	creation, sd, err := h.d.WebAuthn.BeginRegistration(u, webauthn.WithExclusions(webauthn.Credentials(u.creds).CredentialDescriptors()),
		webauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{ResidentKey: protocol.ResidentKeyRequirementPreferred,
			UserVerification: protocol.VerificationRequired}))
	if err != nil {
		return err
	}
	return h.startCeremony(w, r, u.p.ID, "register", sd, creation.Response)
}

// finishPasskeyRegistration checks the authenticator's attestation and stores
// the passkey. ?name= names it.
func (h *Handler) finishPasskeyRegistration(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	if err := h.webauthnReady(); err != nil {
		return err
	}
	c, sd, err := h.takeCeremony(r, "register")
	if err != nil {
		return err
	}
	if c.PrincipalID != who.PrincipalID {
		return httpx.Errorf(http.StatusBadRequest, "invalid_ceremony", "This ceremony belongs to another user.")
	}
	parsed, err := protocol.ParseCredentialCreationResponseBody(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		return badRequest("", "not a WebAuthn registration response: %s", protocolDetail(err))
	}
	u, err := h.passkeyUserOf(r, who.PrincipalID)
	if err != nil {
		return err
	}
	cred, err := h.d.WebAuthn.CreateCredential(u, sd, parsed)
	if err != nil {
		return httpx.Errorf(http.StatusBadRequest, "passkey_refused", "The passkey was refused: %s.", protocolDetail(err))
	}
	raw, err := json.Marshal(cred)
	if err != nil {
		return err
	}
	name := r.URL.Query().Get("name")
	if name == "" {
		name = "passkey"
	}
	if len(name) > 64 {
		return badRequest("name", "name longer than 64 characters")
	}
	pk := mfa.Passkey{ID: protocol.URLEncodedBase64(cred.ID).String(), PrincipalID: u.p.ID, Name: name, Credential: raw, CreatedAt: h.d.Now().UTC()}
	if err := h.d.Store.AddPasskey(r.Context(), pk); err != nil {
		return err
	}
	if err := h.factorChanged(r, u.p.ID, "passkey registered ("+name+")"); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, pk)
	return nil
}

// deletePasskey removes one of the session user's passkeys, with a fresh
// proof (a body of factorProof).
func (h *Handler) deletePasskey(w http.ResponseWriter, r *http.Request, who vkey.Key) error {
	var pr factorProof
	if err := decodeOptional(w, r, &pr); err != nil {
		return err
	}
	if err := h.proveFactorChange(r, who, pr, false); err != nil {
		return err
	}
	if err := h.d.Store.DeletePasskey(r.Context(), who.PrincipalID, r.PathValue("id")); err != nil {
		return err
	}
	if err := h.factorChanged(r, who.PrincipalID, "passkey removed"); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// beginPasskeyLogin starts a login with a passkey: {"user": NAME}.
func (h *Handler) beginPasskeyLogin(w http.ResponseWriter, r *http.Request) error {
	if err := h.webauthnReady(); err != nil {
		return err
	}
	var in struct {
		User string `json:"user"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	u, err := h.passkeyUserOf(r, in.User)
	principalID := u.p.ID
	if errors.Is(err, store.ErrNotFound) || (err == nil && (u.p.Kind != org.KindUser || u.p.Disabled || len(u.creds) == 0)) {
		// No passkey login for this name: answer as for a user with one (a
		// decoy), so that the answer does not tell which names are users
		// with passkeys. The ceremony names no principal; its finish fails.
		u, principalID, err = h.decoyPasskeyUser(in.User), "", nil
	}
	if err != nil {
		return err
	}
	assertion, sd, err := h.d.WebAuthn.BeginLogin(u, webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		return err
	}
	return h.startCeremony(w, r, principalID, "login", sd, assertion.Response)
}

// decoyPasskeyUser is a made-up user with one made-up passkey whose id is a
// keyed hash of the name: the same name gets the same id on every replica
// and after restarts (as a real passkey's id would), and nobody can tell it
// from a real id or produce an assertion for it.
func (h *Handler) decoyPasskeyUser(name string) passkeyUser {
	id, _ := hex.DecodeString(h.d.Verifier.Hasher().Hash(vkey.Secret("gatehouse passkey decoy\x00" + name)))
	return passkeyUser{p: org.Principal{ID: "prn_decoy", Name: name, Kind: org.KindUser}, creds: []webauthn.Credential{{ID: id}}}
}

// finishPasskeyLogin checks the assertion and starts a session. A passkey
// verified by its user (PIN or biometric: the UV flag) is two factors, so the
// session counts as having passed MFA.
func (h *Handler) finishPasskeyLogin(w http.ResponseWriter, r *http.Request) error {
	if err := h.webauthnReady(); err != nil {
		return err
	}
	c, sd, err := h.takeCeremony(r, "login")
	if err != nil {
		return err
	}
	parsed, err := protocol.ParseCredentialRequestResponseBody(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		return badRequest("", "not a WebAuthn assertion: %s", protocolDetail(err))
	}
	if c.PrincipalID == "" { // a decoy ceremony (beginPasskeyLogin): no assertion can match it
		return errPasskeyRefused
	}
	u, err := h.passkeyUserOf(r, c.PrincipalID)
	if err != nil {
		return err
	}
	if u.p.Disabled {
		return httpx.Errorf(http.StatusUnauthorized, "invalid_login", "This user is disabled.")
	}
	cred, err := h.d.WebAuthn.ValidateLogin(u, sd, parsed)
	if err != nil {
		// The detail stays in the log: told to an unauthenticated caller,
		// it would tell a real user's passkey from a decoy.
		h.d.Log.Info("passkey login refused", "principal", u.p.ID, "detail", protocolDetail(err))
		return errPasskeyRefused
	}
	if cred.Authenticator.CloneWarning {
		return httpx.Errorf(http.StatusUnauthorized, "invalid_login", "The passkey's signature counter went backwards: it may have been cloned. Remove it and register a new one.")
	}
	raw, err := json.Marshal(cred)
	if err != nil {
		return err
	}
	now := h.d.Now().UTC()
	if err := h.d.Store.UsePasskey(r.Context(), protocol.URLEncodedBase64(cred.ID).String(), raw, now); err != nil {
		return err
	}
	return h.startSession(w, r, u.p.ID, &now, "passkey")
}

// errPasskeyRefused is every refused passkey login assertion, real user or
// decoy alike.
var errPasskeyRefused = httpx.Errorf(http.StatusUnauthorized, "invalid_login", "The passkey was refused.")

// protocolDetail gives the useful part of a go-webauthn error.
func protocolDetail(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) && pe.DevInfo != "" {
		return pe.Details + ": " + pe.DevInfo
	}
	return err.Error()
}
