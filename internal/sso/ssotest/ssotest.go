// Package ssotest is an OpenID Connect identity provider for tests: discovery,
// JWKS, the device flow (RFC 8628) and ES256 ID tokens for a user the test
// chooses.
package ssotest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// IdP is a running test identity provider.
type IdP struct {
	URL      string
	ClientID string

	signer jose.Signer
	jwk    jose.JSONWebKey

	mu      sync.Mutex
	user    map[string]any      // claims of the user who approves device logins
	pending map[string]bool     // device codes waiting for the token poll
	codes   map[string]authCode // authorization codes waiting for the exchange
	polls   int
}

// New starts an IdP for client id "gatehouse", closed when t ends.
func New(t testing.TB) *IdP {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: "idp-1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := &IdP{ClientID: "gatehouse", signer: signer, pending: map[string]bool{}, codes: map[string]authCode{},
		jwk: jose.JSONWebKey{Key: key.Public(), KeyID: "idp-1", Algorithm: string(jose.ES256), Use: "sig"}}
	srv := httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// SetUser sets the claims of the user who approves the next device logins
// (sub, email, groups, amr…).
func (p *IdP) SetUser(claims map[string]any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.user = claims
}

// Polls returns how many device-token polls the IdP answered.
func (p *IdP) Polls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.polls
}

// Mint returns an ID token with the given claims, for audience aud, valid for ttl
// (negative: already expired).
func (p *IdP) Mint(t testing.TB, aud string, claims map[string]any, ttl time.Duration) string {
	t.Helper()
	s, err := p.mint(aud, claims, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (p *IdP) mint(aud string, claims map[string]any, ttl time.Duration) (string, error) {
	now := time.Now()
	std := jwt.Claims{Issuer: p.URL, Audience: jwt.Audience{aud}, IssuedAt: jwt.NewNumericDate(now.Add(-time.Second)),
		Expiry: jwt.NewNumericDate(now.Add(ttl))}
	if sub, ok := claims["sub"].(string); ok {
		std.Subject = sub
	}
	return jwt.Signed(p.signer).Claims(std).Claims(claims).Serialize()
}

func (p *IdP) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/.well-known/openid-configuration":
		json.NewEncoder(w).Encode(map[string]any{
			"issuer": p.URL, "jwks_uri": p.URL + "/jwks", "authorization_endpoint": p.URL + "/authorize",
			"token_endpoint": p.URL + "/token", "device_authorization_endpoint": p.URL + "/device",
			"id_token_signing_alg_values_supported": []string{"ES256"}, "response_types_supported": []string{"code"},
			"subject_types_supported": []string{"public"},
		})
	case "/jwks":
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{p.jwk}})
	case "/device":
		if r.ParseForm() != nil || r.PostForm.Get("client_id") != p.ClientID {
			oauthError(w, "invalid_client")
			return
		}
		p.mu.Lock()
		code := fmt.Sprintf("dc-%d", len(p.pending)+1)
		p.pending[code] = true
		p.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"device_code": code, "user_code": "WDJB-MJHT",
			"verification_uri": p.URL + "/activate", "expires_in": 300, "interval": 1})
	case "/authorize": // the user approves at once
		q := r.URL.Query()
		if q.Get("client_id") != p.ClientID || q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" {
			http.Error(w, "bad authorization request", http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		code := fmt.Sprintf("ac-%d", len(p.codes)+1)
		p.codes[code] = authCode{challenge: q.Get("code_challenge"), redirect: q.Get("redirect_uri"), user: p.user}
		p.mu.Unlock()
		u, err := url.Parse(q.Get("redirect_uri"))
		if err != nil {
			http.Error(w, "bad redirect_uri", http.StatusBadRequest)
			return
		}
		v := u.Query()
		v.Set("code", code)
		v.Set("state", q.Get("state"))
		u.RawQuery = v.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
	case "/token":
		if r.ParseForm() == nil && r.PostForm.Get("grant_type") == "authorization_code" {
			p.exchange(w, r)
			return
		}
		if r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:device_code" {
			oauthError(w, "unsupported_grant_type")
			return
		}
		p.mu.Lock()
		p.polls++
		ok, user := p.pending[r.PostForm.Get("device_code")], p.user
		delete(p.pending, r.PostForm.Get("device_code"))
		p.mu.Unlock()
		if !ok {
			oauthError(w, "invalid_grant")
			return
		}
		id, err := p.mint(p.ClientID, user, 5*time.Minute)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"access_token": "at-" + r.PostForm.Get("device_code"), "token_type": "Bearer",
			"expires_in": 300, "id_token": id})
	default:
		http.NotFound(w, r)
	}
}

type authCode struct {
	challenge, redirect string
	user                map[string]any
}

// exchange redeems an authorization code: once, with the PKCE verifier and the
// same redirect_uri.
func (p *IdP) exchange(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	c, ok := p.codes[r.PostForm.Get("code")]
	delete(p.codes, r.PostForm.Get("code"))
	p.mu.Unlock()
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	if !ok || c.redirect != r.PostForm.Get("redirect_uri") || base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge {
		oauthError(w, "invalid_grant")
		return
	}
	id, err := p.mint(p.ClientID, c.user, 5*time.Minute)
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	json.NewEncoder(w).Encode(map[string]any{"access_token": "at-code", "token_type": "Bearer", "expires_in": 300, "id_token": id})
}

func oauthError(w http.ResponseWriter, code string) {
	w.WriteHeader(http.StatusBadRequest)
	json.NewEncoder(w).Encode(map[string]string{"error": code})
}
