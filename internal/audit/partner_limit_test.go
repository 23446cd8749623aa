package audit_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/ratelimit"
)

type partnerRig struct {
	t    *testing.T
	f    *leakFixture
	priv *ecdsa.PrivateKey
	srv  *httptest.Server
	mu   sync.Mutex
	now  time.Time
}

// newPartnerRig serves the partner endpoint with the real in-memory rate
// limiter on a fake clock; the test names each request's source address in
// X-Test-Source (the server derives it from the connection and trusted
// proxies).
func newPartnerRig(t *testing.T, perSource, perKey int64, take func(context.Context, string, int64) (bool, time.Duration, error)) *partnerRig {
	rg := &partnerRig{t: t, f: newLeakFixture(t), now: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	rg.priv, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rl := ratelimit.NewMemory(func() time.Time { rg.mu.Lock(); defer rg.mu.Unlock(); return rg.now })
	if take == nil {
		take = func(ctx context.Context, key string, perMinute int64) (bool, time.Duration, error) {
			res, err := rl.Take(ctx, key, perMinute, 1)
			return res.Allowed, res.RetryAfter, err
		}
	}
	h := rg.f.e.PartnerHandler(map[string]*ecdsa.PublicKey{"kid1": &rg.priv.PublicKey}, nil, audit.PartnerLimits{
		Take: take, Source: func(r *http.Request) string { return "source:" + r.Header.Get("X-Test-Source") },
		PerSource: perSource, PerKey: perKey,
	})
	rg.srv = httptest.NewServer(h)
	t.Cleanup(rg.srv.Close)
	return rg
}

func (rg *partnerRig) advance(d time.Duration) { rg.mu.Lock(); rg.now = rg.now.Add(d); rg.mu.Unlock() }

func (rg *partnerRig) sign(body []byte) string {
	sum := sha256.Sum256(body)
	sig, err := ecdsa.SignASN1(rand.Reader, rg.priv, sum[:])
	if err != nil {
		rg.t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

func (rg *partnerRig) post(source, kid, sig string, body []byte) *http.Response {
	req, _ := http.NewRequest("POST", rg.srv.URL, bytes.NewReader(body))
	req.Header.Set("X-Test-Source", source)
	req.Header.Set(audit.HeaderKeyID, kid)
	req.Header.Set(audit.HeaderSignature, sig)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		rg.t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	resp.Body.Close()
	resp.Body = readCloser{&buf}
	return resp
}

type readCloser struct{ *bytes.Buffer }

func (readCloser) Close() error { return nil }

func (rg *partnerRig) report() []byte {
	b, _ := json.Marshal([]audit.PartnerMatch{{Token: string(rg.f.secret), Type: "gatehouse_key", URL: "https://github.com/acme/app/blob/1/a.py", Source: "content"}})
	return b
}

// assertLimited checks a 429 in the OpenAI error shape with a whole-second
// Retry-After of at least 1.
func assertLimited(t *testing.T, name string, resp *http.Response) {
	t.Helper()
	body := resp.Body.(readCloser).String()
	ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if resp.StatusCode != http.StatusTooManyRequests || err != nil || ra < 1 || !strings.Contains(body, `"code":"rate_limit_exceeded"`) {
		t.Fatalf("%s: %d Retry-After %q %s", name, resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
}

// TestPartnerFloodFromOneAddress: unsigned requests from one address are cut
// off at its limit (before their bodies are read or verified), other
// addresses are not, and the address gets room again as the minute passes.
func TestPartnerFloodFromOneAddress(t *testing.T) {
	rg := newPartnerRig(t, 3, 1000, nil)
	junk := bytes.Repeat([]byte("x"), 1000)
	for i := range 3 {
		if resp := rg.post("203.0.113.9", "kid1", "AAAA", junk); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("request %d within the limit: %d", i, resp.StatusCode)
		}
	}
	for i := range 20 {
		assertLimited(t, "flood request "+strconv.Itoa(i), rg.post("203.0.113.9", "kid1", "AAAA", junk))
	}
	// The flood spent nothing of anybody else's: another address is still
	// judged on its signature, and a genuine report from it is served.
	if resp := rg.post("198.51.100.7", "kid1", "AAAA", junk); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("another address during the flood: %d", resp.StatusCode)
	}
	body := rg.report()
	if resp := rg.post("198.51.100.7", "kid1", rg.sign(body), body); resp.StatusCode != 200 {
		t.Fatalf("a genuine report from another address during the flood: %d", resp.StatusCode)
	}
	rg.advance(time.Minute)
	if resp := rg.post("203.0.113.9", "kid1", "AAAA", junk); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the flooding address a minute later: %d", resp.StatusCode)
	}
}

// TestPartnerForgedReportsDoNotSpendTheKeysAllowance: forged reports naming
// the code host's key id (from many addresses) are refused on their
// signature and do not count against that key; verified reports do, and
// over the key's limit they are refused before any key is revoked.
func TestPartnerForgedReportsDoNotSpendTheKeysAllowance(t *testing.T) {
	rg := newPartnerRig(t, 1000, 2, nil)
	body := rg.report()
	for i := range 30 {
		if resp := rg.post("203.0.113."+strconv.Itoa(i), "kid1", "AAAA", body); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("forged report %d: %d", i, resp.StatusCode)
		}
	}
	junk := []byte(`[{"token":"nothing"}]`)
	for i := range 2 {
		if resp := rg.post("192.0.2.1", "kid1", rg.sign(junk), junk); resp.StatusCode != 200 {
			t.Fatalf("verified report %d within the key's limit: %d", i, resp.StatusCode)
		}
	}
	assertLimited(t, "a verified report over the key's limit", rg.post("192.0.2.2", "kid1", rg.sign(body), body))
	if k, _ := rg.f.db.Key(context.Background(), rg.f.key.ID); k.RevokedAt != nil {
		t.Fatal("a report refused by the key's limit revoked the key")
	}
	rg.advance(time.Minute)
	if resp := rg.post("192.0.2.2", "kid1", rg.sign(body), body); resp.StatusCode != 200 || !strings.Contains(resp.Body.(readCloser).String(), "true_positive") {
		t.Fatalf("the report a minute later: %d", resp.StatusCode)
	}
	if k, _ := rg.f.db.Key(context.Background(), rg.f.key.ID); k.RevokedAt == nil {
		t.Fatal("the report served after the wait did not revoke the key")
	}
}

// TestPartnerLimiterDownAdmits: a failing limiter backend (Redis down) does
// not stop reports of leaked keys; the signature check still holds.
func TestPartnerLimiterDownAdmits(t *testing.T) {
	rg := newPartnerRig(t, 1, 1, func(context.Context, string, int64) (bool, time.Duration, error) {
		return false, 0, errors.New("redis: connection refused")
	})
	body := rg.report()
	for range 3 {
		if resp := rg.post("203.0.113.9", "kid1", "AAAA", body); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("a forged report with the limiter down: %d", resp.StatusCode)
		}
	}
	if resp := rg.post("203.0.113.9", "kid1", rg.sign(body), body); resp.StatusCode != 200 {
		t.Fatalf("a genuine report with the limiter down: %d", resp.StatusCode)
	}
}

