package httpx

import (
	"net/netip"
	"net/textproto"
	"strings"
)

// SourceAddr returns the address a request came from. Without trustHeaders it
// is the connection's peer. With trustHeaders it is the rightmost entry of
// X-Forwarded-For that is not a trusted proxy, walking from the peer leftwards:
// each proxy appends the address it received the request from, so entries to
// the right were written by proxies the operator runs and the leftmost ones by
// whoever sent the request (anyone can put anything there).
//
//   - Several X-Forwarded-For header lines are one list, in order.
//   - With trusted non-empty, the peer itself must be in it, else the header
//     is ignored (anyone reaching the listener directly could have sent it).
//     With trusted empty, the peer is the one trusted proxy: the rightmost
//     entry is the client.
//   - An entry that is not an IP address stops the walk and the peer is used:
//     nothing left of a garbled entry can be trusted.
//   - If every entry is trusted, the leftmost is used.
//
// The result is the zero Addr only if the peer address cannot be parsed.
func SourceAddr(remoteAddr string, h map[string][]string, trustHeaders bool, trusted []netip.Prefix) netip.Addr {
	peer := peerAddr(remoteAddr)
	if !trustHeaders {
		return peer
	}
	if len(trusted) > 0 && !inPrefixes(peer, trusted) {
		return peer
	}
	var entries []string
	for _, line := range h[textproto.CanonicalMIMEHeaderKey("X-Forwarded-For")] {
		entries = append(entries, strings.Split(line, ",")...)
	}
	var last netip.Addr
	for i := len(entries) - 1; i >= 0; i-- {
		e := strings.TrimSpace(entries[i])
		a, err := netip.ParseAddr(e)
		if err != nil || a.Zone() != "" {
			return peer
		}
		a = a.Unmap()
		if !inPrefixes(a, trusted) {
			return a
		}
		last = a
	}
	if last.IsValid() {
		return last
	}
	return peer
}

func peerAddr(remoteAddr string) netip.Addr {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		if a, err := netip.ParseAddr(remoteAddr); err == nil {
			return a.Unmap()
		}
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func inPrefixes(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParsePrefixes reads CIDRs ("10.0.0.0/8") or single addresses ("10.1.2.3",
// taken as /32 or /128), as configured for trusted proxies.
func ParsePrefixes(ss []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 { // ::ffff:10.0.0.0/104 is 10.0.0.0/8: entries are unmapped
				p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return nil, &prefixError{s}
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

type prefixError struct{ s string }

func (e *prefixError) Error() string {
	return "trusted proxy " + `"` + e.s + `"` + " is neither a CIDR (10.0.0.0/8) nor an IP address"
}
