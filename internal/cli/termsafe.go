package cli

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// termSafe makes text from a log record safe to print on a terminal. Records
// carry caller-chosen strings (user agents, model names, error text) that
// canonical JSON leaves raw when they are not C0 controls: C1 controls (U+009B
// is CSI to some terminals), bidirectional overrides and isolates that make a
// line read differently from its bytes, and, from a hostile log server,
// invalid UTF-8. Each becomes a JSON \u escape, so a (compact) JSON record
// printed through termSafe still parses to the same value.
func termSafe(s string) string {
	i := strings.IndexFunc(s, unsafeRune)
	if i < 0 && utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b.WriteString(`\ufffd`)
		case unsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// unsafeRune reports whether r can change what a terminal shows beyond its
// own glyph: C0 controls other than newline and tab, DEL, C1 controls, and
// the Unicode bidirectional formatting characters.
func unsafeRune(r rune) bool {
	switch {
	case r == '\n' || r == '\t':
		return false
	case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f):
		return true
	case r == 0x061c || r == 0x200e || r == 0x200f || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069):
		return true
	case r == utf8.RuneError: // already U+FFFD, or invalid bytes (handled by the caller)
		return false
	}
	return false
}
