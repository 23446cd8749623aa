package e2e

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"

	"github.com/gatehouse-gw/gatehouse/client"

	"github.com/gatehouse-gw/gatehouse/internal/provider"
	"github.com/gatehouse-gw/gatehouse/internal/proxy"
)

// TestSDKFieldsAreKnown: every top-level field the official SDKs can send
// (the JSON names of their *Params structs) is one the gateway knows for the
// endpoint, so a key under a hard budget can use any of them. A new SDK
// release that adds a field fails here: read what the field costs, price it
// or mark it unbounded (worstcase.go), then add it to proxy's knownFields.
func TestSDKFieldsAreKnown(t *testing.T) {
	for _, tc := range []struct {
		ep     provider.Endpoint
		params []any
	}{
		{provider.Chat, []any{openai.ChatCompletionNewParams{}}},
		{provider.Completions, []any{openai.CompletionNewParams{}}},
		{provider.Embeddings, []any{openai.EmbeddingNewParams{}}},
		{provider.Responses, []any{responses.ResponseNewParams{}}},
		{provider.Messages, []any{anthropic.MessageNewParams{}, anthropic.BetaMessageNewParams{}}},
	} {
		known := proxy.KnownFields(tc.ep)
		for _, p := range tc.params {
			ty := reflect.TypeOf(p)
			n := 0
			for i := range ty.NumField() {
				name := strings.Split(ty.Field(i).Tag.Get("json"), ",")[0]
				if name == "" || name == "-" { // the SDK's own state, or a header
					continue
				}
				n++
				if !slices.Contains(known, name) {
					t.Errorf("%s: %s.%s (%q) is not a known field of the %s endpoint", tc.ep.Name, ty.Name(), ty.Field(i).Name, name, tc.ep.Name)
				}
			}
			if n < 3 {
				t.Errorf("%s: only %d fields read from %s", tc.ep.Name, n, ty.Name())
			}
		}
		if tc.ep.Streams && !slices.Contains(known, "stream") { // the SDKs add it for streams
			t.Errorf("%s: stream not known", tc.ep.Name)
		}
	}
}

// TestSDKUnderHardBudget: the official SDKs, on a key under a hard budget,
// with ordinary fields of each API set, go through; a top-level field the
// gateway does not know (sent with the SDK's own WithJSONSet) and an unknown
// beta (the SDK's Betas param, sent as the anthropic-beta header) are
// refused with a 400 each SDK raises as an invalid request, naming the field
// or the beta; a known beta passes.
func TestSDKUnderHardBudget(t *testing.T) {
	f := newFixture(t, gwOptions{})
	ctx := context.Background()
	k, err := f.admin.CreateKey(ctx, client.KeyInput{Principal: "agent", Name: "hard"})
	if err != nil {
		t.Fatal(err)
	}
	setBudget(t, f.admin, k.ID, 5_000_000, false)

	oc := f.openai(k.Secret)
	p := chatParams("gpt-4o", 7)
	p.Temperature, p.TopP, p.Seed, p.User = openai.Float(0.2), openai.Float(0.9), openai.Int(7), openai.String("u1")
	p.Stop = openai.ChatCompletionNewParamsStopUnion{OfStringArray: []string{"END"}}
	p.Metadata = map[string]string{"team": "research"}
	p.ServiceTier = openai.ChatCompletionNewParamsServiceTierDefault
	p.ParallelToolCalls = openai.Bool(false)
	p.Tools = []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{Name: "f", Parameters: openai.FunctionParameters{"type": "object"}})}
	if _, err := oc.Chat.Completions.New(ctx, p); err != nil {
		t.Fatalf("chat with ordinary fields under a hard budget: %v", err)
	}
	if _, err := oc.Responses.New(ctx, responses.ResponseNewParams{Model: "gpt-4o", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hi")},
		MaxOutputTokens: openai.Int(5), Temperature: openai.Float(0.5), Store: openai.Bool(false), ServiceTier: responses.ResponseNewParamsServiceTierDefault}); err != nil {
		t.Fatalf("responses under a hard budget: %v", err)
	}
	_, err = oc.Chat.Completions.New(ctx, chatParams("gpt-4o", 7), option.WithJSONSet("x_multiplier", 3))
	var oe *openai.Error
	if !errors.As(err, &oe) || oe.StatusCode != 400 || oe.Code != "unsupported_field_under_hard_budget" || oe.Param != "x_multiplier" || oe.Type != "invalid_request_error" {
		t.Fatalf("unknown field under a hard budget: %v", err)
	}

	ac := f.anthropic(k.Secret)
	bp := anthropic.BetaMessageNewParams{
		Model: "claude-sonnet-4-5", MaxTokens: 9,
		Messages:      []anthropic.BetaMessageParam{anthropic.NewBetaUserMessage(anthropic.NewBetaTextBlock("What is a transparency log?"))},
		StopSequences: []string{"END"}, Metadata: anthropic.BetaMetadataParam{UserID: anthropic.String("u1")},
		Betas: []anthropic.AnthropicBeta{anthropic.AnthropicBetaInterleavedThinking2025_05_14, anthropic.AnthropicBetaFastMode2026_02_01},
	}
	if _, err := ac.Beta.Messages.New(ctx, bp); err != nil {
		t.Fatalf("messages with known betas under a hard budget: %v", err)
	}
	bp.Betas = []anthropic.AnthropicBeta{anthropic.AnthropicBetaManagedAgents2026_04_01}
	_, err = ac.Beta.Messages.New(ctx, bp)
	var ae *anthropic.Error
	if !errors.As(err, &ae) || ae.StatusCode != 400 || !strings.Contains(ae.Error(), "invalid_request_error") || !strings.Contains(ae.Error(), "managed-agents-2026-04-01") {
		t.Fatalf("unknown beta under a hard budget: %v", err)
	}
	n := len(f.up.Requests())
	_, err = ac.Messages.New(ctx, anthropic.MessageNewParams{Model: "claude-sonnet-4-5", MaxTokens: 9,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))}}, aoption.WithJSONSet("x_multiplier", 3))
	if !errors.As(err, &ae) || ae.StatusCode != 400 || !strings.Contains(ae.Error(), "x_multiplier") || len(f.up.Requests()) != n {
		t.Fatalf("unknown field on messages under a hard budget: %v", err)
	}
}
