// Command httpbench measures Gatehouse the way users compare gateways: the real
// `gatehouse serve` binary between a load generator and a local mock upstream,
// over real sockets. scripts/bench-http.sh drives it (make bench-http); it has
// three subcommands:
//
//	httpbench mock  -listen ADDR
//	    a minimal OpenAI-compatible upstream: /v1/chat/completions answers a
//	    small completion with usage, as fast as net/http allows.
//	httpbench setup -admin URL -admin-key K -upstream URL -mode nogov|full
//	    configures a running gateway through the admin API and prints a
//	    data-plane key: "nogov" is a provider and a plain key; "full" adds a
//	    scoped key, a rate limit and hard budgets at key, team and
//	    organisation (default Cedar policies, the write-ahead ledger and usage
//	    records are always on).
//	httpbench load  -url URL [-key K] -c N -d DURATION
//	    a closed-loop load generator with keep-alive connections; prints one
//	    JSON object: requests, errors, req/s, p50, p99 (milliseconds).
//
// It is a measuring tool, not part of the gateway: nothing imports it.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-gw/gatehouse/client"
)

const model = "bench-model"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: httpbench mock|setup|load [flags] (see the package doc)")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "mock":
		err = mock(os.Args[2:])
	case "setup":
		err = setup(os.Args[2:])
	case "load":
		err = load(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q: want mock, setup or load", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "httpbench:", err)
		os.Exit(1)
	}
}

// completion is the mock's answer: a small chat completion with usage, as
// OpenAI shapes it.
var completion = []byte(`{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench-model",` +
	`"choices":[{"index":0,"message":{"role":"assistant","content":"The quick brown fox jumps over the lazy dog again."},"finish_reason":"stop"}],` +
	`"usage":{"prompt_tokens":12,"completion_tokens":16,"total_tokens":28}}`)

func mock(args []string) error {
	fs := flag.NewFlagSet("mock", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:18090", "address to serve on")
	fs.Parse(args)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(completion)
	})
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"object":"list","data":[{"id":"bench-model","object":"model","created":1700000000,"owned_by":"bench"}]}`)
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "mock upstream on http://%s/v1\n", ln.Addr())
	return http.Serve(ln, mux)
}

func setup(args []string) error {
	fs := flag.NewFlagSet("setup", flag.ExitOnError)
	admin := fs.String("admin", "http://127.0.0.1:18081", "admin API address")
	adminKey := fs.String("admin-key", os.Getenv("GATEHOUSE_ADMIN_KEY"), "admin key")
	upstream := fs.String("upstream", "http://127.0.0.1:18090/v1", "mock upstream base URL")
	mode := fs.String("mode", "full", "nogov (a plain key) or full (every governance feature)")
	fs.Parse(args)
	if *mode != "nogov" && *mode != "full" {
		return fmt.Errorf("setup: -mode %q: want nogov or full", *mode)
	}
	ctx := context.Background()
	c := client.New(*admin, *adminKey)
	if _, err := c.CreateProvider(ctx, client.ProviderInput{Name: "mock", Type: "openai", BaseURL: *upstream,
		Models: []string{model}, Keys: []string{"sk-bench-upstream-key-0000000000"}}); err != nil {
		return fmt.Errorf("setup: provider: %w", err)
	}
	// $0.15 / $0.60 per million tokens, like a small model.
	if _, err := c.SetPrice(ctx, client.Price{Model: model, Input: 150_000, Output: 600_000, MaxOutput: 4096}); err != nil {
		return fmt.Errorf("setup: price: %w", err)
	}
	team, err := c.CreateTeam(ctx, "bench")
	if err != nil {
		return fmt.Errorf("setup: team: %w", err)
	}
	name, kind := "bench-app", "service_account"
	p, err := c.CreatePrincipal(ctx, client.PrincipalInput{Name: &name, Kind: &kind, Teams: &[]string{team.Name}})
	if err != nil {
		return fmt.Errorf("setup: principal: %w", err)
	}
	in := client.KeyInput{Name: "bench", Principal: p.Name, Team: team.Name}
	if *mode == "full" {
		in.Scope = client.Scope{Models: []string{model}, Endpoints: []string{"chat"}, CIDRs: []string{"127.0.0.0/8"}}
	}
	k, err := c.CreateKey(ctx, in)
	if err != nil {
		return fmt.Errorf("setup: key: %w", err)
	}
	if *mode == "full" {
		// Generous limits: the point is to pay for checking them, not to be refused.
		if _, err := c.SetLimit(ctx, client.Limit{Scope: "key", ScopeID: k.ID, RPM: 1_000_000_000, TPM: 1_000_000_000}); err != nil {
			return fmt.Errorf("setup: limit: %w", err)
		}
		for _, b := range []struct{ scope, id string }{{"key", k.ID}, {"team", team.ID}, {"org", ""}} {
			in := client.BudgetInput{Scope: ptr(b.scope), Period: ptr("day"), LimitMicros: ptr(int64(1_000_000_000_000)), Hard: ptr(true)}
			if b.id != "" {
				in.ScopeID = ptr(b.id)
			}
			if _, err := c.CreateBudget(ctx, in); err != nil {
				return fmt.Errorf("setup: %s budget: %w", b.scope, err)
			}
		}
	}
	fmt.Println(k.Secret)
	return nil
}

func ptr[T any](v T) *T { return &v }

// result is what load prints.
type result struct {
	Connections int     `json:"connections"`
	Seconds     float64 `json:"seconds"`
	Requests    int64   `json:"requests"`
	Errors      int64   `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
	RPS         float64 `json:"rps"`
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`
}

func load(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	target := fs.String("url", "http://127.0.0.1:18080/v1/chat/completions", "endpoint to load")
	key := fs.String("key", "", "bearer credential (none for the mock)")
	conns := fs.Int("c", 50, "connections (each a closed loop)")
	dur := fs.Duration("d", 10*time.Second, "measured duration")
	warm := fs.Duration("warmup", 2*time.Second, "unmeasured warm-up before it")
	fs.Parse(args)
	body := []byte(`{"model":"bench-model","messages":[{"role":"user","content":"Say something short about foxes."}],"max_tokens":16}`)
	tr := &http.Transport{MaxIdleConns: *conns, MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns, IdleConnTimeout: time.Minute}
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	var measuring atomic.Bool
	var nerr atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	lat := make([][]time.Duration, *conns)
	var wg sync.WaitGroup
	for i := range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("POST", *target, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				if *key != "" {
					req.Header.Set("Authorization", "Bearer "+*key)
				}
				t0 := time.Now()
				resp, err := hc.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				d := time.Since(t0)
				if !measuring.Load() {
					continue
				}
				if err != nil {
					nerr.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				lat[i] = append(lat[i], d)
			}
		}()
	}
	time.Sleep(*warm)
	measuring.Store(true)
	start := time.Now()
	time.Sleep(*dur)
	measuring.Store(false)
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()

	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	r := result{Connections: *conns, Seconds: elapsed.Seconds(), Requests: int64(len(all)), Errors: nerr.Load()}
	if s, ok := firstErr.Load().(string); ok {
		r.FirstError = s
	}
	r.RPS = float64(len(all)) / elapsed.Seconds()
	if len(all) > 0 {
		r.P50ms = ms(all[len(all)/2])
		r.P99ms = ms(all[min(len(all)-1, len(all)*99/100)])
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
