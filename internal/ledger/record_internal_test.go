package ledger

import (
	"testing"
	"time"
)

// BenchmarkRecordEncode is Marshal without bounding: the difference to
// BenchmarkRecordMarshal is what bounding costs.
func BenchmarkRecordEncode(b *testing.B) {
	r := Record{Kind: KindCallStart, Time: time.Now(), RequestID: "req_0123456789abcdefghijklmn", KeyID: "key_1", PrincipalID: "prn_1",
		SourceIP: "127.0.0.1", UserAgent: "Mozilla/5.0 (X11; Linux x86_64) openai-python/2.1.0", Endpoint: "chat.completions", Model: "gpt-4o-mini", Provider: "openai", Decision: "allow"}
	b.ReportAllocs()
	for b.Loop() {
		r.encode()
	}
}
