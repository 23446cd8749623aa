package proxy

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/provider"
)

// benchBody is a chat body of about size bytes: a conversation of messages.
func benchBody(size int) []byte {
	var msgs []string
	for n := 0; n < size; n += 240 {
		msgs = append(msgs, fmt.Sprintf(`{"role":"user","content":[{"type":"text","text":%q}]}`, strings.Repeat("budgets hold ", 16)))
	}
	return []byte(`{"model":"gpt-4o","max_tokens":100,"stream":true,"messages":[` + strings.Join(msgs, ",") + `]}`)
}

// BenchmarkParseCall measures the strict reading with the structured walk
// (go test -bench ParseCall ./internal/proxy/).
func BenchmarkParseCall(b *testing.B) {
	for _, size := range []int{2 << 10, 1 << 20} {
		body := benchBody(size)
		b.Run(fmt.Sprintf("strict-%dKiB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := ParseCall(provider.Chat, body); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("encoding-json-struct-%dKiB", size>>10), func(b *testing.B) { // what the gateway did before
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				var raw struct {
					Model     json.RawMessage `json:"model"`
					Stream    *bool           `json:"stream"`
					MaxTokens *int64          `json:"max_tokens"`
				}
				if err := json.Unmarshal(body, &raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
