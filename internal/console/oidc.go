package console

// OIDC single sign-on: the authorization code flow with PKCE (RFC 7636)
// against the organisation's identity provider (oidc_login).
//
// GET /console/login/oidc starts a login: a random state, a PKCE verifier and
// a random binding kept in the sessionstore.Store for ten minutes (hashed and sealed,
// see sessions.go), so the callback may come back to any replica; the binding goes to
// the browser in a short-lived HttpOnly cookie (SameSite=Lax, so that the
// identity provider's redirect back carries it), and the browser is sent to
// the provider. GET /console/login/oidc/callback accepts a code only for a
// state this process issued, once, before it expires, to the browser holding
// that state's binding (so nobody can log a victim in to the attacker's
// account by sending them a callback link), then redeems the code with the
// verifier and gives the ID token to the admin API (POST /v1/auth/oidc), which
// verifies it, maps its groups and opens the admin session, exactly as for
// `gatehouse login --oidc`. The console never decides who the user is.

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/gatehouse-gw/gatehouse/internal/console/sessionstore"
	"github.com/gatehouse-gw/gatehouse/internal/sso"
	"github.com/gatehouse-gw/gatehouse/internal/store"
)

// oidcPendingTTL bounds how long a started login may take at the provider.
const oidcPendingTTL = 10 * time.Minute

// oidcMaxPending bounds the logins in flight (each is a few hundred bytes).
const oidcMaxPending = 10_000

type oidcFlow struct {
	cfg    sso.Config
	client *http.Client

	mu       sync.Mutex
	endpoint *oauth2.Endpoint // discovered on first use, retried while the provider is down
}

func newOIDCFlow(cfg sso.Config, client *http.Client) *oidcFlow {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return &oidcFlow{cfg: cfg.WithDefaults(), client: client}
}

func (f *oidcFlow) discover(ctx context.Context) (oauth2.Endpoint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.endpoint != nil {
		return *f.endpoint, nil
	}
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, f.client), f.cfg.Issuer)
	if err != nil {
		return oauth2.Endpoint{}, err
	}
	ep := p.Endpoint()
	if ep.AuthURL == "" || ep.TokenURL == "" {
		return oauth2.Endpoint{}, errors.New("the provider names no authorization or token endpoint")
	}
	f.endpoint = &ep
	return ep, nil
}

func (h *Handler) oidcCookie(r *http.Request) string {
	if h.secure(r) {
		return "__Host-gatehouse-console-oidc"
	}
	return "gatehouse-console-oidc"
}

// redirectURL is where the provider sends the browser back: this console's
// callback, on the host the browser reached (register it at the provider).
func (h *Handler) redirectURL(r *http.Request) string {
	return h.origin(r) + "/console/login/oidc/callback"
}

func (h *Handler) oauthConfig(r *http.Request, ep oauth2.Endpoint) oauth2.Config {
	return oauth2.Config{ClientID: h.oidc.cfg.ClientID, Endpoint: ep, Scopes: h.oidc.cfg.Scopes, RedirectURL: h.redirectURL(r)}
}

func (h *Handler) loginError(w http.ResponseWriter, status int, msg string) {
	h.render(w, status, "login.html", page{Title: "Sign in", Passkeys: h.d.Passkeys, OIDC: h.oidc != nil, Error: msg})
}

// oidcStart sends the browser to the identity provider.
func (h *Handler) oidcStart(w http.ResponseWriter, r *http.Request) {
	// Each start stores a row that every replica shares, and the rows in
	// flight are bounded: one address must not fill them for everybody.
	if h.d.Throttle != nil {
		if ok, after := h.d.Throttle(r); !ok {
			w.Header().Set("Retry-After", strconv.FormatInt(int64(after/time.Second), 10))
			h.loginError(w, http.StatusTooManyRequests, fmt.Sprintf("Too many sign-ins from your address; try again in %d seconds.", int64(after/time.Second)))
			return
		}
	}
	ep, err := h.oidc.discover(r.Context())
	if err != nil {
		h.d.Log.Warn("console: the identity provider cannot be reached", "issuer", h.oidc.cfg.Issuer, "err", err)
		h.loginError(w, http.StatusServiceUnavailable, "The identity provider cannot be reached; try again shortly, or sign in with your password.")
		return
	}
	state, binding, verifier := randomToken(), randomToken(), oauth2.GenerateVerifier()
	now := h.d.Now()
	ctx, cancel := storeCtx(r)
	defer cancel()
	if _, err := h.d.Sessions.SweepOIDCLogins(ctx, now.Add(-oidcPendingTTL)); err != nil {
		h.d.Log.Warn("console: sweeping old OIDC sign-ins failed", "err", err)
	}
	sh := stateHash(state)
	sealed, err := seal(binding, labelSealPKCE, sh, []byte(verifier))
	ok := false
	if err == nil {
		ok, err = h.d.Sessions.CreateOIDCLogin(ctx, sessionstore.OIDCLogin{StateHash: sh, BindingHash: bindingHash(binding), SealedVerifier: sealed,
			Next: safeNext(r.URL.Query().Get("next")), Started: now}, now.Add(-oidcPendingTTL), oidcMaxPending)
	}
	if err != nil {
		h.d.Log.Error("console: an OIDC sign-in could not be stored", "err", err)
		h.loginError(w, http.StatusServiceUnavailable, "The sign-in cannot be started right now; try again shortly, or sign in with your password.")
		return
	}
	if !ok {
		h.loginError(w, http.StatusServiceUnavailable, "Too many sign-ins are in progress; try again in a few minutes.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: h.oidcCookie(r), Value: binding, Path: "/", HttpOnly: true, Secure: h.secure(r),
		SameSite: http.SameSiteLaxMode, MaxAge: int(oidcPendingTTL.Seconds())})
	conf := h.oauthConfig(r, ep)
	http.Redirect(w, r, conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)), http.StatusSeeOther)
}

