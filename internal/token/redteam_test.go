package token

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"
)

// Red-team tests of DPoP (rt10): hostile proofs and picky clients.

// memOnce is a OnceStore in memory, shared by the "replicas" of a test.
type memOnce struct {
	mu   sync.Mutex
	seen map[string]bool
	err  error
}

func (m *memOnce) Once(_ context.Context, key string, ttl time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return false, m.err
	}
	if ttl <= 0 || m.seen[key] {
		return false, nil
	}
	m.seen[key] = true
	return true, nil
}

// TestDPoPReplayAcrossReplicas: a proof captured in flight is replayed to
// another replica within its window. With a shared replay set the second
// replica refuses it; a failing shared set refuses every proof (fail closed).
func TestDPoPReplayAcrossReplicas(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	shared := &memOnce{seen: map[string]bool{}}
	a, b := NewDPoP(), NewDPoP()
	for _, d := range []*DPoP{a, b} {
		d.SetClock(clk.now)
		d.Shared = shared
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	u := "https://gw.example/v1/chat/completions"
	p := proof(t, priv, map[string]any{"jti": "once", "htm": "POST", "htu": u, "iat": clk.t.Unix(), "ath": AccessTokenHash("tok")}, "dpop+jwt")
	if _, err := a.Check(p, "POST", u, "tok"); err != nil {
		t.Fatalf("first use on replica A: %v", err)
	}
	if _, err := b.Check(p, "POST", u, "tok"); !errors.Is(err, ErrProof) {
		t.Fatalf("the same proof on replica B: %v, want refused as a replay", err)
	}
	shared.err = errors.New("redis down")
	q := proof(t, priv, map[string]any{"jti": "other", "htm": "POST", "htu": u, "iat": clk.t.Unix(), "ath": AccessTokenHash("tok")}, "dpop+jwt")
	if _, err := b.Check(q, "POST", u, "tok"); !errors.Is(err, ErrProof) {
		t.Fatalf("with the shared replay set down: %v, want refused", err)
	}
}

// rawProof builds a compact JWS with any header and signature bytes.
func rawProof(header, claims map[string]any, sig []byte) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding
	return enc.EncodeToString(h) + "." + enc.EncodeToString(c) + "." + enc.EncodeToString(sig)
}

// TestDPoPHostileProofs: alg none, HS256 keyed with a symmetric JWK, a JWK
// carrying the private key, and an Ed25519 key under an ECDSA alg are all
// refused.
func TestDPoPHostileProofs(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	d := NewDPoP()
	d.SetClock(clk.now)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	u := "https://gw.example/v1/chat/completions"
	claims := map[string]any{"jti": "x", "htm": "POST", "htu": u, "iat": clk.t.Unix()}
	enc := base64.RawURLEncoding
	okp := map[string]any{"kty": "OKP", "crv": "Ed25519", "x": enc.EncodeToString(pub)}
	withPriv := map[string]any{"kty": "OKP", "crv": "Ed25519", "x": enc.EncodeToString(pub), "d": enc.EncodeToString(priv.Seed())}
	sign := func(header map[string]any) string {
		h, _ := json.Marshal(header)
		c, _ := json.Marshal(claims)
		in := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
		return in + "." + enc.EncodeToString(ed25519.Sign(priv, []byte(in)))
	}
	for name, p := range map[string]string{
		"alg none":              rawProof(map[string]any{"alg": "none", "typ": "dpop+jwt", "jwk": okp}, claims, nil),
		"HS256 with an oct key": rawProof(map[string]any{"alg": "HS256", "typ": "dpop+jwt", "jwk": map[string]any{"kty": "oct", "k": enc.EncodeToString([]byte("secret"))}}, claims, []byte("mac")),
		"EdDSA, private jwk":    sign(map[string]any{"alg": "EdDSA", "typ": "dpop+jwt", "jwk": withPriv}),
		"Ed25519, private jwk":  sign(map[string]any{"alg": "Ed25519", "typ": "dpop+jwt", "jwk": withPriv}),
		"ES256 with an OKP key": sign(map[string]any{"alg": "ES256", "typ": "dpop+jwt", "jwk": okp}),
		"Ed25519, no jwk":       sign(map[string]any{"alg": "Ed25519", "typ": "dpop+jwt"}),
		"Ed25519, crit":         sign(map[string]any{"alg": "Ed25519", "typ": "dpop+jwt", "jwk": okp, "crit": []string{"b64"}, "b64": false}),
	} {
		if _, err := d.Check(p, "POST", u, ""); !errors.Is(err, ErrProof) {
			t.Errorf("%s: accepted (%v)", name, err)
		}
	}
	if _, err := d.Check(sign(map[string]any{"alg": "Ed25519", "typ": "dpop+jwt", "jwk": okp}), "POST", u, ""); err != nil {
		t.Fatalf("the same proof, honest: %v", err)
	}
}

