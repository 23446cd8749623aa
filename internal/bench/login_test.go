package bench

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/provider/providertest"
	"github.com/gatehouse-gw/gatehouse/internal/server"
)

// BenchmarkLoginFlood is issue #10's login-cost measurement: each iteration
// sends 200 concurrent logins for users that do not exist (each costs one
// argon2id run at 64 MiB against the dummy hash) while one client keeps
// calling the data plane. The per-address throttle and failure lockout are
// off, as for a flood from many addresses, so only the hashing bound
// (login.password_hash_memory_mib) stands between the flood and the memory.
//
// Each iteration first measures the data plane alone (baseCalls calls, after
// a GC so that the last flood's garbage is not counted against it), then
// floods; the quiet and the flood phases alternate, so a change in the load of
// a shared machine falls on both. Over -benchtime 5x both p99s come from more
// than 1,000 calls (base-calls and flood-calls say how many), where the p99 of
// 200 calls was their second-worst.
//
// Reported: peak RSS of the process (VmHWM, reset before the flood), peak Go
// heap, data-plane p50/p99 alone and during the flood, their p99 ratio (issue
// #10's target: at most 2), the number of calls behind each, and how the
// logins were answered (401 checked, 503 shed by the bound).
//
// The sub-benchmarks hash-memory=… run the default duty cycle
// (login.password_hash_cpu_percent); hash-cpu-percent=… run 256 MiB at another one,
// 100 being the gate without a duty cycle.
func BenchmarkLoginFlood(b *testing.B) {
	def := config.DefaultLogin().PasswordHashCPUPercent
	for _, mib := range []int64{64, 256} {
		b.Run(fmt.Sprintf("hash-memory=%dMiB", mib), func(b *testing.B) { loginFlood(b, mib, def) })
	}
	for _, pct := range []int{100, 25} {
		b.Run(fmt.Sprintf("hash-cpu-percent=%d", pct), func(b *testing.B) { loginFlood(b, 256, pct) })
	}
}

func loginFlood(b *testing.B, hashMemoryMiB int64, hashCPUPercent int) {
	up := providertest.New(b, upstreamKey)
	cfg := config.Default()
	cfg.Listen, cfg.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir = filepath.Join(b.TempDir(), "data")
	cfg.LogLevel = "error"
	cfg.Login.SourceRequestsPerMinute = 0
	cfg.Login.SourceMaxFailures = 1 << 30
	cfg.Login.PasswordHashMemoryMiB = hashMemoryMiB
	cfg.Login.PasswordHashCPUPercent = hashCPUPercent
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
	k, err := adm.CreateKey(ctx, client.KeyInput{Principal: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	gw := target{"http://" + srv.DataAddr() + "/v1", k.Secret}
	dc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}, Timeout: 30 * time.Second}
	lc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 0}, Timeout: 60 * time.Second}
	latencies := func(n int) []time.Duration {
		out := make([]time.Duration, 0, n)
		for range n {
			t0 := time.Now()
			call(b, dc, gw, small)
			out = append(out, time.Since(t0))
		}
		return out
	}
	latencies(20) // warm
	// At least 1,000 quiet calls in all (and 250 per flood at -benchtime 5x).
	baseCalls := max(250, (1000+b.N-1)/b.N)

	var ok401, shed503, other atomic.Int64
	var base, during []time.Duration
	var peakHeap uint64
	b.ResetTimer()
	for i := range b.N {
		runtime.GC()
		base = append(base, latencies(baseCalls)...)
		os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) // reset VmHWM
		stop := make(chan struct{})
		var sampler sync.WaitGroup
		sampler.Go(func() {
			var ms runtime.MemStats
			for {
				runtime.ReadMemStats(&ms)
				peakHeap = max(peakHeap, ms.HeapInuse)
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		})
		var flood sync.WaitGroup
		for j := range 200 {
			flood.Go(func() {
				body := fmt.Sprintf(`{"user":"nobody-%d-%d","password":"a wrong password guess"}`, i, j)
				resp, err := lc.Post("http://"+srv.AdminAddr()+"/v1/auth/login", "application/json", bytes.NewReader([]byte(body)))
				if err != nil {
					other.Add(1)
					return
				}
				resp.Body.Close()
				switch resp.StatusCode {
				case 401:
					ok401.Add(1)
				case 503:
					shed503.Add(1)
				default:
					other.Add(1)
				}
			})
		}
		floodDone := make(chan struct{})
		go func() { flood.Wait(); close(floodDone) }()
	calls:
		for {
			select {
			case <-floodDone:
				break calls
			default:
				during = append(during, latencies(1)...)
			}
		}
		close(stop)
		sampler.Wait()
	}
	b.StopTimer()
	b.ReportMetric(vmHWM()/(1<<20), "peak-rss-MiB")
	b.ReportMetric(float64(peakHeap)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(ms(pct(base, 50)), "base-p50-ms")
	b.ReportMetric(ms(pct(base, 99)), "base-p99-ms")
	b.ReportMetric(ms(pct(during, 50)), "flood-p50-ms")
	b.ReportMetric(ms(pct(during, 99)), "flood-p99-ms")
	b.ReportMetric(float64(pct(during, 99))/float64(pct(base, 99)), "p99-ratio")
	b.ReportMetric(float64(len(base)), "base-calls")
	b.ReportMetric(float64(len(during)), "flood-calls")
	b.ReportMetric(float64(ok401.Load())/float64(b.N), "checked/op")
	b.ReportMetric(float64(shed503.Load())/float64(b.N), "shed-503/op")
	if other.Load() > 0 {
		b.Fatalf("%d logins got neither 401 nor 503", other.Load())
	}
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// vmHWM is the process's peak resident set since the last reset, in bytes.
func vmHWM() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return n * 1024
		}
	}
	return 0
}

// BenchmarkLoginTiming: one wrong login at a time for a real user, a user
// without a password and a name that matches nobody. All three run argon2id
// (the last two against a dummy hash), so their ns/op should agree; issue
// #10 measured 0.6 ms for users without a password against ~70 ms before.
func BenchmarkLoginTiming(b *testing.B) {
	cfg := config.Default()
	cfg.Listen, cfg.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir = filepath.Join(b.TempDir(), "data")
	cfg.LogLevel = "error"
	cfg.Login.SourceRequestsPerMinute = 0
	cfg.Login.SourceMaxFailures = 1 << 30
	cfg.Login.MaxFailures = 1 << 30
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
	kind, teams := "user", []string{"default"}
	for _, n := range []string{"real", "nopassword"} {
		name := n
		if _, err := adm.CreatePrincipal(ctx, client.PrincipalInput{Name: &name, Kind: &kind, Teams: &teams}); err != nil {
			b.Fatal(err)
		}
	}
	if err := adm.SetPassword(ctx, "real", "correct horse battery staple"); err != nil {
		b.Fatal(err)
	}
	c := &http.Client{Timeout: 30 * time.Second}
	for _, user := range []string{"real", "nopassword", "nobody"} {
		b.Run(user, func(b *testing.B) {
			body := []byte(`{"user":"` + user + `","password":"a wrong password guess"}`)
			for b.Loop() {
				resp, err := c.Post("http://"+srv.AdminAddr()+"/v1/auth/login", "application/json", bytes.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 401 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}
