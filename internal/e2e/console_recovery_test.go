package e2e

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// consoleForm posts (or gets) a console form on a real gateway without
// following redirects, as a same-origin browser would.
func consoleForm(t *testing.T, method, target string, form url.Values, c *http.Cookie) (int, string, *http.Response) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, target, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if c != nil {
		req.AddCookie(c)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out), resp
}

func consoleCookie(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == "gatehouse-console" && c.Value != "" {
			return c
		}
	}
	return nil
}

// TestConsoleRecoveryCodeInTheCodeField: a user who lost the authenticator
// types a recovery code in the console's one code field, at sign-in and at a
// step-up. The console must pass it to the admin API as a recovery code (it
// used to send it as a TOTP code, which can never match, locking the user
// out of the console); each recovery code works once.
func TestConsoleRecoveryCodeInTheCodeField(t *testing.T) {
	f := newFixture(t, gwOptions{})
	_, recovery := enrolConsoleUserRecovery(t, f, "rita")
	base := "http://" + f.srv.AdminAddr()
	login := func(code string) (int, string, *http.Cookie) {
		status, page, resp := consoleForm(t, "POST", base+"/console/login", url.Values{"user": {"rita"}, "password": {"correct horse battery staple"}, "code": {code}, "next": {"/console/keys"}}, nil)
		return status, page, consoleCookie(resp)
	}
	status, page, cookie := login("  " + recovery[0] + " ")
	if status != http.StatusSeeOther || cookie == nil {
		t.Fatalf("sign-in with a recovery code: %d, cookie %v\n%.600s", status, cookie, page)
	}
	if status, _, c := login(recovery[0]); status != http.StatusUnauthorized || c != nil {
		t.Fatalf("a used recovery code signed in again: %d", status)
	}
	status, page, _ = consoleForm(t, "GET", base+"/console/keys", nil, cookie)
	if status != 200 {
		t.Fatalf("keys page: %d", status)
	}
	_, rest, _ := strings.Cut(page, `name="csrf" value="`)
	csrf, _, _ := strings.Cut(rest, `"`)
	// A step-up with a wrong recovery-shaped code is refused and asks again.
	status, page, _ = consoleForm(t, "POST", base+"/console/step-up", url.Values{"csrf": {csrf}, "then": {"/console/logout"}, "code": {"dead-beef"}}, cookie)
	if status != http.StatusUnauthorized || !strings.Contains(page, `id="step-up"`) {
		t.Fatalf("step-up with a wrong code: %d", status)
	}
	// The step-up with a real recovery code passes, and the action it
	// continues with (here: sign out) runs.
	status, _, resp := consoleForm(t, "POST", base+"/console/step-up", url.Values{"csrf": {csrf}, "then": {"/console/logout"}, "code": {recovery[1]}}, cookie)
	if status != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/console/login") {
		t.Fatalf("step-up with a recovery code: %d %s", status, resp.Header.Get("Location"))
	}
	if status, _, _ := consoleForm(t, "GET", base+"/console/keys", nil, cookie); status != http.StatusSeeOther {
		t.Fatalf("the continued sign-out did not end the session: %d", status)
	}
}
