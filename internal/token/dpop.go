package token

import (
	"crypto/ed25519"
	"encoding/base64"
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

// ProofAlgs are the JWS algorithms a DPoP proof may be signed with, as the
// metadata (dpop_signing_alg_values_supported) and DPoP challenges (algs)
// advertise them. "Ed25519" is RFC 9864's fully-specified name for what
// "EdDSA" names with an Ed25519 key; both are accepted.
var ProofAlgs = []string{AlgEd25519, string(jose.EdDSA), string(jose.ES256), string(jose.ES384), string(jose.ES512),
	string(jose.PS256), string(jose.PS384), string(jose.PS512), string(jose.RS256), string(jose.RS384), string(jose.RS512)}

// AlgEd25519 is RFC 9864's algorithm name for EdDSA with Ed25519. go-jose does
// not know it, so such proofs are verified here (verifyEd25519).
const AlgEd25519 = "Ed25519"

var joseProofAlgs = []jose.SignatureAlgorithm{jose.EdDSA, jose.ES256, jose.ES384, jose.ES512,
	jose.PS256, jose.PS384, jose.PS512, jose.RS256, jose.RS384, jose.RS512}

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
	jwk, typ, payload, err := verifyProof(proof)
	if err != nil {
		return fail("%v", err)
	}
	if typ != "dpop+jwt" {
		return fail("typ must be dpop+jwt")
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

// verifyProof checks the proof's signature against the public key in its own
// header and returns that key, the typ header and the payload.
func verifyProof(proof string) (*jose.JSONWebKey, string, []byte, error) {
	errAlg := errors.New("not a signed JWT with an asymmetric algorithm (" + strings.Join(ProofAlgs, ", ") + ")")
	errKey := errors.New("the header must carry the public key (jwk)")
	errSig := errors.New("signature does not verify with the header's key")
	head, _, _ := strings.Cut(proof, ".")
	hb, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return nil, "", nil, errAlg
	}
	var peek struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(hb, &peek) != nil {
		return nil, "", nil, errAlg
	}
	if peek.Alg == AlgEd25519 {
		return verifyEd25519(proof, hb, errKey, errSig)
	}
	jws, err := jose.ParseSignedCompact(proof, joseProofAlgs)
	if err != nil || len(jws.Signatures) != 1 {
		return nil, "", nil, errAlg
	}
	h := jws.Signatures[0].Header
	typ, _ := h.ExtraHeaders[jose.HeaderType].(string)
	jwk := h.JSONWebKey
	if jwk == nil || !jwk.Valid() || !jwk.IsPublic() {
		return nil, "", nil, errKey
	}
	payload, err := jws.Verify(jwk)
	if err != nil {
		return nil, "", nil, errSig
	}
	return jwk, typ, payload, nil
}

// verifyEd25519 verifies a compact JWS with "alg": "Ed25519" (RFC 9864 §2.2):
// the signature is Ed25519 over the ASCII of header "." payload, as for
// "EdDSA" (RFC 8037 §3.1), and the key must be an OKP key on Ed25519.
// Critical headers are refused: none is understood.
func verifyEd25519(proof string, header []byte, errKey, errSig error) (*jose.JSONWebKey, string, []byte, error) {
	var h struct {
		Typ  string            `json:"typ"`
		JWK  *jose.JSONWebKey  `json:"jwk"`
		Crit []json.RawMessage `json:"crit"`
	}
	if err := json.Unmarshal(header, &h); err != nil {
		return nil, "", nil, errKey
	}
	if h.Crit != nil {
		return nil, "", nil, errors.New("critical header parameters are not supported")
	}
	if h.JWK == nil || !h.JWK.Valid() || !h.JWK.IsPublic() {
		return nil, "", nil, errKey
	}
	pub, ok := h.JWK.Key.(ed25519.PublicKey)
	if !ok {
		return nil, "", nil, errors.New("alg Ed25519 needs an Ed25519 key (kty OKP, crv Ed25519)")
	}
	parts := strings.Split(proof, ".")
	payload, err1 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err2 := base64.RawURLEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil || len(sig) != ed25519.SignatureSize ||
		!ed25519.Verify(pub, []byte(parts[0]+"."+parts[1]), sig) {
		return nil, "", nil, errSig
	}
	return h.JWK, h.Typ, payload, nil
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
