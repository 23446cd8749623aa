package token

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
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
	// Shared, when set, is a replay set shared by every replica (Redis):
	// a proof replayed to another replica is refused too. Its errors fail
	// closed (the proof is refused).
	Shared OnceStore
	// MaxPerKey bounds the proofs of one key (thumbprint) this replica
	// records per replay period (twice Window): past it a proof is refused
	// before its jti is stored, so a holder of a bound token and its key
	// cannot grow the replay set without bound by sending distinct proofs.
	// 0: DefaultMaxPerKey; negative: no bound.
	MaxPerKey int
	now       func() time.Time

	mu       sync.Mutex
	seen     map[string]time.Time // jti → expiry of the replay record
	sweepAt  int                  // len(seen) that triggers the next sweep of dead entries
	perKey   map[string]keyCount  // thumbprint → proofs recorded in its current period
	perKeyAt int                  // len(perKey) that triggers the next sweep of it
}

// keyCount counts one key's proofs in a period that ends at until.
type keyCount struct {
	n     int
	until time.Time
}

// DefaultMaxPerKey is MaxPerKey's default: with the default window, proofs
// of one key at 100 a second on one replica, sustained.
const DefaultMaxPerKey = 12_000

// minSweep is the size of the in-memory sets below which dead entries are
// not swept.
const minSweep = 200_000

// OnceStore records keys for a time: Once reports true the first time a key
// is seen within ttl, false after.
type OnceStore interface {
	Once(ctx context.Context, key string, ttl time.Duration) (bool, error)
}

// sharedTimeout bounds a shared replay check.
const sharedTimeout = 2 * time.Second

// NewDPoP returns a checker.
func NewDPoP() *DPoP {
	return &DPoP{Window: 60 * time.Second, now: time.Now, seen: map[string]time.Time{}, perKey: map[string]keyCount{}}
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
	return d.CheckFor(proof, method, rawURL, accessToken, "")
}

// ErrOtherKey: the proof is signed by another key than the token is bound to.
var ErrOtherKey = errors.New("dpop: the proof is signed by another key than the token is bound to")

// CheckFor is Check for a token bound to the key with thumbprint jkt (""
// for none): a proof by another key is refused with ErrOtherKey before its
// jti is recorded, so that a holder of a stolen token cannot fill the replay
// set with proofs of its own key.
func (d *DPoP) CheckFor(proof, method, rawURL, accessToken, want string) (string, error) {
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
	if want != "" && jkt != want {
		return "", ErrOtherKey
	}
	// Replay: a jti is accepted once while its iat is within the window:
	// by this replica, and with Shared by every replica. The key's quota is
	// taken before anything is stored.
	key := jkt + ":" + c.JTI
	switch d.once(key, jkt, now, iat.Add(2*d.Window)) {
	case onceReplay:
		return fail("jti already used (replay)")
	case onceTooMany:
		return fail("too many proofs of this key; slow down")
	}
	if d.Shared != nil {
		ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
		defer cancel()
		fresh, err := d.Shared.Once(ctx, "dpop:"+key, iat.Add(2*d.Window).Sub(now))
		switch {
		case err != nil:
			return fail("the replay check is unavailable; retry")
		case !fresh:
			return fail("jti already used (replay)")
		}
	}
	return jkt, nil
}

type onceResult int

const (
	onceFresh onceResult = iota
	onceReplay
	onceTooMany
)

// once records key in this replica's replay set until exp, counting it
// against the quota of the proof's key jkt: onceReplay when it is there
// already, onceTooMany (nothing recorded) when jkt's quota is spent.
// Dead entries are swept when a set has doubled since its last sweep, so a
// full set costs one pass per doubling, not one per proof.
func (d *DPoP) once(key, jkt string, now, exp time.Time) onceResult {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.seen) > max(d.sweepAt, minSweep) {
		for k, exp := range d.seen {
			if !exp.After(now) {
				delete(d.seen, k)
			}
		}
		d.sweepAt = 2 * len(d.seen)
	}
	if e, ok := d.seen[key]; ok && e.After(now) {
		return onceReplay
	}
	if d.MaxPerKey >= 0 {
		if len(d.perKey) > max(d.perKeyAt, minSweep) {
			for k, c := range d.perKey {
				if !c.until.After(now) {
					delete(d.perKey, k)
				}
			}
			d.perKeyAt = 2 * len(d.perKey)
		}
		limit := d.MaxPerKey
		if limit == 0 {
			limit = DefaultMaxPerKey
		}
		c := d.perKey[jkt]
		if !c.until.After(now) {
			c = keyCount{until: now.Add(2 * d.Window)}
		}
		if c.n >= limit {
			return onceTooMany
		}
		c.n++
		d.perKey[jkt] = c
	}
	d.seen[key] = exp
	return onceFresh
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

// sameURL compares htu with the request URL without query and fragment,
// after RFC 3986's syntax-based and scheme-based normalisation, as RFC 9449
// §4.3 asks: scheme and host case-insensitive, the default port (80 for
// http, 443 for https) the same as none, an empty path as "/", percent-
// encodings of unreserved characters as the characters and other ones in
// upper case, and dot segments removed. A trailing slash, path case and
// userinfo still make a difference (the path is another resource; userinfo
// has no place in an htu).
func sameURL(htu, req string) bool {
	a, ok1 := normalURL(htu)
	b, ok2 := normalURL(req)
	return ok1 && ok2 && a == b
}

func normalURL(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" || u.User != nil || u.Opaque != "" {
		return "", false
	}
	scheme, host := strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	if h, port, err := net.SplitHostPort(host); err == nil && (port == "" || (scheme == "https" && port == "443") || (scheme == "http" && port == "80")) {
		host = h
		if strings.Contains(h, ":") {
			host = "[" + h + "]"
		}
	}
	p, ok := normalEscapes(u.EscapedPath())
	if !ok {
		return "", false
	}
	p = removeDotSegments(p)
	if p == "" {
		p = "/"
	}
	return scheme + "://" + host + p, true
}

// normalEscapes decodes percent-encoded unreserved characters and upper-cases
// the hex digits of the others (RFC 3986 §6.2.2.1 and §6.2.2.2).
func normalEscapes(p string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] != '%' {
			b.WriteByte(p[i])
			continue
		}
		if i+2 >= len(p) {
			return "", false
		}
		v, err := strconv.ParseUint(p[i+1:i+3], 16, 8)
		if err != nil {
			return "", false
		}
		c := byte(v)
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
		i += 2
	}
	return b.String(), true
}

// removeDotSegments is RFC 3986 §5.2.4 for an absolute path.
func removeDotSegments(p string) string {
	var out []string
	segs := strings.Split(p, "/")
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 1 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	return strings.Join(out, "/")
}
