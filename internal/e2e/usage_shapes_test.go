package e2e

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/openai/openai-go/v3"

	"github.com/gatehouse-gw/gatehouse/client"
)

// TestHostileUpstreamSecondUsageInAnOddShape: through the official SDKs, an
// upstream stream reports a small usage cleanly and then again in a shape
// only a lenient reader takes (counts as strings): the call is charged its
// whole hold, not the small report. And an Anthropic stream whose larger
// message_delta is written with JSON escapes ("\u0075sage", which a byte
// pre-filter for "usage" and "delta" skipped) is charged that larger count.
func TestHostileUpstreamSecondUsageInAnOddShape(t *testing.T) {
	f := newFixture(t, gwOptions{})
	ctx := context.Background()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		if strings.HasSuffix(r.URL.Path, "/messages") {
			io.WriteString(w, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"odd-claude\",\"content\":[],\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n"+
				"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"+
				"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n"+
				"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"+
				"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":2}}\n\n"+
				"event: message_delta\ndata: {\"type\":\"message_\\u0064elta\",\"\\u0064elta\":{\"stop_reason\":\"end_turn\"},\"\\u0075sage\":{\"output_tokens\":800}}\n\n"+
				"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
			return
		}
		io.WriteString(w, `data: {"id":"c1","object":"chat.completion.chunk","model":"odd-model","choices":[{"index":0,"delta":{"content":"hi"}}]}`+"\n\n"+
			`data: {"id":"c1","object":"chat.completion.chunk","model":"odd-model","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}`+"\n\n"+
			`data: {"id":"c1","object":"chat.completion.chunk","model":"odd-model","choices":[],"usage":{"prompt_tokens":"5000","completion_tokens":"900"}}`+"\n\n"+
			"data: [DONE]\n\n")
	}))
	defer up.Close()
	for _, p := range []client.ProviderInput{
		{Name: "odd-openai", Type: "openai", BaseURL: up.URL + "/v1", Models: []string{"odd-model"}, Keys: []string{"sk-odd-0123456789"}},
		{Name: "odd-anthropic", Type: "anthropic", BaseURL: up.URL, Models: []string{"odd-claude"}, Keys: []string{"sk-ant-odd-0123456789"}},
	} {
		if _, err := f.admin.CreateProvider(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range []string{"odd-model", "odd-claude"} { // $1 per million tokens each way
		if _, err := f.admin.SetPrice(ctx, client.Price{Model: m, Input: 1_000_000, Output: 1_000_000}); err != nil {
			t.Fatal(err)
		}
	}
	setBudget(t, f.admin, f.keyID, 100_000_000, false)
	p := chatParams("odd-model", 5)
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	oc, ac := f.openai(f.key), f.anthropic(f.key)
	st := oc.Chat.Completions.NewStreaming(ctx, p)
	for st.Next() {
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	as := ac.Messages.NewStreaming(ctx, anthropic.MessageNewParams{Model: "odd-claude", MaxTokens: 1000,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))}})
	for as.Next() {
	}
	if err := as.Err(); err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, r := range f.usageOf(t, f.keyID, 2) {
		switch r.Model {
		case "odd-model":
			seen++
			if !r.Estimated || r.CostMicros <= 2 {
				t.Errorf("chat stream: charged %d µ$ (estimated %v); want the whole hold, not the clean report's 2", r.CostMicros, r.Estimated)
			}
		case "odd-claude":
			seen++
			if r.Estimated || r.OutputTokens != 800 || r.CostMicros != 805 {
				t.Errorf("anthropic stream: %d output tokens, %d µ$ (estimated %v); want the escaped report's 800 (805 µ$)", r.OutputTokens, r.CostMicros, r.Estimated)
			}
		}
	}
	if seen != 2 {
		t.Fatalf("%d usage records of the two calls", seen)
	}
}
