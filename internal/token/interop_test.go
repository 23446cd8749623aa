package token

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

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
