package e2e

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
)

// TestConsoleSessionAcrossReplicas: two gateways on one PostgreSQL behind a
// load balancer without sticky sessions. A console sign-in on replica A is
// used on replica B (page and a state change with A's CSRF token), and
// signing out on B ends it on A too.
func TestConsoleSessionAcrossReplicas(t *testing.T) {
	dsn := pgtest.DSN(t)
	t.Setenv("GATEHOUSE_KEK", "BAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ=")
	f := newFixture(t, gwOptions{database: dsn})
	b := startGateway(t, gwOptions{database: dsn})
	secret := enrolConsoleUser(t, f, "ada")
	a, bURL := "http://"+f.srv.AdminAddr(), "http://"+b.srv.AdminAddr()
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, target string, form url.Values, c *http.Cookie) (int, string, *http.Response) {
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
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out), resp
	}
	status, _, resp := do("POST", a+"/console/login", url.Values{"user": {"ada"}, "password": {"correct horse battery staple"}, "code": {code(t, secret, time.Now())}, "next": {"/console/keys"}}, nil)
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "gatehouse-console" && c.Value != "" {
			cookie = c
		}
	}
	if status != http.StatusSeeOther || cookie == nil {
		t.Fatalf("sign-in on replica A: %d, cookie %v", status, cookie)
	}
	status, page, _ := do("GET", bURL+"/console/keys", nil, cookie)
	if status != 200 {
		t.Fatalf("replica B does not know replica A's session: %d", status)
	}
	_, rest, _ := strings.Cut(page, `name="csrf" value="`)
	csrf, _, _ := strings.Cut(rest, `"`)
	if status, _, _ := do("POST", bURL+"/console/logout", url.Values{"csrf": {csrf}}, cookie); status != http.StatusSeeOther {
		t.Fatalf("sign-out on replica B: %d", status)
	}
	for name, base := range map[string]string{"A": a, "B": bURL} {
		if status, _, resp := do("GET", base+"/console/keys", nil, cookie); status != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/console/login") {
			t.Fatalf("replica %s after sign-out on B: %d", name, status)
		}
	}
}
