package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/provider/providertest"
	"github.com/gatehouse-gw/gatehouse/internal/provider/sim"
)

// The hostile-budget suite of issue #9: a leaked key on a small hard budget,
// an upstream that reads JSON as non-Go servers do (case-sensitive names, the
// last duplicate wins) and bills like OpenAI (every generation to its cap,
// n, best_of, batches, images, background in full), and every request shape
// of the issue fired 50 times at once. Whatever the shape: spent ≤ limit,
// what the upstream billed ≤ what the gateway charged, and every call that
// reached the upstream is in the audit log with its start and end records.

const (
	hostileCalls  = 50
	hostileLimit  = 50_000 // $0.05
	hostileIn     = 2_500_000
	hostileOut    = 10_000_000
	anthropicIn   = 3_000_000
	anthropicOut  = 15_000_000
	hostileUser   = `"messages":[{"role":"user","content":"Write about budgets that hold."}]`
	hostileModel  = "gpt-4o"
	hostileClaude = "claude-sonnet-4-5"
)

type hostileShape struct {
	name    string
	path    string
	body    string
	fault   sim.Fault // Hostile is always set
	hangUp  bool      // the callers hang up once every call is at the upstream (held there) or refused
	refused string    // every call is refused with this error code, before the upstream
	clamp   bool      // the budget lowers the output cap to fit instead of refusing
}

