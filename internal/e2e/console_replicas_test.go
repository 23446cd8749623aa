package e2e

import (
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
	status, _, resp := consoleForm(t, "POST", a+"/console/login", url.Values{"user": {"ada"}, "password": {"correct horse battery staple"}, "code": {code(t, secret, time.Now())}, "next": {"/console/keys"}}, nil)
	cookie := consoleCookie(resp)
	if status != http.StatusSeeOther || cookie == nil {
		t.Fatalf("sign-in on replica A: %d, cookie %v", status, cookie)
	}
	status, page, _ := consoleForm(t, "GET", bURL+"/console/keys", nil, cookie)
	if status != 200 {
		t.Fatalf("replica B does not know replica A's session: %d", status)
	}
	csrf := consoleCSRF(page)
	if status, _, _ := consoleForm(t, "POST", bURL+"/console/logout", url.Values{"csrf": {csrf}}, cookie); status != http.StatusSeeOther {
		t.Fatalf("sign-out on replica B: %d", status)
	}
	for name, base := range map[string]string{"A": a, "B": bURL} {
		if status, _, resp := consoleForm(t, "GET", base+"/console/keys", nil, cookie); status != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/console/login") {
			t.Fatalf("replica %s after sign-out on B: %d", name, status)
		}
	}
}
