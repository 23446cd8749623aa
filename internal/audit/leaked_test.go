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
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

type leakFixture struct {
	db     *sqlstore.DB
	e      *audit.Engine
	led    *recLedger
	alerts *recAlerts
	secret vkey.Secret
	key    vkey.Key
	forgot []string
}

func newLeakFixture(t *testing.T) *leakFixture {
	t.Helper()
	db := openStore(t)
	clk := &clock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	_, k := seed(t, db, clk.Now())
	h, err := vkey.NewHasher(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	f := &leakFixture{db: db, led: &recLedger{}, alerts: &recAlerts{}}
	f.secret = vkey.Generate(vkey.KindVirtual)
	k.ID, k.Hash, k.Hint = "key_leak", h.Hash(f.secret), f.secret.Hint()
	if err := db.CreateKey(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	f.key = k
	f.e = audit.New(audit.Deps{Store: db, Ledger: f.led, Alerts: f.alerts, Hasher: h, Now: clk.Now, ForgetKey: func(id string) { f.forgot = append(f.forgot, id) }})
	return f
}

func TestLeakedRevokes(t *testing.T) {
	ctx := context.Background()
	f := newLeakFixture(t)
	last := "x"
	if f.secret[len(f.secret)-1] == 'x' {
		last = "y"
	}
	forged := string(f.secret[:len(f.secret)-1]) + last // checksum no longer matches
	unknown := vkey.Generate(vkey.KindVirtual)
	res, err := f.e.Leaked(ctx, []audit.Leak{{Secret: string(f.secret), Source: "repo/config.py:3"}, {Secret: forged}, {Secret: string(unknown)}, {Secret: "hello"}}, false, "prn_admin")
	if err != nil {
		t.Fatal(err)
	}
	if res[0].KeyID != f.key.ID || !res[0].Live || res[0].Revoked || res[1].Valid || res[1].KeyID != "" || !res[2].Valid || res[2].KeyID != "" || res[3].Valid {
		t.Fatalf("check only: %+v", res)
	}
	if k, _ := f.db.Key(ctx, f.key.ID); k.RevokedAt != nil {
		t.Fatal("a check without revoke revoked the key")
	}
	res, err = f.e.Leaked(ctx, []audit.Leak{{Secret: string(f.secret), Source: "repo/config.py:3"}}, true, "prn_admin")
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Revoked || !res[0].Live || res[0].FindingID == "" {
		t.Fatalf("revoke: %+v", res)
	}
	if k, _ := f.db.Key(ctx, f.key.ID); k.RevokedAt == nil {
		t.Fatal("the leaked key is still live")
	}
	if len(f.forgot) != 1 || f.forgot[0] != f.key.ID {
		t.Errorf("caches not told: %v", f.forgot)
	}
	if got := f.led.actions(f.key.ID); len(got) != 1 || got[0] != "keys.revoke_leaked" {
		t.Errorf("ledger: %v", got)
	}
	fd, err := f.e.Get(ctx, res[0].FindingID)
	if err != nil || fd.Severity != audit.High || fd.Rule != audit.LeakRule || fd.Subject.ID != f.key.ID {
		t.Fatalf("finding %+v, %v", fd, err)
	}
	if f.alerts.n() != 1 {
		t.Errorf("%d alerts, want 1", f.alerts.n())
	}
	// Reported again: already revoked, same finding.
	res2, err := f.e.Leaked(ctx, []audit.Leak{{Secret: string(f.secret), Source: "pastebin"}}, true, "prn_admin")
	if err != nil {
		t.Fatal(err)
	}
	if res2[0].Revoked || res2[0].Live || res2[0].FindingID != res[0].FindingID {
		t.Errorf("second report: %+v", res2[0])
	}
	for _, r := range f.led.recs {
		if strings.Contains(string(r.Marshal()), string(f.secret)) {
			t.Fatal("a ledger record holds the secret")
		}
	}
	b, _ := json.Marshal(res)
	if strings.Contains(string(b), string(f.secret)) {
		t.Fatal("the answer holds the secret")
	}
}

func TestPartnerEndpoint(t *testing.T) {
	f := newLeakFixture(t)
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keys := map[string]*ecdsa.PublicKey{"kid1": &priv.PublicKey}
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
	post := func(kid, sig string, body []byte) (*http.Response, []byte) {
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
		return resp, buf.Bytes()
	}
	body, _ := json.Marshal([]audit.PartnerMatch{
		{Token: string(f.secret), Type: "gatehouse_key", URL: "https://github.com/acme/app/blob/abc/config.py", Source: "content"},
		{Token: "gk_" + strings.Repeat("A", 38), Type: "gatehouse_key", URL: "https://example.com/x"},
	})
	for name, tc := range map[string]struct{ kid, sig string }{
		"unsigned":          {"kid1", ""},
		"unknown key id":    {"kid2", sign(priv, body)},
		"other key":         {"kid1", sign(other, body)},
		"other body":        {"kid1", sign(priv, append([]byte(" "), body...))},
		"garbage signature": {"kid1", "bm90IGEgc2lnbmF0dXJl"},
	} {
		resp, out := post(tc.kid, tc.sig, body)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(out), "invalid_signature") {
			t.Errorf("%s: %d %s", name, resp.StatusCode, out)
		}
	}
	if k, _ := f.db.Key(context.Background(), f.key.ID); k.RevokedAt != nil {
		t.Fatal("an unverified report revoked a key")
	}
	resp, out := post("kid1", sign(priv, body), body)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, out)
	}
	var labels []audit.PartnerLabel
	if err := json.Unmarshal(out, &labels); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(f.secret))
	if len(labels) != 2 || labels[0].Label != "true_positive" || labels[1].Label != "false_positive" || labels[0].TokenHash != base64ToHex(sum[:]) {
		t.Fatalf("labels %+v", labels)
	}
	if strings.Contains(string(out), string(f.secret)) {
		t.Fatal("the answer echoes the token")
	}
	if k, _ := f.db.Key(context.Background(), f.key.ID); k.RevokedAt == nil {
		t.Fatal("a verified report did not revoke the key")
	}
	// Not JSON, signed: refused as bad JSON, not a crash.
	bad := []byte(`{"token":"x"}`)
	if resp, _ := post("kid1", sign(priv, bad), bad); resp.StatusCode != 400 {
		t.Errorf("an object instead of an array: %d", resp.StatusCode)
	}
}

func base64ToHex(b []byte) string {
	const hexd = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, hexd[c>>4], hexd[c&15])
	}
	return string(out)
}
