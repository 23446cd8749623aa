package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
)

// TestFullServerReplicaKeepsServing: PostgreSQL refuses the replica more
// connections than it holds (SQLSTATE 53300; played by a role's CONNECTION
// LIMIT, so the shared test server keeps its own connections). A burst of
// concurrent calls is served on the connections held, none fails; the
// refusals are counted in /metrics and the replica stays ready. When it
// loses every connection while the server stays full, /readyz says why.
func TestFullServerReplicaKeepsServing(t *testing.T) {
	dsn := pgtest.DSN(t)
	b := make([]byte, 6)
	rand.Read(b)
	role := "gh_squeeze_" + hex.EncodeToString(b)
	u, _ := url.Parse(dsn)
	// The pool's minimum (1) and the change listener (1): no room for more.
	if err := pgtest.Exec(dsn, `CREATE ROLE `+role+` LOGIN CONNECTION LIMIT 2`,
		`GRANT USAGE, CREATE ON SCHEMA `+u.Query().Get("search_path")+` TO `+role); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pgtest.DropRole(dsn, role); err != nil {
			t.Errorf("drop role %s: %v", role, err)
		}
	})
	u.User = url.User(role)
	t.Setenv("GATEHOUSE_KEK", "CAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAg=")
	f := newFixture(t, gwOptions{database: u.String(), mutate: func(c *config.Config) {
		c.Store.MaxOpenConns, c.Store.MinOpenConns = 4, 1
	}})
	// Runs before the gateway stops, should the test fail while the role is shut out.
	t.Cleanup(func() { pgtest.Exec(dsn, `ALTER ROLE `+role+` CONNECTION LIMIT 2`) })
	res := fire([]string{f.dataURL, f.dataURL}, f.key, 30)
	if s := statuses(res); s[200] != 30 {
		t.Fatalf("calls with the server refusing new connections: %v, want 30 × 200", s)
	}
	metrics := httpGet(t, "http://"+f.srv.AdminAddr()+"/metrics")
	if !strings.Contains(metrics, "gatehouse_store_connections_refused_total") ||
		strings.Contains(metrics, "gatehouse_store_connections_refused_total 0\n") {
		t.Fatalf("refusals not counted:\n%s", grepLines(metrics, "gatehouse_store_"))
	}
	if !strings.Contains(f.logs.String(), "SQLSTATE 53300") {
		t.Fatal("no log line says the server refuses connections")
	}
	if r := httpGet(t, f.dataURL+"/readyz"); !strings.Contains(r, `"ready"`) {
		t.Fatalf("/readyz of a replica serving on what it holds: %s", r)
	}
	t.Logf("%s", grepLines(metrics, "gatehouse_store_"))

	// Every connection lost (the server restarted, say) while the server
	// stays full: not ready, and /readyz names the reason.
	if err := pgtest.Exec(dsn, `ALTER ROLE `+role+` CONNECTION LIMIT 0`,
		`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '`+role+`'`); err != nil {
		t.Fatal(err)
	}
	var ready string
	if !waitFor(10*time.Second, func() bool {
		ready = httpGet(t, f.dataURL+"/readyz")
		return strings.Contains(ready, "53300")
	}) {
		t.Fatalf("/readyz with the server full and no connection held: %s", ready)
	}
	t.Logf("/readyz: %s", strings.TrimSpace(ready))
	if err := pgtest.Exec(dsn, `ALTER ROLE `+role+` CONNECTION LIMIT 2`); err != nil {
		t.Fatal(err)
	}
	if !waitFor(10*time.Second, func() bool { return strings.Contains(httpGet(t, f.dataURL+"/readyz"), `"ready"`) }) {
		t.Fatalf("not ready again after the server had room: %s", httpGet(t, f.dataURL+"/readyz"))
	}
	if s := statuses(fire([]string{f.dataURL}, f.key, 3)); s[200] != 3 {
		t.Fatalf("calls after the server had room: %v", s)
	}
}

func httpGet(t *testing.T, u string) string {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
