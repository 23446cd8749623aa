// Package bench measures what the gateway adds to a call: the same request
// sent straight to the fake upstream and through Gatehouse (keys, scope checks,
// routing, metering and the usage record on), non-streaming and streaming.
// Run with `make bench`; scripts/bench.sh writes the numbers to
// docs/benchmarks.md.
package bench

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/provider/providertest"
	"github.com/gatehouse-gw/gatehouse/internal/server"
)

const upstreamKey = "sk-bench-upstream-key-0000000000"

type target struct {
	url, key string
}

func setup(b *testing.B) (direct, gateway target) {
	b.Helper()
	up := providertest.New(b, upstreamKey)
	cfg := config.Default()
	cfg.Listen, cfg.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir = filepath.Join(b.TempDir(), "data")
	cfg.LogLevel = "error"
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	srv, err := server.Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Run(ctx); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	adm := client.New("http://"+srv.AdminAddr(), srv.Bootstrap.AdminKey)
	if _, err := adm.CreateProvider(ctx, client.ProviderInput{Name: "fake", Type: "openai", BaseURL: up.OpenAIBaseURL(), Models: []string{"*"}, Keys: []string{upstreamKey}}); err != nil {
		b.Fatal(err)
	}
	name, teams := "bench", []string{"default"}
	if _, err := adm.CreatePrincipal(ctx, client.PrincipalInput{Name: &name, Teams: &teams}); err != nil {
		b.Fatal(err)
	}
	k, err := adm.CreateKey(ctx, client.KeyInput{Principal: "bench", Scope: client.Scope{Models: []string{"gpt-*"}}})
	if err != nil {
		b.Fatal(err)
	}
	return target{up.OpenAIBaseURL(), upstreamKey}, target{"http://" + srv.DataAddr() + "/v1", k.Secret}
}

var (
	small  = []byte(`{"model":"gpt-4o-mini","max_tokens":16,"messages":[{"role":"user","content":"Summarise the request path of a governance gateway in one line."}]}`)
	stream = []byte(`{"model":"gpt-4o-mini","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Summarise the request path of a governance gateway in one line."}]}`)
)

func call(b *testing.B, c *http.Client, t target, body []byte) {
	req, _ := http.NewRequest("POST", t.url+"/chat/completions", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+t.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || n == 0 {
		b.Fatalf("status %d, %d bytes", resp.StatusCode, n)
	}
}

func run(b *testing.B, t target, body []byte) {
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}
	call(b, c, t, body) // warm the connection and caches
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		call(b, c, t, body)
	}
}

// BenchmarkChat: one small non-streaming chat completion at a time.
func BenchmarkChat(b *testing.B) {
	direct, gw := setup(b)
	b.Run("direct", func(b *testing.B) { run(b, direct, small) })
	b.Run("gateway", func(b *testing.B) { run(b, gw, small) })
}

// BenchmarkChatStream: a 64-token stream (67 SSE events) at a time.
func BenchmarkChatStream(b *testing.B) {
	direct, gw := setup(b)
	b.Run("direct", func(b *testing.B) { run(b, direct, stream) })
	b.Run("gateway", func(b *testing.B) { run(b, gw, stream) })
}

// BenchmarkChatParallel: small calls from 16 goroutines, saturating both
// cores. With the CPU saturated, ns/op × GOMAXPROCS is the CPU one call costs,
// so (gateway − direct) × GOMAXPROCS is the gateway's CPU per call. It also
// shows contention: SQLite's single writer (usage records, group-committed)
// and the key cache.
func BenchmarkChatParallel(b *testing.B) {
	direct, gw := setup(b)
	par := func(b *testing.B, t target) {
		c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}, Timeout: 30 * time.Second}
		call(b, c, t, small)
		b.ReportAllocs()
		b.SetParallelism(8)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				call(b, c, t, small)
			}
		})
	}
	b.Run("direct", func(b *testing.B) { par(b, direct) })
	b.Run("gateway", func(b *testing.B) { par(b, gw) })
}
