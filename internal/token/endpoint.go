package token

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/gatehouse-gw/gatehouse/internal/auth"
	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// OAuth 2.0 and RFC 8693 identifiers.
const (
	GrantClientCredentials = "client_credentials"
	GrantTokenExchange     = "urn:ietf:params:oauth:grant-type:token-exchange"
	TypeAccessToken        = "urn:ietf:params:oauth:token-type:access_token"
	TypeIDToken            = "urn:ietf:params:oauth:token-type:id_token"
	TypeJWT                = "urn:ietf:params:oauth:token-type:jwt"
	TypeVirtualKey         = "urn:gatehouse:params:oauth:token-type:virtual-key"
)

// KeyAuthenticator checks a virtual key.
type KeyAuthenticator interface {
	Authenticate(ctx context.Context, credential string) (auth.Caller, error)
}

// PrincipalStore finds principals.
type PrincipalStore interface {
	Principal(ctx context.Context, idOrName string) (org.Principal, error)
}

// Endpoint is the OAuth 2.0 token endpoint (POST /v1/auth/token): client
// credentials with a virtual key as the client secret (form or HTTP Basic),
// and RFC 8693 token exchange of a virtual key or of a workload OIDC token from
// a trusted issuer. A DPoP header binds the issued token to the client's key;
// a scope parameter narrows the token to some endpoints. ServeMetadata
// describes it (RFC 8414).
type Endpoint struct {
	Issuer     *Issuer
	DPoP       *DPoP
	Federation *Federation
	Keys       KeyAuthenticator
	Principals PrincipalStore
	Log        *slog.Logger
	// URL returns the request's absolute URL (for DPoP's htu).
	URL func(*http.Request) string
	// MFA checks a user's TOTP code, for keys marked mfa_required.
	MFA func(ctx context.Context, principalID, code string) error
}

type oauthError struct {
	status int
	code   string
	desc   string
	header http.Header // Retry-After of attempt limits
}

// limitError passes through a refusal by the attempt limits (an *httpx.Error
// of 429, or 503 when the limits cannot be checked), with its Retry-After.
func limitError(err error) *oauthError {
	var he *httpx.Error
	if !errors.As(err, &he) || (he.Status != http.StatusTooManyRequests && he.Status != http.StatusServiceUnavailable) {
		return nil
	}
	code := "too_many_attempts"
	if he.Status == http.StatusServiceUnavailable {
		code = "temporarily_unavailable"
	}
	return &oauthError{status: he.Status, code: code, desc: he.Message, header: he.Header}
}

func (e *oauthError) Error() string { return e.code + ": " + e.desc }

func oerr(status int, code, desc string) *oauthError {
	return &oauthError{status: status, code: code, desc: desc}
}

// ServeHTTP implements http.Handler.
func (e *Endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	resp, err := e.issue(r)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache") // RFC 6749 §5.1, for HTTP/1.0 caches
	if err != nil {
		var oe *oauthError
		if !errors.As(err, &oe) {
			e.Log.Error("token endpoint failed", "err", err)
			oe = oerr(http.StatusInternalServerError, "server_error", "the token could not be issued")
		}
		for k, v := range oe.header {
			w.Header()[k] = v
		}
		if oe.code == "invalid_client" {
			w.Header().Set("WWW-Authenticate", `Basic realm="gatehouse"`)
		}
		w.WriteHeader(oe.status)
		json.NewEncoder(w).Encode(map[string]string{"error": oe.code, "error_description": oe.desc})
		return
	}
	json.NewEncoder(w).Encode(resp)
}

// Request is the parsed form of a token request.
type Request struct {
	GrantType        string
	ClientSecret     string
	SubjectToken     string
	SubjectTokenType string
	TOTP             string // the owner's code, for keys marked mfa_required
	Scope            string // RFC 6749 §3.3: endpoints to narrow the token to, space-delimited
}

