package provider

import (
	stdjson "encoding/json"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

// An upstream whose usage object can be read two ways — a name given twice,
// or in two spellings that differ only in case (or '_'/'-') — may have
// billed either reading. encoding/json took the last (and matched names
// case-insensitively), so a hostile or differently-serialising upstream
// could report 1000 tokens to its billing and 1 to the gateway. Each such
// report must come out as "no usage": settlement then charges the whole
// hold, which is at least what any reading billed.

func TestParseUsageAmbiguousReports(t *testing.T) {
	for _, tt := range []struct {
		name string
		ep   Endpoint
		body string
	}{
		{"duplicate prompt_tokens, small last", Chat, `{"usage":{"prompt_tokens":1000,"completion_tokens":500,"prompt_tokens":1}}`},
		{"duplicate prompt_tokens, small first", Chat, `{"usage":{"prompt_tokens":1,"completion_tokens":500,"prompt_tokens":1000}}`},
		{"case variant of prompt_tokens", Chat, `{"usage":{"prompt_tokens":1000,"completion_tokens":500,"Prompt_Tokens":1}}`},
		{"delimiter variant of completion_tokens", Chat, `{"usage":{"prompt_tokens":1000,"completion_tokens":500,"completiontokens":1}}`},
		{"lone case variant of usage", Chat, `{"Usage":{"prompt_tokens":1,"completion_tokens":1}}`},
		{"usage twice", Chat, `{"usage":{"prompt_tokens":1000,"completion_tokens":500},"usage":{"prompt_tokens":1,"completion_tokens":1}}`},
		{"usage and USAGE", Chat, `{"usage":{"prompt_tokens":1000,"completion_tokens":500},"USAGE":{"prompt_tokens":1,"completion_tokens":1}}`},
		{"duplicate in cached details", Chat, `{"usage":{"prompt_tokens":1000,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":900,"cached_tokens":0}}}`},
		{"responses duplicate output", Responses, `{"usage":{"input_tokens":1000,"output_tokens":700,"output_tokens":1}}`},
		{"anthropic cache read variant", Messages, `{"usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":100000,"Cache_Read_Input_Tokens":0}}`},
		{"anthropic duplicate output", Messages, `{"usage":{"input_tokens":10,"output_tokens":5000,"output_tokens":1}}`},
		{"duplicate name elsewhere in the body", Chat, `{"id":"a","id":"b","usage":{"prompt_tokens":1000,"completion_tokens":500}}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got, _, ok := ParseUsage(tt.ep, []byte(tt.body)); ok {
				t.Fatalf("ParseUsage(%s) = %+v, ok; want no usage (charge the hold)", tt.body, got)
			}
		})
	}
	// Unambiguous reports still read, including invalid UTF-8 elsewhere and
	// members the gateway does not know.
	for _, tt := range []struct {
		ep   Endpoint
		body string
		in   int64
	}{
		{Chat, `{"id":"x","choices":[{"message":{"content":"a` + "\xff" + `b"}}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,"completion_tokens_details":{"reasoning_tokens":0}}}`, 12},
		{Messages, `{"id":"m","type":"message","usage":{"input_tokens":7,"output_tokens":2,"service_tier":"standard"}}`, 7},
	} {
		if got, _, ok := ParseUsage(tt.ep, []byte(tt.body)); !ok || got.Input != tt.in {
			t.Errorf("ParseUsage(%q) = %+v, %v; want input %d", tt.body, got, ok, tt.in)
		}
	}
}

func TestMeterAmbiguousUsageIsMissing(t *testing.T) {
	for _, tt := range []struct {
		name   string
		ep     Endpoint
		stream string
	}{
		{"chat: a clean small report, then an ambiguous large one", Chat,
			`data: {"id":"x","choices":[{"delta":{"content":"Hello"}}]}` + "\n\n" +
				`data: {"id":"x","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}` + "\n\n" +
				`data: {"id":"x","choices":[],"usage":{"prompt_tokens":5000,"completion_tokens":900,"prompt_tokens":1}}` + "\n\n" +
				"data: [DONE]\n\n"},
		{"chat: case variant in the usage chunk", Chat,
			`data: {"id":"x","choices":[],"usage":{"prompt_tokens":5000,"completion_tokens":900,"Completion_Tokens":1}}` + "\n\n" +
				"data: [DONE]\n\n"},
		{"responses: duplicate input in response.completed", Responses,
			`data: {"type":"response.completed","response":{"id":"r","usage":{"input_tokens":5000,"output_tokens":10,"input_tokens":1}}}` + "\n\n"},
		{"anthropic: duplicate output in message_delta", Messages,
			"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":50,\"output_tokens\":1}}}\n\n" +
				"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":800,\"output_tokens\":2}}\n\n" +
				"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"},
		{"anthropic: usage twice in message_start", Messages,
			"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":5000,\"output_tokens\":1}},\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\n" +
				"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":8}}\n\n" +
				"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, _ := meterRun(t, tt.ep, false, tt.stream)
			if tok, est := m.Usage(77); !est {
				t.Fatalf("usage %+v metered from an ambiguous report; want estimated (charge the hold)", tok)
			}
		})
	}
}

// FuzzParseUsageOneReading: whenever ParseUsage meters a body, the body has
// one reading: encoding/json (last duplicate wins, names matched
// case-insensitively, as a provider written in Go might bill) reads the same
// counts, and no count is negative.
func FuzzParseUsageOneReading(f *testing.F) {
	for _, s := range []string{
		`{"usage":{"prompt_tokens":1000,"completion_tokens":500}}`,
		`{"usage":{"prompt_tokens":1000,"completion_tokens":500,"prompt_tokens":1}}`,
		`{"usage":{"prompt_tokens":1,"completion_tokens":1,"prompt_to` + "\u212a" + `ens":1000}}`,
		`{"Usage":{"Prompt_Tokens":1,"completion_tokens":1}}`,
		`{"usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":100,"prompt_tokens_details":{"cached_tokens":3}}}`,
		`{"usage":{"input_tokens":10,"output_tokens":5,"cache_creation_input_tokens":7}}`,
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, body string, anthropic bool) {
		ep := Chat
		if anthropic {
			ep = Messages
		}
		got, _, ok := ParseUsage(ep, []byte(body))
		if !ok {
			return
		}
		if got.Input <= 0 || got.Output < 0 || got.CachedInput < 0 || got.CacheWrite < 0 {
			t.Fatalf("%q: metered %+v", body, got)
		}
		var v1 usage.Tokens
		if anthropic {
			var r struct{ Usage *anthropicUsage }
			if err := stdjson.Unmarshal([]byte(body), &r); err != nil || r.Usage == nil {
				t.Fatalf("%q: metered %+v, encoding/json reads no usage (%v)", body, got, err)
			}
			v1, _ = r.Usage.tokens()
		} else {
			var r struct{ Usage *openAIUsage }
			if err := stdjson.Unmarshal([]byte(body), &r); err != nil || r.Usage == nil {
				t.Fatalf("%q: metered %+v, encoding/json reads no usage (%v)", body, got, err)
			}
			v1, _ = r.Usage.tokens()
		}
		if v1.Clamp() != got {
			t.Fatalf("%q: metered %+v, encoding/json reads %+v", body, got, v1.Clamp())
		}
	})
}
