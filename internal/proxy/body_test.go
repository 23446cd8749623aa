package proxy

import (
	"errors"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
)

// TestParseCallRefusesAmbiguousBodies runs every way two JSON parsers can read
// one body differently: each must be a 400 naming the field, before anything
// else happens.
func TestParseCallRefusesAmbiguousBodies(t *testing.T) {
	tests := []struct {
		name, body string
		ep         provider.Endpoint
		code       string
		param      string
	}{
		{"duplicate model", `{"model":"gpt-4o-mini","model":"gpt-4o"}`, provider.Chat, "duplicate_field", "model"},
		{"case variant Model", `{"model":"gpt-4o-mini","Model":"gpt-4o"}`, provider.Chat, "ambiguous_field", "Model"},
		{"case variant Stream", `{"model":"m","stream":true,"Stream":false,"messages":[]}`, provider.Chat, "ambiguous_field", "Stream"},
		{"STREAM alone", `{"model":"m","STREAM":true,"messages":[]}`, provider.Chat, "ambiguous_field", "STREAM"},
		{"long s stream", `{"model":"m","ſtream":true}`, provider.Chat, "ambiguous_field", "ſtream"},
		{"Kelvin sign", `{"model":"m","max_to\u212aens":1}`, provider.Chat, "ambiguous_field", "max_to\u212aens"},
		{"case variant Speed", `{"model":"m","max_tokens":5,"messages":[],"Speed":"fast"}`, provider.Messages, "ambiguous_field", "Speed"},
		{"dash variant inference-geo", `{"model":"m","max_tokens":5,"messages":[],"inference-geo":"us"}`, provider.Messages, "ambiguous_field", "inference-geo"},
		{"escaped duplicate", `{"model":"m","stre\u0061m":true,"stream":false}`, provider.Chat, "duplicate_field", "stream"},
		{"dash variant", `{"model":"m","max-tokens":1}`, provider.Chat, "ambiguous_field", "max-tokens"},
		{"N for n", `{"model":"m","N":128}`, provider.Chat, "ambiguous_field", "N"},
		{"deep duplicate", `{"model":"m","messages":[{"role":"user","content":"a","content":"b"}]}`, provider.Chat, "duplicate_field", "content"},
		{"include_usage variant", `{"model":"m","stream":true,"stream_options":{"include_usage":false,"Include_Usage":true}}`, provider.Chat, "ambiguous_field", "Include_Usage"},
		{"invalid utf8 value", "{\"model\":\"m\",\"user\":\"\xff\"}", provider.Chat, "invalid_utf8", ""},
		{"invalid utf8 name", "{\"model\":\"m\",\"\xc3\":1}", provider.Chat, "invalid_utf8", ""},
		{"lone surrogate escape", `{"model":"m","user":"\ud800"}`, provider.Chat, "invalid_json", ""},
		{"long model", `{"model":"` + strings.Repeat("a", 257) + `"}`, provider.Chat, "invalid_model", "model"},
		{"completion cap on responses", `{"model":"m","input":"x","max_completion_tokens":1,"max_output_tokens":50000}`, provider.Responses, "unsupported_parameter", "max_completion_tokens"},
		{"max_tokens on responses", `{"model":"m","input":"x","max_tokens":1}`, provider.Responses, "unsupported_parameter", "max_tokens"},
		{"output cap on chat", `{"model":"m","max_output_tokens":1}`, provider.Chat, "unsupported_parameter", "max_output_tokens"},
		{"completion cap on completions", `{"model":"m","prompt":"x","max_completion_tokens":1}`, provider.Completions, "unsupported_parameter", "max_completion_tokens"},
		{"completion cap on messages", `{"model":"m","max_tokens":1,"max_completion_tokens":9}`, provider.Messages, "unsupported_parameter", "max_completion_tokens"},
		{"cap on embeddings", `{"model":"m","input":"x","max_tokens":1}`, provider.Embeddings, "unsupported_parameter", "max_tokens"},
		{"chat caps disagree", `{"model":"m","max_tokens":1,"max_completion_tokens":9}`, provider.Chat, "conflicting_parameters", "max_tokens"},
		{"messages without cap", `{"model":"m","messages":[]}`, provider.Messages, "missing_max_tokens", "max_tokens"},
		{"float cap", `{"model":"m","max_tokens":1e9}`, provider.Chat, "invalid_type", "max_tokens"},
		{"string n", `{"model":"m","n":"128"}`, provider.Chat, "invalid_type", "n"},
		{"n on responses", `{"model":"m","input":"x","n":4}`, provider.Responses, "unsupported_parameter", "n"},
		{"best_of on chat", `{"model":"m","best_of":4}`, provider.Chat, "unsupported_parameter", "best_of"},
		{"stream string", `{"model":"m","stream":"false"}`, provider.Chat, "invalid_type", "stream"},
		{"zero cap", `{"model":"m","max_tokens":0}`, provider.Chat, "invalid_value", "max_tokens"},
		{"content type variant", `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"x","TYPE":"input_file"}]}]}`, provider.Chat, "ambiguous_field", "messages[0].content[0].TYPE"},
		{"content image_url variant", `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"x","Image_Url":{"url":"u"}}]}]}`, provider.Chat, "ambiguous_field", "messages[0].content[0].Image_Url"},
		{"thinking budget variant", `{"model":"m","max_tokens":5,"thinking":{"type":"enabled","budget_tokens":1,"Budget_Tokens":90000}}`, provider.Messages, "ambiguous_field", "Budget_Tokens"},
		{"NUL-terminated name", `{"model":"gpt-4o-mini","model\u0000":"gpt-4o"}`, provider.Chat, "ambiguous_field", "model\x00"},
		{"trailing space", `{"model":"gpt-4o-mini","model ":"gpt-4o"}`, provider.Chat, "ambiguous_field", "model "},
		{"zero-width joiner", `{"model":"gpt-4o-mini","mo\u200ddel":"gpt-4o"}`, provider.Chat, "ambiguous_field", "mo\u200ddel"},
		{"trailing data", `{"model":"m"}{"model":"x"}`, provider.Chat, "invalid_json", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCall(tt.ep, []byte(tt.body))
			var he *httpx.Error
			if !errors.As(err, &he) || he.Status != 400 || he.Code != tt.code || he.Param != tt.param {
				t.Fatalf("ParseCall(%q) = %v (%+v), want 400 %s param %q", tt.body, err, he, tt.code, tt.param)
			}
		})
	}
}