func hostileShapes() []hostileShape {
	img := `{"type":"image\u005furl","image\u005furl":{"url":"https://example.com/a.png"}}`
	return []hostileShape{
		{name: "Background", path: "/v1/responses", body: `{"model":"gpt-4o","input":"hi","background":true,"max_output_tokens":200}`, refused: "unbounded_cost"},
		{name: "N128", path: "/v1/chat/completions", body: `{"model":"gpt-4o","n":128,"max_tokens":10,` + hostileUser + `}`},
		{name: "BestOf", path: "/v1/completions", body: `{"model":"gpt-4o","prompt":"hi","n":1,"best_of":20,"max_tokens":50}`},
		{name: "PromptBatch", path: "/v1/completions", body: `{"model":"gpt-4o","prompt":["a","b","c","d","e","f","g","h"],"n":3,"max_tokens":40}`},
		{name: "HangUpBeforeAnswer", path: "/v1/chat/completions", body: `{"model":"gpt-4o","max_tokens":100,` + hostileUser + `}`,
			hangUp: true},
		{name: "ModelDuplicate", path: "/v1/chat/completions", body: `{"model":"gpt-4o-mini","model":"gpt-4o","max_tokens":10,` + hostileUser + `}`, refused: "duplicate_field"},
		{name: "ModelCaseVariant", path: "/v1/chat/completions", body: `{"model":"gpt-4o-mini","Model":"gpt-4o","max_tokens":10,` + hostileUser + `}`, refused: "ambiguous_field"},
		{name: "StreamCaseVariant", path: "/v1/chat/completions", body: `{"model":"gpt-4o","stream":true,"Stream":false,"max_tokens":10,` + hostileUser + `}`, refused: "ambiguous_field"},
		{name: "StreamFoldVariant", path: "/v1/chat/completions", body: `{"model":"gpt-4o","ſtream":true,"max_tokens":10,` + hostileUser + `}`, refused: "ambiguous_field"},
		{name: "CapFieldConfusion", path: "/v1/responses", body: `{"model":"gpt-4o","input":"hi","max_completion_tokens":1,"max_output_tokens":50000}`, refused: "unsupported_parameter"},
		{name: "ChatCapsDisagree", path: "/v1/chat/completions", body: `{"model":"gpt-4o","max_tokens":1,"max_completion_tokens":50000,` + hostileUser + `}`, refused: "conflicting_parameters"},
		{name: "EscapedImageURL", path: "/v1/chat/completions", body: `{"model":"gpt-4o","max_tokens":10,"service_tier":"default","messages":[{"role":"user","content":[` + img + `,` + img + `]}]}`},
		{name: "FileByID", path: "/v1/chat/completions", body: `{"model":"gpt-4o","max_tokens":10,"messages":[{"role":"user","content":[{"type":"file","file":{"file_id":"file-1"}}]}]}`, refused: "unbounded_cost"},
		{name: "PDFByURL", path: "/v1/responses", body: `{"model":"gpt-4o","max_output_tokens":10,"input":[{"role":"user","content":[{"type":"input_file","file_url":"https://example.com/a.pdf"}]}]}`, refused: "unbounded_cost"},
		{name: "DocumentByURL", path: "/v1/messages", body: `{"model":"claude-sonnet-4-5","max_tokens":10,"messages":[{"role":"user","content":[{"type":"document","source":{"type":"url","url":"https://example.com/a.pdf"}}]}]}`, refused: "unbounded_cost"},
		{name: "ServerSideTool", path: "/v1/responses", body: `{"model":"gpt-4o","input":"hi","max_output_tokens":10,"tools":[{"type":"web_search"}]}`, refused: "unbounded_cost"},
		{name: "PreviousResponseID", path: "/v1/responses", body: `{"model":"gpt-4o","input":"hi","max_output_tokens":10,"previous_response_id":"resp_1"}`, refused: "unbounded_cost"},
		{name: "NoUsageJSON", path: "/v1/chat/completions", body: `{"model":"gpt-4o","max_tokens":300,` + hostileUser + `}`, fault: sim.Fault{NoUsage: true}},
		{name: "NoUsageSSE", path: "/v1/chat/completions", body: `{"model":"gpt-4o","max_tokens":300,"stream":true,` + hostileUser + `}`, fault: sim.Fault{NoUsage: true}},
		{name: "NoUsageMessages", path: "/v1/messages", body: `{"model":"claude-sonnet-4-5","max_tokens":300,` + hostileUser + `}`, fault: sim.Fault{NoUsage: true}},
		// rt9: usage reports that would meter less than was billed: negative
		// counts (JSON), a smaller second report after the real one (SSE).
		{name: "UnderReportJSON", path: "/v1/chat/completions", body: `{"model":"gpt-4o","max_tokens":300,` + hostileUser + `}`, fault: sim.Fault{UnderReport: true}},
		{name: "UnderReportSSE", path: "/v1/chat/completions", body: `{"model":"gpt-4o","max_tokens":300,"stream":true,` + hostileUser + `}`, fault: sim.Fault{UnderReport: true}},
		{name: "UnderReportMessages", path: "/v1/messages", body: `{"model":"claude-sonnet-4-5","max_tokens":300,` + hostileUser + `}`, fault: sim.Fault{UnderReport: true}},
		{name: "UnderReportMessagesSSE", path: "/v1/messages", body: `{"model":"claude-sonnet-4-5","max_tokens":300,"stream":true,` + hostileUser + `}`, fault: sim.Fault{UnderReport: true}},
		{name: "ResponsesNoCapGivenClamped", path: "/v1/responses", body: `{"model":"gpt-4o","input":"hi"}`, clamp: true},
		{name: "NOnResponses", path: "/v1/responses", body: `{"model":"gpt-4o","input":"hi","n":64,"max_output_tokens":100}`, refused: "unsupported_parameter"},
		{name: "ToolTypeCaseVariant", path: "/v1/chat/completions", body: `{"model":"gpt-4o","max_tokens":10,` + hostileUser + `,"tools":[{"type":"function","Type":"web_search","function":{"name":"f"}}]}`, refused: "ambiguous_field"},
		{name: "FastMode", path: "/v1/messages", body: `{"model":"claude-sonnet-4-5","max_tokens":10,"speed":"fast",` + hostileUser + `}`, refused: "unbounded_cost"},
		{name: "UnknownTopLevelField", path: "/v1/chat/completions", body: `{"model":"gpt-4o","max_tokens":10,"priority_boost":true,` + hostileUser + `}`, refused: "unsupported_field_under_hard_budget"},
		{name: "EscapedUnknownField", path: "/v1/responses", body: `{"model":"gpt-4o","input":"hi","max_output_tokens":10,"\u0078_multiplier":3}`, refused: "unsupported_field_under_hard_budget"},
		{name: "EscapedFastMode", path: "/v1/messages", body: `{"model":"claude-sonnet-4-5","max_tokens":10,"\u0073peed":"fast",` + hostileUser + `}`, refused: "unbounded_cost"},
		{name: "FastTier", path: "/v1/chat/completions", body: `{"model":"gpt-4o","max_tokens":10,"service_tier":"fast",` + hostileUser + `}`, refused: "unbounded_cost"},
		{name: "ServerSideFallback", path: "/v1/messages", body: `{"model":"claude-sonnet-4-5","max_tokens":10,"fallbacks":"default",` + hostileUser + `}`, refused: "unbounded_cost"},
		{name: "FallbacksCaseVariant", path: "/v1/chat/completions", body: `{"model":"gpt-4o","max_tokens":10,"Fallbacks":"default",` + hostileUser + `}`, refused: "ambiguous_field"},
		{name: "ContinuedThread", path: "/v1/messages", body: `{"model":"claude-sonnet-4-5","max_tokens":10,"thread":{"type":"continue","previous_message_id":"msg_1"},` + hostileUser + `}`, refused: "unbounded_cost"},
		{name: "EscapedAudioModality", path: "/v1/chat/completions", body: `{"model":"gpt-4o","max_tokens":10,"modalities":["text","\u0061udio"],` + hostileUser + `}`, refused: "unbounded_cost"},
		{name: "UpstreamErrorMidStream", path: "/v1/chat/completions", body: `{"model":"gpt-4o","max_tokens":300,"stream":true,` + hostileUser + `}`, fault: sim.Fault{CutAfter: 3}},
		{name: "NoCapGivenClamped", path: "/v1/chat/completions", body: `{"model":"gpt-4o",` + hostileUser + `}`, clamp: true},
		{name: "CapAboveBudgetClamped", path: "/v1/completions", body: `{"model":"gpt-4o","prompt":["a","b"],"n":2,"max_tokens":100000}`, clamp: true},
		{name: "ThinkingBudgetAboveCap", path: "/v1/messages", body: `{"model":"claude-sonnet-4-5","max_tokens":100,"thinking":{"type":"enabled","budget_tokens":400},` + hostileUser + `}`},
	}
}

