package sim

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func post(t *testing.T, h http.Handler, path, body string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("POST", path, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestUsageGrowsAndStaysWithinLimit: usage grows with the input and never
// exceeds the requested maximum.
func TestUsageGrowsAndStaysWithinLimit(t *testing.T) {
	h := New("")
	usage := func(content string, max int) (int64, int64) {
		body := `{"model":"m","messages":[{"role":"user","content":"` + content + `"}]`
		if max >= 0 {
			body += fmt.Sprintf(`,"max_tokens":%d`, max)
		}
		rec := post(t, h, "/v1/chat/completions", body+"}", nil)
		var r struct {
			Usage struct {
				Prompt     int64 `json:"prompt_tokens"`
				Completion int64 `json:"completion_tokens"`
			} `json:"usage"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		return r.Usage.Prompt, r.Usage.Completion
	}
	in1, out1 := usage("short", -1)
	in2, out2 := usage(strings.Repeat("long input ", 200), -1)
	if in2 <= in1 || out2 <= out1 {
		t.Fatalf("usage does not grow with input: %d/%d then %d/%d", in1, out1, in2, out2)
	}
	for _, max := range []int{0, 1, 5, 1000} {
		if _, out := usage(strings.Repeat("x", 400), max); out > int64(max) {
			t.Fatalf("max_tokens %d: %d output tokens", max, out)
		}
	}
}

func TestAuthAndErrorShapes(t *testing.T) {
	h := New("sk-right")
	rec := post(t, h, "/v1/chat/completions", `{}`, map[string]string{"Authorization": "Bearer sk-wrong-0123456789"})
	if rec.Code != 401 || !strings.Contains(rec.Body.String(), `"code":"invalid_api_key"`) {
		t.Fatalf("openai 401: %d %s", rec.Code, rec.Body)
	}
	rec = post(t, h, "/v1/messages", `{}`, map[string]string{"x-api-key": "nope"})
	if rec.Code != 401 || !strings.Contains(rec.Body.String(), `"type":"authentication_error"`) {
		t.Fatalf("anthropic 401: %d %s", rec.Code, rec.Body)
	}
	rec = post(t, h, "/v1/messages", `{"model":"claude","messages":[{"role":"user","content":"x"}]}`, map[string]string{"x-api-key": "sk-right"})
	if rec.Code != 400 || !strings.Contains(rec.Body.String(), "max_tokens") {
		t.Fatalf("anthropic without max_tokens: %d %s", rec.Code, rec.Body)
	}
	h.SetFault(Fault{Status: 529})
	rec = post(t, h, "/v1/messages", `{}`, map[string]string{"x-api-key": "sk-right"})
	if rec.Code != 529 || !strings.Contains(rec.Body.String(), "overloaded_error") {
		t.Fatalf("fault 529: %d %s", rec.Code, rec.Body)
	}
}

// TestStreamShapes checks the event sequence of each protocol.
func TestStreamShapes(t *testing.T) {
	h := New("")
	events := func(path, body string) []string {
		rec := post(t, h, path, body, nil)
		if ct := rec.Header().Get("Content-Type"); ct != "text/event-stream" {
			t.Fatalf("%s: content type %q", path, ct)
		}
		var names []string
		sc := bufio.NewScanner(rec.Body)
		for sc.Scan() {
			line := sc.Text()
			if name, ok := strings.CutPrefix(line, "event: "); ok {
				names = append(names, name)
			} else if data, ok := strings.CutPrefix(line, "data: "); ok && !strings.Contains(path, "messages") && !strings.Contains(path, "responses") {
				if data == "[DONE]" {
					names = append(names, "[DONE]")
				} else if strings.Contains(data, `"choices":[]`) {
					names = append(names, "usage")
				} else {
					names = append(names, "chunk")
				}
			}
		}
		return names
	}
	chat := events("/v1/chat/completions", `{"model":"m","stream":true,"stream_options":{"include_usage":true},"max_tokens":2,"messages":[{"role":"user","content":"x"}]}`)
	if strings.Join(chat, ",") != "chunk,chunk,chunk,chunk,usage,[DONE]" {
		t.Errorf("chat stream: %v", chat)
	}
	msgs := events("/v1/messages", `{"model":"m","stream":true,"max_tokens":2,"messages":[{"role":"user","content":"x"}]}`)
	if strings.Join(msgs, ",") != "message_start,content_block_start,ping,content_block_delta,content_block_delta,content_block_stop,message_delta,message_stop" {
		t.Errorf("messages stream: %v", msgs)
	}
	resp := events("/v1/responses", `{"model":"m","stream":true,"input":"x"}`)
	if resp[0] != "response.created" || resp[len(resp)-1] != "response.completed" {
		t.Errorf("responses stream: %v", resp)
	}
}
