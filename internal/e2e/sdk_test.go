package e2e

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"

	"github.com/gatehouse-gw/gatehouse/client"
)

func (f *fixture) openai(key string) openai.Client {
	return openai.NewClient(option.WithBaseURL(f.dataURL+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0))
}

func (f *fixture) anthropic(key string) anthropic.Client {
	return anthropic.NewClient(aoption.WithBaseURL(f.dataURL+"/"), aoption.WithAPIKey(key), aoption.WithMaxRetries(0))
}

func chatParams(model string, maxTokens int64) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:     model,
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Tell me about budgets that hold under concurrency.")},
		MaxTokens: openai.Int(maxTokens),
	}
}

// TestOpenAISDK drives every OpenAI endpoint through the official SDK, on
// every backend, and checks what was metered against what the upstream said.
func TestOpenAISDK(t *testing.T) {
	for name, dsn := range backends(t) {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, gwOptions{database: dsn(t)})
			ctx := context.Background()
			oc := f.openai(f.key)

			// Chat, JSON.
			resp, err := oc.Chat.Completions.New(ctx, chatParams("gpt-4o", 7))
			if err != nil {
				t.Fatal(err)
			}
			if resp.Choices[0].Message.Content == "" || resp.Usage.CompletionTokens != 7 || resp.Usage.PromptTokens == 0 {
				t.Fatalf("chat: content %q, usage %+v", resp.Choices[0].Message.Content, resp.Usage)
			}

			// Chat, streaming, without asking for usage: the gateway asks upstream
			// for it and must not pass the extra chunk on.
			stream := oc.Chat.Completions.NewStreaming(ctx, chatParams("gpt-4o-mini", 6))
			var text strings.Builder
			chunks, usageChunks := 0, 0
			for stream.Next() {
				c := stream.Current()
				chunks++
				if c.JSON.Usage.Valid() && c.Usage.TotalTokens > 0 {
					usageChunks++
				}
				for _, ch := range c.Choices {
					text.WriteString(ch.Delta.Content)
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			if usageChunks != 0 || len(strings.Fields(text.String())) != 6 {
				t.Fatalf("stream: %d usage chunks (want 0), text %q (want 6 words)", usageChunks, text.String())
			}
			upReqs := f.up.Requests()
			if last := upReqs[len(upReqs)-1]; !strings.Contains(string(last.Body), `"include_usage":true`) {
				t.Fatalf("gateway did not ask upstream for stream usage: %s", last.Body)
			}

			// Streaming with usage asked for: the caller gets it.
			p := chatParams("gpt-4o", 4)
			p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
			stream = oc.Chat.Completions.NewStreaming(ctx, p)
			var acc openai.ChatCompletionAccumulator
			for stream.Next() {
				acc.AddChunk(stream.Current())
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			if acc.Usage.CompletionTokens != 4 {
				t.Fatalf("stream with include_usage: usage %+v", acc.Usage)
			}

			// Completions, embeddings, responses.
			cmpl, err := oc.Completions.New(ctx, openai.CompletionNewParams{Model: "gpt-3.5-turbo-instruct",
				Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Say this is a test")}, MaxTokens: openai.Int(3)})
			if err != nil || cmpl.Usage.CompletionTokens != 3 {
				t.Fatalf("completions: %+v, %v", cmpl, err)
			}
			emb, err := oc.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "text-embedding-3-small",
				Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"a governance gateway", "for AI APIs"}}})
			if err != nil || len(emb.Data) != 2 || len(emb.Data[0].Embedding) == 0 || emb.Usage.PromptTokens == 0 {
				t.Fatalf("embeddings: %+v, %v", emb, err)
			}
			r, err := oc.Responses.New(ctx, responses.ResponseNewParams{Model: "gpt-4o",
				Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hello")}, MaxOutputTokens: openai.Int(5)})
			if err != nil || r.OutputText() == "" || r.Usage.OutputTokens != 5 {
				t.Fatalf("responses: %+v, %v", r, err)
			}
			rs := oc.Responses.NewStreaming(ctx, responses.ResponseNewParams{Model: "gpt-4o",
				Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hello again")}})
			var deltas strings.Builder
			var completed bool
			for rs.Next() {
				ev := rs.Current()
				switch ev.Type {
				case "response.output_text.delta":
					deltas.WriteString(ev.Delta)
				case "response.completed":
					completed = true
				}
			}
			if err := rs.Err(); err != nil || !completed || deltas.Len() == 0 {
				t.Fatalf("responses stream: completed=%v text=%q err=%v", completed, deltas.String(), err)
			}

			// Models: only the exact names routed, filtered by the key's scope.
			page, err := oc.Models.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, m := range page.Data {
				ids = append(ids, m.ID)
			}
			if !slices.Equal(ids, []string{"gpt-4o", "o3-mini"}) {
				t.Fatalf("models = %v", ids)
			}
			scoped, err := f.admin.CreateKey(ctx, client.KeyInput{Principal: "agent", Scope: client.Scope{Models: []string{"o3*"}}})
			if err != nil {
				t.Fatal(err)
			}
			sc := f.openai(scoped.Secret)
			page, err = sc.Models.List(ctx)
			if err != nil || len(page.Data) != 1 || page.Data[0].ID != "o3-mini" {
				t.Fatalf("scoped models = %+v, %v", page, err)
			}

			// Metering: 7 calls, each recorded with the upstream's own numbers.
			recs := f.usageOf(t, f.keyID, 7)
			if len(recs) != 7 {
				t.Fatalf("%d usage records, want 7", len(recs))
			}
			byModel := map[string]client.UsageRecord{}
			for _, rec := range recs {
				if rec.Status != 200 || rec.Estimated || !rec.Priced || rec.CostMicros <= 0 || rec.Provider != "fake-openai" {
					t.Errorf("record %+v", rec)
				}
				byModel[rec.Model+"/"+rec.Endpoint] = rec
			}
			if got := byModel["gpt-4o-mini/chat"]; !got.Stream || got.OutputTokens != 6 {
				t.Errorf("streamed chat record: %+v", got)
			}
			if got := byModel["text-embedding-3-small/embeddings"]; got.InputTokens != emb.Usage.PromptTokens || got.OutputTokens != 0 {
				t.Errorf("embeddings record %+v, upstream said %d", got, emb.Usage.PromptTokens)
			}
			// gpt-4o, 7 out: cost from the default table, rounded up.
			chat := recs[len(recs)-1]
			want := (resp.Usage.PromptTokens*2_500_000 + 7*10_000_000 + 999_999) / 1_000_000
			if chat.Model != "gpt-4o" || chat.CostMicros != want {
				t.Errorf("first chat cost = %d micros (%+v), want %d", chat.CostMicros, chat, want)
			}
		})
	}
}

// TestAnthropicSDK drives /v1/messages, JSON and streaming.
func TestAnthropicSDK(t *testing.T) {
	f := newFixture(t, gwOptions{})
	ctx := context.Background()
	ac := f.anthropic(f.key)
	params := anthropic.MessageNewParams{
		Model:     "claude-sonnet-4-5",
		MaxTokens: 9,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("What is a transparency log?"))},
	}
	msg, err := ac.Messages.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Usage.OutputTokens != 9 || msg.StopReason != "max_tokens" || len(msg.Content) == 0 || msg.Content[0].Text == "" {
		t.Fatalf("message: %+v", msg)
	}
	params.MaxTokens = 100
	stream := ac.Messages.NewStreaming(ctx, params)
	acc := anthropic.Message{}
	for stream.Next() {
		if err := acc.Accumulate(stream.Current()); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if acc.Usage.OutputTokens == 0 || acc.Content[0].Text == "" || acc.StopReason != "end_turn" {
		t.Fatalf("streamed message: %+v", acc)
	}
	recs := f.usageOf(t, f.keyID, 2)
	if len(recs) != 2 {
		t.Fatalf("%d records", len(recs))
	}
	if s := recs[0]; !s.Stream || s.OutputTokens != acc.Usage.OutputTokens || s.InputTokens != acc.Usage.InputTokens || s.Provider != "fake-anthropic" || s.Estimated {
		t.Fatalf("stream record %+v vs upstream usage %+v", s, acc.Usage)
	}
	// Requests upstream carried the upstream key, never the caller's.
	for _, r := range f.up.Requests() {
		if r.Header.Get("x-api-key") != upstreamKey || strings.Contains(r.Header.Get("Authorization"), "gk_") {
			t.Fatalf("upstream saw headers %v", r.Header)
		}
		if r.Header.Get("anthropic-version") == "" {
			t.Fatal("no anthropic-version upstream")
		}
	}
}

func openAIStatus(t *testing.T, err error) (int, string) {
	t.Helper()
	var e *openai.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is not an *openai.Error", err)
	}
	return e.StatusCode, e.Code
}

func optionsFor(base, key string) []option.RequestOption {
	return []option.RequestOption{option.WithBaseURL(base + "/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0)}
}

func embedParams() openai.EmbeddingNewParams {
	return openai.EmbeddingNewParams{Model: "text-embedding-3-small", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("x")}}
}
