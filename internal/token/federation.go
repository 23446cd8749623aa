package token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// TrustedIssuer is a workload identity provider (a CI system, a Kubernetes
// cluster) whose OIDC tokens Gatehouse exchanges for its own, as a service
// account, so that no long-lived key needs to exist.
type TrustedIssuer struct {
	Name           string            `yaml:"name"`
	Issuer         string            `yaml:"issuer"`          // the iss claim
	JWKSURL        string            `yaml:"jwks_url"`        // default: discovered from the issuer
	Audience       string            `yaml:"audience"`        // the aud the token must carry
	Claims         map[string]string `yaml:"claims"`          // claims that must have exactly these values
	ServiceAccount string            `yaml:"service_account"` // principal id or name the token maps to
}

// Federation verifies workload tokens against the trusted issuers.
type Federation struct {
	issuers []TrustedIssuer
	client  *http.Client
	now     func() time.Time

	mu   sync.Mutex
	jwks map[string]cachedSet
}

type cachedSet struct {
	set     jose.JSONWebKeySet
	fetched time.Time
}

// NewFederation returns a verifier for issuers.
func NewFederation(issuers []TrustedIssuer, client *http.Client) *Federation {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return &Federation{issuers: issuers, client: client, now: time.Now, jwks: map[string]cachedSet{}}
}

// ErrUntrusted: the token is not from a trusted issuer, or breaks its rules.
var ErrUntrusted = errors.New("token: workload token not trusted")

var workloadAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA, jose.PS256, jose.ES384, jose.RS384}

// Verify checks a workload OIDC token and returns the issuer config it matches.
func (f *Federation) Verify(ctx context.Context, raw string) (TrustedIssuer, error) {
	tok, err := jwt.ParseSigned(raw, workloadAlgs)
	if err != nil {
		return TrustedIssuer{}, fmt.Errorf("%w: %v", ErrUntrusted, err)
	}
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return TrustedIssuer{}, fmt.Errorf("%w: %v", ErrUntrusted, err)
	}
	var ti *TrustedIssuer
	for i := range f.issuers {
		if f.issuers[i].Issuer == unverified.Issuer {
			ti = &f.issuers[i]
			break
		}
	}
	if ti == nil {
		return TrustedIssuer{}, fmt.Errorf("%w: issuer %q is not trusted", ErrUntrusted, unverified.Issuer)
	}
	set, err := f.keys(ctx, *ti, false)
	if err != nil {
		return TrustedIssuer{}, err
	}
	var std jwt.Claims
	var all map[string]any
	kid := ""
	if len(tok.Headers) > 0 {
		kid = tok.Headers[0].KeyID
	}
	keys := set.Key(kid)
	if len(keys) == 0 { // a rotated issuer key: refetch once
		if set, err = f.keys(ctx, *ti, true); err != nil {
			return TrustedIssuer{}, err
		}
		keys = set.Key(kid)
	}
	if len(keys) == 0 {
		return TrustedIssuer{}, fmt.Errorf("%w: no key %q at the issuer", ErrUntrusted, kid)
	}
	if err := tok.Claims(keys[0].Key, &std, &all); err != nil {
		return TrustedIssuer{}, fmt.Errorf("%w: signature: %v", ErrUntrusted, err)
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: ti.Issuer, AnyAudience: jwt.Audience{ti.Audience}, Time: f.now()}, 30*time.Second); err != nil {
		return TrustedIssuer{}, fmt.Errorf("%w: %v", ErrUntrusted, err)
	}
	for k, want := range ti.Claims {
		if got, _ := all[k].(string); got != want {
			return TrustedIssuer{}, fmt.Errorf("%w: claim %s does not match the rule", ErrUntrusted, k)
		}
	}
	return *ti, nil
}

func (f *Federation) keys(ctx context.Context, ti TrustedIssuer, refresh bool) (jose.JSONWebKeySet, error) {
	f.mu.Lock()
	c, ok := f.jwks[ti.Issuer]
	f.mu.Unlock()
	if ok && !refresh && f.now().Sub(c.fetched) < 10*time.Minute {
		return c.set, nil
	}
	url := ti.JWKSURL
	if url == "" {
		var disc struct {
			JWKSURI string `json:"jwks_uri"`
		}
		if err := f.getJSON(ctx, strings.TrimRight(ti.Issuer, "/")+"/.well-known/openid-configuration", &disc); err != nil || disc.JWKSURI == "" {
			return jose.JSONWebKeySet{}, fmt.Errorf("%w: discovering %s: %v", ErrUntrusted, ti.Issuer, err)
		}
		url = disc.JWKSURI
	}
	var set jose.JSONWebKeySet
	if err := f.getJSON(ctx, url, &set); err != nil {
		return set, fmt.Errorf("%w: fetching keys of %s: %v", ErrUntrusted, ti.Issuer, err)
	}
	f.mu.Lock()
	f.jwks[ti.Issuer] = cachedSet{set: set, fetched: f.now()}
	f.mu.Unlock()
	return set, nil
}

func (f *Federation) getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v)
}