// hostileFixture is a gateway with prices set for the suite's models.
func hostileFixture(t *testing.T, dsn string, mutate func(*config.Config)) *fixture {
	f := newFixture(t, gwOptions{database: dsn, mutate: func(c *config.Config) {
		c.Ledger.CheckpointInterval = config.Duration(100 * time.Millisecond)
		if mutate != nil {
			mutate(c)
		}
	}})
	for _, p := range []client.Price{
		{Model: hostileModel, Input: hostileIn, CachedInput: hostileIn / 2, Output: hostileOut},
		{Model: "gpt-4o-mini", Input: hostileIn, CachedInput: hostileIn / 2, Output: hostileOut}, // priced like gpt-4o: billedCost
		{Model: "claude-haiku-4-5", Input: anthropicIn, CachedInput: anthropicIn / 10, CacheWrite: anthropicIn * 5 / 4, Output: anthropicOut},
		{Model: hostileClaude, Input: anthropicIn, CachedInput: anthropicIn / 10, CacheWrite: anthropicIn * 5 / 4, Output: anthropicOut},
	} {
		if _, err := f.admin.SetPrice(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// billedCost is what the upstream's bills come to at the suite's prices.
func billedCost(bills []sim.Bill) int64 {
	var sum int64
	for _, b := range bills {
		in, out := int64(hostileIn), int64(hostileOut)
		if strings.HasPrefix(b.Model, "claude") {
			in, out = anthropicIn, anthropicOut
		}
		sum += (b.Input*in + b.Output*out + 999_999) / 1_000_000
	}
	return sum
}

type fired struct {
	status map[int]int
	codes  map[string]int
	sample string
}

// fireAll sends n copies of body at once with key. With s.hangUp the
// upstream (up) holds every answer, and the callers hang up together once
// each call has either reached it or been refused: no timing involved.
func fireAll(t *testing.T, url, key string, s hostileShape, n int, up ...*providertest.Server) fired {
	t.Helper()
	parent, hangUp := context.WithCancel(context.Background())
	defer hangUp()
	var answered atomic.Int64
	if s.hangUp {
		gate := make(chan struct{})
		fault := s.fault
		fault.Hostile, fault.Gate = true, gate
		up[0].SetFault(fault)
		calls0 := up[0].Calls.Load()
		go func() {
			deadline := time.Now().Add(60 * time.Second)
			for up[0].Calls.Load()-calls0+answered.Load() < int64(n) && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			hangUp()
			time.Sleep(100 * time.Millisecond)
			close(gate)
		}()
	}
	tr := &http.Transport{MaxIdleConnsPerHost: n}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 60 * time.Second}
	var mu sync.Mutex
	res := fired{status: map[int]int{}, codes: map[string]int{}}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			ctx, cancel := context.WithCancel(parent)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "POST", url+s.path, strings.NewReader(s.body))
			req.Header.Set("Authorization", "Bearer "+key)
			if s.path == "/v1/messages" {
				req.Header.Set("anthropic-version", "2023-06-01")
			}
			status, code, body := 0, "", ""
			if resp, err := c.Do(req); err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				answered.Add(1)
				status, body = resp.StatusCode, string(b)
				var e struct {
					Error struct {
						Code    string `json:"code"`
						Message string `json:"message"`
					} `json:"error"`
				}
				json.Unmarshal(b, &e)
				code = e.Error.Code
				if code == "" && status >= 400 {
					code = e.Error.Message // Anthropic's shape has no code
				}
			}
			mu.Lock()
			res.status[status]++
			res.codes[code]++
			if status != 200 && res.sample == "" {
				res.sample = body
			}
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	return res
}