// TestParseCallMultipliers: what a call is billed for, read from structure.
func TestParseCallMultipliers(t *testing.T) {
	tests := []struct {
		body             string
		ep               provider.Endpoint
		choices, prompts int64
		images           int64
		unbounded        string
	}{
		{`{"model":"m","n":128,"messages":[]}`, provider.Chat, 128, 1, 0, ""},
		{`{"model":"m","n":null,"messages":[]}`, provider.Chat, 1, 1, 0, ""},
		{`{"model":"m","n":2,"best_of":20,"prompt":"x"}`, provider.Completions, 20, 1, 0, ""},
		{`{"model":"m","prompt":["a","b","c"]}`, provider.Completions, 1, 3, 0, ""},
		{`{"model":"m","prompt":[1,2,3]}`, provider.Completions, 1, 1, 0, ""},
		{`{"model":"m","prompt":[[1],[2]],"n":3}`, provider.Completions, 3, 2, 0, ""},
		{`{"model":"m","messages":[{"role":"user","content":[{"type":"image\u005furl","image\u005furl":{"url":"https://x/a.png"}},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}]}`, provider.Chat, 1, 1, 2, ""},
		{`{"model":"m","input":[{"role":"user","content":[{"type":"input_image","file_id":"file-1"}]}]}`, provider.Responses, 1, 1, 1, ""},
		{`{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}},{"type":"tool_result","tool_use_id":"t","content":[{"type":"image","source":{"type":"url","url":"https://x"}}]}]}]}`, provider.Messages, 1, 1, 2, ""},
		{`{"model":"m","input":"x","background":true}`, provider.Responses, 1, 1, 0, "background"},
		{`{"model":"m","input":"x","background":false}`, provider.Responses, 1, 1, 0, ""},
		{`{"model":"m","input":"x","previous_response_id":"resp_1"}`, provider.Responses, 1, 1, 0, "previous_response_id"},
		{`{"model":"m","input":"x","conversation":"conv_1"}`, provider.Responses, 1, 1, 0, "conversation"},
		{`{"model":"m","prompt":{"id":"pmpt_1"}}`, provider.Responses, 1, 1, 0, "prompt"},
		{`{"model":"m","input":"x","tools":[{"type":"web_search"}]}`, provider.Responses, 1, 1, 0, "tools[0] (type web_search)"},
		{`{"model":"m","input":"x","tools":[{"type":"function","name":"f","parameters":{"type":"object"}}]}`, provider.Responses, 1, 1, 0, ""},
		{`{"model":"m","max_tokens":5,"messages":[],"tools":[{"type":"web_search_20250305","name":"web_search"}]}`, provider.Messages, 1, 1, 0, "tools[0] (type web_search_20250305)"},
		{`{"model":"m","max_tokens":5,"messages":[],"tools":[{"name":"f","input_schema":{"type":"object"}}]}`, provider.Messages, 1, 1, 0, ""},
		{`{"model":"m","max_tokens":5,"messages":[],"mcp_servers":[{"type":"url","url":"https://x"}]}`, provider.Messages, 1, 1, 0, "mcp_servers"},
		{`{"model":"m","messages":[{"role":"user","content":[{"type":"file","file":{"file_id":"file-1"}}]}]}`, provider.Chat, 1, 1, 0, "messages[0].content[0] (file)"},
		{`{"model":"m","input":[{"role":"user","content":[{"type":"input_file","file_url":"https://x/a.pdf"}]}]}`, provider.Responses, 1, 1, 0, "input[0].content[0] (file)"},
		{`{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"document","source":{"type":"url","url":"https://x/a.pdf"}}]}]}`, provider.Messages, 1, 1, 0, "messages[0].content[0] (document)"},
		{`{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"document","source":{"type":"text","media_type":"text/plain","data":"hi"}}]}]}`, provider.Messages, 1, 1, 0, ""},
		{`{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"AA","format":"wav"}}]}]}`, provider.Chat, 1, 1, 0, "messages[0].content[0] (audio)"},
		{`{"model":"m","messages":[],"modalities":["text","audio"]}`, provider.Chat, 1, 1, 0, "modalities"},
		{`{"model":"m","messages":[],"web_search_options":{}}`, provider.Chat, 1, 1, 0, "web_search_options"},
		// Anthropic fast mode bills 2-6x the model's price (rtbudget).
		{`{"model":"m","max_tokens":5,"messages":[],"speed":"fast"}`, provider.Messages, 1, 1, 0, "speed"},
		{`{"model":"m","max_tokens":5,"messages":[],"speed":"f\u0061st"}`, provider.Messages, 1, 1, 0, "speed"},
		{`{"model":"m","max_tokens":5,"messages":[],"speed":{"mode":"fast"}}`, provider.Messages, 1, 1, 0, "speed"},
		{`{"model":"m","max_tokens":5,"messages":[],"speed":"standard"}`, provider.Messages, 1, 1, 0, ""},
		{`{"model":"m","max_tokens":5,"messages":[],"speed":null}`, provider.Messages, 1, 1, 0, ""},
		{`{"model":"m","messages":[],"speed":"fast"}`, provider.Chat, 1, 1, 0, "speed"},
		// Anthropic's US-only inference costs more than the price table says.
		{`{"model":"m","max_tokens":5,"messages":[],"inference_geo":"us"}`, provider.Messages, 1, 1, 0, "inference_geo"},
		{`{"model":"m","max_tokens":5,"messages":[],"inference_geo":"global"}`, provider.Messages, 1, 1, 0, ""},
		{`{"model":"m","max_tokens":5,"messages":[],"inference_geo":7}`, provider.Messages, 1, 1, 0, "inference_geo"},
		{`{"model":"m","input":[{"type":"item_reference","id":"msg_1"}]}`, provider.Responses, 1, 1, 0, "input[0] (type item_reference)"},
		{`{"model":"m","input":[{"type":"function_call_output","call_id":"c","output":"ok"},{"type":"function_call","call_id":"c","name":"f","arguments":"{\"type\":\"weird\"}"}]}`, provider.Responses, 1, 1, 0, ""},
	}
	for _, tt := range tests {
		c, err := ParseCall(tt.ep, []byte(tt.body))
		if err != nil {
			t.Errorf("ParseCall(%s) = %v", tt.body, err)
			continue
		}
		u := ""
		if len(c.Shape.Unbounded) > 0 {
			u = c.Shape.Unbounded[0]
		}
		if c.Choices != tt.choices || c.Prompts != tt.prompts || c.Shape.Images != tt.images || u != tt.unbounded {
			t.Errorf("ParseCall(%s) = choices %d prompts %d images %d unbounded %q; want %d %d %d %q",
				tt.body, c.Choices, c.Prompts, c.Shape.Images, u, tt.choices, tt.prompts, tt.images, tt.unbounded)
		}
	}
}

