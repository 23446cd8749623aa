package token

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// DPoP checks proofs of possession (RFC 9449): a JWS the client signs with its
// own key for each request, naming the method and URL, fresh (iat), unique
// (jti), and for resource requests bound to the access token (ath).
type DPoP struct {
	Window time.Duration // accepted clock difference either way; default 60s
	now    func() time.Time

	mu   sync.Mutex
	seen map[string]time.Time // jti → expiry of the replay record
}

// NewDPoP returns a checker.
func NewDPoP() *DPoP {
	return &DPoP{Window: 60 * time.Second, now: time.Now, seen: map[string]time.Time{}}
}

// SetClock replaces the clock (tests).
func (d *DPoP) SetClock(now func() time.Time) { d.now = now }

// ErrProof is returned for any bad proof; the message says why.
var ErrProof = errors.New("dpop: invalid proof")

var proofAlgs = []jose.SignatureAlgorithm{jose.EdDSA, jose.ES256, jose.ES384, jose.RS256, jose.PS256}

type proofClaims struct {
	JTI string `json:"jti"`
	HTM string `json:"htm"`
	HTU string `json:"htu"`
	IAT int64  `json:"iat"`
	ATH string `json:"ath"`
}

// Check verifies proof for a request of method to rawURL; accessToken is the
// token it must be bound to ("" at the token endpoint). It returns the
// thumbprint of the proof's key.
func (d *DPoP) Check(proof, method, rawURL, accessToken string) (string, error) {
	fail := func(format string, args ...any) (string, error) {
		return "", fmt.Errorf("%w: %s", ErrProof, fmt.Sprintf(format, args...))
	}
	if proof == "" || strings.Count(proof, ".") != 2 {
		return fail("missing or not a compact JWS")
	}
	jws, err := jose.ParseSignedCompact(proof, proofAlgs)
	if err != nil || len(jws.Signatures) != 1 {
		return fail("not a signed JWT with an asymmetric algorithm")
	}
	h := jws.Signatures[0].Header
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != "dpop+jwt" {
		return fail("typ must be dpop+jwt")
	}
	jwk := h.JSONWebKey
	if jwk == nil || !jwk.Valid() || !jwk.IsPublic() {
		return fail("the header must carry the public key (jwk)")
	}
	payload, err := jws.Verify(jwk)
	if err != nil {
		return fail("signature does not verify with the header's key")
	}
	var c proofClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return fail("claims are not JSON")
	}
	if c.JTI == "" || len(c.JTI) > 256 {
		return fail("jti missing")
	}
	if !strings.EqualFold(c.HTM, method) {
		return fail("htm %q does not match the request method", c.HTM)
	}
	if !sameURL(c.HTU, rawURL) {
		return fail("htu does not match the request URL")
	}
	now := d.now()
	iat := time.Unix(c.IAT, 0)
	if iat.Before(now.Add(-d.Window)) || iat.After(now.Add(d.Window)) {
		return fail("iat outside the accepted window")
	}
	if accessToken != "" && c.ATH != AccessTokenHash(accessToken) {
		return fail("ath does not match the access token")
	}
	if accessToken == "" && c.ATH != "" {
		return fail("ath given where no access token is presented")
	}
	jkt, err := Thumbprint(jwk)
	if err != nil {
		return fail("key thumbprint: %v", err)
	}
	// Replay: a jti is accepted once while its iat is within the window.
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.seen) > 200_000 {
		for k, exp := range d.seen {
			if exp.Before(now) {
				delete(d.seen, k)
			}
		}
	}
	key := jkt + ":" + c.JTI
	if exp, ok := d.seen[key]; ok && exp.After(now) {
		return fail("jti already used (replay)")
	}
	d.seen[key] = iat.Add(2 * d.Window)
	return jkt, nil
}

// sameURL compares htu with the request URL, without query and fragment, with
// scheme and host case-insensitive (RFC 9449 §4.3).
func sameURL(htu, req string) bool {
	a, err1 := url.Parse(htu)
	b, err2 := url.Parse(req)
	if err1 != nil || err2 != nil {
		return false
	}
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Host, b.Host) && a.EscapedPath() == b.EscapedPath()
}
