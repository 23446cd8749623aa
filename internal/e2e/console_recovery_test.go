package e2e

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

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
	csrf := consoleCSRF(page)
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
	// The log says which factor was used: a recovery code, not TOTP (an
	// auditor looking for lost authenticators reads these records).
	var logins, stepUps []string
	for _, r := range ledgerRecords(t, f.gateway) {
		switch {
		case r.Action == "POST /v1/auth/login" && r.Status == http.StatusOK:
			logins = append(logins, r.Detail)
		case r.Action == "POST /v1/auth/step-up" && r.Status == http.StatusOK && r.Detail != "": // the other is authed's record of the change
			stepUps = append(stepUps, r.Detail)
		}
	}
	if !slices.Contains(logins, "password+recovery_code") || slices.Contains(logins, "password+totp") {
		t.Fatalf("login records: %q; want the recovery-code sign-in as password+recovery_code", logins)
	}
	if !slices.Equal(stepUps, []string{"step-up recovery_code"}) {
		t.Fatalf("step-up records: %q; want one step-up recovery_code", stepUps)
	}
}
