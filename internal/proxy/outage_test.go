package proxy

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
	"github.com/gatehouse-gw/gatehouse/internal/pricing"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
	"github.com/gatehouse-gw/gatehouse/internal/provider/providertest"
)

// TestRefusedFloodDuringOutageStaysBounded is the attack: during a long store
// outage an authenticated caller floods calls that are refused (here by
// policy) and have nothing at stake, each of which ends with an end record.
// The end records the sequencer keeps in memory for the store's return must
// not grow with the flood (memory exhaustion, then a retry storm): past
// ledger.DefaultMaxDeferredRefusals they are counted into summary records.
// When the store returns, every refused call is in the log (as its own end
// record or counted in a summary), the log verifies, and no credential is
// in any record.
func TestRefusedFloodDuringOutageStaysBounded(t *testing.T) {
	ctx := context.Background()
	l, st, db := runningLog(t)
	fake := providertest.New(t, "sk-x")
	h := policyHandler(t, fakeUpstream(fake, "sk-x"), map[string]string{"deny.cedar": "forbid(principal, action, resource);"}, l)

	const secret = "gk_floodsecret"
	refuse := func() {
		w := chat(h, secret)
		if w.Code != http.StatusForbidden {
			t.Fatalf("status %d, want 403: %s", w.Code, w.Body)
		}
	}

	st.Down.Store(true)
	const flood = 20_000
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	bound := 0
	for i := range flood {
		refuse()
		if i == flood/2 {
			// Half-way: the kept records already stopped growing.
			bound = l.Deferred()
		}
	}
	// Let the sequencer take everything queued: past the bound, every
	// refusal is counted.
	deadline := time.Now().Add(10 * time.Second)
	for l.Aggregated() < flood-ledger.DefaultMaxDeferredRefusals && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	t.Logf("%d refused calls during the outage: %d end records kept in memory (%d at half the flood); heap %d → %d KiB; %d commits tried",
		flood, l.Deferred(), bound, before.HeapAlloc>>10, after.HeapAlloc>>10, st.Tries.Load())
	// Kept: at most the bound of individual refusals plus one summary per
	// key × error code × minute (here one key, one code; the flood may span
	// a minute's turn).
	if max := ledger.DefaultMaxDeferredRefusals + 2; l.Deferred() > max {
		t.Fatalf("%d end records kept in memory after %d refused calls; want at most %d (the bound, plus summaries)", l.Deferred(), flood, max)
	}
	if l.Aggregated() < flood-ledger.DefaultMaxDeferredRefusals {
		t.Fatalf("%d refused calls counted into summaries, want at least %d", l.Aggregated(), flood-ledger.DefaultMaxDeferredRefusals)
	}

	// The store returns: everything is written, once, and the log verifies.
	st.Down.Store(false)
	deadline = time.Now().Add(20 * time.Second)
	for l.Deferred() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d end records still deferred 20 s after the store returned", l.Deferred())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := l.SignCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	rep, _, err := ledger.Verify(ctx, ledger.StoreSource{Store: db}, l.Key(), nil, nil)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	recs := logEntries(t, db)
	var calls, ends, summaries int64
	for _, b := range recs {
		if strings.Contains(string(b), secret) || strings.Contains(string(b), "floodsecret") {
			t.Fatalf("a record holds the credential: %s", b)
		}
		r, err := ledger.ParseRecord(b)
		if err != nil {
			t.Fatal(err)
		}
		switch r.Kind {
		case ledger.KindCallEnd:
			calls++
			ends++
		case ledger.KindCallSummary:
			if r.KeyID != "key_1" || r.ErrorCode != "policy_denied" || r.Count < 1 {
				t.Fatalf("summary record %s", b)
			}
			calls += r.Count
			summaries++
		default:
			t.Fatalf("unexpected record %s", b)
		}
	}
	if calls != flood {
		t.Fatalf("the log accounts for %d refused calls (%d end records, %d summaries), want %d", calls, ends, summaries, flood)
	}
	if rep.OpenCalls != 0 {
		t.Fatalf("%d open calls after verification", rep.OpenCalls)
	}
	t.Logf("written: %d end records and %d summaries for %d calls", ends, summaries, flood)
}

// captureSeq is a sequencer whose starts fail (the store is unreachable,
// though a start may still commit later) and which keeps every end entry.
type captureSeq struct {
	mu   sync.Mutex
	ends []ledger.Entry
}

func (s *captureSeq) CarriesCalls() bool { return true }

