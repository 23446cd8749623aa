package sim

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestCountTokensMatchesMessages: count_tokens answers the input tokens that
// /v1/messages bills for the same request.
func TestCountTokensMatchesMessages(t *testing.T) {
	h := New("k")
	hdr := map[string]string{"x-api-key": "k"}
	for _, msgs := range []string{
		`[{"role":"user","content":"hi"}]`,
		`[{"role":"user","content":"` + strings.Repeat("governance ", 300) + `"},{"role":"assistant","content":[{"type":"text","text":"ok"}]}]`,
	} {
		body := `{"model":"claude-sonnet-4-5","system":"be brief","messages":` + msgs
		rec := post(t, h, "/v1/messages/count_tokens", body+"}", hdr)
		var ct struct {
			InputTokens int64 `json:"input_tokens"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &ct); err != nil || rec.Code != 200 || ct.InputTokens == 0 {
			t.Fatalf("count_tokens: %d %s", rec.Code, rec.Body)
		}
		var m struct {
			Usage struct {
				InputTokens int64 `json:"input_tokens"`
			} `json:"usage"`
		}
		rec = post(t, h, "/v1/messages", body+`,"max_tokens":5}`, hdr)
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil || m.Usage.InputTokens != ct.InputTokens {
			t.Fatalf("messages billed %d input tokens, count_tokens said %d", m.Usage.InputTokens, ct.InputTokens)
		}
	}
	if rec := post(t, h, "/v1/messages/count_tokens", `{"model":"m","messages":[]}`, hdr); rec.Code != 400 {
		t.Fatalf("no messages: %d", rec.Code)
	}
	if rec := post(t, h, "/v1/messages/count_tokens", `{"model":"m","messages":[{"role":"user","content":"x"}]}`, map[string]string{"x-api-key": "wrong"}); rec.Code != 401 {
		t.Fatalf("wrong key: %d", rec.Code)
	}
}
