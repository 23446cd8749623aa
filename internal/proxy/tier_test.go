package proxy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/pricing"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

// tierUpstream answers every chat or responses call with 20 input and 50
// output tokens, reporting the service tier given ("" reports none), as JSON
// or as a stream whose last chunk (chat) or final response (responses)
// carries the tier, as OpenAI's do.
func tierUpstream(t *testing.T, tier string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var req struct{ Stream bool }
		json.Unmarshal(b, &req)
		st := ""
		if tier != "" {
			st = fmt.Sprintf(`,"service_tier":%q`, tier)
		}
		responses := r.URL.Path == "/v1/responses"
		switch {
		case responses && !req.Stream:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id":"resp_1","object":"response","model":"gpt-4o","status":"completed","output":[]%s,"usage":{"input_tokens":20,"output_tokens":50}}`, st)
		case responses:
			w.Header().Set("Content-Type", "text/event-stream")
			// The created event echoes the tier asked for ("auto"), as OpenAI's does.
			fmt.Fprintf(w, "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-4o\",\"service_tier\":\"auto\",\"usage\":null}}\n\n")
			fmt.Fprintf(w, "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-4o\"%s,\"usage\":{\"input_tokens\":20,\"output_tokens\":50}}}\n\n", st)
		case !req.Stream:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id":"c1","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"x"},"finish_reason":"stop"}]%s,"usage":{"prompt_tokens":20,"completion_tokens":50}}`, st)
		default:
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprintf(w, "data: {\"id\":\"c1\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n")
			fmt.Fprintf(w, "data: {\"id\":\"c1\",\"model\":\"gpt-4o\"%s,\"choices\":[],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":50}}\n\n", st)
			fmt.Fprintf(w, "data: [DONE]\n\n")
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestTierHoldAndSettlement: under a hard budget a chat or responses call
// that names no tier (or "auto") is held at the priority rate, since the
// project's default tier may be priority; only an explicit standard tier is
// held at the price. The call is charged at the tier the response reports
// (JSON body, or the stream's last chunk / final response): priority 2×, a
// standard tier 1×, none reported the tier the hold assumed, one the gateway
// cannot price ("fast") the whole hold.
func TestTierHoldAndSettlement(t *testing.T) {
	base := pricing.NewTable(pricing.Defaults(), nil)
	p, _ := base.Lookup("gpt-4o")
	standard := p.Cost(usage.Tokens{Input: 20, Output: 50})
	tests := []struct {
		name      string
		asked     string // the request's service_tier member, "" for none
		reported  string
		charged   int64 // -1: the whole hold
		estimated bool
	}{
		{"none asked, default reported", "", "default", standard, false},
		{"none asked, priority reported", "", "priority", 2 * standard, false},
		{"none asked, none reported", "", "", 2 * standard, false},
		{"auto asked, none reported", `"service_tier":"auto",`, "", 2 * standard, false},
		{"default asked, none reported", `"service_tier":"default",`, "", standard, false},
		{"flex asked, flex reported", `"service_tier":"flex",`, "flex", standard, false},
		{"default asked, priority reported", `"service_tier":"default",`, "priority", 2 * standard, false},
		{"priority asked, default reported", `"service_tier":"priority",`, "default", standard, false},
		{"none asked, fast reported", "", "fast", -1, true},
		{"none asked, unknown tier reported", "", "turbo", -1, true},
	}
	for _, stream := range []bool{false, true} {
		for _, path := range []string{"/v1/chat/completions", "/v1/responses"} {
			for _, tt := range tests {
				t.Run(fmt.Sprintf("%s/stream=%v/%s", path, stream, tt.name), func(t *testing.T) {
					t.Parallel() // each case has its own store and upstream
					rig := newShapeRig(t, hardBudget, Options{}, tierUpstream(t, tt.reported))
					body := `{"model":"gpt-4o",` + tt.asked + fmt.Sprintf(`"stream":%v,`, stream)
					if path == "/v1/responses" {
						body += `"max_output_tokens":100,"input":"hi"}`
					} else {
						body += `"max_tokens":100,"messages":[{"role":"user","content":"hi"}]}`
					}
					w := rig.send(path, body)
					if w.Code != 200 {
						t.Fatalf("%d %s", w.Code, w.Body)
					}
					rig.rec.mu.Lock()
					defer rig.rec.mu.Unlock()
					if len(rig.rec.recs) != 1 {
						t.Fatalf("%d usage records", len(rig.rec.recs))
					}
					got := rig.rec.recs[0]
					c, err := ParseCall(tierEndpoint(path), []byte(body))
					if err != nil {
						t.Fatal(err)
					}
					held := worstOf(tierEndpoint(path), c, []byte(body), p, 100).cost
					want := tt.charged
					if want < 0 {
						want = held
					}
					if got.CostMicros != want || got.Estimated != tt.estimated {
						t.Fatalf("charged %d (estimated %v), want %d (%v); held %d", got.CostMicros, got.Estimated, want, tt.estimated, held)
					}
					if got.CostMicros > held && tt.reported != "priority" {
						t.Fatalf("charged %d above the hold %d", got.CostMicros, held)
					}
					if tt.asked == "" && held < 2*standard {
						t.Fatalf("held %d for a call that names no tier, below the priority rate of its usage (%d)", held, 2*standard)
					}
				})
			}
		}
	}
}

func tierEndpoint(path string) provider.Endpoint {
	if path == "/v1/responses" {
		return provider.Responses
	}
	return provider.Chat
}