// runHostileShape fires one shape at a fresh key with a small hard budget and
// checks the invariants.
func runHostileShape(t *testing.T, f *fixture, s hostileShape) {
	ctx := context.Background()
	k, err := f.admin.CreateKey(ctx, client.KeyInput{Principal: "agent", Name: s.name})
	if err != nil {
		t.Fatal(err)
	}
	b := setBudget(t, f.admin, k.ID, hostileLimit, s.clamp)
	fault := s.fault
	fault.Hostile = true
	f.up.SetFault(fault)
	defer f.up.SetFault(sim.Fault{})
	bills0, calls0 := len(f.up.Bills()), f.up.Calls.Load()

	res := fireAll(t, f.dataURL, k.Secret, s, hostileCalls, f.up)
	after := waitSettled(t, f.admin, b.ID)
	recs := f.usageOf(t, k.ID, hostileCalls)
	bills := f.up.Bills()[bills0:]
	billed := billedCost(bills)
	t.Logf("%s: statuses %v codes %v; spent %d of %d micros, upstream billed %d for %d calls",
		s.name, res.status, res.codes, after.Spent, hostileLimit, billed, len(bills))

	if after.Reserved != 0 {
		t.Errorf("%d micros still reserved after every call ended", after.Reserved)
	}
	if after.Spent > hostileLimit {
		t.Errorf("OVERSHOOT: spent %d micros of a %d budget", after.Spent, hostileLimit)
	}
	if billed > after.Spent {
		t.Errorf("UNDERCHARGED: the upstream billed %d micros, the gateway charged %d", billed, after.Spent)
	}
	if len(recs) != hostileCalls {
		t.Errorf("%d usage records for %d authenticated calls", len(recs), hostileCalls)
	}
	var charged int64
	for _, r := range recs {
		charged += r.CostMicros
		if r.OverReservation {
			t.Errorf("call %s: the upstream reported more than was reserved", r.RequestID)
		}
	}
	if charged != after.Spent {
		t.Errorf("usage records charge %d micros, the budget spent %d", charged, after.Spent)
	}
	if s.refused != "" {
		if res.status[400] != hostileCalls || (res.codes[s.refused] != hostileCalls && !strings.Contains(res.sample, s.refused)) {
			t.Errorf("want every call refused with %s: %v %v %s", s.refused, res.status, res.codes, res.sample)
		}
		if got := f.up.Calls.Load() - calls0; got != 0 {
			t.Errorf("the upstream saw %d refused calls", got)
		}
		return
	}
	if s.hangUp && len(bills) == 0 {
		t.Errorf("no call reached the upstream before the callers hung up: the shape was not exercised")
	}
	if res.status[200] == 0 && !s.hangUp {
		t.Errorf("no call admitted (%v %v %s): the shape was not exercised", res.status, res.codes, res.sample)
	}
	// Every call that reached the upstream is in the audit log: start and end.
	started := 0
	for _, r := range recs {
		if r.Status == 400 || r.Status == 429 {
			continue
		}
		if n, out := auditRecords(t, f, r.RequestID); n != 2 {
			t.Errorf("audit show %s (status %d %s): %d records; %s", r.RequestID, r.Status, r.ErrorCode, n, out)
		}
		started++
	}
	if got := int(f.up.Calls.Load() - calls0); got > started {
		t.Errorf("the upstream saw %d calls, the audit log has %d started", got, started)
	}
}

