package token

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/gatehouse-gw/gatehouse/internal/token/tokentest"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// formEncodeHTML401 is RFC 6749 Appendix B: application/x-www-form-urlencoded
// as HTML 4.01 §17.13.4.1 defines it: space is "+", every other character but
// ASCII letters and digits is %HH (so "_" is %5F). oauth4webapi encodes the same
// way.
func formEncodeHTML401(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			b.WriteByte(c)
		case c == ' ':
			b.WriteByte('+')
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// rfc6749Basic builds the Authorization header of client_secret_basic as RFC
// 6749 §2.3.1 says: each part form-urlencoded, then joined by ":" and Base64.
func rfc6749Basic(encode func(string) string, id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(encode(id)+":"+encode(secret)))
}

// TestClientSecretBasicEncodings: the client secret arrives intact whether the
// client form-urlencodes id and secret before Base64 (RFC 6749 §2.3.1, as
// oauth4webapi does: "_" becomes %5F), encodes them the way Go's
// url.QueryEscape does, or sends them raw (curl -u, Go's SetBasicAuth).
func TestClientSecretBasicEncodings(t *testing.T) {
	key := string(vkey.Generate(vkey.KindVirtual))
	if !strings.Contains(key, "_") {
		t.Fatal("a key without _ proves nothing here")
	}
	raw := func(s string) string { return s }
	for name, authz := range map[string]string{
		"RFC 6749 (HTML 4.01 form encoding)": rfc6749Basic(formEncodeHTML401, "key_Ab-1.x", key),
		"url.QueryEscape":                    rfc6749Basic(url.QueryEscape, "my client:1", key),
		"raw":                                rfc6749Basic(raw, "gatehouse", key),
		"lower-case escapes":                 rfc6749Basic(func(s string) string { return strings.ReplaceAll(formEncodeHTML401(s), "%5F", "%5f") }, "c", key),
	} {
		r := httptest.NewRequest("POST", "/v1/auth/token", strings.NewReader("grant_type=client_credentials"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded;charset=UTF-8")
		r.Header.Set("Authorization", authz)
		req, err := ParseRequest(r)
		if err != nil || req.ClientSecret != key {
			t.Errorf("%s: secret %q, %v; want the key", name, req.ClientSecret, err)
		}
	}
	if enc := formEncodeHTML401(key); !strings.Contains(enc, "%5F") {
		t.Fatalf("the RFC encoding of a key has no %%5F: %s", enc)
	}

	// A password that is not valid form encoding is a client authentication
	// failure, not a key that happens to contain "%".
	r := httptest.NewRequest("POST", "/v1/auth/token", strings.NewReader("grant_type=client_credentials"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Authorization", rfc6749Basic(raw, "c", "gk_%zz"))
	var oe *oauthError
	if _, err := ParseRequest(r); !errors.As(err, &oe) || oe.code != "invalid_client" || oe.status != 401 {
		t.Fatalf("bad escape in Basic password: %v", err)
	}
}

// rfc9864Proof builds a DPoP proof by hand as RFC 9864 §2.2 and RFC 9449 §4.2
// describe it, without go-jose: a JOSE header with "alg": "Ed25519", typ
// dpop+jwt and the public key as an OKP JWK (RFC 8037 §2), and an Ed25519
// signature over the ASCII of BASE64URL(header) "." BASE64URL(payload).
func rfc9864Proof(t testing.TB, priv ed25519.PrivateKey, header map[string]any, claims map[string]any) string {
	t.Helper()
	h := map[string]any{"typ": "dpop+jwt", "alg": "Ed25519", "jwk": map[string]any{
		"kty": "OKP", "crv": "Ed25519", "x": base64.RawURLEncoding.EncodeToString(priv.Public().(ed25519.PublicKey)),
	}}
	for k, v := range header {
		if v == nil {
			delete(h, k)
		} else {
			h[k] = v
		}
	}
	hb, _ := json.Marshal(h)
	pb, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(pb)
	return input + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, []byte(input)))
}

// TestDPoPEd25519RFC9864: a proof with the fully-specified algorithm name
// "Ed25519" is accepted and binds to the RFC 7638 thumbprint of its key; the
// ways such a proof can be wrong are refused.
func TestDPoPEd25519RFC9864(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	d := NewDPoP()
	d.SetClock(clk.now)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	u := "https://gw.example/v1/auth/token"
	claims := func(jti string) map[string]any {
		return map[string]any{"jti": jti, "htm": "POST", "htu": u, "iat": clk.t.Unix()}
	}
	jkt, err := d.Check(rfc9864Proof(t, priv, nil, claims("a")), "POST", u, "")
	if err != nil {
		t.Fatalf("RFC 9864 Ed25519 proof refused: %v", err)
	}
	// RFC 7638 §3.2: the thumbprint input of an OKP key is crv, kty, x in
	// lexicographic order, no white space.
	sum := sha256.Sum256([]byte(`{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`))
	if want := base64.RawURLEncoding.EncodeToString(sum[:]); jkt != want {
		t.Fatalf("jkt = %s, want the RFC 7638 thumbprint %s", jkt, want)
	}
	// The same key under "EdDSA" binds to the same thumbprint.
	if jkt2, err := d.Check(proof(t, priv, claims("b"), "dpop+jwt"), "POST", u, ""); err != nil || jkt2 != jkt {
		t.Fatalf("EdDSA proof of the same key: %s, %v", jkt2, err)
	}

	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecJWK, _ := json.Marshal(jose.JSONWebKey{Key: &ecKey.PublicKey})
	var ecJWKMap map[string]any
	json.Unmarshal(ecJWK, &ecJWKMap)
	privJWK := map[string]any{"kty": "OKP", "crv": "Ed25519", "x": base64.RawURLEncoding.EncodeToString(pub),
		"d": base64.RawURLEncoding.EncodeToString(priv.Seed())}
	good := rfc9864Proof(t, priv, nil, claims("t"))
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"jti":"t","htm":"POST","htu":"`+u+`","iat":1800000000,"x":1}`)) + "." + parts[2]
	for name, p := range map[string]string{
		"payload changed after signing": tampered,
		"signature cut":                 parts[0] + "." + parts[1] + "." + parts[2][:40],
		"an EC key under alg Ed25519":   rfc9864Proof(t, priv, map[string]any{"jwk": ecJWKMap}, claims("c")),
		"a private key in the header":   rfc9864Proof(t, priv, map[string]any{"jwk": privJWK}, claims("d")),
		"no key in the header":          rfc9864Proof(t, priv, map[string]any{"jwk": nil}, claims("e")),
		"wrong typ":                     rfc9864Proof(t, priv, map[string]any{"typ": "JWT"}, claims("f")),
		"critical header":               rfc9864Proof(t, priv, map[string]any{"crit": []string{"b64"}, "b64": false}, claims("g")),
		"Ed448 is not offered":          rfc9864Proof(t, priv, map[string]any{"alg": "Ed448"}, claims("h")),
		"replay of the first proof":     rfc9864Proof(t, priv, nil, claims("a")),
	} {
		_, err := d.Check(p, "POST", u, "")
		if !errors.Is(err, ErrProof) {
			t.Errorf("%s: accepted (%v)", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
}

// TestDPoPEveryAdvertisedAlg: a proof signed with each of ProofAlgs verifies.
func TestDPoPEveryAdvertisedAlg(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	d := NewDPoP()
	d.SetClock(clk.now)
	u := "https://gw.example/v1/auth/token"
	for n, alg := range ProofAlgs {
		k, err := tokentest.NewProofKey(alg)
		if err != nil {
			t.Fatal(err)
		}
		p, err := k.Sign(map[string]any{"jti": fmt.Sprint(n), "htm": "POST", "htu": u, "iat": clk.t.Unix()})
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		if jkt, err := d.Check(p, "POST", u, ""); err != nil || jkt != k.Thumbprint() {
			t.Errorf("%s: %q, %v", alg, jkt, err)
		}
	}
}

// TestClaimsRFC9068: an issued token has the header and registered claims of
// RFC 9068 §2, scope as a space-delimited string derived from the structured
// scope, which travels in gatehouse_scope.
func TestClaimsRFC9068(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	i := issuer(t, clk)
	raw, _, err := i.Issue(Claims{Claims: jwt.Claims{Subject: "prn_a"}, ClientID: "key_a", KeyID: "key_a",
		Scope: vkey.Scope{Endpoints: []string{"chat", "embeddings"}, Models: []string{"gpt-*"}}})
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(raw, ".")
	var h, c map[string]any
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	cb, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if json.Unmarshal(hb, &h) != nil || json.Unmarshal(cb, &c) != nil {
		t.Fatal("not JSON")
	}
	if h["typ"] != "at+jwt" || h["alg"] != "EdDSA" || h["kid"] == nil {
		t.Errorf("header %v", h)
	}
	for _, k := range []string{"iss", "exp", "aud", "sub", "client_id", "iat", "jti"} {
		if c[k] == nil || c[k] == "" {
			t.Errorf("claim %s missing: %v", k, c)
		}
	}
	if c["scope"] != "chat embeddings" || c["client_id"] != "key_a" {
		t.Errorf("scope %v, client_id %v", c["scope"], c["client_id"])
	}
	gs, _ := c["gatehouse_scope"].(map[string]any)
	if fmt.Sprint(gs["models"]) != "[gpt-*]" {
		t.Errorf("gatehouse_scope %v", c["gatehouse_scope"])
	}
	got, err := i.Verify(raw)
	if err != nil || got.OAuthScope != "chat embeddings" || len(got.Scope.Endpoints) != 2 || got.ClientID != "key_a" {
		t.Fatalf("Verify: %+v, %v", got, err)
	}
	// A scope with no endpoint restriction is every endpoint.
	raw2, _, _ := i.Issue(Claims{ClientID: "key_b"})
	if got, _ := i.Verify(raw2); got.OAuthScope != strings.Join(vkey.Endpoints, " ") {
		t.Errorf("unrestricted scope string %q", got.OAuthScope)
	}
}

// TestVerifyLegacyAndType: tokens of the previous format (the structured
// scope under "scope") still verify with their scope; a JWT signed by the
// token key but not typed at+jwt is not an access token (RFC 9068 §4).
func TestVerifyLegacyAndType(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	seed := NewKey()
	i, _ := New(seed, "gatehouse", "gatehouse")
	i.SetClock(clk.now)
	kid := i.JWKS().Keys[0].KeyID
	sign := func(typ string, claims map[string]any) string {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: ed25519.NewKeyFromSeed(seed), KeyID: kid}},
			(&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := jwt.Signed(s).Claims(claims).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	base := func() map[string]any {
		return map[string]any{"iss": "gatehouse", "aud": "gatehouse", "sub": "prn_a", "jti": "tok_1", "gh_key": "key_a",
			"iat": clk.t.Unix(), "exp": clk.t.Add(time.Minute).Unix()}
	}
	legacy := base()
	legacy["scope"] = map[string]any{"endpoints": []string{"chat"}, "models": []string{"gpt-4o"}}
	c, err := i.Verify(sign("at+jwt", legacy))
	if err != nil || fmt.Sprint(c.Scope.Endpoints, c.Scope.Models) != "[chat] [gpt-4o]" {
		t.Fatalf("legacy token: %+v, %v", c.Scope, err)
	}
	if _, err := i.Verify(sign("application/at+jwt", base())); err != nil {
		t.Fatalf("typ application/at+jwt: %v", err)
	}
	for _, typ := range []string{"JWT", "dpop+jwt", ""} {
		if _, err := i.Verify(sign(typ, base())); !errors.Is(err, ErrInvalid) {
			t.Errorf("typ %q accepted as an access token: %v", typ, err)
		}
	}
	odd := base()
	odd["scope"] = 7
	if _, err := i.Verify(sign("at+jwt", odd)); !errors.Is(err, ErrInvalid) {
		t.Errorf("a numeric scope: %v", err)
	}
}

// TestMetadata: the RFC 8414 document for a URL issuer (fixed, cacheable, also
// at the path-inserted location of an issuer with a path) and for a plain
// name (the addressed URL, not cached).
func TestMetadata(t *testing.T) {
	get := func(iss, target string) (int, http.Header, map[string]any) {
		i, _ := New(NewKey(), iss, iss)
		e := &Endpoint{Issuer: i, URL: func(r *http.Request) string { return "http://" + r.Host + r.URL.Path }}
		w := httptest.NewRecorder()
		e.ServeMetadata(w, httptest.NewRequest("GET", target, nil))
		var m map[string]any
		json.Unmarshal(w.Body.Bytes(), &m)
		return w.Code, w.Header(), m
	}
	code, h, m := get("https://gw.example.com", "http://10.0.0.1:8080"+MetadataPath)
	if code != 200 || m["issuer"] != "https://gw.example.com" || m["token_endpoint"] != "https://gw.example.com/v1/auth/token" ||
		m["jwks_uri"] != "https://gw.example.com/.well-known/jwks.json" || !strings.Contains(h.Get("Cache-Control"), "max-age") {
		t.Errorf("URL issuer: %d %v %v", code, h, m)
	}
	if fmt.Sprint(m["dpop_signing_alg_values_supported"]) != fmt.Sprint(ProofAlgs) || fmt.Sprint(m["token_endpoint_auth_methods_supported"]) != "[client_secret_basic client_secret_post]" {
		t.Errorf("advertised algs and methods: %v", m)
	}
	code, h, m = get("gatehouse", "http://gw.internal:8080"+MetadataPath)
	if code != 200 || m["issuer"] != "http://gw.internal:8080" || m["token_endpoint"] != "http://gw.internal:8080/v1/auth/token" || h.Get("Cache-Control") != "no-store" {
		t.Errorf("name issuer: %d %v %v", code, h, m)
	}
	code, _, m = get("https://example.com/gw/", "http://x"+MetadataPath+"/gw")
	if code != 200 || m["issuer"] != "https://example.com/gw/" || m["token_endpoint"] != "https://example.com/gw/v1/auth/token" {
		t.Errorf("issuer with a path, RFC 8414 location: %d %v", code, m)
	}
	for _, c := range []struct{ iss, target string }{
		{"https://example.com/gw", "http://x" + MetadataPath + "/other"},
		{"https://example.com", "http://x" + MetadataPath + "/gw"},
		{"gatehouse", "http://x" + MetadataPath + "/gatehouse"},
	} {
		if code, _, _ := get(c.iss, c.target); code != 404 {
			t.Errorf("issuer %s, %s: %d", c.iss, c.target, code)
		}
	}
}

// TestClientSecretBasicPercentEncodedColon: RFC 6749 §2.3.1 encodes before
// joining, so a ':' inside the id or the secret arrives as %3A and the split
// happens on the one raw ':'. The id's ':' does not cut the secret; a
// secret's %3A decodes to ':' and so is no key (never truncated to the part
// before it); a raw ':' inside the password stays in the secret; a
// double-encoded secret is decoded once, not twice.
func TestClientSecretBasicPercentEncodedColon(t *testing.T) {
	key := string(vkey.Generate(vkey.KindVirtual))
	parse := func(authz string) (Request, error) {
		r := httptest.NewRequest("POST", "/v1/auth/token", strings.NewReader("grant_type=client_credentials"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Authorization", authz)
		return ParseRequest(r)
	}
	if req, err := parse(rfc6749Basic(formEncodeHTML401, "app:prod:1", key)); err != nil || req.ClientSecret != key {
		t.Fatalf("id with %%3A: %q %v", req.ClientSecret, err)
	}
	for name, c := range map[string]struct{ authz, want string }{
		"secret with %3A":          {rfc6749Basic(formEncodeHTML401, "c", key+":x"), key + ":x"},
		"secret starting with %3A": {rfc6749Basic(formEncodeHTML401, "c", ":"+key), ":" + key},
		"raw ':' in the password":  {"Basic " + base64.StdEncoding.EncodeToString([]byte("c:"+key+":x")), key + ":x"},
		"double-encoded secret":    {rfc6749Basic(func(s string) string { return url.QueryEscape(formEncodeHTML401(s)) }, "c", key), formEncodeHTML401(key)},
	} {
		req, err := parse(c.authz)
		if err != nil || req.ClientSecret != c.want || req.ClientSecret == key {
			t.Errorf("%s: secret %q, %v; want %q", name, req.ClientSecret, err, c.want)
		}
	}
}

// TestTokenOfAnotherDeploymentSharingTheKeyIsRefused: two deployments that
// share a signing key by mistake (staging copied from production) still do
// not accept each other's tokens: issuer and audience are checked, and a
// token whose aud names this deployment but whose iss is the other's is
// refused too.
func TestTokenOfAnotherDeploymentSharingTheKeyIsRefused(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	seed := NewKey()
	prod, _ := New(seed, "https://gw.example", "https://gw.example")
	staging, _ := New(seed, "https://staging.gw.example", "https://staging.gw.example")
	for _, i := range []*Issuer{prod, staging} {
		i.SetClock(clk.now)
	}
	raw, _, err := staging.Issue(Claims{KeyID: "key_a", Claims: jwt.Claims{Subject: "prn_a"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := staging.Verify(raw); err != nil {
		t.Fatalf("staging's own token: %v", err)
	}
	if _, err := prod.Verify(raw); !errors.Is(err, ErrInvalid) {
		t.Fatalf("staging's token at production: %v, want ErrInvalid", err)
	}
	kid := prod.JWKS().Keys[0].KeyID
	s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: ed25519.NewKeyFromSeed(seed), KeyID: kid}},
		(&jose.SignerOptions{}).WithType("at+jwt"))
	mixed, _ := jwt.Signed(s).Claims(map[string]any{"iss": "https://staging.gw.example", "aud": []string{"https://gw.example"},
		"sub": "prn_a", "jti": "tok_x", "iat": clk.t.Unix(), "exp": clk.t.Add(time.Minute).Unix()}).Serialize()
	if _, err := prod.Verify(mixed); !errors.Is(err, ErrInvalid) {
		t.Fatalf("aud production, iss staging: %v, want ErrInvalid", err)
	}
}
