// Package token issues and verifies Gatehouse's short-lived access tokens: JWTs
// signed with Ed25519 (go-jose), 15 minutes by default, in the profile of RFC
// 9068 (typ at+jwt; iss, aud, sub, client_id, iat, exp, jti; scope as the
// space-delimited endpoints the token may call), carrying besides the team, the
// source key's id, the structured scope (gatehouse_scope), how the caller
// authenticated (amr) and, when bound, the thumbprint of the caller's DPoP key
// (cnf.jkt, RFC 9449). Public keys are published as a JWKS; the token endpoint
// describes itself in RFC 8414 metadata.
//
// Verification is local: typ, signature, issuer, audience, lifetime and the
// revocation list in memory; verified tokens are cached until they expire.
package token

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejson "github.com/go-jose/go-jose/v4/json"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// Claims is what a token says. Issue fills the registered claims of RFC 9068
// §2.2 but sub and client_id, which the caller sets.
type Claims struct {
	jwt.Claims
	ClientID string `json:"client_id,omitempty"` // RFC 9068: the key's id, or the service account's for workload tokens
	// OAuthScope is RFC 9068's scope: the endpoints of Scope, space-delimited
	// (every endpoint when Scope names none). Issue derives it from Scope;
	// Gatehouse enforces Scope, never this string.
	OAuthScope string     `json:"scope,omitempty"`
	Team       string     `json:"team,omitempty"`
	KeyID      string     `json:"gh_key,omitempty"` // the key the token was exchanged for (budgets and limits follow it)
	Scope      vkey.Scope `json:"gatehouse_scope"`
	AMR        []string   `json:"amr,omitempty"` // "key", "wif", "otp", …
	Cnf        *Cnf       `json:"cnf,omitempty"`
	Source     string     `json:"gh_src,omitempty"` // workload issuer name, for federated tokens
	MFAAt      int64      `json:"gh_mfa,omitempty"` // when the owner's second factor was checked (unix seconds)
}

// UnmarshalJSON reads claims; tokens of earlier versions carried the
// structured scope under "scope", and still verify until they expire. It
// decodes with go-jose's JSON package, which matches names case-sensitively,
// as go-jose does for every other claim.
func (c *Claims) UnmarshalJSON(b []byte) error {
	type plain Claims // without this method
	var aux struct {
		plain
		RawScope josejson.RawMessage `json:"scope"` // shadows plain's "scope"
	}
	if err := josejson.Unmarshal(b, &aux); err != nil {
		return err
	}
	*c = Claims(aux.plain)
	raw := strings.TrimSpace(string(aux.RawScope))
	switch {
	case raw == "" || raw == "null":
	case raw[0] == '"':
		return josejson.Unmarshal(aux.RawScope, &c.OAuthScope)
	case raw[0] == '{': // only earlier versions wrote an object here
		return josejson.Unmarshal(aux.RawScope, &c.Scope)
	default:
		return errors.New("token: scope is neither a string nor a legacy scope object")
	}
	return nil
}

// ScopeString is the RFC 9068 scope of s: its endpoints, space-delimited, or
// every endpoint when s names none.
func ScopeString(s vkey.Scope) string {
	if len(s.Endpoints) == 0 {
		return strings.Join(vkey.Endpoints, " ")
	}
	return strings.Join(s.Endpoints, " ")
}

// Cnf binds a token to a key (RFC 7800, RFC 9449).
type Cnf struct {
	JKT string `json:"jkt"` // base64url SHA-256 JWK thumbprint of the DPoP key
}

// MaxTTL is the longest tokens.ttl may be, so the longest any token lives
// (even one issued before tokens.ttl was lowered): revocations by jti are kept
// that long.
const MaxTTL = 24 * time.Hour

// Errors from Verify.
var (
	ErrInvalid = errors.New("token: invalid")
	ErrExpired = errors.New("token: expired")
	ErrRevoked = errors.New("token: revoked")
)

// Issuer signs and verifies tokens.
type Issuer struct {
	issuer   string
	audience string
	TTL      time.Duration
	now      func() time.Time

	mu            sync.RWMutex
	signer        jose.Signer        // the current key
	keys          jose.JSONWebKeySet // public keys: current first, then older ones still verifying
	cache         map[string]Claims  // raw token → claims, until exp
	gen           uint64             // counts SetKeys calls: a verification in flight across one does not cache
	revokedJTI    map[string]time.Time
	revokedBefore map[string]time.Time // principal → tokens issued before are revoked
}

// NewKey returns a fresh Ed25519 signing key (its seed).
func NewKey() []byte {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	return priv.Seed()
}

// New returns an Issuer signing with the first of seeds (Ed25519 seeds) and
// verifying with all of them, under issuer name iss for audience aud.
func New(seed []byte, iss, aud string, older ...[]byte) (*Issuer, error) {
	i := &Issuer{issuer: iss, audience: aud, TTL: 15 * time.Minute, now: time.Now,
		cache: map[string]Claims{}, revokedJTI: map[string]time.Time{}, revokedBefore: map[string]time.Time{}}
	if err := i.SetKeys(append([][]byte{seed}, older...)); err != nil {
		return nil, err
	}
	return i, nil
}

