package proxy

import (
	"errors"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
)

// Red-team shapes against the strict reading (rt9). Each is named after the
// attack; those that passed before stay as regression tests.

func TestHostileBodyToolTypeFoldVariantRefused(t *testing.T) {
	u := `"messages":[{"role":"user","content":"hi"}]`
	for _, tt := range []struct {
		ep   provider.Endpoint
		body string
	}{
		// A case-insensitive upstream (Go's encoding/json) reads Type, last
		// wins: a server-side tool priced as a function.
		{provider.Chat, `{"model":"gpt-4o","max_tokens":10,` + u + `,"tools":[{"type":"function","Type":"web_search","function":{"name":"f"}}]}`},
		{provider.Responses, `{"model":"gpt-4o","input":"hi","tools":[{"type":"function","name":"f","TYPE":"code_interpreter"}]}`},
		// Anthropic: no type is a custom tool; "Type" is not no type.
		{provider.Messages, `{"model":"claude-sonnet-4-5","max_tokens":10,` + u + `,"tools":[{"Type":"web_search_20250305","name":"web_search"}]}`},
		{provider.Messages, `{"model":"claude-sonnet-4-5","max_tokens":10,` + u + `,"tools":[{"name":"f","input_schema":{},"ty\u200bpe":"web_search_20250305"}]}`},
	} {
		_, err := ParseCall(tt.ep, []byte(tt.body))
		var he *httpx.Error
		if !errors.As(err, &he) || he.Status != 400 || he.Code != "ambiguous_field" || !strings.HasPrefix(he.Param, "tools[0].") {
			t.Errorf("ParseCall(%s, %s) = %v; want 400 ambiguous_field at tools[0]", tt.ep.Name, tt.body, err)
		}
	}
}

func TestHostileBodyEscapedAudioModalityUnbounded(t *testing.T) {
	for _, mods := range []string{`["text","\u0061udio"]`, `["audio"]`, `"audio"`, `[1]`} {
		body := `{"model":"gpt-4o-audio-preview","max_tokens":10,"messages":[{"role":"user","content":"hi"}],"modalities":` + mods + `}`
		c, err := ParseCall(provider.Chat, []byte(body))
		if err != nil {
			t.Fatalf("ParseCall(%s): %v", body, err)
		}
		if !slices.Contains(c.Shape.Unbounded, "modalities") {
			t.Errorf("modalities %s: unbounded %v; want modalities listed", mods, c.Shape.Unbounded)
		}
	}
	c, err := ParseCall(provider.Chat, []byte(`{"model":"gpt-4o","max_tokens":10,"messages":[{"role":"user","content":"hi"}],"modalities":["text"]}`))
	if err != nil || len(c.Shape.Unbounded) != 0 {
		t.Fatalf("text modality: %v, unbounded %v; want bounded", err, c.Shape.Unbounded)
	}
}

// TestHostileBodyNumberSpellings: an integer field spelled as JavaScript or
// Python might still read it as an integer (1e2, 1.0, 128.0000001) is
// refused, not read as something else; -0 is 0.
func TestHostileBodyNumberSpellings(t *testing.T) {
	u := `"messages":[{"role":"user","content":"hi"}]`
	for _, v := range []string{"1e2", "1.0", "128.0000001", "1E400", `"100"`, "true", "-1", "0", "-0", "9223372036854775808"} {
		for _, f := range []string{"max_tokens", "n"} {
			body := `{"model":"gpt-4o",` + u + `,"` + f + `":` + v
			if f == "n" {
				body += `,"max_tokens":10`
			}
			body += `}`
			c, err := ParseCall(provider.Chat, []byte(body))
			if err == nil && !(f == "n" && (v == "0" || v == "-0") && c.Choices == 1) {
				t.Errorf("ParseCall(%s) = choices %d, cap %v, nil; want refused", body, c.Choices, c.MaxOutput)
			}
		}
	}
}

// TestHostileBodyDeepAndWide: the walk of the conversation costs linear time
// in the body, not a string per value or per level (a 4-million-value body
// took 4.9 s and a 5,000-deep nest 70 ms, quadratic, before). The check is on
// allocations, which do not depend on the machine's speed.
func TestHostileBodyDeepAndWide(t *testing.T) {
	const depth, width = 4000, 100_000
	deep := []byte(`{"model":"gpt-4o","max_tokens":10,"messages":` + strings.Repeat(`[{"a":`, depth) + "1" + strings.Repeat("}]", depth) + `}`)
	wide := []byte(`{"model":"gpt-4o","max_tokens":10,"messages":[` + strings.Repeat("0,", width) + `{"role":"user","content":"hi"}]}`)
	for _, tt := range []struct {
		name      string
		body      []byte
		maxBytes  int64   // allocated per run
		maxAllocs float64 // per run
	}{
		{"deep", deep, 200 * int64(len(deep)), 20 * depth},  // a path string per level: about depth²×5 bytes
		{"wide", wide, 100 * int64(len(wide)), 1.5 * width}, // a path string per value: 2 allocations per value
	} {
		if _, err := ParseCall(provider.Chat, tt.body); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		ParseCall(provider.Chat, tt.body)
		runtime.ReadMemStats(&m1)
		bytes, allocs := int64(m1.TotalAlloc-m0.TotalAlloc), float64(m1.Mallocs-m0.Mallocs)
		t.Logf("%s: %d bytes of body, %d bytes and %.0f allocations", tt.name, len(tt.body), bytes, allocs)
		if bytes > tt.maxBytes || allocs > tt.maxAllocs {
			t.Errorf("%s: %d bytes, %.0f allocations; want at most %d and %.0f", tt.name, bytes, allocs, tt.maxBytes, tt.maxAllocs)
		}
	}
	// An unknown type deep down is reported with its path, formatted once.
	c, err := ParseCall(provider.Chat, []byte(`{"model":"gpt-4o","max_tokens":10,"messages":[{"role":"user","content":[{"type":"text","text":"x"},{"type":"hologram"}]}]}`))
	if err != nil || !slices.Equal(c.Shape.Unbounded, []string{"messages[0].content[1] (type hologram)"}) {
		t.Fatalf("unbounded %v, %v; want messages[0].content[1] (type hologram)", c.Shape.Unbounded, err)
	}
}
