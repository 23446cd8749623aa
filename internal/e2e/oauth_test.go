package e2e

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/token/tokentest"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// OAuth interop, tried as a third-party client would: discovery (RFC 8414),
// client_secret_basic as RFC 6749 §2.3.1 encodes it, DPoP proofs with every
// advertised algorithm (RFC 9864's "Ed25519" included), access tokens checked
// by an RFC 9068 validator that shares no code with Gatehouse's verifier, and
// RFC 6750 / RFC 9449 challenges on 401.

// formURLEncode is RFC 6749 Appendix B (HTML 4.01 form encoding): letters and
// digits stay, space is "+", every other byte is %HH; oauth4webapi's
// formUrlEncode gives the same for keys ("_" → %5F).
func formURLEncode(s string) string {
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

func basicRFC6749(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(formURLEncode(id)+":"+formURLEncode(secret)))
}

// oauthPost sends a token request as a client library does and returns the
// status, headers and decoded body.
func oauthPost(t *testing.T, endpoint string, form url.Values, hdr http.Header) (int, http.Header, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", endpoint, strings.NewReader(form.Encode()))
	req.Header = hdr.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded;charset=UTF-8")
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, resp.Header, m
}

type asMetadata struct {
	Issuer          string   `json:"issuer"`
	TokenEndpoint   string   `json:"token_endpoint"`
	JWKSURI         string   `json:"jwks_uri"`
	GrantTypes      []string `json:"grant_types_supported"`
	AuthMethods     []string `json:"token_endpoint_auth_methods_supported"`
	DPoPAlgs        []string `json:"dpop_signing_alg_values_supported"`
	Scopes          []string `json:"scopes_supported"`
	ResponseTypes   []string `json:"response_types_supported"`
	ServiceDocument string   `json:"service_documentation"`
}

