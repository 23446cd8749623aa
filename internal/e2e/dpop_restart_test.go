package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestDPoPReplayAfterRestartRefused is the attack "capture a proof, wait for
// a restart (a deploy, a crash), replay it": the replay set lives in the
// store, not in the process, so a proof used before the restart is refused
// after it while its iat is still in the window, at the token endpoint and
// on the data plane, on the embedded store and on PostgreSQL. Before the fix
// the embedded store kept the set in memory: the replay was served.
func TestDPoPReplayAfterRestartRefused(t *testing.T) {
	for name, dsn := range backends(t) {
		t.Run(name, func(t *testing.T) {
			db := dsn(t)
			f := newFixture(t, gwOptions{database: db})
			host := strings.TrimPrefix(f.dataURL, "http://")
			k := newDPoPKey(t)
			now := time.Now()
			tokProof := k.proof(t, "POST", f.dataURL+"/v1/auth/token", "", "restart-token", now)
			form := url.Values{"grant_type": {"client_credentials"}, "client_secret": {f.key}}
			status, tr := postToken(t, f.dataURL, form, map[string]string{"DPoP": tokProof})
			if status != 200 || tr.TokenType != "DPoP" {
				t.Fatalf("DPoP token: %d %+v", status, tr)
			}
			// Requests name the first gateway's address (Host), so that the
			// proofs' htu matches after the restart moved the port.
			get := func(base, proof string) (int, string) {
				t.Helper()
				req, _ := http.NewRequest("GET", base+"/v1/models", nil)
				req.Host = host
				return dpopCall(t, req, tr.AccessToken, proof)
			}
			token := func(base, proof string) (int, string) {
				t.Helper()
				req, _ := http.NewRequest("POST", base+"/v1/auth/token", strings.NewReader(form.Encode()))
				req.Host = host
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("DPoP", proof)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				var e struct {
					Error string `json:"error"`
				}
				json.NewDecoder(resp.Body).Decode(&e)
				return resp.StatusCode, e.Error
			}
			callProof := k.proof(t, "GET", f.dataURL+"/v1/models", tr.AccessToken, "restart-call", now)
			if s, c := get(f.dataURL, callProof); s != 200 {
				t.Fatalf("the first use of a proof: %d %q", s, c)
			}
			if s, c := get(f.dataURL, callProof); s != 401 || c != "invalid_dpop_proof" {
				t.Fatalf("a replay before the restart: %d %q, want 401 invalid_dpop_proof", s, c)
			}

			// Eight callers race one captured proof: one is served.
			race := k.proof(t, "GET", f.dataURL+"/v1/models", tr.AccessToken, "restart-race", now)
			var served atomic.Int64
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					if s, _ := get(f.dataURL, race); s == 200 {
						served.Add(1)
					}
				})
			}
			wg.Wait()
			if n := served.Load(); n != 1 {
				t.Fatalf("one proof raced by eight callers served %d times; want 1", n)
			}

			dir := f.srv.DataDir()
			f.stop()
			g := startGateway(t, gwOptions{dataDir: dir, database: db})

			if s, c := get(g.dataURL, callProof); s != 401 || c != "invalid_dpop_proof" {
				t.Errorf("the data-plane proof replayed after a restart: %d %q, want 401 invalid_dpop_proof", s, c)
			}
			if s, c := token(g.dataURL, tokProof); s != 400 || c != "invalid_dpop_proof" {
				t.Errorf("the token-endpoint proof replayed after a restart: %d %q, want 400 invalid_dpop_proof", s, c)
			}
			// Not refused for another reason: fresh proofs are served.
			if s, c := get(g.dataURL, k.proof(t, "GET", f.dataURL+"/v1/models", tr.AccessToken, "restart-call-2", time.Now())); s != 200 {
				t.Errorf("a fresh proof after the restart: %d %q", s, c)
			}
			if s, c := token(g.dataURL, k.proof(t, "POST", f.dataURL+"/v1/auth/token", "", "restart-token-2", time.Now())); s != 200 {
				t.Errorf("a fresh token-endpoint proof after the restart: %d %q", s, c)
			}
		})
	}
}
