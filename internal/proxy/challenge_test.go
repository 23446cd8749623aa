package proxy

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/httpx"
)

// TestTokenChallenge: the challenge's scheme and error follow the failure;
// error_description stays a valid quoted-string whatever the message holds;
// non-401 errors and 401s with a challenge pass unchanged.
func TestTokenChallenge(t *testing.T) {
	get := func(err error) []string {
		var e *httpx.Error
		if !errors.As(err, &e) {
			t.Fatalf("not an httpx.Error: %v", err)
		}
		return e.Header.Values("WWW-Authenticate")
	}
	msg := "htm \"GET\" does not match \\ the request\r\nX-Injected: 1 … é"
	ch := get(tokenChallenge(httpx.Errorf(401, "invalid_dpop_proof", "%s", msg), "DPoP"))
	if len(ch) != 1 || !strings.HasPrefix(ch[0], `DPoP realm="gatehouse", error="invalid_dpop_proof", error_description="htm 'GET' does not match  the requestX-Injected: 1  ", algs="Ed25519 `) {
		t.Errorf("DPoP: %q", ch)
	}
	ch = get(tokenChallenge(httpx.Errorf(401, "token_expired", "expired"), "Bearer"))
	if len(ch) != 1 || ch[0] != `Bearer realm="gatehouse", error="invalid_token", error_description="expired"` {
		t.Errorf("Bearer: %q", ch)
	}
	if ch := get(tokenChallenge(httpx.Errorf(403, "mfa_required", "x"), "Bearer")); len(ch) != 0 {
		t.Errorf("403 got a challenge: %q", ch)
	}
	pre := httpx.Errorf(401, "invalid_token", "x")
	pre.Header = http.Header{"Www-Authenticate": {`DPoP error="invalid_token"`}}
	if ch := get(tokenChallenge(pre, "Bearer")); len(ch) != 1 || ch[0] != `DPoP error="invalid_token"` {
		t.Errorf("an existing challenge was replaced: %q", ch)
	}
	if err := tokenChallenge(nil, "Bearer"); err != nil {
		t.Errorf("nil became %v", err)
	}
}