func TestPartnerLimitsConfig(t *testing.T) {
	if s, k := (audit.SecretScanning{}).Limits(); s != audit.DefaultPartnerPerSource || k != audit.DefaultPartnerPerKey {
		t.Fatalf("defaults %d %d", s, k)
	}
	if s, k := (audit.SecretScanning{RequestsPerMinutePerSource: 5, RequestsPerMinutePerKey: 7}).Limits(); s != 5 || k != 7 {
		t.Fatalf("configured %d %d", s, k)
	}
	for _, ss := range []audit.SecretScanning{{RequestsPerMinutePerSource: -1}, {RequestsPerMinutePerKey: -1}} {
		if err := (audit.Config{SecretScanning: ss}).Validate(); err == nil {
			t.Fatalf("%+v accepted", ss)
		}
	}
}

// TestPartnerReplayedReportDoesNotSpendTheKeysAllowance: a genuine signed
// report, captured once (a proxy log, a leaked request dump), is replayed
// from many addresses. Its signature verifies every time (the format has no
// nonce), so it used to take the code host's per-key allowance until the
// real reports of new leaks were refused. A report repeated verbatim is now
// served at most a couple of times a minute, the rest refused before the
// key's allowance.
func TestPartnerReplayedReportDoesNotSpendTheKeysAllowance(t *testing.T) {
	rg := newPartnerRig(t, 1000, 5, nil)
	captured := rg.report()
	sig := rg.sign(captured)
	served := 0
	for i := range 20 {
		switch resp := rg.post("198.51.100."+strconv.Itoa(i), "kid1", sig, captured); resp.StatusCode {
		case 200:
			served++
		default:
			assertLimited(t, "a replay", resp)
		}
	}
	if served < 1 || served > 2 {
		t.Fatalf("a replayed report was served %d times in a minute, want 1 or 2", served)
	}
	for i := range 5 - served {
		fresh := []byte(`[{"token":"gk_fresh_` + strconv.Itoa(i) + `","type":"gatehouse_key"}]`)
		if resp := rg.post("192.0.2.1", "kid1", rg.sign(fresh), fresh); resp.StatusCode != 200 {
			t.Fatalf("fresh report %d after the replays: %d", i, resp.StatusCode)
		}
	}
	fresh := []byte(`[{"token":"gk_one_too_many","type":"gatehouse_key"}]`)
	assertLimited(t, "a fresh report past the key's limit", rg.post("192.0.2.1", "kid1", rg.sign(fresh), fresh))
	// A retry of the same report a minute later (the code host after a
	// failure) is served again.
	rg.advance(time.Minute)
	if resp := rg.post("192.0.2.9", "kid1", sig, captured); resp.StatusCode != 200 {
		t.Fatalf("the report a minute later: %d", resp.StatusCode)
	}
}
