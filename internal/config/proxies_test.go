package config

import (
	"strings"
	"testing"
)

func TestTrustedProxies(t *testing.T) {
	c := Default()
	if err := c.Parse([]byte("trust_proxy_headers: true\ntrusted_proxies: [10.0.0.0/8, 192.0.2.1, \"2001:db8::/32\"]\n")); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil || len(c.TrustedProxies) != 3 {
		t.Fatalf("valid list: %v %v", err, c.TrustedProxies)
	}
	c.TrustedProxies = []string{"10.0.0.0/8", "proxy.internal"}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `trusted_proxies: trusted proxy "proxy.internal"`) {
		t.Fatalf("a host name: %v", err)
	}
	c.TrustedProxies, c.TrustProxyHeaders = []string{"10.0.0.0/8"}, false
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "trust_proxy_headers is off") {
		t.Fatalf("list without trust_proxy_headers: %v", err)
	}
}

func TestTrustedProxiesFromEnv(t *testing.T) {
	c := Default()
	c.TrustProxyHeaders = true
	env := map[string]string{"GATEHOUSE_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1"}
	if err := c.LoadEnv(func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil || len(c.TrustedProxies) != 2 {
		t.Fatalf("%v %q", err, c.TrustedProxies)
	}
}
