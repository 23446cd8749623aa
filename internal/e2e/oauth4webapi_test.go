package e2e

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The wire format of oauth4webapi v3 (panva/oauth4webapi, src/index.ts), as a
// Node or browser client using it sends it, rebuilt here byte for byte so that
// the test runs without Node or network:
//
//   - discoveryRequest(issuer, {algorithm: "oauth2"}): GET of the RFC 8414
//     well-known URL with "accept: application/json"; processDiscoveryResponse
//     wants 200, a JSON object, and new URL(issuer).href equal to the issuer it
//     asked for.
//   - clientCredentialsGrantRequest with ClientSecretBasic: POST with
//     "accept: application/json", "content-type:
//     application/x-www-form-urlencoded;charset=UTF-8", "authorization: Basic
//     base64(formUrlEncode(id) ':' formUrlEncode(secret))" where formUrlEncode
//     is encodeURIComponent plus %-encoding of -_.!~*'() and "+" for space, a
//     URLSearchParams body, and with DPoP a "dpop" header.
//   - dpopProofJwt: header {"alg","typ":"dpop+jwt","jwk"} with alg "Ed25519"
//     for an Ed25519 CryptoKey (keyToJws) and the JWK as publicJwk exports it
//     ({kty, x, crv} / {kty, x, y, crv}); payload {iat, jti, htm, htu, ath?}
//     with htu = origin + pathname; WebCrypto signatures (ECDSA as r||s).
//   - processClientCredentialsResponse: 200, a JSON object, access_token a
//     non-empty string, token_type compared lower-cased ("dpop" when DPoP was
//     used), expires_in a positive number, scope a string when present.
//   - protectedResourceRequest: "authorization: DPoP <token>" and a proof
//     with ath.

// jsFormURLEncode is oauth4webapi's formUrlEncode.
func jsFormURLEncode(s string) string {
	e := url.PathEscape(s) // then bring it to encodeURIComponent's set
	var b strings.Builder
	for i := 0; i < len(e); i++ {
		c := e[i]
		switch {
		case c == '%':
			b.WriteString(e[i : i+3])
			i += 2
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			b.WriteByte(c)
		default: // - _ . ! ~ * ' ( ) and what PathEscape leaves (: @ & = + $ ,)
			b.WriteString("%" + strings.ToUpper(hex2(c)))
		}
	}
	return strings.ReplaceAll(b.String(), "%20", "+")
}

func hex2(c byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[c>>4], digits[c&15]})
}

// webCryptoKey is a DPoP key pair as oauth4webapi holds it.
type webCryptoKey struct {
	alg  string
	jwk  string // JSON of publicJwk(publicKey)
	sign func(input []byte) []byte
}

func newWebCryptoKey(t *testing.T, alg string) webCryptoKey {
	b64 := base64.RawURLEncoding.EncodeToString
	switch alg {
	case "Ed25519":
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		return webCryptoKey{alg: alg, jwk: `{"kty":"OKP","x":"` + b64(pub) + `","crv":"Ed25519"}`,
			sign: func(in []byte) []byte { return ed25519.Sign(priv, in) }}
	case "ES256":
		priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		pt, err := priv.PublicKey.Bytes() // 0x04 || X || Y
		if err != nil {
			t.Fatal(err)
		}
		x, y := pt[1:33], pt[33:65]
		return webCryptoKey{alg: alg, jwk: `{"kty":"EC","x":"` + b64(x) + `","y":"` + b64(y) + `","crv":"P-256"}`,
			sign: func(in []byte) []byte {
				h := sha256.Sum256(in)
				r, s, err := ecdsa.Sign(rand.Reader, priv, h[:])
				if err != nil {
					t.Fatal(err)
				}
				return append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...) // IEEE P1363, as WebCrypto
			}}
	}
	t.Fatalf("no WebCrypto key for %s", alg)
	return webCryptoKey{}
}