// discover fetches the metadata as RFC 8414 §3 says: the well-known suffix
// after the issuer's host; the issuer it names must be the one asked for.
func discover(t *testing.T, base string) asMetadata {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/.well-known/oauth-authorization-server", nil)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("metadata: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var m asMetadata
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// onGateway maps an endpoint URL of the metadata onto the gateway under test
// (the metadata may name a public URL in front of it).
func onGateway(t *testing.T, dataURL, endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme == "" || u.Host == "" {
		t.Fatalf("endpoint %q is not an absolute URL", endpoint)
	}
	return dataURL + u.Path
}

// rfc9068Validate validates an access token as RFC 9068 §4 tells a resource
// server to, with golang-jwt (not go-jose, which Gatehouse uses) and keys
// decoded here from the JWKS: typ at+jwt, an asymmetric alg, signature by a
// key of the issuer, iss equal to the issuer, aud containing the expected
// audience, exp in the future, and the claims §2.2 requires present. It
// returns the claims.
func rfc9068Validate(t *testing.T, raw, jwksURI, issuer, audience string) (gojwt.MapClaims, error) {
	t.Helper()
	resp, err := http.Get(jwksURI)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct {
		Keys []struct{ Kty, Crv, X, Kid, Alg, Use string } `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	keyfunc := func(tok *gojwt.Token) (any, error) {
		typ, _ := tok.Header["typ"].(string)
		if !strings.EqualFold(typ, "at+jwt") && !strings.EqualFold(typ, "application/at+jwt") {
			return nil, fmt.Errorf("typ %q is not at+jwt", typ)
		}
		kid, _ := tok.Header["kid"].(string)
		for _, k := range set.Keys {
			if k.Kid == kid && k.Kty == "OKP" && k.Crv == "Ed25519" {
				x, err := base64.RawURLEncoding.DecodeString(k.X)
				if err != nil || len(x) != ed25519.PublicKeySize {
					return nil, fmt.Errorf("bad key %s", kid)
				}
				return ed25519.PublicKey(x), nil
			}
		}
		return nil, fmt.Errorf("no key %q in the JWKS", kid)
	}
	claims := gojwt.MapClaims{}
	_, err = gojwt.NewParser(gojwt.WithValidMethods([]string{"EdDSA"}), gojwt.WithIssuer(issuer), gojwt.WithAudience(audience),
		gojwt.WithExpirationRequired(), gojwt.WithIssuedAt(), gojwt.WithStrictDecoding()).ParseWithClaims(raw, claims, keyfunc)
	if err != nil {
		return nil, err
	}
	for _, c := range []string{"iss", "exp", "aud", "sub", "client_id", "iat", "jti"} {
		if v, ok := claims[c]; !ok || v == "" {
			return nil, fmt.Errorf("required claim %s missing", c)
		}
	}
	if s, ok := claims["scope"]; ok {
		if str, isStr := s.(string); !isStr || strings.TrimSpace(str) != str || strings.Contains(str, "  ") {
			return nil, fmt.Errorf("scope %v is not a space-delimited string", s)
		}
	}
	return claims, nil
}

// TestOAuthDiscoveryAndInterop: the metadata names what the token endpoint
// really does; every advertised client authentication method and DPoP
// algorithm works end to end, and the issued tokens pass an independent RFC
// 9068 validation against the advertised issuer and JWKS.
func TestOAuthDiscoveryAndInterop(t *testing.T) {
	f := newFixture(t, gwOptions{})
	m := discover(t, f.dataURL)
	if m.Issuer != f.dataURL || m.TokenEndpoint != f.dataURL+"/v1/auth/token" || m.JWKSURI != f.dataURL+"/.well-known/jwks.json" {
		t.Fatalf("metadata endpoints: %+v", m)
	}
	for _, want := range []string{"client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"} {
		if !slices.Contains(m.GrantTypes, want) {
			t.Errorf("grant type %s not advertised: %v", want, m.GrantTypes)
		}
	}
	if !slices.Contains(m.DPoPAlgs, "Ed25519") || !slices.Contains(m.DPoPAlgs, "EdDSA") || !slices.Contains(m.DPoPAlgs, "ES512") {
		t.Errorf("DPoP algs: %v", m.DPoPAlgs)
	}
	tokenURL := onGateway(t, f.dataURL, m.TokenEndpoint)

	// Every advertised client authentication method.
	if len(m.AuthMethods) == 0 {
		t.Fatal("no client authentication method advertised")
	}
	for _, method := range m.AuthMethods {
		form, hdr := url.Values{"grant_type": {"client_credentials"}}, http.Header{}
		switch method {
		case "client_secret_basic":
			hdr.Set("Authorization", basicRFC6749(f.keyID, f.key))
		case "client_secret_post":
			form.Set("client_id", f.keyID)
			form.Set("client_secret", f.key)
		default:
			t.Errorf("advertised auth method %q has no test here: add one", method)
			continue
		}
		status, h, body := oauthPost(t, tokenURL, form, hdr)
		if status != 200 || body["token_type"] != "Bearer" {
			t.Errorf("%s: %d %v", method, status, body)
			continue
		}
		if h.Get("Cache-Control") != "no-store" || h.Get("Pragma") != "no-cache" {
			t.Errorf("%s: token response caching headers %q %q", method, h.Get("Cache-Control"), h.Get("Pragma"))
		}
		at := body["access_token"].(string)
		// With the default tokens.issuer ("gatehouse", not a URL) the metadata
		// names the addressed URL as issuer while tokens keep iss and aud
		// "gatehouse" (docs/identity.md); TestOAuthIssuerURL has them agree.
		claims, err := rfc9068Validate(t, at, onGateway(t, f.dataURL, m.JWKSURI), "gatehouse", "gatehouse")
		if err != nil {
			t.Fatalf("%s: RFC 9068 validation: %v", method, err)
		}
		if claims["client_id"] != f.keyID || claims["sub"] != f.principal || claims["scope"] != strings.Join(vkey.Endpoints, " ") || body["scope"] != claims["scope"] {
			t.Errorf("%s: claims %v, response scope %v", method, claims, body["scope"])
		}
		if s, code := chatWith(t, f.dataURL, "Bearer "+at, ""); s != 200 {
			t.Errorf("%s: a call with the token: %d %s", method, s, code)
		}
	}

	// Every advertised DPoP algorithm: the token is bound, and calls with it
	// need proofs by the same key.
	chatURL := f.dataURL + "/v1/chat/completions"
	for _, alg := range m.DPoPAlgs {
		k, err := tokentest.NewProofKey(alg)
		if err != nil {
			t.Errorf("advertised DPoP alg %s: %v", alg, err)
			continue
		}
		p, _ := k.Proof("POST", m.TokenEndpoint, "", time.Now())
		status, _, body := oauthPost(t, tokenURL, url.Values{"grant_type": {"client_credentials"}},
			http.Header{"Authorization": {basicRFC6749("agent", f.key)}, "Dpop": {p}})
		if status != 200 || body["token_type"] != "DPoP" {
			t.Errorf("DPoP %s at the token endpoint: %d %v", alg, status, body)
			continue
		}
		at := body["access_token"].(string)
		var c map[string]any
		seg := strings.Split(at, ".")[1]
		b, _ := base64.RawURLEncoding.DecodeString(seg)
		json.Unmarshal(b, &c)
		if cnf, _ := c["cnf"].(map[string]any); cnf["jkt"] != k.Thumbprint() {
			t.Errorf("DPoP %s: cnf %v, want jkt %s", alg, c["cnf"], k.Thumbprint())
		}
		call, _ := k.Proof("POST", chatURL, at, time.Now())
		if s, code := chatWith(t, f.dataURL, "DPoP "+at, call); s != 200 {
			t.Errorf("DPoP %s: call: %d %s", alg, s, code)
		}
	}

	// The validator is not a rubber stamp: a token of another issuer, for
	// another audience, or with a changed payload fails it.
	_, _, body := oauthPost(t, tokenURL, url.Values{"grant_type": {"client_credentials"}, "client_secret": {f.key}}, nil)
	at := body["access_token"].(string)
	jwks := onGateway(t, f.dataURL, m.JWKSURI)
	if _, err := rfc9068Validate(t, at, jwks, "https://other.example", "gatehouse"); err == nil {
		t.Error("validator accepted a wrong issuer")
	}
	if _, err := rfc9068Validate(t, at, jwks, "gatehouse", "https://other.example"); err == nil {
		t.Error("validator accepted a wrong audience")
	}
	parts := strings.Split(at, ".")
	forged, _ := json.Marshal(map[string]any{"iss": "gatehouse", "aud": "gatehouse", "sub": "x", "client_id": "x", "jti": "x",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()})
	if _, err := rfc9068Validate(t, parts[0]+"."+base64.RawURLEncoding.EncodeToString(forged)+"."+parts[2], jwks, "gatehouse", "gatehouse"); err == nil {
		t.Error("validator accepted a changed payload")
	}
}

// TestOAuthIssuerURL: with tokens.issuer set to the gateway's public URL, the
// metadata, the tokens' iss and aud, and the endpoints agree, as RFC 8414
// §3.3 and RFC 9068 §4 need.
func TestOAuthIssuerURL(t *testing.T) {
	const public = "https://gateway.example.test"
	f := newFixture(t, gwOptions{mutate: func(c *config.Config) { c.Tokens.Issuer = public }})
	m := discover(t, f.dataURL)
	if m.Issuer != public || m.TokenEndpoint != public+"/v1/auth/token" || m.JWKSURI != public+"/.well-known/jwks.json" {
		t.Fatalf("metadata for issuer %s: %+v", public, m)
	}
	status, _, body := oauthPost(t, onGateway(t, f.dataURL, m.TokenEndpoint), url.Values{"grant_type": {"client_credentials"}},
		http.Header{"Authorization": {basicRFC6749(f.keyID, f.key)}})
	if status != 200 {
		t.Fatalf("token: %d %v", status, body)
	}
	at := body["access_token"].(string)
	if _, err := rfc9068Validate(t, at, onGateway(t, f.dataURL, m.JWKSURI), m.Issuer, m.Issuer); err != nil {
		t.Fatalf("RFC 9068 validation against the advertised issuer: %v", err)
	}
	if s, code := chatWith(t, f.dataURL, "Bearer "+at, ""); s != 200 {
		t.Fatalf("call: %d %s", s, code)
	}
}

// TestOAuthClientSecretBasicEncodings: the key as client_secret_basic password
// form-urlencoded (RFC 6749 §2.3.1: "_" → %5F), raw, and from Go's
// SetBasicAuth; a wrong key encoded the same way is still refused.
func TestOAuthClientSecretBasicEncodings(t *testing.T) {
	f := newFixture(t, gwOptions{})
	tokenURL := f.dataURL + "/v1/auth/token"
	if !strings.Contains(formURLEncode(f.key), "%5F") {
		t.Fatalf("the encoded key has no %%5F: nothing is tested")
	}
	raw := "Basic " + base64.StdEncoding.EncodeToString([]byte("agent:"+f.key))
	for name, authz := range map[string]string{
		"RFC 6749 encoding":               basicRFC6749("my client", f.key),
		"raw (curl -u, Go SetBasicAuth)":  raw,
		"url.QueryEscape of both":         "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape("a:b")+":"+url.QueryEscape(f.key))),
		"RFC 6749 encoding, key id as id": basicRFC6749(f.keyID, f.key),
	} {
		status, _, body := oauthPost(t, tokenURL, url.Values{"grant_type": {"client_credentials"}}, http.Header{"Authorization": {authz}})
		if status != 200 || body["access_token"] == nil {
			t.Errorf("%s: %d %v", name, status, body)
		}
	}
	for name, authz := range map[string]string{
		"another key, encoded": basicRFC6749(f.keyID, string(vkey.Generate(vkey.KindVirtual))),
		"bad escape":           "Basic " + base64.StdEncoding.EncodeToString([]byte("a:"+strings.Replace(f.key, "_", "%5", 1))),
		"key with %2B for a +": basicRFC6749("a", f.key+"+"),
	} {
		status, h, body := oauthPost(t, tokenURL, url.Values{"grant_type": {"client_credentials"}}, http.Header{"Authorization": {authz}})
		if status != 401 || body["error"] != "invalid_client" || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("%s: %d %v %q", name, status, body, h.Get("WWW-Authenticate"))
		}
	}
}

// TestOAuthScopeParameter: a client narrows its token to some endpoints (RFC
// 6749 §3.3); the token then works only there; asking for more than the key
// allows, or for an unknown scope, is invalid_scope.
func TestOAuthScopeParameter(t *testing.T) {
	f := newFixture(t, gwOptions{})
	tokenURL := f.dataURL + "/v1/auth/token"
	status, _, body := oauthPost(t, tokenURL, url.Values{"grant_type": {"client_credentials"}, "client_secret": {f.key}, "scope": {"embeddings chat"}}, nil)
	if status != 200 || body["scope"] != "embeddings chat" {
		t.Fatalf("narrowed token: %d %v", status, body)
	}
	at := body["access_token"].(string)
	if s, code := chatWith(t, f.dataURL, "Bearer "+at, ""); s != 200 {
		t.Fatalf("chat within the scope: %d %s", s, code)
	}
	req, _ := http.NewRequest("POST", f.dataURL+"/v1/responses", strings.NewReader(`{"model":"gpt-4o","input":"hi"}`))
	req.Header.Set("Authorization", "Bearer "+at)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("responses outside the token's scope: %d", resp.StatusCode)
	}

	// A key limited to chat cannot get a token for more.
	k, err := f.admin.CreateKey(context.Background(), client.KeyInput{Principal: "agent", Name: "chat only", Scope: client.Scope{Endpoints: []string{"chat"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, scope := range []string{"chat embeddings", "admin", " "} {
		status, _, body := oauthPost(t, tokenURL, url.Values{"grant_type": {"client_credentials"}, "client_secret": {k.Secret}, "scope": {scope}}, nil)
		if status != 400 || body["error"] != "invalid_scope" {
			t.Errorf("scope %q for a chat-only key: %d %v", scope, status, body)
		}
	}
	status, _, body = oauthPost(t, tokenURL, url.Values{"grant_type": {"client_credentials"}, "client_secret": {k.Secret}}, nil)
	if status != 200 || body["scope"] != "chat" {
		t.Errorf("chat-only key without scope: %d %v", status, body)
	}
}

// TestTokenChallenges: data-plane 401s carry the challenge RFC 6750 §3 and
// RFC 9449 §7.1 describe, in the scheme the caller should use.
func TestTokenChallenges(t *testing.T) {
	f := newFixture(t, gwOptions{})
	chatURL := f.dataURL + "/v1/chat/completions"
	call := func(authz, dpop string) (int, []string) {
		req, _ := http.NewRequest("POST", chatURL, strings.NewReader(`{"model":"gpt-4o","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}`))
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		if dpop != "" {
			req.Header.Set("DPoP", dpop)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Values("WWW-Authenticate")
	}
	algs := `algs="Ed25519 EdDSA ES256 ES384 ES512 PS256 PS384 PS512 RS256 RS384 RS512"`

	// No credential in a scheme we take: both challenges, no error code
	// (RFC 6750 §3.1).
	for _, authz := range []string{"", "Basic Zm9vOmJhcg=="} {
		status, ch := call(authz, "")
		if status != 401 || len(ch) != 2 || ch[0] != `Bearer realm="gatehouse"` || ch[1] != `DPoP realm="gatehouse", `+algs {
			t.Errorf("no credential (%q): %d %q", authz, status, ch)
		}
	}
	for name, authz := range map[string]string{
		"a garbage JWT":   "Bearer a.b.c",
		"an unknown key":  "Bearer " + string(vkey.Generate(vkey.KindVirtual)),
		"a mistyped key":  "Bearer gk_nope",
		"a DPoP-less JWT": "DPoP " + string(vkey.Generate(vkey.KindVirtual)),
	} {
		status, ch := call(authz, "")
		want := "Bearer "
		if strings.HasPrefix(authz, "DPoP") {
			want = "DPoP "
		}
		if status != 401 || len(ch) != 1 || !strings.HasPrefix(ch[0], want+`realm="gatehouse", error="invalid_token", error_description="`) {
			t.Errorf("%s: %d %q", name, status, ch)
		}
	}

	// A bound token: sent as Bearer, the challenge is DPoP's; with a bad
	// proof, the error is invalid_dpop_proof.
	k, _ := tokentest.NewProofKey("Ed25519")
	p, _ := k.Proof("POST", f.dataURL+"/v1/auth/token", "", time.Now())
	_, _, body := oauthPost(t, f.dataURL+"/v1/auth/token", url.Values{"grant_type": {"client_credentials"}, "client_secret": {f.key}}, http.Header{"Dpop": {p}})
	at, _ := body["access_token"].(string)
	status, ch := call("Bearer "+at, "")
	if status != 401 || len(ch) != 1 || !strings.HasPrefix(ch[0], `DPoP realm="gatehouse", error="invalid_token"`) || !strings.HasSuffix(ch[0], algs) {
		t.Errorf("bound token as Bearer: %d %q", status, ch)
	}
	wrongHTU, _ := k.Proof("POST", f.dataURL+"/v1/embeddings", at, time.Now())
	status, ch = call("DPoP "+at, wrongHTU)
	if status != 401 || len(ch) != 1 || !strings.HasPrefix(ch[0], `DPoP realm="gatehouse", error="invalid_dpop_proof", error_description="`) || !strings.HasSuffix(ch[0], algs) {
		t.Errorf("bad proof: %d %q", status, ch)
	}
	// error_description is a quoted-string without quotes or backslashes inside.
	desc := strings.TrimSuffix(strings.SplitN(ch[0], `error_description="`, 2)[1], `", `+algs)
	if strings.ContainsAny(desc, "\"\\") || desc == "" {
		t.Errorf("error_description %q", desc)
	}
	good, _ := k.Proof("POST", chatURL, at, time.Now())
	if status, ch := call("DPoP "+at, good); status != 200 || len(ch) != 0 {
		t.Errorf("a good call: %d %q", status, ch)
	}
}
