package proxy

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

// TestForStoreHostileStrings: whatever a caller or an upstream put in a usage
// record's strings, what reaches the store is valid UTF-8 without NUL, and
// bounded.
func TestForStoreHostileStrings(t *testing.T) {
	huge := strings.Repeat("\x00", 70_000)
	reasons := make([]string, 100)
	for i := range reasons {
		reasons[i] = "p\x00\xff" + huge
	}
	rec := forStore(usage.Record{ID: "req_1", Model: "gpt-4o\x00x", ErrorCode: "\xff\xfe", UpstreamRequestID: huge, Provider: "a\xc3", Reasons: reasons})
	for name, s := range map[string]string{"model": rec.Model, "error_code": rec.ErrorCode, "upstream_request_id": rec.UpstreamRequestID, "provider": rec.Provider} {
		if !utf8.ValidString(s) || strings.Contains(s, "\x00") || len(s) > 256 {
			t.Errorf("%s = %q (%d bytes)", name, s, len(s))
		}
	}
	if rec.Model != "gpt-4o\uFFFDx" || rec.ID != "req_1" {
		t.Errorf("model %q, id %q", rec.Model, rec.ID)
	}
	if len(rec.Reasons) != 32 || !strings.HasPrefix(rec.Reasons[0], "p\uFFFD\uFFFD") || len(rec.Reasons[0]) > 128 {
		t.Errorf("reasons: %d, first %q", len(rec.Reasons), rec.Reasons[0])
	}
	if reasons[0][1] != 0 {
		t.Error("forStore changed the caller's slice")
	}
}