// proof is dpopProofJwt: JSON.stringify of header and payload in oauth4webapi's
// key order, undefined members left out.
func (k webCryptoKey) proof(method string, u *url.URL, accessToken string) string {
	b64 := base64.RawURLEncoding.EncodeToString
	jti := make([]byte, 32)
	rand.Read(jti)
	header := `{"alg":"` + k.alg + `","typ":"dpop+jwt","jwk":` + k.jwk + `}`
	payload := `{"iat":` + strconv.FormatInt(time.Now().Unix(), 10) + `,"jti":"` + b64(jti) + `","htm":"` + method + `","htu":"` + u.Scheme + "://" + u.Host + u.Path + `"`
	if accessToken != "" {
		h := sha256.Sum256([]byte(accessToken))
		payload += `,"ath":"` + b64(h[:]) + `"`
	}
	payload += "}"
	input := b64([]byte(header)) + "." + b64([]byte(payload))
	return input + "." + b64(k.sign([]byte(input)))
}

func hrefOf(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	if u.Path == "" {
		u.Path = "/"
	}
	return u.String()
}

// TestOAuth4WebAPIWire drives discovery, the client credentials grant with
// client_secret_basic and DPoP, and a protected resource request exactly as
// oauth4webapi sends them, for its Ed25519 and default ES256 DPoP keys.
func TestOAuth4WebAPIWire(t *testing.T) {
	if got := jsFormURLEncode("gk_a-b.c!d~e*f'g(h)i j:k"); got != "gk%5Fa%2Db%2Ec%21d%7Ee%2Af%27g%28h%29i+j%3Ak" {
		t.Fatalf("formUrlEncode = %s", got)
	}
	f := newFixture(t, gwOptions{})
	issuer := f.dataURL
	ua := "oauth4webapi/v3.8.2"

	// discoveryRequest + processDiscoveryResponse
	req, _ := http.NewRequest("GET", issuer+"/.well-known/oauth-authorization-server", nil)
	req.Header.Set("accept", "application/json")
	req.Header.Set("user-agent", ua)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var as map[string]any
	err = json.NewDecoder(resp.Body).Decode(&as)
	resp.Body.Close()
	if resp.StatusCode != 200 || err != nil {
		t.Fatalf("discovery: %d %v", resp.StatusCode, err)
	}
	if iss, _ := as["issuer"].(string); hrefOf(iss) != hrefOf(issuer) {
		t.Fatalf("processDiscoveryResponse: issuer %q for %q", iss, issuer)
	}
	tokenEndpoint, _ := as["token_endpoint"].(string)
	tu, err := url.Parse(tokenEndpoint)
	if err != nil || tu.Scheme == "" {
		t.Fatalf("token_endpoint %q", tokenEndpoint)
	}

	for _, alg := range []string{"Ed25519", "ES256"} {
		k := newWebCryptoKey(t, alg)
		// clientCredentialsGrantRequest(as, {client_id}, ClientSecretBasic(secret), {scope: "chat"}, {DPoP})
		body := url.Values{"grant_type": {"client_credentials"}, "scope": {"chat"}}.Encode()
		req, _ := http.NewRequest("POST", tu.String(), strings.NewReader(body))
		req.Header.Set("accept", "application/json")
		req.Header.Set("content-type", "application/x-www-form-urlencoded;charset=UTF-8")
		req.Header.Set("authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(jsFormURLEncode(f.keyID)+":"+jsFormURLEncode(f.key))))
		req.Header.Set("user-agent", ua)
		req.Header.Set("dpop", k.proof("POST", tu, ""))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// processClientCredentialsResponse
		var tr map[string]any
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("content-type"), "application/json") || json.Unmarshal(raw, &tr) != nil {
			t.Fatalf("%s: token response %d %s", alg, resp.StatusCode, raw)
		}
		at, _ := tr["access_token"].(string)
		tt, _ := tr["token_type"].(string)
		exp, _ := tr["expires_in"].(float64)
		scope, scopeIsString := tr["scope"].(string)
		if at == "" || strings.ToLower(tt) != "dpop" || exp <= 0 || !scopeIsString || scope != "chat" {
			t.Fatalf("%s: token response %s", alg, raw)
		}
		// protectedResourceRequest(at, "POST", url, headers, body, {DPoP})
		cu, _ := url.Parse(f.dataURL + "/v1/chat/completions")
		req, _ = http.NewRequest("POST", cu.String(), strings.NewReader(`{"model":"gpt-4o","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("content-type", "application/json")
		req.Header.Set("dpop", k.proof("POST", cu, at))
		req.Header.Set("authorization", "DPoP "+at)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: protected resource request: %d %s", alg, resp.StatusCode, raw)
		}
	}
}
