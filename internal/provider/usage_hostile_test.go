package provider

import (
	"math"
	"strconv"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

// Hostile usage reports: an upstream (or something between it and the
// gateway) that reports usage in a shape that would meter less than it
// billed. Each case must come out either as the largest count reported or as
// "no usage" (estimated), so settlement charges the hold.

func TestParseUsageHostileReports(t *testing.T) {
	big := strconv.FormatInt(math.MaxInt64, 10)
	tests := []struct {
		name string
		ep   Endpoint
		body string
	}{
		{"negative prompt tokens", Chat, `{"usage":{"prompt_tokens":-5000,"completion_tokens":20}}`},
		{"negative output tokens", Responses, `{"usage":{"input_tokens":30,"output_tokens":-1}}`},
		{"negative anthropic cache read", Messages, `{"usage":{"input_tokens":10,"output_tokens":3,"cache_read_input_tokens":-10}}`},
		{"empty usage object", Chat, `{"usage":{}}`},
		{"usage under other names", Chat, `{"usage":{"total_tokens":5000}}`},
		{"zero input", Responses, `{"usage":{"input_tokens":0,"output_tokens":0}}`},
		{"int64 overflow of the two input names", Chat, `{"usage":{"prompt_tokens":` + big + `,"input_tokens":` + big + `,"completion_tokens":1}}`},
		{"int64 overflow of anthropic input parts", Messages, `{"usage":{"input_tokens":` + big + `,"cache_read_input_tokens":` + big + `,"output_tokens":1}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, ok := ParseUsage(tt.ep, []byte(tt.body))
			if ok && got.Input < 1<<40 { // either refused as usage, or saturated high: never a small count
				t.Fatalf("ParseUsage(%s) = %+v, ok; want no usage (charge the hold) or a saturated count", tt.body, got)
			}
		})
	}
}

func TestMeterTwoUsageChunksTakesLargest(t *testing.T) {
	stream := `data: {"id":"x","choices":[{"delta":{"content":"Hello"}}]}` + "\n\n" +
		`data: {"id":"x","choices":[],"usage":{"prompt_tokens":1200,"completion_tokens":900}}` + "\n\n" +
		`data: {"id":"x","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}` + "\n\n" +
		"data: [DONE]\n\n"
	m, _ := meterRun(t, Chat, false, stream)
	tok, est := m.Usage(0)
	if est || tok.Input < 1200 || tok.Output < 900 {
		t.Fatalf("usage %+v est=%v; want at least the larger report", tok, est)
	}
}

func TestMeterNegativeStreamUsageIsMissing(t *testing.T) {
	stream := `data: {"id":"x","choices":[{"delta":{"content":"Hello"}}]}` + "\n\n" +
		`data: {"id":"x","choices":[],"usage":{"prompt_tokens":-1,"completion_tokens":-1}}` + "\n\n" +
		"data: [DONE]\n\n"
	m, _ := meterRun(t, Chat, false, stream)
	if tok, est := m.Usage(77); !est {
		t.Fatalf("usage %+v metered from a negative report; want estimated", tok)
	}
}

func TestMeterAnthropicDeltaBelowStartTakesLargest(t *testing.T) {
	stream := "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":5000,\"output_tokens\":1}}}\n\n" +
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":800}}\n\n" +
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"input_tokens\":3,\"output_tokens\":2}}\n\n" +
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
	m, _ := meterRun(t, Messages, false, stream)
	tok, est := m.Usage(0)
	if est || tok.Input < 5000 || tok.Output < 800 {
		t.Fatalf("usage %+v est=%v; want input ≥ 5000 and output ≥ 800 (the largest reports)", tok, est)
	}
}

func TestMeterAnthropicCutBeforeMessageStopIsUnmetered(t *testing.T) {
	// message_delta's output count is cumulative so far; a stream cut before
	// message_stop may have been billed for more than the last count.
	stream := "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":50,\"output_tokens\":1}}}\n\n" +
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":10}}\n\n"
	m, _ := meterRun(t, Messages, false, stream)
	if tok, est := m.Usage(0); !est {
		t.Fatalf("usage %+v metered from a stream without message_stop; want estimated", tok)
	}
}

var _ = usage.Tokens{}
