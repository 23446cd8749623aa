package provider

import (
	stdjson "encoding/json"
	"testing"
)

// Upstream usage tricks beyond duplicate names: counts in shapes a lenient
// billing parser reads and the gateway cannot (strings, floats, numbers past
// int64, exponents), usage in a place the gateway does not read, and a
// stream that reports usage twice, once cleanly and small, once in such a
// shape. Each must come out as missing usage (the whole hold is charged),
// never as the small clean report.

// TestParseUsageCountsInOddShapes: a complete response whose counts are not
// plain non-negative integers reads no usage.
func TestParseUsageCountsInOddShapes(t *testing.T) {
	for _, tt := range []struct {
		name string
		ep   Endpoint
		body string
	}{
		{"counts as strings", Chat, `{"usage":{"prompt_tokens":"5000","completion_tokens":"900"}}`},
		{"input as float", Chat, `{"usage":{"prompt_tokens":5000.0,"completion_tokens":900}}`},
		{"output as fraction", Chat, `{"usage":{"prompt_tokens":5000,"completion_tokens":0.5}}`},
		{"exponent", Chat, `{"usage":{"prompt_tokens":5e3,"completion_tokens":900}}`},
		{"1e400", Chat, `{"usage":{"prompt_tokens":1e400,"completion_tokens":900}}`},
		{"past int64", Chat, `{"usage":{"prompt_tokens":99999999999999999999,"completion_tokens":900}}`},
		{"negative output", Chat, `{"usage":{"prompt_tokens":5000,"completion_tokens":-900}}`},
		{"negative zero input", Chat, `{"usage":{"prompt_tokens":-0,"completion_tokens":900}}`},
		{"negative cached", Chat, `{"usage":{"prompt_tokens":5000,"completion_tokens":9,"prompt_tokens_details":{"cached_tokens":-1}}}`},
		{"usage null", Chat, `{"usage":null}`},
		{"usage an array", Chat, `{"usage":[{"prompt_tokens":5000,"completion_tokens":900}]}`},
		{"usage nested in another object", Chat, `{"id":"x","data":{"usage":{"prompt_tokens":5000,"completion_tokens":900}}}`},
		{"count as bool", Chat, `{"usage":{"prompt_tokens":true,"completion_tokens":900}}`},
		{"anthropic counts as strings", Messages, `{"usage":{"input_tokens":"5000","output_tokens":"900"}}`},
		{"anthropic cache read as float", Messages, `{"usage":{"input_tokens":10,"output_tokens":9,"cache_read_input_tokens":1e5}}`},
		{"anthropic negative cache write", Messages, `{"usage":{"input_tokens":10,"output_tokens":9,"cache_creation_input_tokens":-10}}`},
		{"anthropic no input", Messages, `{"usage":{"input_tokens":0,"output_tokens":9}}`},
		{"responses input as string", Responses, `{"usage":{"input_tokens":"5000","output_tokens":9}}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got, _, ok := ParseUsage(tt.ep, []byte(tt.body)); ok {
				t.Fatalf("ParseUsage(%s) = %+v, ok; want no usage (charge the hold)", tt.body, got)
			}
		})
	}
	// Huge but integral counts are read, saturated rather than wrapped.
	if got, _, ok := ParseUsage(Chat, []byte(`{"usage":{"prompt_tokens":9223372036854775807,"completion_tokens":9223372036854775807}}`)); !ok || got.Input <= 0 || got.Output <= 0 {
		t.Fatalf("int64-max counts: %+v %v", got, ok)
	}
}

// TestMeterSecondUsageInAnOddShape: a stream reports a small usage cleanly
// and then again with counts the gateway cannot read (or under a name
// spelled so only a case-insensitive reader finds it). The second report is
// what a lenient billing may have used: the usage is missing.
func TestMeterSecondUsageInAnOddShape(t *testing.T) {
	chat := func(second string) string {
		return `data: {"id":"x","choices":[{"delta":{"content":"Hello"}}]}` + "\n\n" +
			`data: {"id":"x","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}` + "\n\n" +
			"data: " + second + "\n\n" + "data: [DONE]\n\n"
	}
	anthropic := func(extra string) string {
		return "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n" +
			"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"Hi\"}}\n\n" +
			"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":2}}\n\n" +
			extra +
			"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
	}
	for _, tt := range []struct {
		name   string
		ep     Endpoint
		stream string
	}{
		{"chat: counts as strings", Chat, chat(`{"id":"x","choices":[],"usage":{"prompt_tokens":"5000","completion_tokens":"900"}}`)},
		{"chat: float counts", Chat, chat(`{"id":"x","choices":[],"usage":{"prompt_tokens":5000.0,"completion_tokens":900}}`)},
		{"chat: 1e400", Chat, chat(`{"id":"x","choices":[],"usage":{"prompt_tokens":1e400,"completion_tokens":900}}`)},
		{"chat: past int64", Chat, chat(`{"id":"x","choices":[],"usage":{"prompt_tokens":99999999999999999999,"completion_tokens":900}}`)},
		{"chat: usage an array", Chat, chat(`{"id":"x","choices":[],"usage":[{"prompt_tokens":5000,"completion_tokens":900}]}`)},
		{"chat: USAGE with an odd choices", Chat, chat(`{"id":"x","choices":{},"USAGE":{"prompt_tokens":5000,"completion_tokens":900}}`)},
		{"chat: a second report in events split by bare CRs", Chat, chat(`{"id":"x","choices":[{"delta":{"content":"a"}}]}` + "\r\rdata: " +
			`{"id":"x","choices":[],"usage":{"prompt_tokens":5000,"completion_tokens":900}}` + "\r\r")},
		{"chat: a data line that is not JSON", Chat, chat(`{"id":"x","choices":[],"usage":{"prompt_tokens":5000,"completion_tokens":900}`)},
		{"responses: string counts in response.completed", Responses,
			`data: {"type":"response.created","response":{"id":"r","usage":{"input_tokens":1,"output_tokens":1}}}` + "\n\n" +
				`data: {"type":"response.completed","response":{"id":"r","usage":{"input_tokens":"5000","output_tokens":"900"}}}` + "\n\n"},
		{"responses: a usage beside the response", Responses,
			`data: {"type":"response.completed","response":{"id":"r","usage":{"input_tokens":1,"output_tokens":1}},"usage":{"input_tokens":5000,"output_tokens":900}}` + "\n\n"},
		{"anthropic: message_delta with string output", Messages, anthropic("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":\"800\"}}\n\n")},
		{"anthropic: a second message_start with Usage", Messages, anthropic("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"Usage\":{\"input_tokens\":5000,\"output_tokens\":1}}}\n\n")},
		{"anthropic: a ping with USAGE", Messages, anthropic("event: ping\ndata: {\"type\":\"ping\",\"USAGE\":{\"input_tokens\":5000,\"output_tokens\":900}}\n\n")},
		{"anthropic: usage on a ping", Messages, anthropic("event: ping\ndata: {\"type\":\"ping\",\"usage\":{\"input_tokens\":5000,\"output_tokens\":900}}\n\n")},
		{"anthropic: message usage on a content block", Messages, anthropic("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"message\":{\"usage\":{\"input_tokens\":5000,\"output_tokens\":900}}}\n\n")},
		{"anthropic: message_delta usage as a top-level message_start member", Messages, anthropic("event: message_start\ndata: {\"type\":\"message_start\",\"usage\":{\"input_tokens\":5000,\"output_tokens\":900}}\n\n")},
		{"anthropic: a second message_start with us_age", Messages, anthropic("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"us_age\":{\"input_tokens\":5000,\"output_tokens\":1}}}\n\n")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, _ := meterRun(t, tt.ep, false, tt.stream)
			if tok, est := m.Usage(77); !est {
				t.Fatalf("usage %+v metered; want estimated (charge the hold)", tok)
			}
		})
	}
	// Usage split across events in the clean shape is taken at its largest,
	// not the last (a later smaller restatement cannot lower it).
	m, _ := meterRun(t, Messages, false, anthropic("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":1}}\n\n"))
	if tok, est := m.Usage(77); est || tok.Input != 5 || tok.Output != 2 {
		t.Fatalf("split clean usage: %+v est=%v", tok, est)
	}
	// A report written with JSON escapes (which a byte pre-filter for
	// "usage" or "delta" does not see) is read like any other: here it is
	// the larger, so it is what is charged.
	m, _ = meterRun(t, Messages, false, anthropic("event: message_delta\ndata: {\"type\":\"message_\\u0064elta\",\"\\u0064elta\":{},\"\\u0075sage\":{\"output_tokens\":800}}\n\n"))
	if tok, est := m.Usage(77); est || tok.Output != 800 {
		t.Fatalf("an escaped message_delta: %+v est=%v; want output 800", tok, est)
	}
	// A second message_start does not rename the response (its id and model
	// are the first ones, as for the OpenAI protocols).
	m, _ = meterRun(t, Messages, false, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-opus-4-1\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n"+
		anthropic(""))
	if m.ResponseID() != "msg_1" || m.ResponseModel() != "claude-opus-4-1" {
		t.Fatalf("a second message_start renamed the response: %q %q", m.ResponseID(), m.ResponseModel())
	}
	// A content chunk that merely says "usage" in its text is no report.
	m, _ = meterRun(t, Chat, false, chat(`{"id":"x","choices":[{"delta":{"content":"usage: see the docs"}}]}`))
	if tok, est := m.Usage(77); est || tok.Input != 1 {
		t.Fatalf("a text chunk saying usage: %+v est=%v", tok, est)
	}
}

