package sim

import (
	"encoding/json"
	"testing"
)

// TestHostileReadsLikeANonGoServer: names are case-sensitive and the last
// duplicate wins, where Go's encoding/json folds case.
func TestHostileReadsLikeANonGoServer(t *testing.T) {
	h := New("")
	h.SetFault(Fault{Hostile: true})
	for _, tt := range []struct {
		body   string
		model  string
		stream bool
		cap    int64
	}{
		{`{"model":"gpt-4o-mini","model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`, "gpt-4o", false, -1},
		{`{"Model":"gpt-4o","model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`, "gpt-4o-mini", false, -1},
		{`{"model":"m","stream":false,"Stream":true,"max_completion_tokens":3,"messages":[{"role":"user","content":"hi"}]}`, "m", false, 3},
		{`{"model":"m","max_output_tokens":9,"max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`, "m", false, 2},
	} {
		before := len(h.Bills())
		rec := post(t, h, "/v1/chat/completions", tt.body, nil)
		bills := h.Bills()
		if rec.Code != 200 || len(bills) != before+1 {
			t.Fatalf("%s: %d %s", tt.body, rec.Code, rec.Body)
		}
		b := bills[len(bills)-1]
		if b.Model != tt.model || b.Stream != tt.stream || b.Cap != tt.cap {
			t.Errorf("%s read as %+v", tt.body, b)
		}
	}
}

// TestHostileBillsTheShape: n, best_of, prompt batches and images are
// billed; background answers at once without usage; NoUsage withholds it.
func TestHostileBillsTheShape(t *testing.T) {
	h := New("")
	h.SetFault(Fault{Hostile: true})
	usage := func(path, body string) (map[string]any, Bill) {
		rec := post(t, h, path, body, nil)
		var r struct {
			Usage  map[string]any `json:"usage"`
			Status string         `json:"status"`
		}
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &r) != nil {
			t.Fatalf("%s: %d %s", body, rec.Code, rec.Body)
		}
		bills := h.Bills()
		return r.Usage, bills[len(bills)-1]
	}
	u, b := usage("/v1/chat/completions", `{"model":"m","n":128,"max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`)
	if b.Output != 1280 || u["completion_tokens"].(float64) != 1280 {
		t.Errorf("n=128: usage %v bill %+v", u, b)
	}
	_, b = usage("/v1/completions", `{"model":"m","n":2,"best_of":5,"max_tokens":10,"prompt":["a","b","c"]}`)
	if b.Output != 150 {
		t.Errorf("best_of=5 × 3 prompts: bill %+v", b)
	}
	_, b = usage("/v1/chat/completions", `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image\u005furl","image_url":{"url":"https://x"}}]}]}`)
	if b.Input < hostileImageTokens {
		t.Errorf("image not billed: %+v", b)
	}
	u, b = usage("/v1/responses", `{"model":"m","input":"hi","background":true,"max_output_tokens":50}`)
	if u != nil || !b.Background || b.Output != 50 {
		t.Errorf("background: usage %v bill %+v", u, b)
	}
	h.SetFault(Fault{Hostile: true, NoUsage: true})
	u, _ = usage("/v1/messages", `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`)
	if u != nil {
		t.Errorf("NoUsage JSON: usage %v", u)
	}
}