// TestRewritesKeepOneReading: the output-cap and include_usage rewrites leave
// every other member's bytes as they were, add no duplicate, and read back
// as the call that was priced.
func TestRewritesKeepOneReading(t *testing.T) {
	body := `{"model":"gpt-4o" , "n":3,"messages":[{"role":"user","content":"<b>&é\u00e9"}],"stream":true,"stream_options":{"include_obfuscation":false}}`
	c, err := ParseCall(provider.Chat, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	c2, capped, err := setMaxOutput(provider.Chat, c, 77)
	if err != nil {
		t.Fatal(err)
	}
	if *c2.MaxOutput != 77 || c2.Choices != 3 || !strings.Contains(string(capped), `"content":"<b>&é\u00e9"`) {
		t.Fatalf("rewrite: %s (%+v)", capped, c2)
	}
	up, strip, err := requestUsage(provider.Chat, c2, capped)
	if err != nil || !strip {
		t.Fatal(err, strip)
	}
	again, err := ParseCall(provider.Chat, up)
	if err != nil {
		t.Fatalf("rewritten body %s: %v", up, err)
	}
	if !again.IncludeUsage || *again.MaxOutput != 77 || again.Model != "gpt-4o" || !again.Stream || again.Choices != 3 {
		t.Fatalf("rewritten body %s reads as %+v", up, again)
	}
	if strings.Count(string(up), "include_obfuscation") != 1 || strings.Count(string(up), "stream_options") != 1 {
		t.Fatalf("rewritten body %s", up)
	}
}

func TestDocumentContentIsBounded(t *testing.T) {
	c, err := ParseCall(provider.Messages, []byte(`{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"document","source":{"type":"content","content":[{"type":"text","text":"a"},{"type":"image","source":{"type":"base64","data":"AA"}}]}}]}]}`))
	if err != nil || len(c.Shape.Unbounded) != 0 || c.Shape.Images != 1 {
		t.Fatalf("%v %+v", err, c.Shape)
	}
}
