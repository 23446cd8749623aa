package provider

import (
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

func TestParseUsage(t *testing.T) {
	tests := []struct {
		ep   Endpoint
		body string
		want usage.Tokens
		ok   bool
	}{
		{Chat, `{"id":"c1","usage":{"prompt_tokens":100,"completion_tokens":20,"total_tokens":120,"prompt_tokens_details":{"cached_tokens":40}}}`,
			usage.Tokens{Input: 100, CachedInput: 40, Output: 20}, true},
		{Embeddings, `{"usage":{"prompt_tokens":8,"total_tokens":8}}`, usage.Tokens{Input: 8}, true},
		{Responses, `{"id":"r","usage":{"input_tokens":30,"input_tokens_details":{"cached_tokens":10},"output_tokens":5}}`,
			usage.Tokens{Input: 30, CachedInput: 10, Output: 5}, true},
		{Messages, `{"id":"m","usage":{"input_tokens":10,"output_tokens":3,"cache_creation_input_tokens":4,"cache_read_input_tokens":6}}`,
			usage.Tokens{Input: 20, CachedInput: 6, CacheWrite: 4, Output: 3}, true},
		{Chat, `{"id":"c1"}`, usage.Tokens{}, false},
		{Chat, `not json`, usage.Tokens{}, false},
	}
	for _, tt := range tests {
		got, _, ok := ParseUsage(tt.ep, []byte(tt.body))
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParseUsage(%s, %s) = %+v, %v; want %+v, %v", tt.ep.Name, tt.body, got, ok, tt.want, tt.ok)
		}
	}
}

func meterRun(t *testing.T, ep Endpoint, strip bool, stream string) (*Meter, int) {
	t.Helper()
	m := NewMeter(ep)
	m.StripUsage = strip
	r := NewSSEReader(strings.NewReader(stream), 1<<20)
	forwarded := 0
	for {
		ev, err := r.Next()
		if err != nil {
			break
		}
		if m.Observe(ev) {
			forwarded++
		}
	}
	return m, forwarded
}

func TestMeterOpenAI(t *testing.T) {
	stream := `data: {"id":"x","choices":[{"delta":{"content":"Hello"}}],"usage":null}` + "\n\n" +
		`data: {"id":"x","choices":[{"delta":{"content":" world"}}],"usage":null}` + "\n\n" +
		`data: {"id":"x","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":2}}` + "\n\n" +
		"data: [DONE]\n\n"
	m, fwd := meterRun(t, Chat, true, stream)
	if tok, est := m.Usage(999); tok != (usage.Tokens{Input: 12, Output: 2}) || est || !m.Done() || fwd != 3 {
		t.Fatalf("usage %+v est=%v done=%v forwarded=%d", tok, est, m.Done(), fwd)
	}
	_, fwd = meterRun(t, Chat, false, stream)
	if fwd != 4 {
		t.Fatalf("without strip, forwarded %d of 4", fwd)
	}
	noUsage := strings.Replace(stream, `data: {"id":"x","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":2}}`+"\n\n", "", 1)
	m, _ = meterRun(t, Chat, true, noUsage)
	if tok, est := m.Usage(50); !est || tok.Input != 50 || tok.Output != 11 { // 11 bytes: at most 11 tokens
		t.Fatalf("estimated usage %+v est=%v", tok, est)
	}
}

func TestMeterAnthropic(t *testing.T) {
	stream := "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":25,\"cache_read_input_tokens\":5,\"output_tokens\":1}}}\n\n" +
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi there\"}}\n\n" +
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\n\n" +
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
	m, fwd := meterRun(t, Messages, false, stream)
	tok, est := m.Usage(0)
	if tok != (usage.Tokens{Input: 30, CachedInput: 5, Output: 15}) || est || !m.Done() || fwd != 4 || m.ResponseID() != "msg_1" {
		t.Fatalf("usage %+v est=%v done=%v fwd=%d id=%q", tok, est, m.Done(), fwd, m.ResponseID())
	}
}

func TestMeterResponses(t *testing.T) {
	stream := "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"abcd\"}\n\n" +
		"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n"
	m, _ := meterRun(t, Responses, false, stream)
	if tok, est := m.Usage(0); tok != (usage.Tokens{Input: 9, Output: 1}) || est || !m.Done() {
		t.Fatalf("usage %+v est=%v", tok, est)
	}
}

func TestParseErrorScrubs(t *testing.T) {
	e := ParseError(401, []byte(`{"error":{"message":"Incorrect API key provided: sk-abc123*******wxyz. See docs.","type":"invalid_request_error","code":"invalid_api_key"}}`))
	if strings.Contains(e.Message, "sk-abc") || e.Code != "invalid_api_key" {
		t.Fatalf("ParseError = %+v", e)
	}
	if e := ParseError(500, []byte(`{"error":"plain text"}`)); e.Message != "plain text" {
		t.Fatalf("string error = %+v", e)
	}
}

// FuzzMeter: arbitrary streams never panic the meter, and usage is never
// negative.
func FuzzMeter(f *testing.F) {
	f.Add("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n", 0)
	f.Add("event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":-5}}\n\n", 2)
	f.Add("data: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":3}}}\n\n", 1)
	f.Fuzz(func(t *testing.T, stream string, which int) {
		eps := []Endpoint{Chat, Responses, Messages}
		ep := eps[(which%3+3)%3]
		m := NewMeter(ep)
		r := NewSSEReader(strings.NewReader(stream), 1<<16)
		for {
			ev, err := r.Next()
			if err != nil {
				break
			}
			m.Observe(ev)
		}
		for _, tok := range []usage.Tokens{first(m.Usage(int64(len(stream)))), first3(ParseUsage(ep, []byte(stream)))} {
			if tok.Input < 0 || tok.Output < 0 || tok.CachedInput < 0 || tok.CacheWrite < 0 || tok.CachedInput+tok.CacheWrite > tok.Input {
				t.Fatalf("inconsistent usage %+v", tok)
			}
		}
		ParseError(400, []byte(stream))
	})
}

func first(t usage.Tokens, _ bool) usage.Tokens { return t }

func first3(t usage.Tokens, _ string, _ bool) usage.Tokens { return t }
