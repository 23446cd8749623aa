package audit_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
)

// TestPartnerEndpointAttacks: what an adversary on the internet can send to
// the partner endpoint. Nothing unsigned or mis-signed changes anything; a
// replayed report revokes nothing twice and opens no second finding; no
// answer, error or ledger record carries the token.
func TestPartnerEndpointAttacks(t *testing.T) {
	f := newLeakFixture(t)
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	keys := map[string]*ecdsa.PublicKey{"kid1": &priv.PublicKey, "kid384": &p384.PublicKey}
	srv := httptest.NewServer(f.e.PartnerHandler(keys, nil, audit.PartnerLimits{}))
	defer srv.Close()
	sign := func(k *ecdsa.PrivateKey, body []byte) string {
		sum := sha256.Sum256(body)
		sig, err := ecdsa.SignASN1(rand.Reader, k, sum[:])
		if err != nil {
			t.Fatal(err)
		}
		return base64.StdEncoding.EncodeToString(sig)
	}
	post := func(kid, sig string, body []byte) (int, string) {
		req, _ := http.NewRequest("POST", srv.URL, bytes.NewReader(body))
		req.Header.Set(audit.HeaderKeyID, kid)
		req.Header.Set(audit.HeaderSignature, sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		buf.ReadFrom(resp.Body)
		return resp.StatusCode, buf.String()
	}
	secret := string(f.secret)
	body, _ := json.Marshal([]audit.PartnerMatch{{Token: secret, Type: "gatehouse_key", URL: "https://github.com/acme/app/blob/1/a.py", Source: "content"}})

	// Raw r||s (the JWS form) instead of ASN.1 DER: refused, not reinterpreted.
	sum := sha256.Sum256(body)
	r, s, _ := ecdsa.Sign(rand.Reader, priv, sum[:])
	raw := append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	// A signature by the P-384 key presented under the P-256 key's id, and
	// the P-256 signature under the P-384 id.
	// (r, s) = (0, 0) and (n, n): the degenerate signatures some verifiers accept.
	zero, _ := asn1Sig(big.NewInt(0), big.NewInt(0))
	n := elliptic.P256().Params().N
	nn, _ := asn1Sig(n, n)
	for name, tc := range map[string]struct {
		kid, sig string
		body     []byte
	}{
		"raw r||s signature":      {"kid1", base64.StdEncoding.EncodeToString(raw), body},
		"other curve, wrong id":   {"kid1", sign(p384, body), body},
		"right key, other id":     {"kid384", sign(priv, body), body},
		"zero signature":          {"kid1", base64.StdEncoding.EncodeToString(zero), body},
		"r = s = n":               {"kid1", base64.StdEncoding.EncodeToString(nn), body},
		"URL-safe base64":         {"kid1", base64.URLEncoding.EncodeToString([]byte("\xfb\xff")) + sign(priv, body), body},
		"body changed after sign": {"kid1", sign(priv, body), []byte(strings.TrimSuffix(string(body), "]") + `,{"token":"x"}]`)},
		"no key id":               {"", sign(priv, body), body},
		"signature twice":         {"kid1", sign(priv, body) + "," + sign(priv, body), body},
	} {
		code, out := post(tc.kid, tc.sig, tc.body)
		if code != http.StatusUnauthorized {
			t.Errorf("%s: %d %s", name, code, out)
		}
		if strings.Contains(out, secret) {
			t.Errorf("%s: the answer echoes the token", name)
		}
	}
	// Larger than the bound, correctly signed: refused before anything.
	huge, _ := json.Marshal([]audit.PartnerMatch{{Token: secret, Type: "gatehouse_key", URL: strings.Repeat("a", 1<<20)}})
	if code, out := post("kid1", sign(priv, huge), huge); code != http.StatusRequestEntityTooLarge || strings.Contains(out, secret) {
		t.Errorf("a report over 1 MiB: %d %.200s", code, out)
	}
	// Signed but malformed: refused without the token in the error.
	for name, bad := range map[string][]byte{
		"truncated":     body[:len(body)-3],
		"token number":  []byte(`[{"token":12}]`),
		"nested arrays": []byte(strings.Repeat("[", 5000) + strings.Repeat("]", 5000)),
		"object":        []byte(`{"token":"` + secret + `"}`),
		"too many":      []byte("[" + strings.TrimSuffix(strings.Repeat(`{"token":"x"},`, 1001), ",") + "]"),
	} {
		code, out := post("kid1", sign(priv, bad), bad)
		if code < 400 || code >= 500 || strings.Contains(out, secret) {
			t.Errorf("signed %s report: %d %s", name, code, out)
		}
	}
	if k, _ := f.db.Key(context.Background(), f.key.ID); k.RevokedAt != nil {
		t.Fatal("an unverified or malformed report revoked the key")
	}
	if len(f.led.recs) != 0 {
		t.Fatalf("refused reports wrote ledger records: %+v", f.led.recs)
	}

	// The genuine report sent eight times at once (a replay racing the
	// original): one revocation, one finding, one alert; every answer the same.
	sig := sign(priv, body)
	var wg sync.WaitGroup
	answers := make([]string, 8)
	for i := range answers {
		wg.Go(func() {
			code, out := post("kid1", sig, body)
			if code != 200 {
				t.Errorf("report %d: %d %s", i, code, out)
			}
			answers[i] = out
		})
	}
	wg.Wait()
	for _, a := range answers {
		if a != answers[0] || !strings.Contains(a, "true_positive") {
			t.Errorf("answers differ: %s vs %s", a, answers[0])
		}
	}
	if got := f.led.actions(f.key.ID); len(got) != 1 || got[0] != "keys.revoke_leaked" {
		t.Errorf("ledger actions after replays: %v", got)
	}
	fs, err := f.e.List(context.Background(), audit.Filter{Rule: audit.LeakRule})
	if err != nil || len(fs) != 1 {
		t.Errorf("leak findings after replays: %d %v", len(fs), err)
	}
	if n := f.alerts.n(); n != 1 {
		t.Errorf("%d alerts after replays, want 1", n)
	}
	for _, r := range f.led.recs {
		if b, _ := json.Marshal(r); bytes.Contains(b, []byte(secret)) {
			t.Fatal("a ledger record holds the token")
		}
	}
}

// asn1Sig encodes (r, s) as an ECDSA-Sig-Value.
func asn1Sig(r, s *big.Int) ([]byte, error) {
	return asn1Marshal(struct{ R, S *big.Int }{r, s})
}

var asn1Marshal = func(v any) ([]byte, error) { return asn1.Marshal(v) }

// TestPartnerKeysP256Only: the partner format is ECDSA P-256 with SHA-256; a
// configured key on another curve, or of another algorithm, is a configuration
// error, not a key that verifies something else.
func TestPartnerKeysP256Only(t *testing.T) {
	pemOf := func(pub any) string {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	if keys, err := (audit.SecretScanning{PublicKeys: []audit.PublicKey{{ID: "a", PEM: pemOf(&p256.PublicKey)}}}).Keys(); err != nil || len(keys) != 1 {
		t.Fatalf("P-256: %v", err)
	}
	for name, pub := range map[string]any{"P-384": &p384.PublicKey, "Ed25519": edPub} {
		if _, err := (audit.SecretScanning{PublicKeys: []audit.PublicKey{{ID: "a", PEM: pemOf(pub)}}}).Keys(); err == nil {
			t.Errorf("%s key accepted", name)
		}
	}
}
