package e2e

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/config"
)

// TestPartnerEndpointFloodGets429: the gateway applies the configured
// per-address limit to the secret-scanning endpoint: a flood of unsigned
// reports from one address is cut off with 429 and Retry-After, while
// another address (through the trusted proxy's X-Forwarded-For) is not.
func TestPartnerEndpointFloodGets429(t *testing.T) {
	_, pub := partnerKey(t)
	g := startGateway(t, gwOptions{mutate: func(c *config.Config) {
		c.TrustProxyHeaders = true
		c.TrustedProxies = []string{"127.0.0.1/32"}
		c.Audit.SecretScanning.PublicKeys = []audit.PublicKey{{ID: "gh-1", PEM: pub}}
		c.Audit.SecretScanning.RequestsPerMinutePerSource = 2
	}})
	post := func(from string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", g.dataURL+audit.PartnerPath, bytes.NewReader([]byte(`[{"token":"x"}]`)))
		req.Header.Set(audit.HeaderKeyID, "gh-1")
		req.Header.Set(audit.HeaderSignature, "AAAA")
		req.Header.Set("X-Forwarded-For", from)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	for i := range 2 {
		if code, _, body := post("203.0.113.5"); code != http.StatusUnauthorized {
			t.Fatalf("request %d within the limit: %d %s", i, code, body)
		}
	}
	code, hdr, body := post("203.0.113.5")
	if ra, err := strconv.Atoi(hdr.Get("Retry-After")); code != http.StatusTooManyRequests || err != nil || ra < 1 || !strings.Contains(body, "rate_limit_exceeded") {
		t.Fatalf("over the limit: %d Retry-After %q %s", code, hdr.Get("Retry-After"), body)
	}
	if code, _, body := post("198.51.100.5"); code != http.StatusUnauthorized {
		t.Fatalf("another address during the flood: %d %s", code, body)
	}
}
