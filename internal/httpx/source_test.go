package httpx

import (
	"net/netip"
	"strings"
	"testing"
)

func TestSourceAddr(t *testing.T) {
	lb := []string{"10.0.0.0/8", "192.168.1.7", "2001:db8::/32"}
	cases := []struct {
		name    string
		peer    string
		xff     []string
		trust   bool
		trusted []string
		want    string
	}{
		{"headers not trusted", "10.0.0.1:5000", []string{"203.0.113.9"}, false, nil, "10.0.0.1"},
		{"no header", "10.0.0.1:5000", nil, true, lb, "10.0.0.1"},
		{"one proxy, no list: rightmost", "10.0.0.1:5000", []string{"6.6.6.6, 203.0.113.9"}, true, nil, "203.0.113.9"},
		{"never the leftmost", "10.0.0.1:5000", []string{"6.6.6.6, 203.0.113.9, 10.0.0.2"}, true, lb, "203.0.113.9"},
		{"spoofed leftmost with one proxy", "10.0.0.1:5000", []string{"1.1.1.1, 198.51.100.4"}, true, lb, "198.51.100.4"},
		{"several trusted hops skipped", "10.0.0.1:5000", []string{"198.51.100.4, 192.168.1.7, 10.9.9.9"}, true, lb, "198.51.100.4"},
		{"multiple header lines are one list", "10.0.0.1:5000", []string{"6.6.6.6, 198.51.100.4", "10.0.0.3", "10.0.0.2"}, true, lb, "198.51.100.4"},
		{"multiple lines, rightmost untrusted in last line", "10.0.0.1:5000", []string{"10.0.0.3", "6.6.6.6, 198.51.100.5"}, true, lb, "198.51.100.5"},
		{"peer not a trusted proxy: header ignored", "198.51.100.77:5000", []string{"203.0.113.9"}, true, lb, "198.51.100.77"},
		{"invalid entry stops the walk", "10.0.0.1:5000", []string{"203.0.113.9, garbage, 10.0.0.2"}, true, lb, "10.0.0.1"},
		{"entry with a port is invalid", "10.0.0.1:5000", []string{"203.0.113.9:1234"}, true, lb, "10.0.0.1"},
		{"empty entry is invalid", "10.0.0.1:5000", []string{"203.0.113.9,,10.0.0.2"}, true, lb, "10.0.0.1"},
		{"invalid entry left of the client does not matter", "10.0.0.1:5000", []string{"garbage, 203.0.113.9"}, true, lb, "203.0.113.9"},
		{"zone is invalid", "10.0.0.1:5000", []string{"fe80::1%eth0"}, true, lb, "10.0.0.1"},
		{"all trusted: leftmost", "10.0.0.1:5000", []string{"10.1.1.1, 10.0.0.2"}, true, lb, "10.1.1.1"},
		{"ipv6 client", "[2001:db8::1]:443", []string{"2a00:1450::5, 2001:db8::9"}, true, lb, "2a00:1450::5"},
		{"ipv4-mapped entry is unmapped", "10.0.0.1:5000", []string{"::ffff:203.0.113.9"}, true, lb, "203.0.113.9"},
		{"ipv4-mapped trusted entry skipped", "10.0.0.1:5000", []string{"203.0.113.9, ::ffff:10.0.0.2"}, true, lb, "203.0.113.9"},
		{"bad peer", "nonsense", nil, false, nil, "invalid IP"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ps, err := ParsePrefixes(c.trusted)
			if err != nil {
				t.Fatal(err)
			}
			h := map[string][]string{}
			if c.xff != nil {
				h["X-Forwarded-For"] = c.xff
			}
			if got := SourceAddr(c.peer, h, c.trust, ps).String(); got != c.want {
				t.Fatalf("got %s, want %s", got, c.want)
			}
		})
	}
}

func TestParsePrefixes(t *testing.T) {
	ps, err := ParsePrefixes([]string{"10.0.0.7/8", " 192.0.2.1 ", "2001:db8::/32", "::1", "::ffff:172.16.0.0/108"})
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("172.16.0.0/12")}
	for i := range want {
		if ps[i] != want[i] {
			t.Fatalf("prefix %d: %s, want %s", i, ps[i], want[i])
		}
	}
	for _, bad := range []string{"", "10.0.0.0/33", "example.com", "fe80::1%eth0", "10.0.0.0/8,10.1.0.0/16"} {
		if _, err := ParsePrefixes([]string{bad}); err == nil {
			t.Fatalf("%q accepted", bad)
		}
	}
}

func FuzzSourceAddr(f *testing.F) {
	f.Add("10.0.0.1:1", "1.2.3.4, 10.0.0.2", "5.6.7.8")
	f.Add("10.0.0.1:1", "x", "10.0.0.3, ::ffff:10.0.0.4")
	f.Fuzz(func(t *testing.T, peer, a, b string) {
		ps, _ := ParsePrefixes([]string{"10.0.0.0/8"})
		got := SourceAddr(peer, map[string][]string{"X-Forwarded-For": {a, b}}, true, ps)
		// The answer is the peer or one of the entries, never anything else,
		// and an untrusted entry is never skipped for one further left.
		if got == peerAddr(peer) {
			return
		}
		var entries []string
		for _, line := range []string{a, b} {
			entries = append(entries, strings.Split(line, ",")...)
		}
		for i := len(entries) - 1; i >= 0; i-- {
			e, err := netip.ParseAddr(strings.TrimSpace(entries[i]))
			if err != nil {
				t.Fatalf("%s returned past the invalid entry %q", got, entries[i])
			}
			if e.Unmap() == got {
				return
			}
			if !ps[0].Contains(e.Unmap()) {
				t.Fatalf("%s returned past the untrusted entry %s", got, e)
			}
		}
		t.Fatalf("%s is neither the peer nor an entry", got)
	})
}
