package token

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func issuer(t testing.TB, clk *clock) *Issuer {
	i, err := New(NewKey(), "gatehouse", "gatehouse")
	if err != nil {
		t.Fatal(err)
	}
	i.SetClock(clk.now)
	return i
}

func TestIssueVerify(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	i := issuer(t, clk)
	raw, ttl, err := i.Issue(Claims{Team: "team_a", KeyID: "key_a", AMR: []string{"key"}})
	if err != nil || ttl != 15*time.Minute {
		t.Fatal(err)
	}
	c, err := i.Verify(raw)
	if err != nil || c.KeyID != "key_a" || c.Team != "team_a" {
		t.Fatalf("Verify = %+v, %v", c, err)
	}
	clk.t = clk.t.Add(15*time.Minute - time.Second)
	if _, err := i.Verify(raw); err != nil {
		t.Fatalf("1 s before expiry: %v", err)
	}
	clk.t = clk.t.Add(2 * time.Second)
	if _, err := i.Verify(raw); !errors.Is(err, ErrExpired) {
		t.Fatalf("1 s after expiry: %v", err)
	}
	other := issuer(t, clk)
	raw2, _, _ := other.Issue(Claims{})
	if _, err := i.Verify(raw2); !errors.Is(err, ErrInvalid) {
		t.Fatalf("token of another key: %v", err)
	}
	parts := strings.Split(raw, ".")
	if _, err := i.Verify(parts[0] + "." + parts[1] + "."); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unsigned token: %v", err)
	}
}

func TestRevocation(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	i := issuer(t, clk)
	raw, _, _ := i.Issue(Claims{})
	c, _ := i.Verify(raw)
	i.Revocations(map[string]time.Time{c.ID: clk.t.Add(time.Hour)}, nil)
	if _, err := i.Verify(raw); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked jti: %v", err)
	}
	i.Revocations(nil, nil)
	c.Subject = "prn_a"
	raw2, _, _ := i.Issue(Claims{})
	i.Revocations(nil, map[string]time.Time{"": clk.t})
	if _, err := i.Verify(raw2); !errors.Is(err, ErrRevoked) {
		t.Fatalf("token issued before the principal's cut-off: %v", err)
	}
	clk.t = clk.t.Add(time.Second)
	raw3, _, _ := i.Issue(Claims{})
	if _, err := i.Verify(raw3); err != nil {
		t.Fatalf("token issued after the cut-off: %v", err)
	}
}

func proof(t testing.TB, priv ed25519.PrivateKey, claims map[string]any, typ string) string {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: priv}, (&jose.SignerOptions{EmbedJWK: true}).WithType(jose.ContentType(typ)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	jws, _ := s.Sign(b)
	out, _ := jws.CompactSerialize()
	return out
}

func TestDPoPCheck(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	d := NewDPoP()
	d.SetClock(clk.now)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	u := "https://gw.example/v1/chat/completions"
	base := func() map[string]any {
		return map[string]any{"jti": "a", "htm": "POST", "htu": u, "iat": clk.t.Unix(), "ath": AccessTokenHash("tok")}
	}
	good := base()
	jkt, err := d.Check(proof(t, priv, good, "dpop+jwt"), "POST", "https://GW.example/v1/chat/completions?x=1", "tok")
	if err != nil || jkt == "" {
		t.Fatalf("good proof: %v", err)
	}
	for name, mutate := range map[string]func(m map[string]any) (string, string){
		"replay":    func(m map[string]any) (string, string) { return "dpop+jwt", "tok" },
		"wrong typ": func(m map[string]any) (string, string) { m["jti"] = "b"; return "jwt", "tok" },
		"iat too early": func(m map[string]any) (string, string) {
			m["jti"] = "c"
			m["iat"] = clk.t.Add(-2 * time.Minute).Unix()
			return "dpop+jwt", "tok"
		},
		"iat ahead": func(m map[string]any) (string, string) {
			m["jti"] = "d"
			m["iat"] = clk.t.Add(2 * time.Minute).Unix()
			return "dpop+jwt", "tok"
		},
		"no jti":    func(m map[string]any) (string, string) { delete(m, "jti"); return "dpop+jwt", "tok" },
		"wrong ath": func(m map[string]any) (string, string) { m["jti"] = "e"; return "dpop+jwt", "other" },
		"wrong htm": func(m map[string]any) (string, string) { m["jti"] = "f"; m["htm"] = "GET"; return "dpop+jwt", "tok" },
		"wrong htu": func(m map[string]any) (string, string) {
			m["jti"] = "g"
			m["htu"] = "https://gw.example/v1/x"
			return "dpop+jwt", "tok"
		},
	} {
		m := base()
		typ, at := mutate(m)
		if _, err := d.Check(proof(t, priv, m, typ), "POST", u, at); !errors.Is(err, ErrProof) {
			t.Errorf("%s: accepted (%v)", name, err)
		}
	}
	// A proof signed by one key but carrying another key's JWK fails.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	p := proof(t, priv, map[string]any{"jti": "h", "htm": "POST", "htu": u, "iat": clk.t.Unix()}, "dpop+jwt")
	q := proof(t, other, map[string]any{"jti": "h", "htm": "POST", "htu": u, "iat": clk.t.Unix()}, "dpop+jwt")
	forged := strings.Split(q, ".")[0] + "." + strings.Split(p, ".")[1] + "." + strings.Split(p, ".")[2]
	if _, err := d.Check(forged, "POST", u, ""); !errors.Is(err, ErrProof) {
		t.Fatal("a proof whose signature is by another key than its JWK was accepted")
	}
}

