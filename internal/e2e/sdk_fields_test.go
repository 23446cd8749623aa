package e2e

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"

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
