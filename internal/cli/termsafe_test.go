package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestTermSafeEscapesHostileRecordText: a record whose user agent carries a
// C1 CSI, a bidi override or an isolate is printed escaped, and the printed
// record still parses to the same value.
func TestTermSafeEscapesHostileRecordText(t *testing.T) {
	ua := "curl/8 \u009b31m red \u202egnp.exe \u2066x\u2069 \u200f \x1b[2J \x7f"
	rec, err := json.Marshal(map[string]string{"user_agent": ua})
	if err != nil {
		t.Fatal(err)
	}
	out := termSafe(string(rec))
	if i := strings.IndexFunc(out, unsafeRune); i >= 0 {
		t.Fatalf("termSafe left %q at %d in %q", out[i:], i, out)
	}
	var back map[string]string
	if err := json.Unmarshal([]byte(out), &back); err != nil || back["user_agent"] != ua {
		t.Fatalf("escaped record reads %q, %v; want the same user agent", back["user_agent"], err)
	}
	if got := termSafe("plain text\n\twith ü and 日本"); got != "plain text\n\twith ü and 日本" {
		t.Fatalf("termSafe changed harmless text: %q", got)
	}
	if got := termSafe("bad \xff\xfe utf8"); !utf8.ValidString(got) || strings.Contains(got, "\xff") {
		t.Fatalf("termSafe(invalid UTF-8) = %q", got)
	}
}

func FuzzTermSafe(f *testing.F) {
	f.Add("a\u009bb\u202ec")
	f.Add("\xff{\"x\":1}")
	f.Fuzz(func(t *testing.T, s string) {
		out := termSafe(s)
		if !utf8.ValidString(out) || strings.IndexFunc(out, unsafeRune) >= 0 {
			t.Fatalf("termSafe(%q) = %q", s, out)
		}
		// Records are compact JSON: white space between tokens (a bare CR
		// there is escaped like any other, since it moves the cursor) is not
		// part of the promise.
		var compact bytes.Buffer
		if json.Valid([]byte(s)) && utf8.ValidString(s) && json.Compact(&compact, []byte(s)) == nil && compact.String() == s {
			var a, b any
			if json.Unmarshal([]byte(s), &a) == nil && json.Unmarshal([]byte(out), &b) != nil {
				t.Fatalf("termSafe broke valid JSON %q -> %q", s, out)
			}
		}
	})
}