func FuzzDPoPCheck(f *testing.F) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	f.Add(proof(f, priv, map[string]any{"jti": "a", "htm": "POST", "htu": "http://h/p", "iat": 1_800_000_000}, "dpop+jwt"))
	f.Add(rfc9864Proof(f, priv, nil, map[string]any{"jti": "b", "htm": "POST", "htu": "http://h/p", "iat": 1_800_000_000}))
	f.Add("a.b.c")
	f.Add("")
	d := NewDPoP()
	d.SetClock(func() time.Time { return time.Unix(1_800_000_000, 0) })
	f.Fuzz(func(t *testing.T, p string) {
		jkt, err := d.Check(p, "POST", "http://h/p", "")
		if err == nil && jkt == "" {
			t.Fatal("accepted a proof without a key thumbprint")
		}
	})
}

func FuzzParseRequest(f *testing.F) {
	f.Add("grant_type=client_credentials&client_secret=gk_x", "")
	f.Add("grant_type=a&grant_type=b", "Basic Z2F0ZTpzZWNyZXQ=")
	f.Add("%zz", "")
	f.Add("grant_type=client_credentials", "Basic a2V5JTVGaWQ6Z2slNUZhYmM=")
	f.Add("grant_type=client_credentials", "Basic YTpnayU=")
	f.Fuzz(func(t *testing.T, body, authz string) {
		r := httptest.NewRequest("POST", "/v1/auth/token", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if authz != "" {
			r.Header.Set("Authorization", authz)
		}
		req, err := ParseRequest(r)
		if err != nil {
			return
		}
		if v, _ := url.ParseQuery(body); req.GrantType != v.Get("grant_type") {
			t.Fatalf("grant_type %q from %q", req.GrantType, body)
		}
		// A Basic password reaches the endpoint form-decoded (RFC 6749 §2.3.1).
		if _, pw, ok := r.BasicAuth(); ok {
			if want, err := url.QueryUnescape(pw); err != nil || req.ClientSecret != want {
				t.Fatalf("Basic password %q gave client secret %q", pw, req.ClientSecret)
			}
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	clk := &clock{t: time.Now()}
	i := issuer(b, clk)
	raw, _, _ := i.Issue(Claims{KeyID: "key_a"})
	b.Run("cached", func(b *testing.B) {
		i.Verify(raw)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := i.Verify(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cold", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			i.mu.Lock()
			clear(i.cache)
			i.mu.Unlock()
			if _, err := i.Verify(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkDPoPCheck(b *testing.B) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	d := NewDPoP()
	u := "https://gw.example/v1/chat/completions"
	proofs := make([]string, 0, 1024)
	for n := range 1024 {
		proofs = append(proofs, proof(b, priv, map[string]any{"jti": fmt.Sprint(n), "htm": "POST", "htu": u, "iat": time.Now().Unix(), "ath": AccessTokenHash("tok")}, "dpop+jwt"))
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		d.mu.Lock()
		clear(d.seen)
		d.mu.Unlock()
		if _, err := d.Check(proofs[n%len(proofs)], "POST", u, "tok"); err != nil {
			b.Fatal(err)
		}
		n++
	}
}

// TestKeyRotation: after a rotation new tokens are signed with the new key,
// and tokens of the previous key verify until it is dropped.
func TestKeyRotation(t *testing.T) {
	clk := &clock{t: time.Now()}
	first := NewKey()
	i, _ := New(first, "gatehouse", "gatehouse")
	i.SetClock(clk.now)
	old, _, _ := i.Issue(Claims{})
	second := NewKey()
	if err := i.SetKeys([][]byte{second, first}); err != nil {
		t.Fatal(err)
	}
	fresh, _, _ := i.Issue(Claims{})
	if _, err := i.Verify(old); err != nil {
		t.Fatalf("old-key token during the overlap: %v", err)
	}
	if _, err := i.Verify(fresh); err != nil {
		t.Fatalf("new-key token: %v", err)
	}
	if n := len(i.JWKS().Keys); n != 2 {
		t.Fatalf("JWKS during the overlap has %d keys", n)
	}
	i.SetKeys([][]byte{second})
	if _, err := i.Verify(old); !errors.Is(err, ErrInvalid) {
		t.Fatalf("old-key token after the overlap: %v", err)
	}
}
