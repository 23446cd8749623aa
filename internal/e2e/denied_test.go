package e2e

import (
	"context"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/denylog"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
)

// deniedRecords reads every refused-credential record from the gateway's log.
func deniedRecords(t *testing.T, f *fixture, dsn string) []ledger.Record {
	t.Helper()
	var out []ledger.Record
	for _, r := range logRecords(t, f.srv.DataDir(), dsn) {
		if r.Kind == denylog.Kind {
			out = append(out, r)
		}
	}
	return out
}

func countOf(recs []ledger.Record, keyID, reason string) (calls int64, records int) {
	for _, r := range recs {
		if r.KeyID == keyID && r.ErrorCode == reason {
			calls += r.Count
			records++
		}
	}
	return calls, records
}

func deniedCall(t *testing.T, url, key string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("User-Agent", "flood/1.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestDeniedCredentialsLeaveATrace is the "denied credentials leave a trace"
// proof of issue #10: a flood of 1,000 calls with a revoked key leaves a
// handful of records whose counts add up to 1,000; expired and rotated-out
// keys are recorded with key id, reason, source address and user agent;
// unknown keys share one bucket however many there are.
func TestDeniedCredentialsLeaveATrace(t *testing.T) {
	t.Parallel() // independent (own gateway, store and upstream); mostly one core of work
	for name, dsn := range backends(t) {
		t.Run(name, func(t *testing.T) {
			dsn := dsn(t)
			f := newFixture(t, gwOptions{database: dsn})
			ctx := context.Background()
			if _, err := f.admin.RevokeKey(ctx, f.keyID, ""); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			var wg sync.WaitGroup
			var mu sync.Mutex
			statuses := map[int]int{}
			for w := range 16 {
				wg.Go(func() {
					for i := w; i < 1000; i += 16 {
						s := deniedCall(t, f.dataURL, f.key)
						mu.Lock()
						statuses[s]++
						mu.Unlock()
					}
				})
			}
			// Unknown keys, each different: aggregated, never one record each.
			for i := range 200 {
				wg.Go(func() { deniedCall(t, f.dataURL, "gk_unknown_"+strings.Repeat("x", i%30)) })
			}
			wg.Wait()
			elapsed := time.Since(start)
			if statuses[401] != 1000 {
				t.Fatalf("flood answers: %v", statuses)
			}

			// Expired and rotated-out keys.
			exp := time.Now().Add(time.Second)
			ek, err := f.admin.CreateKey(ctx, client.KeyInput{Principal: "agent", ExpiresAt: &exp})
			if err != nil {
				t.Fatal(err)
			}
			rk, err := f.admin.CreateKey(ctx, client.KeyInput{Principal: "agent"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.admin.RotateKey(ctx, rk.ID, "1s"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(1100 * time.Millisecond)
			if s := deniedCall(t, f.dataURL, ek.Secret); s != 401 {
				t.Fatalf("expired key: %d", s)
			}
			if s := deniedCall(t, f.dataURL, rk.Secret); s != 401 {
				t.Fatalf("rotated-out secret: %d", s)
			}

			// The flush timer writes the counts of the last second.
			var recs []ledger.Record
			deadline := time.Now().Add(10 * time.Second)
			for {
				recs = deniedRecords(t, f, dsn)
				calls, _ := countOf(recs, f.keyID, "key_revoked")
				unknown, _ := countOf(recs, "", "invalid_api_key")
				if (calls == 1000 && unknown == 200) || time.Now().After(deadline) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			calls, records := countOf(recs, f.keyID, "key_revoked")
			// At most one record per second of flood, plus the flush after it.
			if calls != 1000 || records < 1 || records > int(elapsed/time.Second)+2 {
				t.Fatalf("revoked key: %d records counting %d calls over %v; want at most %d counting 1000", records, calls, elapsed, int(elapsed/time.Second)+2)
			}
			unknown, unknownRecs := countOf(recs, "", "invalid_api_key")
			t.Logf("flood of 1000 revoked-key calls over %v: %d records; 200 unknown keys: %d records", elapsed.Round(time.Millisecond), records, unknownRecs)
			if unknown != 200 || unknownRecs > int(elapsed/time.Second)+2 {
				t.Fatalf("unknown keys: %d records counting %d", unknownRecs, unknown)
			}
			for _, r := range recs {
				if r.KeyID == f.keyID && (r.SourceIP != "127.0.0.1" || r.UserAgent != "flood/1.0" || r.PrincipalID != f.principal ||
					r.Status != 401 || r.Endpoint != "chat" || r.Decision != "deny" || r.RequestID == "") {
					t.Fatalf("revoked-key record: %+v", r)
				}
			}
			for id, reason := range map[string]string{ek.ID: "key_expired", rk.ID: "key_rotated"} {
				if n, _ := countOf(recs, id, reason); n != 1 {
					t.Fatalf("%s: %d calls recorded for key %s in %+v", reason, n, id, recs)
				}
			}
			if f.up.Calls.Load() != 0 {
				t.Fatalf("refused calls reached the upstream: %d", f.up.Calls.Load())
			}
			if name == "sqlite" {
				// A burst just before shutdown: its counts are flushed, not lost.
				_, vk, _ := runCLI(t, f.gateway, "audit", "key")
				for range 50 {
					deniedCall(t, f.dataURL, f.key)
				}
				f.stop()
				if n, _ := countOf(deniedRecords(t, f, dsn), f.keyID, "key_revoked"); n != 1050 {
					t.Fatalf("after a burst and a shutdown, %d of 1050 refused calls counted", n)
				}
				// The log with these records verifies.
				if code, out, errs := runCLI(t, f.gateway, "audit", "verify", "--data-dir", f.srv.DataDir(), "--key", strings.TrimSpace(vk),
					"--state", filepath.Join(t.TempDir(), "state")); code != 0 {
					t.Fatalf("audit verify: %d %s %s", code, out, errs)
				}
			}
		})
	}
}

// TestSourceAddressBehindProxy: with trust_proxy_headers and trusted_proxies,
// scopes, and the trace of a refused key, see the rightmost untrusted
// X-Forwarded-For entry, never a spoofed leftmost one; a suspended key is
// traced with that address.
func TestSourceAddressBehindProxy(t *testing.T) {
	f := newFixture(t, gwOptions{mutate: func(c *config.Config) {
		c.TrustProxyHeaders, c.TrustedProxies = true, []string{"127.0.0.1/32", "10.0.0.0/8"}
		c.KeyCacheTTL = config.Duration(50 * time.Millisecond)
	}})
	ctx := context.Background()
	k, err := f.admin.CreateKey(ctx, client.KeyInput{Principal: "agent", Scope: client.Scope{CIDRs: []string{"203.0.113.0/24"}}})
	if err != nil {
		t.Fatal(err)
	}
	call := func(key string, xff ...string) int {
		req, _ := http.NewRequest("POST", f.dataURL+"/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Authorization", "Bearer "+key)
		for _, v := range xff {
			req.Header.Add("X-Forwarded-For", v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		xff  []string
		want int
	}{
		{[]string{"203.0.113.5"}, 200},
		{[]string{"198.51.100.1, 203.0.113.5, 10.1.2.3"}, 200},   // trusted hops skipped
		{[]string{"203.0.113.5, 198.51.100.1"}, 403},             // spoofed leftmost
		{[]string{"203.0.113.5", "198.51.100.1"}, 403},           // two header lines are one list
		{[]string{"198.51.100.1", "203.0.113.5"}, 200},           // the last line holds the rightmost
		{[]string{"203.0.113.5, not-an-address, 10.1.2.3"}, 403}, // invalid: the peer, 127.0.0.1
		{nil, 403}, // no header: the peer
	} {
		if got := call(k.Secret, c.xff...); got != c.want {
			t.Fatalf("X-Forwarded-For %q: %d, want %d", c.xff, got, c.want)
		}
	}

	// A suspended key is traced with the caller's address.
	db := sqlFor(t, f.srv.DataDir(), "")
	if _, err := db.Exec(`UPDATE keys SET suspended_at = ?, suspend_reason = 'test' WHERE id = ?`, time.Now().UnixMicro(), f.keyID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the key cache
	if got := call(f.key, "6.6.6.6, 203.0.113.7"); got != 403 {
		t.Fatalf("suspended key: %d", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs := deniedRecords(t, f, "")
		if n, _ := countOf(recs, f.keyID, "key_suspended"); n == 1 {
			for _, r := range recs {
				if r.KeyID == f.keyID && r.SourceIP != "203.0.113.7" {
					t.Fatalf("suspended-key record source %q", r.SourceIP)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no trace of the suspended key in %+v", recs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDeniedTokenOfRevokedKey: a token used after its key was revoked is
// traced under that key, not in the anonymous bucket.
func TestDeniedTokenOfRevokedKey(t *testing.T) {
	f := newFixture(t, gwOptions{})
	_, tr := postToken(t, f.dataURL, url.Values{"grant_type": {"client_credentials"}, "client_secret": {f.key}}, nil)
	if s, _ := chatWith(t, f.dataURL, "Bearer "+tr.AccessToken, ""); s != 200 {
		t.Fatalf("token before revocation: %d", s)
	}
	if _, err := f.admin.RevokeKey(context.Background(), f.keyID, ""); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if s, c := chatWith(t, f.dataURL, "Bearer "+tr.AccessToken, ""); s != 401 || c != "key_revoked" {
			t.Fatalf("token of a revoked key: %d %q", s, c)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs := deniedRecords(t, f, "")
		if n, _ := countOf(recs, f.keyID, "key_revoked"); n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("token calls of a revoked key not traced under it: %+v", recs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
