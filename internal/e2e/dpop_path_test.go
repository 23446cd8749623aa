package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// TestDPoPProofNamesTheEscapedPath is the attack "use a proof for one URL on
// another": the request path is compared with the proof's htu as it was
// sent, escapes included (RFC 9449 §4.3 after RFC 3986 normalisation). A
// proof for /v1/models/gpt-4o does not cover /v1/models/gpt-4o%3Fx (the
// %3F is part of the path, not a query), and a proof that names an escaped
// slash (/v1/models/org%2Fmodel) covers exactly that request.
func TestDPoPProofNamesTheEscapedPath(t *testing.T) {
	f := newFixture(t, gwOptions{})
	k := newDPoPKey(t)
	now := time.Now()
	status, tr := postToken(t, f.dataURL, url.Values{"grant_type": {"client_credentials"}, "client_secret": {f.key}},
		map[string]string{"DPoP": k.proof(t, "POST", f.dataURL+"/v1/auth/token", "", "j-token", now)})
	if status != 200 || tr.TokenType != "DPoP" {
		t.Fatalf("DPoP token: %d %+v", status, tr)
	}
	get := func(path, htu, jti string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", f.dataURL+path, nil)
		return dpopCall(t, req, tr.AccessToken, k.proof(t, "GET", htu, tr.AccessToken, jti, now))
	}
	if s, c := get("/v1/models/gpt-4o", f.dataURL+"/v1/models/gpt-4o", "j1"); s != 200 {
		t.Fatalf("the proof's own URL: %d %q", s, c)
	}
	if s, c := get("/v1/models/gpt-4o%3Fx", f.dataURL+"/v1/models/gpt-4o", "j2"); s != 401 || c != "invalid_dpop_proof" {
		t.Errorf("a proof for /v1/models/gpt-4o at /v1/models/gpt-4o%%3Fx: %d %q, want 401 invalid_dpop_proof", s, c)
	}
	// Past the proof (no such model): the proof named this very URL.
	for _, p := range []string{"/v1/models/gpt-4o%3Fx", "/v1/models/org%2Fmodel"} {
		if s, c := get(p, f.dataURL+p, "j-"+p); c == "invalid_dpop_proof" {
			t.Errorf("a proof naming %s exactly: %d %q", p, s, c)
		}
	}
}

// dpopCall sends req with a DPoP-bound access token and its proof; it
// returns the status and the error code of the answer, if any.
func dpopCall(t *testing.T, req *http.Request, token, proof string) (int, string) {
	t.Helper()
	req.Header.Set("Authorization", "DPoP "+token)
	req.Header.Set("DPoP", proof)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	json.Unmarshal(b, &e)
	return resp.StatusCode, e.Error.Code
}