// FuzzMeterChatSecondReport: after a clean report of 1 and 1, whatever
// event follows, a stream metered (not estimated) is never below what
// encoding/json (names matched case-insensitively; a count it cannot read
// leaves the rest read) finds in that event.
func FuzzMeterChatSecondReport(f *testing.F) {
	for _, s := range []string{
		`{"id":"x","choices":[],"usage":{"prompt_tokens":5000,"completion_tokens":900}}`,
		`{"id":"x","choices":[],"usage":{"prompt_tokens":"5000","completion_tokens":900}}`,
		`{"id":"x","choices":{},"USAGE":{"prompt_tokens":5000,"completion_tokens":900}}`,
		`{"id":"x","choices":[],"\u0055sage":{"prompt_tokens":5000,"completion_tokens":900}}`,
		`{"id":"x","choices":[{"delta":{"content":"usage"}}]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ev string) {
		m := NewMeter(Chat)
		m.Observe(Event{Data: []byte(`{"id":"x","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}`)})
		m.Observe(Event{Data: []byte(ev)})
		got, est := m.Usage(77)
		if est {
			return
		}
		var r struct{ Usage *openAIUsage }
		stdjson.Unmarshal([]byte(ev), &r)
		if r.Usage == nil {
			return
		}
		if v1, _ := r.Usage.tokens(); v1.Clamp().Input > got.Input || v1.Clamp().Output > got.Output {
			t.Fatalf("%q: metered %+v, encoding/json reads %+v", ev, got, v1.Clamp())
		}
	})
}
