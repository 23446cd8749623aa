package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/token"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

type tokenResp struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

func postToken(t *testing.T, base string, form url.Values, hdr map[string]string) (int, tokenResp) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/v1/auth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		if k == "basic" {
			req.SetBasicAuth("gatehouse", v)
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr tokenResp
	json.NewDecoder(resp.Body).Decode(&tr)
	return resp.StatusCode, tr
}

// dpopKey is a client's proof-of-possession key.
type dpopKey struct {
	signer jose.Signer
}

func newDPoPKey(t *testing.T) dpopKey {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: priv}, (&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	return dpopKey{signer: s}
}

func (k dpopKey) proof(t *testing.T, method, htu, accessToken, jti string, iat time.Time) string {
	c := map[string]any{"jti": jti, "htm": method, "htu": htu, "iat": iat.Unix()}
	if accessToken != "" {
		c["ath"] = token.AccessTokenHash(accessToken)
	}
	b, _ := json.Marshal(c)
	jws, err := k.signer.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := jws.CompactSerialize()
	return s
}

func chatWith(t *testing.T, base, authz, dpop string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", authz)
	if dpop != "" {
		req.Header.Set("DPoP", dpop)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(b, &m)
	e, _ := m["error"].(map[string]any)
	code, _ := e["code"].(string)
	return resp.StatusCode, code
}

// TestTokens: client credentials and token exchange for a key; tokens work
// with the SDK, expire, are revoked, and die with their key; JWKS verifies them.
func TestTokens(t *testing.T) {
	f := newFixture(t, gwOptions{mutate: func(c *config.Config) { c.Tokens.TTL = config.Duration(2 * time.Second) }})
	ctx := context.Background()

	status, tr := postToken(t, f.dataURL, url.Values{"grant_type": {"client_credentials"}, "client_secret": {f.key}}, nil)
	if status != 200 || tr.TokenType != "Bearer" || tr.ExpiresIn != 2 || strings.Count(tr.AccessToken, ".") != 2 {
		t.Fatalf("client_credentials: %d %+v", status, tr)
	}
	status, tr2 := postToken(t, f.dataURL, url.Values{"grant_type": {"client_credentials"}}, map[string]string{"basic": f.key})
	if status != 200 || tr2.AccessToken == "" {
		t.Fatalf("client_credentials with Basic: %d %+v", status, tr2)
	}
	status, tr3 := postToken(t, f.dataURL, url.Values{"grant_type": {token.GrantTokenExchange}, "subject_token": {f.key}, "subject_token_type": {token.TypeVirtualKey}}, nil)
	if status != 200 || tr3.AccessToken == "" {
		t.Fatalf("token exchange of a key: %d %+v", status, tr3)
	}
	for _, bad := range []struct {
		form   url.Values
		status int
		code   string
	}{
		{url.Values{"grant_type": {"client_credentials"}, "client_secret": {string(vkey.Generate(vkey.KindVirtual))}}, 401, "invalid_client"},
		{url.Values{"grant_type": {"password"}}, 400, "unsupported_grant_type"},
		{url.Values{"grant_type": {token.GrantTokenExchange}, "subject_token": {"x"}, "subject_token_type": {"urn:nope"}}, 400, "invalid_request"},
	} {
		if s, r := postToken(t, f.dataURL, bad.form, nil); s != bad.status || r.Error != bad.code {
			t.Errorf("%v: %d %+v", bad.form, s, r)
		}
	}

	// The SDK uses a token exactly like a key; usage is the key's.
	oc := f.openai(tr.AccessToken)
	if _, err := oc.Chat.Completions.New(ctx, chatParams("gpt-4o", 3)); err != nil {
		t.Fatalf("SDK with a token: %v", err)
	}
	if recs := f.usageOf(t, f.keyID, 1); len(recs) != 1 {
		t.Fatalf("usage of a token call: %d records for the key", len(recs))
	}
	// The token verifies against the published JWKS.
	resp, _ := http.Get(f.dataURL + "/.well-known/jwks.json")
	var set jose.JSONWebKeySet
	json.NewDecoder(resp.Body).Decode(&set)
	resp.Body.Close()
	parsed, err := jwt.ParseSigned(tr.AccessToken, []jose.SignatureAlgorithm{jose.EdDSA})
	var claims map[string]any
	if err != nil || len(set.Keys) != 1 || parsed.Claims(set.Keys[0].Key, &claims) != nil || claims["sub"] != f.principal || claims["gh_key"] != f.keyID {
		t.Fatalf("JWKS verification: %v %v", err, claims)
	}

	// Revocation by token id, then of everything of the principal.
	if s, _ := chatWith(t, f.dataURL, "Bearer "+tr2.AccessToken, ""); s != 200 {
		t.Fatalf("second token: %d", s)
	}
	var c2 map[string]any
	p2, _ := jwt.ParseSigned(tr2.AccessToken, []jose.SignatureAlgorithm{jose.EdDSA})
	p2.UnsafeClaimsWithoutVerification(&c2)
	if code, out, errs := runCLI(t, f.gateway, "tokens", "revoke", "--jti", c2["jti"].(string)); code != 0 {
		t.Fatalf("tokens revoke: %s %s", out, errs)
	}
	if s, c := chatWith(t, f.dataURL, "Bearer "+tr2.AccessToken, ""); s != 401 || c != "token_revoked" {
		t.Fatalf("revoked token: %d %q", s, c)
	}
	if s, _ := chatWith(t, f.dataURL, "Bearer "+tr3.AccessToken, ""); s != 200 {
		t.Fatalf("another token of the principal still works: %d", s)
	}
	if code, out, errs := runCLI(t, f.gateway, "tokens", "revoke", "--principal", "agent"); code != 0 {
		t.Fatalf("tokens revoke --principal: %s %s", out, errs)
	}
	if s, c := chatWith(t, f.dataURL, "Bearer "+tr3.AccessToken, ""); s != 401 || c != "token_revoked" {
		t.Fatalf("token of a revoked principal: %d %q", s, c)
	}
	// Expiry.
	time.Sleep(2100 * time.Millisecond)
	if s, c := chatWith(t, f.dataURL, "Bearer "+tr.AccessToken, ""); s != 401 || c != "token_expired" {
		t.Fatalf("expired token: %d %q", s, c)
	}
	// A token dies with its key.
	time.Sleep(1100 * time.Millisecond) // issue after the principal cut-off
	_, fresh := postToken(t, f.dataURL, url.Values{"grant_type": {"client_credentials"}, "client_secret": {f.key}}, nil)
	if s, _ := chatWith(t, f.dataURL, "Bearer "+fresh.AccessToken, ""); s != 200 {
		t.Fatalf("fresh token: %d", s)
	}
	f.admin.RevokeKey(ctx, f.keyID, "")
	if s, c := chatWith(t, f.dataURL, "Bearer "+fresh.AccessToken, ""); s != 401 || c != "key_revoked" {
		t.Fatalf("token of a revoked key: %d %q", s, c)
	}
}

// TestDPoP: proof-of-possession tokens (RFC 9449): the happy path, and each
// way a proof can be wrong.
func TestDPoP(t *testing.T) {
	f := newFixture(t, gwOptions{})
	a, b := newDPoPKey(t), newDPoPKey(t)
	tokURL := f.dataURL + "/v1/auth/token"
	chatURL := f.dataURL + "/v1/chat/completions"
	now := time.Now()
	status, tr := postToken(t, f.dataURL, url.Values{"grant_type": {"client_credentials"}, "client_secret": {f.key}},
		map[string]string{"DPoP": a.proof(t, "POST", tokURL, "", "j-token", now)})
	if status != 200 || tr.TokenType != "DPoP" {
		t.Fatalf("DPoP token: %d %+v", status, tr)
	}
	at := tr.AccessToken
	if s, c := chatWith(t, f.dataURL, "DPoP "+at, a.proof(t, "POST", chatURL, at, "j1", now)); s != 200 {
		t.Fatalf("happy path: %d %q", s, c)
	}
	cases := []struct {
		name, authz, proof string
	}{
		{"replayed jti", "DPoP " + at, a.proof(t, "POST", chatURL, at, "j1", now)},
		{"wrong htu", "DPoP " + at, a.proof(t, "POST", f.dataURL+"/v1/embeddings", at, "j2", now)},
		{"wrong htm", "DPoP " + at, a.proof(t, "GET", chatURL, at, "j3", now)},
		{"wrong ath", "DPoP " + at, a.proof(t, "POST", chatURL, at+"x", "j4", now)},
		{"stale iat", "DPoP " + at, a.proof(t, "POST", chatURL, at, "j5", now.Add(-5*time.Minute))},
		{"bound to key A, proof by key B", "DPoP " + at, b.proof(t, "POST", chatURL, at, "j6", now)},
		{"no proof", "DPoP " + at, ""},
	}
	for _, c := range cases {
		if s, code := chatWith(t, f.dataURL, c.authz, c.proof); s != 401 || code != "invalid_dpop_proof" {
			t.Errorf("%s: %d %q, want 401 invalid_dpop_proof", c.name, s, code)
		}
	}
	if s, code := chatWith(t, f.dataURL, "Bearer "+at, ""); s != 401 || code != "invalid_token" {
		t.Errorf("bound token as Bearer: %d %q", s, code)
	}
	if s, _ := chatWith(t, f.dataURL, "DPoP "+at, a.proof(t, "POST", chatURL, at, "j7", now)); s != 200 {
		t.Errorf("a fresh proof after the failures: %d", s)
	}
}

// TestWorkloadIdentity: a CI job's OIDC token from a trusted issuer becomes a
// Gatehouse token for a service account; no long-lived key exists.
func TestWorkloadIdentity(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	jwk := jose.JSONWebKey{Key: priv.Public(), KeyID: "ci-1", Algorithm: string(jose.EdDSA), Use: "sig"}
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}})
	}))
	defer idp.Close()
	signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: priv, KeyID: "ci-1"}}, nil)
	mint := func(iss, repo string, exp time.Duration) string {
		s, err := jwt.Signed(signer).Claims(jwt.Claims{Issuer: iss, Subject: "repo:" + repo, Audience: jwt.Audience{"gatehouse"},
			Expiry: jwt.NewNumericDate(time.Now().Add(exp)), IssuedAt: jwt.NewNumericDate(time.Now())}).Claims(map[string]any{"repository": repo}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	f := newFixture(t, gwOptions{mutate: func(c *config.Config) {
		c.WorkloadIdentity = []token.TrustedIssuer{{Name: "ci", Issuer: idp.URL, JWKSURL: idp.URL, Audience: "gatehouse",
			Claims: map[string]string{"repository": "acme/app"}, ServiceAccount: "ci-bot"}}
	}})
	name, teams := "ci-bot", []string{"research"}
	if _, err := f.admin.CreatePrincipal(context.Background(), client.PrincipalInput{Name: &name, Teams: &teams}); err != nil {
		t.Fatal(err)
	}
	exchange := func(subject string) (int, tokenResp) {
		return postToken(t, f.dataURL, url.Values{"grant_type": {token.GrantTokenExchange}, "subject_token": {subject}, "subject_token_type": {token.TypeIDToken}}, nil)
	}
	status, tr := exchange(mint(idp.URL, "acme/app", time.Minute))
	if status != 200 || tr.AccessToken == "" {
		t.Fatalf("workload exchange: %d %+v", status, tr)
	}
	oc := f.openai(tr.AccessToken)
	if _, err := oc.Chat.Completions.New(context.Background(), chatParams("gpt-4o", 3)); err != nil {
		t.Fatalf("call with a federated token: %v", err)
	}
	for name, subject := range map[string]string{
		"another repository": mint(idp.URL, "evil/fork", time.Minute),
		"untrusted issuer":   mint("https://evil.example", "acme/app", time.Minute),
		"expired":            mint(idp.URL, "acme/app", -time.Minute),
		"not a JWT":          "hello",
	} {
		if s, r := exchange(subject); s != 400 || r.Error != "invalid_grant" {
			t.Errorf("%s: %d %+v", name, s, r)
		}
	}
	recs := f.usageOf(t, "wif:ci", 1) // written after the answer: wait for it
	if len(recs) != 1 {
		t.Fatalf("federated call usage under key wif:ci: %d", len(recs))
	}
}

// TestTokenKeyRotation: JWKS serves old and new keys during the overlap.
func TestTokenKeyRotation(t *testing.T) {
	f := newFixture(t, gwOptions{})
	_, a := postToken(t, f.dataURL, url.Values{"grant_type": {"client_credentials"}, "client_secret": {f.key}}, nil)
	if code, out, errs := runCLI(t, f.gateway, "tokens", "rotate-signing-key"); code != 0 {
		t.Fatalf("rotate: %s %s", out, errs)
	}
	_, b := postToken(t, f.dataURL, url.Values{"grant_type": {"client_credentials"}, "client_secret": {f.key}}, nil)
	for name, tok := range map[string]string{"old key": a.AccessToken, "new key": b.AccessToken} {
		if s, _ := chatWith(t, f.dataURL, "Bearer "+tok, ""); s != 200 {
			t.Fatalf("%s token during the overlap: %d", name, s)
		}
	}
	resp, _ := http.Get(f.dataURL + "/.well-known/jwks.json")
	var set jose.JSONWebKeySet
	json.NewDecoder(resp.Body).Decode(&set)
	resp.Body.Close()
	if len(set.Keys) != 2 {
		t.Fatalf("JWKS during the overlap: %d keys", len(set.Keys))
	}
	runCLI(t, f.gateway, "tokens", "rotate-signing-key")
	if s, c := chatWith(t, f.dataURL, "Bearer "+a.AccessToken, ""); s != 401 || c != "invalid_token" {
		t.Fatalf("a token two rotations old: %d %q", s, c)
	}
	if s, _ := chatWith(t, f.dataURL, "Bearer "+b.AccessToken, ""); s != 200 {
		t.Fatalf("a token one rotation old: %d", s)
	}
}
