package provider

import (
	"net/http"
	"strings"
	"unicode/utf8"
)

// minKeyRun is the shortest run of an upstream key's characters that
// ScrubKeys removes: long enough that ordinary text does not match by chance,
// short enough that a masked echo ("sk-abc…wxyz" shows 10) gives little away.
const minKeyRun = 8

// ScrubKeys replaces in s every run of at least minKeyRun characters that
// appears in one of the upstream's keys (a shorter key only in full) with
// [REDACTED]. Known credential shapes are scrubbed separately (scrub); this
// catches the values themselves, whatever their shape.
func (u *Upstream) ScrubKeys(s string) string {
	if len(u.keys) == 0 || s == "" {
		return s
	}
	mark := make([]bool, len(s))
	hit := false
	for _, k := range u.keys {
		key := k.reveal()
		if key == "" {
			continue
		}
		run := min(minKeyRun, len(key))
		for j := 0; j+run <= len(key); j++ {
			sub := key[j : j+run]
			for off := 0; off+run <= len(s); {
				i := strings.Index(s[off:], sub)
				if i < 0 {
					break
				}
				i += off
				// Extend the match both ways as far as it follows the key.
				a, b := i, i+run
				for ka := j; a > 0 && ka > 0 && s[a-1] == key[ka-1]; a, ka = a-1, ka-1 {
				}
				for kb := j + run; b < len(s) && kb < len(key) && s[b] == key[kb]; b, kb = b+1, kb+1 {
				}
				for x := a; x < b; x++ {
					mark[x] = true
				}
				hit = true
				off = i + 1
			}
		}
	}
	if !hit {
		return s
	}
	var out strings.Builder
	for i := 0; i < len(s); {
		if !mark[i] {
			out.WriteByte(s[i])
			i++
			continue
		}
		out.WriteString("[REDACTED]")
		for i < len(s) && mark[i] {
			i++
		}
	}
	return strings.ToValidUTF8(out.String(), "\uFFFD")
}

// cutRunes returns s cut to at most n bytes on a rune boundary.
func cutRunes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// NoRedirects returns a copy of c that never follows a redirect: the 3xx
// itself is returned. Following one would send the request, provider key
// included, wherever the upstream (or whoever controls its answers) points.
func NoRedirects(c *http.Client) *http.Client {
	if c == nil {
		c = http.DefaultClient
	}
	cp := *c
	cp.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cp
}