// TestDPoPHTUNormalisation: RFC 9449 §4.3 compares htu after RFC 3986
// syntax- and scheme-based normalisation, without query and fragment. A
// client that writes the default port, lower-case escapes or an escaped
// unreserved character must be accepted (before the fix: refused); another
// path, a trailing slash, path case, another scheme, port or host, and
// userinfo stay refused.
func TestDPoPHTUNormalisation(t *testing.T) {
	req := "https://gw.example/v1/chat/completions"
	for _, htu := range []string{
		"https://gw.example/v1/chat/completions",
		"HTTPS://GW.EXAMPLE/v1/chat/completions",
		"https://gw.example:443/v1/chat/completions",
		"https://gw.example/v1/chat/completions?stream=true#frag",
		"https://gw.example/v1/%63hat/completions",
		"https://gw.example/v1/x/../chat/./completions",
	} {
		if !sameURL(htu, req) {
			t.Errorf("htu %s for %s: refused", htu, req)
		}
	}
	if !sameURL("https://gw.example/a%2fb", "https://gw.example:443/a%2Fb") || !sameURL("http://gw.example:80", "http://gw.example/") {
		t.Error("escape case or an empty path differs")
	}
	for _, htu := range []string{
		"https://gw.example/v1/chat/completions/",
		"https://gw.example/v1/Chat/completions",
		"http://gw.example/v1/chat/completions",
		"https://gw.example:8443/v1/chat/completions",
		"https://gw.example.evil/v1/chat/completions",
		"https://user@gw.example/v1/chat/completions",
		"https://gw.example/v1/chat%2Fcompletions",
		"/v1/chat/completions",
		"https://gw.example/v1/chat/completions%",
		"",
	} {
		if sameURL(htu, req) {
			t.Errorf("htu %q for %s: accepted", htu, req)
		}
	}
}

// TestDPoPOtherKeyIsNotRecorded: the holder of a stolen bound token signs
// proofs with its own key. CheckFor refuses them before recording their jti
// (the replay set does not grow, locally or shared), and the rightful key's
// proof with the same jti still works.
func TestDPoPOtherKeyIsNotRecorded(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	shared := &memOnce{seen: map[string]bool{}}
	d := NewDPoP()
	d.SetClock(clk.now)
	d.Shared = shared
	_, owner, _ := ed25519.GenerateKey(rand.Reader)
	_, thief, _ := ed25519.GenerateKey(rand.Reader)
	u := "https://gw.example/v1/chat/completions"
	claims := func(jti string) map[string]any {
		return map[string]any{"jti": jti, "htm": "POST", "htu": u, "iat": clk.t.Unix(), "ath": AccessTokenHash("tok")}
	}
	probe := NewDPoP()
	probe.SetClock(clk.now)
	want, err := probe.Check(proof(t, owner, claims("probe"), "dpop+jwt"), "POST", u, "tok")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if _, err := d.CheckFor(proof(t, thief, claims(string(rune('a'+i%26))+string(rune('a'+i/26))), "dpop+jwt"), "POST", u, "tok", want); !errors.Is(err, ErrOtherKey) {
			t.Fatalf("a thief's proof %d: %v", i, err)
		}
	}
	if len(d.seen) != 0 || len(shared.seen) != 0 {
		t.Fatalf("the thief's proofs were recorded: %d local, %d shared", len(d.seen), len(shared.seen))
	}
	if got, err := d.CheckFor(proof(t, owner, claims("aa"), "dpop+jwt"), "POST", u, "tok", want); err != nil || got != want {
		t.Fatalf("the owner's proof: %q %v", got, err)
	}
}
