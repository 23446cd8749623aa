package httpx

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// Request ids sort by time (the store's indexes append at their right edge)
// and keep 80 random bits (unguessable, unique).
func TestRequestIDsSortByTimeAndStayRandom(t *testing.T) {
	format := regexp.MustCompile(`^req_[0-9a-f]{32}$`)
	t0 := time.UnixMilli(1_764_460_800_000) // 2025-11-30
	prev := ""
	seen := map[string]bool{}
	for i := range 2000 {
		id := newRequestID(t0.Add(time.Duration(i/4) * time.Millisecond))
		if !format.MatchString(id) {
			t.Fatalf("id %q does not match %s", id, format)
		}
		if i%4 == 0 && id <= prev {
			t.Fatalf("id %q made a millisecond later sorts before %q", id, prev)
		}
		if seen[id] {
			t.Fatalf("id %q made twice", id)
		}
		seen[id] = true
		prev = id
	}
	// The first 12 digits are the time; the rest differ between ids of one
	// millisecond (80 random bits: two equal tails in 2,000 would be a broken
	// source, not chance).
	a, b := newRequestID(t0), newRequestID(t0)
	if a[:16] != "req_019ad20f2800" || b[:16] != a[:16] || a[16:] == b[16:] {
		t.Fatalf("ids of one millisecond: %q, %q", a, b)
	}
	// Sorting holds past the 48-bit time's carries, far into the future.
	late := newRequestID(time.UnixMilli(1<<47 - 1))
	if !strings.HasPrefix(late, "req_7fffffffffff") || late <= a {
		t.Fatalf("a late id %q", late)
	}
	if id := NewRequestID(); !format.MatchString(id) || id < a {
		t.Fatalf("NewRequestID() = %q", id)
	}
}
