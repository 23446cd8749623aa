package e2e

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"

	"github.com/gatehouse-gw/gatehouse/client"
)

// TestHostileUpstreamAmbiguousUsageChargesTheHold: an upstream whose usage
// reads two ways — prompt_tokens given twice, 100 then 1 (a parser taking
// the last, as encoding/json does, meters 1) — is charged the call's whole
// hold, never the smaller reading, in JSON and in a stream.
func TestHostileUpstreamAmbiguousUsageChargesTheHold(t *testing.T) {
	f := newFixture(t, gwOptions{})
	ctx := context.Background()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if strings.Contains(string(b), `"stream":true`) {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, `data: {"id":"c1","object":"chat.completion.chunk","model":"dup-model","choices":[{"index":0,"delta":{"content":"hi"}}]}`+"\n\n"+
				`data: {"id":"c1","object":"chat.completion.chunk","model":"dup-model","choices":[],"usage":{"prompt_tokens":100,"completion_tokens":5,"prompt_tokens":1}}`+"\n\n"+
				"data: [DONE]\n\n")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c1","object":"chat.completion","created":1,"model":"dup-model","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":100,"completion_tokens":5,"prompt_tokens":1}}`)
	}))
	defer up.Close()
	if _, err := f.admin.CreateProvider(ctx, client.ProviderInput{Name: "dupes", Type: "openai", BaseURL: up.URL + "/v1", Models: []string{"dup-model"}, Keys: []string{"sk-dupes-0123456789"}}); err != nil {
		t.Fatal(err)
	}
	// $1 per million tokens each way: the larger reading costs 105 µ$, the smaller
	// 6; the hold (the request's worst case) covers any honest reading.
	if _, err := f.admin.SetPrice(ctx, client.Price{Model: "dup-model", Input: 1_000_000, Output: 1_000_000}); err != nil {
		t.Fatal(err)
	}
	setBudget(t, f.admin, f.keyID, 100_000_000, false)
	oc := f.openai(f.key)
	if _, err := oc.Chat.Completions.New(ctx, chatParams("dup-model", 5)); err != nil {
		t.Fatal(err)
	}
	p := chatParams("dup-model", 5)
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	st := oc.Chat.Completions.NewStreaming(ctx, p)
	for st.Next() {
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	recs := f.usageOf(t, f.keyID, 2)
	for _, r := range recs {
		if r.Model != "dup-model" {
			continue
		}
		if !r.Estimated || r.CostMicros < 105 {
			t.Errorf("stream=%v: charged %d µ$ (estimated %v, %d input tokens); want the whole hold, at least the larger reading's 105", r.Stream, r.CostMicros, r.Estimated, r.InputTokens)
		}
	}
}