// oidcCallback finishes a login the provider sent back.
func (h *Handler) oidcCallback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state := q.Get("state")
	f := h.oidc
	var p sessionstore.OIDCLogin
	var takeErr error = store.ErrNotFound
	if state != "" && len(state) <= 128 {
		ctx, cancel := storeCtx(r)
		p, takeErr = h.d.Sessions.TakeOIDCLogin(ctx, stateHash(state)) // once, whatever happens next
		cancel()
	}
	http.SetCookie(w, &http.Cookie{Name: h.oidcCookie(r), Value: "", Path: "/", HttpOnly: true, Secure: h.secure(r), SameSite: http.SameSiteLaxMode, MaxAge: -1})
	c, err := r.Cookie(h.oidcCookie(r))
	var verifier []byte
	if takeErr == nil && err == nil && subtle.ConstantTimeCompare(bindingHash(c.Value), p.BindingHash) == 1 {
		verifier, err = unseal(c.Value, labelSealPKCE, p.StateHash, p.SealedVerifier)
	} else if err == nil {
		err = errUnseal
	}
	switch {
	case takeErr != nil && !errors.Is(takeErr, store.ErrNotFound):
		h.d.Log.Error("console: the OIDC sign-in store cannot be read", "err", takeErr)
		h.loginError(w, http.StatusServiceUnavailable, "The sign-in cannot be finished right now; start again shortly.")
		return
	case takeErr != nil || h.d.Now().Sub(p.Started) >= oidcPendingTTL:
		h.loginError(w, http.StatusBadRequest, "This sign-in link is unknown, already used or too old; start again.")
		return
	case err != nil:
		h.d.Log.Warn("console: an OIDC callback came to a browser that did not start the sign-in; refused")
		h.loginError(w, http.StatusForbidden, "This sign-in was started in another browser, so it was refused; start again here.")
		return
	case q.Get("error") != "":
		h.loginError(w, http.StatusUnauthorized, fmt.Sprintf("The identity provider refused the sign-in (%s).", q.Get("error")))
		return
	case q.Get("code") == "":
		h.loginError(w, http.StatusBadRequest, "The identity provider sent no authorization code; start again.")
		return
	}
	ep, err := f.discover(r.Context())
	if err != nil {
		h.loginError(w, http.StatusServiceUnavailable, "The identity provider cannot be reached; try again shortly.")
		return
	}
	conf := h.oauthConfig(r, ep)
	tok, err := conf.Exchange(oidc.ClientContext(r.Context(), f.client), q.Get("code"), oauth2.VerifierOption(string(verifier)))
	if err != nil {
		h.d.Log.Warn("console: the identity provider refused the authorization code", "err", err)
		h.loginError(w, http.StatusUnauthorized, "The identity provider did not accept the sign-in; start again.")
		return
	}
	idToken, _ := tok.Extra("id_token").(string)
	if idToken == "" {
		h.loginError(w, http.StatusBadGateway, "The identity provider sent no ID token (is the openid scope allowed for this client?).")
		return
	}
	var out struct {
		Session   string `json:"session"`
		Principal string `json:"principal_id"`
	}
	if err := h.call(r.Context(), r, nil, "POST", "/v1/auth/oidc", obj{"id_token": idToken}, &out); err != nil {
		var ae *apiError
		msg := "The sign-in failed; the details are in the gateway's log."
		status := http.StatusInternalServerError
		if errors.As(err, &ae) {
			status, msg = ae.Status, ae.Message
		} else {
			h.d.Log.Error("console: OIDC sign-in failed", "err", err)
		}
		h.loginError(w, status, msg)
		return
	}
	if err := h.startSession(w, r, out.Session, h.claimedName(idToken, out.Principal), out.Principal); err != nil {
		h.loginError(w, http.StatusServiceUnavailable, "The console cannot keep your session right now; try again shortly.")
		return
	}
	// The browser arrived here from the provider's site, so it would not send
	// the SameSite=Strict session cookie on a redirect; a page of this site
	// continues instead (the navigation it starts is same-site).
	h.render(w, 200, "continue.html", page{Title: "Signed in", Data: obj{"Next": p.Next}})
}

// claimedName is the user name in an ID token the admin API has verified
// (for display only), or fallback.
func (h *Handler) claimedName(idToken, fallback string) string {
	parts := strings.Split(idToken, ".")
	if len(parts) != 3 {
		return fallback
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return fallback
	}
	var claims map[string]any
	if json.Unmarshal(b, &claims) != nil {
		return fallback
	}
	if s, ok := claims[h.oidc.cfg.UsernameClaim].(string); ok && s != "" {
		return s
	}
	return fallback
}
