package admin

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

// The admin API's attempt limits and throttles count per source address, so
// a caller must not choose its address by writing X-Forwarded-For: the
// address is the rightmost entry outside the trusted proxies, as on the data
// plane, never the leftmost.
func TestSourceAddrIgnoresSpoofedEntries(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	for _, tc := range []struct {
		name, peer, xff string
		trust           bool
		trusted         []netip.Prefix
		want            string
	}{
		{"headers not trusted", "10.0.0.1:5000", "6.6.6.6", false, nil, "10.0.0.1"},
		{"spoofed leftmost entry", "10.0.0.1:5000", "6.6.6.6, 203.0.113.7", true, trusted, "203.0.113.7"},
		{"chain of trusted proxies", "10.0.0.1:5000", "6.6.6.6, 203.0.113.7, 10.1.2.3", true, trusted, "203.0.113.7"},
		{"peer is not a trusted proxy", "198.51.100.9:5000", "6.6.6.6", true, trusted, "198.51.100.9"},
		{"no trusted list: the rightmost entry", "10.0.0.1:5000", "6.6.6.6, 203.0.113.7", true, nil, "203.0.113.7"},
	} {
		r := httptest.NewRequest("POST", "/v1/auth/login", nil)
		r.RemoteAddr = tc.peer
		r.Header.Set("X-Forwarded-For", tc.xff)
		if got := SourceAddr(r, tc.trust, tc.trusted); got.String() != tc.want {
			t.Errorf("%s: SourceAddr = %s, want %s", tc.name, got, tc.want)
		}
	}
}