func (s *captureSeq) Append(ctx context.Context, e ledger.Entry) (int64, error) {
	if e.Opens {
		if e.Done != nil {
			e.Done(ledger.ErrUnavailable)
		}
		return 0, ledger.ErrUnavailable
	}
	s.mu.Lock()
	s.ends = append(s.ends, e)
	s.mu.Unlock()
	return 0, nil
}

func (s *captureSeq) Enqueue(ctx context.Context, e ledger.Entry) error {
	_, err := s.Append(ctx, e)
	return err
}

// TestOnlyCallsThatNeverStartedHaveNothingAtStake: the end of a call refused
// before its start record was sent may be counted into a summary during an
// outage; the end of a call whose start was sent must not be, even if the
// start failed (it may have committed after its caller gave up, and only its
// end closes it).
func TestOnlyCallsThatNeverStartedHaveNothingAtStake(t *testing.T) {
	up := fakeUpstream(providertest.New(t, "sk-x"), "sk-x")
	for _, tc := range []struct {
		name   string
		policy string
		status int
		want   bool
	}{
		{"refused by policy", "forbid(principal, action, resource);", http.StatusForbidden, true},
		{"start failed", "permit(principal, action, resource);", http.StatusServiceUnavailable, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seq := &captureSeq{}
			w := chat(policyHandler(t, up, map[string]string{"p.cedar": tc.policy}, seq), "gk_test")
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if len(seq.ends) != 1 {
				t.Fatalf("%d end entries, want 1", len(seq.ends))
			}
			if got := seq.ends[0].NothingAtStake; got != tc.want {
				t.Fatalf("NothingAtStake = %v, want %v", got, tc.want)
			}
		})
	}
}

// startsSeq takes every entry (starts commit) and keeps the ends.
type startsSeq struct{ captureSeq }

func (s *startsSeq) Append(ctx context.Context, e ledger.Entry) (int64, error) {
	if e.Opens {
		if e.Done != nil {
			e.Done(nil)
		}
		return 1, nil
	}
	return s.captureSeq.Append(ctx, e)
}

func (s *startsSeq) Enqueue(ctx context.Context, e ledger.Entry) error {
	_, err := s.Append(ctx, e)
	return err
}

// TestUpstreamReachedIsNeverSummarized is the attack "get a call that reached
// the upstream counted into a summary": a call whose start committed and
// whose upstream answered with a refusal (401, nothing charged, no hold: the
// end record looks like any refusal) must still not be marked as having
// nothing at stake, so its end is kept one by one during an outage.
func TestUpstreamReachedIsNeverSummarized(t *testing.T) {
	fake := providertest.New(t, "sk-x")
	seq := &startsSeq{}
	w := chat(policyHandler(t, fakeUpstream(fake, "sk-wrong"), map[string]string{"p.cedar": "permit(principal, action, resource);"}, seq), "gk_test")
	if w.Code < 400 || len(fake.Requests()) == 0 {
		t.Fatalf("status %d after %d upstream requests; want a refusal from the upstream", w.Code, len(fake.Requests()))
	}
	if len(seq.ends) != 1 {
		t.Fatalf("%d end entries, want 1", len(seq.ends))
	}
	if e := seq.ends[0]; e.NothingAtStake {
		t.Fatalf("the end of a call that reached the upstream is marked as having nothing at stake (status %d)", w.Code)
	}
}

// fakeUpstream is the one upstream "p", serving gpt-4o at the fake provider
// with the API key given.
func fakeUpstream(fake *providertest.Server, key provider.APIKey) *provider.Upstream {
	return provider.NewUpstream(provider.Provider{Name: "p", Type: provider.TypeOpenAI, BaseURL: fake.OpenAIBaseURL(), Models: []string{"gpt-4o"}},
		[]provider.APIKey{key}, http.DefaultClient)
}

// policyHandler is a Handler routing to up under the Cedar policy files,
// for the caller oneCaller, recording to led and lagging call ends
// (Options.LagEnd).
func policyHandler(t *testing.T, up *provider.Upstream, files map[string]string, led Ledger) *Handler {
	t.Helper()
	pol, err := policy.Compile(files)
	if err != nil {
		t.Fatal(err)
	}
	snap := &config.Snapshot{Router: provider.NewRouter([]*provider.Upstream{up}, nil), Prices: pricing.NewTable(pricing.Defaults(), nil), Policies: pol}
	return New(Deps{Ledger: led, Snapshot: func() *config.Snapshot { return snap }, Auth: oneCaller{}, Usage: &memUsage{},
		Log: slog.New(slog.DiscardHandler)}, Options{LagEnd: true})
}

// chat sends h one small chat completion for gpt-4o with the key secret
// and returns the answer.
func chat(h http.Handler, secret string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("POST", "/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+secret)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}
