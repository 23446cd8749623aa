// Package e2e runs the real gateway (server.Open, real listeners, a real store)
// against the fake upstream (providertest, over TCP), driven by the official
// OpenAI and Anthropic Go SDKs, the admin client and the CLI.
package e2e

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/provider/providertest"
	"github.com/gatehouse-gw/gatehouse/internal/server"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
)

// upstreamKey is the fake provider's credential; it must never leak.
const upstreamKey = "sk-upstream-SECRET-0123456789abcdef"

// logBuffer collects everything the gateway logs, for the secret scan.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// gateway is a running Gatehouse under test.
type gateway struct {
	srv      *server.Server
	logs     *logBuffer
	dataURL  string // http://127.0.0.1:port
	admin    *client.Client
	adminKey string
	stop     func()
}

type gwOptions struct {
	dataDir  string // default: a temp dir
	database string // postgres DSN, or "" for SQLite
	mutate   func(*config.Config)
}

func startGateway(t *testing.T, o gwOptions) *gateway {
	t.Helper()
	cfg := config.Default()
	cfg.Listen, cfg.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir = o.dataDir
	if cfg.DataDir == "" {
		cfg.DataDir = filepath.Join(t.TempDir(), "data")
	}
	cfg.Database = o.database
	cfg.ShutdownTimeout = config.Duration(5 * time.Second)
	if o.database != "" {
		smallPool(&cfg)
	}
	if o.mutate != nil {
		o.mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := server.Open(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Run(ctx); close(done) }()
	g := &gateway{srv: srv, logs: logs, dataURL: "http://" + srv.DataAddr(), adminKey: srv.Bootstrap.AdminKey}
	var once sync.Once
	g.stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(g.stop)
	t.Cleanup(func() {
		if t.Failed() { // what the gateway warned about explains most failures
			var warn []string
			for l := range strings.Lines(logs.String()) {
				if strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, `"level":"ERROR"`) {
					warn = append(warn, strings.TrimSpace(l))
				}
			}
			t.Logf("gateway %s warned:\n%s", g.dataURL, strings.Join(warn[max(0, len(warn)-30):], "\n"))
		}
	})
	if g.adminKey != "" {
		g.admin = client.New("http://"+srv.AdminAddr(), g.adminKey)
	}
	return g
}

// Every replica under test opens a small PostgreSQL pool, so that the
// multi-replica tests fit in about 20 of the server's connections (three
// replicas: 3 × (4 + the change listener) + the test's own view) and pass
// while another process holds the rest (scripts/pg-squeeze.sh, in CI).
const (
	testPoolSize    = 4
	testPoolMinimum = 1
)

func smallPool(c *config.Config) {
	c.Store.MaxOpenConns, c.Store.MinOpenConns, c.Store.MaxIdleConns = testPoolSize, testPoolMinimum, 2
}

// testStoreOptions is the test's own view of a PostgreSQL store.
var testStoreOptions = postgres.Options{MaxOpenConns: 2, MinOpenConns: 1}

// fixture is a gateway with a fake upstream connected and a key ready.
type fixture struct {
	*gateway
	up        *providertest.Server
	key       string // a data-plane key for principal "agent"
	keyID     string
	principal string
}

func newFixture(t *testing.T, o gwOptions) *fixture {
	t.Helper()
	g := startGateway(t, o)
	up := providertest.New(t, upstreamKey)
	ctx := context.Background()
	for _, p := range []client.ProviderInput{
		{Name: "fake-openai", Type: "openai", BaseURL: up.OpenAIBaseURL(), Models: []string{"gpt-*", "text-embedding-*", "o3-mini", "gpt-4o"}, Keys: []string{upstreamKey}},
		{Name: "fake-anthropic", Type: "anthropic", BaseURL: up.URL, Models: []string{"claude-*"}, Keys: []string{upstreamKey}},
	} {
		if _, err := g.admin.CreateProvider(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := g.admin.CreateTeam(ctx, "research"); err != nil {
		t.Fatal(err)
	}
	name, teams := "agent", []string{"research"}
	p, err := g.admin.CreatePrincipal(ctx, client.PrincipalInput{Name: &name, Teams: &teams})
	if err != nil {
		t.Fatal(err)
	}
	k, err := g.admin.CreateKey(ctx, client.KeyInput{Principal: "agent", Name: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{gateway: g, up: up, key: k.Secret, keyID: k.ID, principal: p.ID}
}

// usageOf waits briefly for the usage record of a request id to be written
// (it is written after the response), then returns it.
func (f *fixture) usageOf(t *testing.T, keyID string, n int) []client.UsageRecord {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs, err := f.admin.Usage(context.Background(), client.UsageQuery{Key: keyID, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) >= n || time.Now().After(deadline) {
			return recs
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// backends returns the stores to run a test on: SQLite always, PostgreSQL when
// GATEHOUSE_TEST_POSTGRES_URL is set.
func backends(t *testing.T) map[string]func(t *testing.T) string {
	return map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return "" },
		"postgres": func(t *testing.T) string { return pgtest.DSN(t) },
	}
}

func newUpstream(t *testing.T) *providertest.Server { return providertest.New(t, upstreamKey) }
