package config

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	c := Default()
	err := c.Parse([]byte("listen: 0.0.0.0:9000\nupstream_timeout: 30s\ntrust_proxy_headers: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "0.0.0.0:9000" || c.UpstreamTimeout.D() != 30*time.Second || !c.TrustProxyHeaders || c.AdminListen != "127.0.0.1:8081" {
		t.Fatalf("parsed %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.KEKFile == "" {
		t.Fatal("kek_file default not derived")
	}
}

func TestParseRejects(t *testing.T) {
	for _, in := range []string{"lisen: x\n", "upstream_timeout: soon\n", "listen: [\n"} {
		c := Default()
		if err := c.Parse([]byte(in)); err == nil {
			t.Errorf("Parse(%q) accepted", in)
		}
	}
	c := Default()
	c.Parse(nil)
	c.LogLevel, c.Database, c.AdminListen = "loud", "mysql://x", c.Listen
	c.WebAuthn.RPID = "gatehouse.example.com"        // without origins
	c.OIDCLogin.Issuer = "https://login.example.com" // without client_id
	err := c.Validate()
	for _, want := range []string{"log_level", "database", "both", "webauthn: origins", "oidc_login: client_id"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error %v does not mention %q", err, want)
		}
	}
}

func TestEnv(t *testing.T) {
	c := Default()
	env := map[string]string{"GATEHOUSE_LISTEN": "127.0.0.1:1", "GATEHOUSE_UPSTREAM_TIMEOUT": "5s"}
	if err := c.LoadEnv(func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:1" || c.UpstreamTimeout.D() != 5*time.Second {
		t.Fatalf("env not applied: %+v", c)
	}
	if err := c.LoadEnv(func(k string) string { return map[string]string{"GATEHOUSE_MAX_BODY_BYTES": "lots"}[k] }); err == nil {
		t.Fatal("bad number accepted")
	}
}

func FuzzParse(f *testing.F) {
	f.Add("listen: 127.0.0.1:1\nupstream_timeout: 1s\n")
	f.Add("data_dir: [a, b]\n")
	f.Fuzz(func(t *testing.T, in string) {
		c := Default()
		if err := c.Parse([]byte(in)); err != nil {
			return
		}
		_ = c.Validate() // must not panic on anything that parsed
	})
}

func TestDevWithDatabaseRefused(t *testing.T) {
	c := Default()
	c.Dev, c.Database = true, "postgres://u@127.0.0.1/db"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--dev") {
		t.Fatalf("--dev with a database: want a refusal, got %v", err)
	}
}

func TestStoreSection(t *testing.T) {
	c := Default()
	if err := c.Parse([]byte("store:\n  max_open_conns: 6\n  min_open_conns: 3\n  max_idle_conns: 3\n  statement_timeout: 2s\n  timeout: 3s\n  statement_cache: -1\n")); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Store.MaxOpenConns != 6 || c.Store.MinOpenConns != 3 || c.Store.StatementTimeout.D() != 2*time.Second || c.Store.Timeout.D() != 3*time.Second || c.Store.StatementCache != -1 {
		t.Fatalf("store = %+v", c.Store)
	}
	bad := Default()
	bad.Store.MaxIdleConns, bad.Store.MaxOpenConns = 5, 2
	if err := bad.Validate(); err == nil {
		t.Fatal("max_idle_conns > max_open_conns accepted")
	}
	for _, st := range [][3]int{{4, 5, 0}, {6, 4, 3}, {0, -1, 0}} { // max, min, idle
		bad := Default()
		bad.Store.MaxOpenConns, bad.Store.MinOpenConns, bad.Store.MaxIdleConns = st[0], st[1], st[2]
		if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "min_open_conns") {
			t.Fatalf("store max %d min %d idle %d: %v, want refused", st[0], st[1], st[2], err)
		}
	}
}

// TestBreakerFlushInterval: 100ms by default and passed to the breaker; a
// value outside 10ms–10s is refused.
func TestBreakerFlushInterval(t *testing.T) {
	c := Default()
	if err := c.Parse([]byte("breaker:\n  flush_interval: 250ms\n")); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := c.Breaker.Config().FlushInterval; got != 250*time.Millisecond {
		t.Fatalf("flush interval %v, want 250ms", got)
	}
	if got := Default().Breaker.Config().FlushInterval; got != 100*time.Millisecond {
		t.Fatalf("default flush interval %v, want 100ms", got)
	}
	for _, bad := range []string{"1ms", "-1s", "1m"} {
		c := Default()
		if err := c.Parse([]byte("breaker:\n  flush_interval: " + bad + "\n")); err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "flush_interval") {
			t.Errorf("flush_interval %s: Validate said %v", bad, err)
		}
	}
}
