package provider

import "testing"

// The model an answer names (gen_ai.response.model) is read where the usage
// is: complete answers and streams of every protocol.
func TestResponseModel(t *testing.T) {
	for _, tc := range []struct {
		ep   Endpoint
		body string
		want string
	}{
		{Chat, `{"id":"c1","model":"gpt-4o-2024-08-06","usage":{"prompt_tokens":1,"completion_tokens":2}}`, "gpt-4o-2024-08-06"},
		{Responses, `{"id":"r","model":"o3-2025-04-16","usage":{"input_tokens":1,"output_tokens":1}}`, "o3-2025-04-16"},
		{Messages, `{"id":"m","model":"claude-sonnet-4-5-20250929","usage":{"input_tokens":1,"output_tokens":1}}`, "claude-sonnet-4-5-20250929"},
		{Chat, `{"id":"c1","model":"gpt-4o","error":"no usage"}`, "gpt-4o"},
		{Chat, `{"id":"c1","usage":{"prompt_tokens":1}}`, ""},
		{Chat, `{"model":7,"usage":{"prompt_tokens":1}}`, ""}, // not a string: nothing, no panic
	} {
		if _, _, got, _ := ParseUsageModel(tc.ep, []byte(tc.body)); got != tc.want {
			t.Errorf("ParseUsageModel(%s, %s) model %q, want %q", tc.ep.Name, tc.body, got, tc.want)
		}
	}
	for _, tc := range []struct {
		ep     Endpoint
		stream string
		want   string
	}{
		{Chat, "data: {\"id\":\"c\",\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n" +
			"data: {\"id\":\"c\",\"model\":\"other\",\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n", "gpt-4o-2024-08-06"},
		{Responses, "data: {\"type\":\"response.created\",\"response\":{\"id\":\"r\",\"model\":\"o3-2025-04-16\"}}\n\n" +
			"data: {\"type\":\"response.completed\",\"response\":{\"id\":\"r\",\"model\":\"o3-2025-04-16\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\n", "o3-2025-04-16"},
		{Messages, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"claude-sonnet-4-5-20250929\",\"usage\":{\"input_tokens\":3}}}\n\n" +
			"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n", "claude-sonnet-4-5-20250929"},
		{Chat, "data: {\"id\":\"c\",\"choices\":[]}\n\ndata: [DONE]\n\n", ""},
	} {
		m, _ := meterRun(t, tc.ep, false, tc.stream)
		if got := m.ResponseModel(); got != tc.want {
			t.Errorf("%s stream: model %q, want %q", tc.ep.Name, got, tc.want)
		}
	}
}