// SetKeys replaces the signing keys (rotation): the first signs, all verify.
func (i *Issuer) SetKeys(seeds [][]byte) error {
	var set jose.JSONWebKeySet
	var signer jose.Signer
	for n, seed := range seeds {
		if len(seed) != ed25519.SeedSize {
			return errors.New("token: signing key must be an Ed25519 seed")
		}
		priv := ed25519.NewKeyFromSeed(seed)
		pub := jose.JSONWebKey{Key: priv.Public(), Algorithm: string(jose.EdDSA), Use: "sig"}
		tp, err := pub.Thumbprint(crypto256)
		if err != nil {
			return err
		}
		pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)[:16]
		set.Keys = append(set.Keys, pub)
		if n == 0 {
			s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: priv, KeyID: pub.KeyID}},
				(&jose.SignerOptions{}).WithType("at+jwt"))
			if err != nil {
				return err
			}
			signer = s
		}
	}
	i.mu.Lock()
	i.signer, i.keys = signer, set
	clear(i.cache)
	i.gen++
	i.mu.Unlock()
	return nil
}

// Name is the tokens' issuer (iss), also their audience (aud).
func (i *Issuer) Name() string { return i.issuer }

// SetClock replaces the clock (tests).
func (i *Issuer) SetClock(now func() time.Time) { i.now = now }

// JWKS returns the public keys: the current one and those still verifying.
func (i *Issuer) JWKS() jose.JSONWebKeySet {
	i.mu.RLock()
	defer i.mu.RUnlock()
	return i.keys
}

// Issue signs c, filling issuer, audience, times and a random id. It returns
// the token and its lifetime: TTL, or less when c.Expiry is set earlier (the
// credential it is exchanged for stops working then).
func (i *Issuer) Issue(c Claims) (string, time.Duration, error) {
	now := i.now()
	exp, ttl := now.Add(i.TTL), i.TTL
	if c.Expiry != nil && c.Expiry.Time().Before(exp) {
		exp, ttl = c.Expiry.Time(), max(c.Expiry.Time().Sub(now), 0)
	}
	c.Issuer, c.Audience = i.issuer, jwt.Audience{i.audience}
	c.IssuedAt, c.NotBefore, c.Expiry = jwt.NewNumericDate(now), jwt.NewNumericDate(now.Add(-5*time.Second)), jwt.NewNumericDate(exp)
	c.ID = vkey.NewID("tok")
	c.OAuthScope = ScopeString(c.Scope)
	i.mu.RLock()
	signer := i.signer
	i.mu.RUnlock()
	raw, err := jwt.Signed(signer).Claims(c).Serialize()
	return raw, ttl, err
}

// Verify checks raw and returns its claims.
func (i *Issuer) Verify(raw string) (Claims, error) {
	i.mu.RLock()
	c, ok := i.cache[raw]
	keys, gen := i.keys, i.gen
	i.mu.RUnlock()
	now := i.now()
	if !ok {
		tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.EdDSA})
		if err != nil {
			return Claims{}, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		// RFC 9068 §4: only a JWT typed as an access token is one.
		if typ, _ := tok.Headers[0].ExtraHeaders[jose.HeaderType].(string); typ != "at+jwt" && typ != "application/at+jwt" {
			return Claims{}, fmt.Errorf("%w: typ %q is not at+jwt", ErrInvalid, typ)
		}
		var key any
		if len(tok.Headers) > 0 {
			if ks := keys.Key(tok.Headers[0].KeyID); len(ks) > 0 {
				key = ks[0].Key
			}
		}
		if key == nil {
			return Claims{}, fmt.Errorf("%w: signed by an unknown key", ErrInvalid)
		}
		if err := tok.Claims(key, &c); err != nil {
			return Claims{}, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		if err := c.Claims.ValidateWithLeeway(jwt.Expected{Issuer: i.issuer, AnyAudience: jwt.Audience{i.audience}, Time: now}, 0); err != nil {
			if errors.Is(err, jwt.ErrExpired) {
				return Claims{}, ErrExpired
			}
			return Claims{}, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		i.mu.Lock()
		if i.gen == gen { // else the keys changed during the check: it may have used a retired one
			if len(i.cache) > 100_000 {
				clear(i.cache)
			}
			i.cache[raw] = c
		}
		i.mu.Unlock()
	}
	if c.Expiry == nil || !now.Before(c.Expiry.Time()) {
		return Claims{}, ErrExpired
	}
	i.mu.RLock()
	_, jtiRevoked := i.revokedJTI[c.ID]
	before, principalRevoked := i.revokedBefore[c.Subject]
	i.mu.RUnlock()
	if jtiRevoked || (principalRevoked && c.IssuedAt != nil && !c.IssuedAt.Time().After(before)) {
		return Claims{}, ErrRevoked
	}
	return c, nil
}

// Revocations replaces the revocation lists (from the store, via the snapshot).
func (i *Issuer) Revocations(jtis map[string]time.Time, before map[string]time.Time) {
	i.mu.Lock()
	i.revokedJTI, i.revokedBefore = jtis, before
	i.mu.Unlock()
}

// Thumbprint returns the RFC 7638 SHA-256 thumbprint of a JWK, base64url.
func Thumbprint(k *jose.JSONWebKey) (string, error) {
	tp, err := k.Thumbprint(crypto256)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// AccessTokenHash is DPoP's ath: base64url(SHA-256(token)).
func AccessTokenHash(raw string) string {
	h := sha256.Sum256([]byte(raw))
	return base64.RawURLEncoding.EncodeToString(h[:])
}