// ParseRequest reads a token request: form-encoded as OAuth 2.0 requires,
// client secret from the form (client_secret_post) or HTTP Basic
// (client_secret_basic, not both). With Basic, RFC 6749 §2.3.1 has the client
// form-urlencode id and secret before Base64; clients such as oauth4webapi do
// (every key's "_" arrives as %5F), others send them raw. Both decode to the
// same key: a key's alphabet (base62 and "_") has no "%" or "+", so decoding a
// raw key leaves it unchanged.
func ParseRequest(r *http.Request) (Request, error) {
	if r.Method != http.MethodPost {
		return Request{}, oerr(http.StatusMethodNotAllowed, "invalid_request", "use POST")
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		return Request{}, oerr(http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(nil, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return Request{}, oerr(http.StatusBadRequest, "invalid_request", "the form could not be parsed")
	}
	f := r.PostForm
	for k, v := range f {
		if len(v) > 1 {
			return Request{}, oerr(http.StatusBadRequest, "invalid_request", "parameter "+k+" repeated")
		}
	}
	req := Request{GrantType: f.Get("grant_type"), ClientSecret: f.Get("client_secret"), SubjectToken: f.Get("subject_token"),
		SubjectTokenType: f.Get("subject_token_type"), TOTP: f.Get("totp"), Scope: f.Get("scope")}
	if _, pw, ok := r.BasicAuth(); ok {
		if req.ClientSecret != "" {
			return Request{}, oerr(http.StatusBadRequest, "invalid_request", "give the client secret once: form or HTTP Basic")
		}
		secret, err := url.QueryUnescape(pw)
		if err != nil {
			return Request{}, oerr(http.StatusUnauthorized, "invalid_client", "the HTTP Basic password is not form-urlencoded (RFC 6749 §2.3.1)")
		}
		req.ClientSecret = secret
	}
	return req, nil
}

func (e *Endpoint) issue(r *http.Request) (map[string]any, error) {
	req, err := ParseRequest(r)
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	var c Claims
	switch req.GrantType {
	case GrantClientCredentials:
		if req.ClientSecret == "" {
			return nil, oerr(http.StatusUnauthorized, "invalid_client", "client_secret (a Gatehouse key) is required")
		}
		if err := e.fromKey(ctx, req.ClientSecret, req.TOTP, &c); err != nil {
			if le := limitError(err); le != nil {
				return nil, le
			}
			return nil, oerr(http.StatusUnauthorized, "invalid_client", err.Error())
		}
	case GrantTokenExchange:
		switch {
		case req.SubjectToken == "":
			return nil, oerr(http.StatusBadRequest, "invalid_request", "subject_token is required")
		case req.SubjectTokenType == TypeVirtualKey || (req.SubjectTokenType == TypeAccessToken && vkey.LooksLikeKey(req.SubjectToken)):
			if err := e.fromKey(ctx, req.SubjectToken, req.TOTP, &c); err != nil {
				if le := limitError(err); le != nil {
					return nil, le
				}
				return nil, oerr(http.StatusBadRequest, "invalid_grant", err.Error())
			}
		case req.SubjectTokenType == TypeIDToken || req.SubjectTokenType == TypeJWT:
			if err := e.fromWorkload(ctx, req.SubjectToken, &c); err != nil {
				return nil, oerr(http.StatusBadRequest, "invalid_grant", err.Error())
			}
		default:
			return nil, oerr(http.StatusBadRequest, "invalid_request", "subject_token_type must be "+TypeVirtualKey+", "+TypeIDToken+" or "+TypeJWT)
		}
	case "":
		return nil, oerr(http.StatusBadRequest, "invalid_request", "grant_type is required")
	default:
		return nil, oerr(http.StatusBadRequest, "unsupported_grant_type", "grant_type must be client_credentials or "+GrantTokenExchange)
	}
	if req.Scope != "" {
		if err := narrow(&c.Scope, req.Scope); err != nil {
			return nil, err
		}
	}
	typ := "Bearer"
	if proof := r.Header.Get("DPoP"); proof != "" {
		jkt, err := e.DPoP.Check(proof, r.Method, e.URL(r), "")
		if err != nil {
			return nil, oerr(http.StatusBadRequest, "invalid_dpop_proof", err.Error())
		}
		c.Cnf, typ = &Cnf{JKT: jkt}, "DPoP"
	}
	raw, ttl, err := e.Issuer.Issue(c)
	if err != nil {
		return nil, err
	}
	e.Log.Info("token issued", "principal", c.Subject, "key_id", c.KeyID, "amr", c.AMR, "bound", c.Cnf != nil, "source", c.Source)
	return map[string]any{"access_token": raw, "token_type": typ, "expires_in": int(ttl.Seconds()), "issued_token_type": TypeAccessToken,
		"scope": ScopeString(c.Scope)}, nil
}

// narrow limits s to the endpoints a client asked for (RFC 6749 §3.3): each
// must be one the source allows; asking for more is invalid_scope.
func narrow(s *vkey.Scope, requested string) error {
	var want []string
	for _, e := range strings.Fields(requested) {
		if !slices.Contains(vkey.Endpoints, e) {
			return oerr(http.StatusBadRequest, "invalid_scope", "unknown scope "+strconv.Quote(e)+"; scopes are endpoints: "+strings.Join(vkey.Endpoints, " "))
		}
		if !s.AllowsEndpoint(e) {
			return oerr(http.StatusBadRequest, "invalid_scope", "scope "+strconv.Quote(e)+" is beyond what the credential allows ("+ScopeString(*s)+")")
		}
		if !slices.Contains(want, e) {
			want = append(want, e)
		}
	}
	if len(want) == 0 {
		return oerr(http.StatusBadRequest, "invalid_scope", "scope names no endpoint")
	}
	s.Endpoints = want
	return nil
}

func (e *Endpoint) fromKey(ctx context.Context, secret, totp string, c *Claims) error {
	caller, err := e.Keys.Authenticate(ctx, strings.TrimSpace(secret))
	if limitError(err) != nil {
		return err
	}
	if err != nil {
		return errors.New("the key is not valid (unknown, revoked, expired or suspended)")
	}
	amr := []string{"key"}
	if caller.Key.MFARequired {
		if totp == "" {
			return errors.New("this key requires its owner's TOTP code: add totp=<code>")
		}
		if e.MFA == nil {
			return errors.New("wrong or already used TOTP code")
		}
		if err := e.MFA(ctx, caller.Principal.ID, totp); err != nil {
			if limitError(err) != nil {
				return err
			}
			return errors.New("wrong or already used TOTP code")
		}
		amr = append(amr, "otp")
		c.MFAAt = e.Issuer.now().Unix()
	}
	team := caller.Key.TeamID
	if team == "" && len(caller.Principal.Teams) > 0 {
		team = caller.Principal.Teams[0]
	}
	c.Subject, c.ClientID, c.Team, c.KeyID, c.Scope, c.AMR = caller.Principal.ID, caller.Key.ID, team, caller.Key.ID, caller.Key.Scope, amr
	if exp := caller.Key.ExpiresAt; exp != nil {
		// No token outlives the credential it was exchanged for (the key's
		// expiry, or the grace of a rotated key's previous secret).
		c.Expiry = jwt.NewNumericDate(*exp)
	}
	return nil
}

func (e *Endpoint) fromWorkload(ctx context.Context, raw string, c *Claims) error {
	if e.Federation == nil {
		return errors.New("no workload identity issuer is trusted")
	}
	ti, err := e.Federation.Verify(ctx, raw)
	if err != nil {
		return err
	}
	p, err := e.Principals.Principal(ctx, ti.ServiceAccount)
	if err != nil || p.Kind != org.KindServiceAccount || p.Disabled {
		return errors.New("the trusted issuer maps to no active service account")
	}
	team := ""
	if len(p.Teams) > 0 {
		team = p.Teams[0]
	}
	c.Subject, c.ClientID, c.Team, c.AMR, c.Source = p.ID, p.ID, team, []string{"wif"}, ti.Name
	return nil
}