// auditRecords counts the audit-log records of a request, waiting for the
// checkpoint that covers them.
func auditRecords(t *testing.T, f *fixture, id string) (int, string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, out, errs := runCLI(t, f.gateway, "audit", "show", id, "--json")
		var shown []map[string]any
		json.Unmarshal([]byte(out), &shown)
		if code == 0 || time.Now().After(deadline) || !strings.Contains(errs, "checkpoint") {
			return len(shown), out + errs
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestHostileBudget runs every hostile shape on every backend.
func TestHostileBudget(t *testing.T) {
	t.Parallel() // independent (own gateway, store and upstream); mostly one core of work
	for name, dsn := range backends(t) {
		t.Run(name, func(t *testing.T) {
			f := hostileFixture(t, dsn(t), nil)
			for _, s := range hostileShapes() {
				t.Run(s.name, func(t *testing.T) { runHostileShape(t, f, s) })
			}
		})
	}
}

// TestHostileBudgetAllowUnbounded: with allow_unbounded_cost an operator
// lets background calls through; they are charged their whole hold (usage
// null), which covers what the upstream bills for the run.
func TestHostileBudgetAllowUnbounded(t *testing.T) {
	f := hostileFixture(t, "", func(c *config.Config) { c.AllowUnboundedCost = true })
	s := hostileShapes()[0]
	s.refused = ""
	runHostileShape(t, f, s)
}

// TestHostileDifferential: every governed-field variant the gateway admits
// reaches the upstream reading as the gateway priced it (model, stream, cap,
// generations); every variant it refuses never reaches it. Each governed
// field is sent alone, duplicated (the upstream keeps the last) and as a case
// variant, on every endpoint that defines it.
func TestHostileDifferential(t *testing.T) {
	f := hostileFixture(t, "", func(c *config.Config) { c.Breaker.Ceiling, c.Breaker.BaselineMultiple = "0", 0 }) // many full-cap calls
	ctx := context.Background()
	k, err := f.admin.CreateKey(ctx, client.KeyInput{Principal: "agent", Name: "differential"})
	if err != nil {
		t.Fatal(err)
	}
	setBudget(t, f.admin, k.ID, 50_000_000, false)
	f.up.SetFault(sim.Fault{Hostile: true})
	type field struct {
		key  string
		vals []string
	}
	endpoints := []struct {
		path, base string // base: the rest of a valid body
		fields     []field
		refused    []string // cap fields the endpoint does not define
	}{
		{"/v1/chat/completions", hostileUser, []field{{"model", []string{`"gpt-4o"`, `"gpt-4o-mini"`}}, {"stream", []string{`true`, `false`}},
			{"n", []string{`1`, `3`}}, {"max_tokens", []string{`5`, `50`}}, {"max_completion_tokens", []string{`7`, `70`}}}, []string{"max_output_tokens"}},
		{"/v1/completions", `"prompt":"hi"`, []field{{"model", []string{`"gpt-4o"`, `"gpt-4o-mini"`}}, {"stream", []string{`true`, `false`}},
			{"n", []string{`1`, `3`}}, {"best_of", []string{`2`, `6`}}, {"max_tokens", []string{`5`, `50`}}, {"prompt", []string{`["a","b"]`, `"c"`}}},
			[]string{"max_completion_tokens", "max_output_tokens"}},
		{"/v1/responses", `"input":"hi"`, []field{{"model", []string{`"gpt-4o"`, `"gpt-4o-mini"`}}, {"stream", []string{`true`, `false`}},
			{"max_output_tokens", []string{`9`, `90`}}}, []string{"max_tokens", "max_completion_tokens"}},
		{"/v1/messages", `"max_tokens":11,` + hostileUser, []field{{"model", []string{`"claude-sonnet-4-5"`, `"claude-haiku-4-5"`}},
			{"stream", []string{`true`, `false`}}}, []string{"max_completion_tokens", "max_output_tokens"}},
	}
	calls := 0
	for _, ep := range endpoints {
		type variant struct{ extra, want string }
		var vs []variant
		for _, fl := range ep.fields {
			up := strings.ToUpper(fl.key[:1]) + fl.key[1:]
			first, last := fl.vals[0], fl.vals[len(fl.vals)-1]
			vs = append(vs,
				variant{fmt.Sprintf(`"%s":%s`, fl.key, last), ""},
				variant{fmt.Sprintf(`"%s":%s,"%s":%s`, fl.key, first, fl.key, last), "duplicate_field"},
				variant{fmt.Sprintf(`"%s":%s,"%s":%s`, fl.key, first, up, last), "ambiguous_field"},
				// Escaped names are the names every reader decodes: the
				// same field, judged and billed as such (a duplicate if
				// given twice); a spelling variant of it, escaped, is an
				// unknown field, refused under the hard budget.
				variant{fmt.Sprintf(`"\u%04x%s":%s`, fl.key[0], fl.key[1:], last), ""},
				variant{fmt.Sprintf(`"%s":%s,"\u%04x%s":%s`, fl.key, first, fl.key[0], fl.key[1:], last), "duplicate_field"},
				variant{fmt.Sprintf(`"\u%04x%s_x":%s`, fl.key[0], fl.key[1:], last), "unsupported_field_under_hard_budget"},
			)
		}
		for _, c := range ep.refused {
			vs = append(vs, variant{fmt.Sprintf(`"%s":5`, c), "unsupported_parameter"})
		}
		for _, v := range vs {
			calls++
			model := `"model":"gpt-4o",`
			if strings.HasPrefix(ep.path, "/v1/messages") {
				model = `"model":"claude-sonnet-4-5",`
			}
			base := ep.base
			if strings.Contains(v.extra, `odel"`) { // escaped or not
				model = ""
			}
			if strings.Contains(v.extra, `rompt"`) {
				base = ""
			}
			body := `{` + model + v.extra
			if base != "" {
				body += `,` + base
			}
			body += `}`
			bills0 := len(f.up.Bills())
			res := fireAll(t, f.dataURL, k.Secret, hostileShape{name: v.extra, path: ep.path, body: body}, 1)
			bills := f.up.Bills()[bills0:]
			if v.want != "" {
				if res.status[400] != 1 || len(bills) != 0 || (!strings.HasPrefix(ep.path, "/v1/messages") && res.codes[v.want] != 1) {
					t.Errorf("%s %s: %v %v, upstream billed %d calls; want 400 %s", ep.path, body, res.status, res.codes, len(bills), v.want)
				}
				continue
			}
			if res.status[200] != 1 || len(bills) != 1 {
				t.Fatalf("%s %s: %v %v %s", ep.path, body, res.status, res.codes, res.sample)
			}
			recs := f.usageOf(t, k.ID, calls)
			r, b := recs[0], bills[0]
			if r.Model != b.Model || r.Stream != b.Stream {
				t.Errorf("%s %s: gateway priced %s stream=%v, upstream served %s stream=%v", ep.path, body, r.Model, r.Stream, b.Model, b.Stream)
			}
			if b.Cap < 0 {
				t.Errorf("%s %s: the upstream saw no output cap under a hard budget", ep.path, body)
			}
			if cost := billedCost([]sim.Bill{b}); cost > r.CostMicros {
				t.Errorf("%s %s: upstream billed %d micros (%+v), gateway charged %d", ep.path, body, cost, b, r.CostMicros)
			}
		}
	}
}

// TestHostileOverReservation: an upstream that reports more than any bound
// allows is charged as reported (never forgiven), the usage record says
// over_reservation, an alert goes out, and the breaker counts the charge.
func TestHostileOverReservation(t *testing.T) {
	for name, dsn := range backends(t) {
		t.Run(name, func(t *testing.T) {
			hook := newWebhook(t)
			t.Setenv("GATEHOUSE_ALERT_WEBHOOK_SECRET", "whsec-test")
			f := hostileFixture(t, dsn(t), func(c *config.Config) {
				c.AlertWebhookURL = hook.url
				c.Breaker.Ceiling = "0.50"
			})
			b := setBudget(t, f.admin, f.keyID, 5_000_000, false)
			f.up.SetFault(sim.Fault{Hostile: true, OverReport: 100_000}) // $1 of output on a 10-token cap
			bills0 := len(f.up.Bills())
			s := hostileShape{name: "OverReport", path: "/v1/chat/completions", body: `{"model":"gpt-4o","max_tokens":10,` + hostileUser + `}`}
			if res := fireAll(t, f.dataURL, f.key, s, 1); res.status[200] != 1 {
				t.Fatalf("%v %s", res.status, res.sample)
			}
			after := waitSettled(t, f.admin, b.ID)
			billed := billedCost(f.up.Bills()[bills0:])
			recs := f.usageOf(t, f.keyID, 1)
			if len(recs) != 1 || !recs[0].OverReservation || recs[0].CostMicros != billed || after.Spent != billed {
				t.Fatalf("record %+v, spent %d, billed %d: want the report charged and flagged", recs, after.Spent, billed)
			}
			var kinds []any
			for _, a := range hook.wait(t, 2) {
				kinds = append(kinds, a["kind"])
			}
			if !containsAny(kinds, "over_reservation") || !containsAny(kinds, "breaker_tripped") {
				t.Fatalf("alerts %v: want over_reservation and breaker_tripped", kinds)
			}
			if res := fireAll(t, f.dataURL, f.key, s, 1); res.status[403] != 1 || res.codes["key_suspended"] != 1 {
				t.Fatalf("after a $1 over-report against a $0.50 breaker: %v %v", res.status, res.codes)
			}
		})
	}
}

func containsAny(xs []any, x any) bool {
	for _, e := range xs {
		if e == x {
			return true
		}
	}
	return false
}

// TestHostileLedgerHashesWhatWasSent: after both rewrites (the output cap a
// hard budget sets, the usage chunk of a stream) the call's start record
// commits to the exact bytes the upstream received.
func TestHostileLedgerHashesWhatWasSent(t *testing.T) {
	f := hostileFixture(t, "", nil)
	setBudget(t, f.admin, f.keyID, 1_000_000, true)
	f.up.SetFault(sim.Fault{Hostile: true})
	s := hostileShape{name: "rewritten", path: "/v1/chat/completions", body: `{"model":"gpt-4o","stream":true,` + hostileUser + `}`}
	if res := fireAll(t, f.dataURL, f.key, s, 1); res.status[200] != 1 {
		t.Fatalf("%v %s", res.status, res.sample)
	}
	reqs := f.up.Requests()
	sent := reqs[len(reqs)-1].Body
	if !strings.Contains(string(sent), `"include_usage":true`) || !strings.Contains(string(sent), `"max_tokens"`) {
		t.Fatalf("upstream got %s: want both rewrites", sent)
	}
	recs := f.usageOf(t, f.keyID, 1)
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, out, _ := runCLI(t, f.gateway, "audit", "show", recs[0].RequestID, "--json")
		var shown []struct {
			Record struct {
				BodySHA256 string `json:"body_sha256"`
			} `json:"record"`
		}
		json.Unmarshal([]byte(out), &shown)
		if code == 0 && len(shown) == 2 {
			sum := sha256.Sum256(sent)
			if shown[0].Record.BodySHA256 != hex.EncodeToString(sum[:]) {
				t.Fatalf("start record hashes %s, the upstream got %x", shown[0].Record.BodySHA256, sum)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit show: %d %s", code, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
