package console

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// Registering a passkey passes the user's fresh proof (a TOTP code, or a
// recovery code) on to the admin API, which needs one to add a factor.
func TestPasskeyRegistrationCarriesProof(t *testing.T) {
	e := newEnv()
	c, csrf := e.signIn(t)
	for body, want := range map[string]string{
		`{"code":" 123456 "}`:     `{"code":"123456"}`,
		`{"code":"rc-abcd-efgh"}`: `{"recovery_code":"rc-abcd-efgh"}`,
		`{}`:                      `{}`,
		`not json`:                `{}`,
	} {
		r := httptest.NewRequest("POST", "http://gatehouse.test/console/passkeys/register/begin", strings.NewReader(body))
		r.Header.Set("Sec-Fetch-Site", "same-origin")
		r.Header.Set("X-CSRF-Token", csrf)
		r.Header.Set("Content-Type", "application/json")
		r.AddCookie(c)
		e.h.ServeHTTP(httptest.NewRecorder(), r)
		e.api.mu.Lock()
		got := e.api.bodies[len(e.api.bodies)-1]
		last := e.api.calls[len(e.api.calls)-1]
		e.api.mu.Unlock()
		if last != "POST /v1/auth/passkeys/register" || got != want {
			t.Errorf("%s: the admin API got %s %s, want %s", body, last, got, want)
		}
	}
}
