package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/openai/openai-go/v3"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/provider/sim"
	"github.com/gatehouse-gw/gatehouse/internal/server"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// rawCall posts body to path with key and returns status and decoded error.
func rawCall(t *testing.T, url, key, body string, hdr map[string]string) (int, map[string]any, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, resp.Header
}

func errCode(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// TestErrorsThroughSDK checks every refusal as the OpenAI SDK surfaces it:
// status, code, and that the upstream never saw the call.
func TestErrorsThroughSDK(t *testing.T) {
	f := newFixture(t, gwOptions{})
	ctx := context.Background()
	calls := f.up.Calls.Load()

	revoked, _ := f.admin.CreateKey(ctx, client.KeyInput{Principal: "agent"})
	if _, err := f.admin.RevokeKey(ctx, revoked.ID, ""); err != nil {
		t.Fatal(err)
	}
	soon := time.Now().Add(300 * time.Millisecond)
	expiring, err := f.admin.CreateKey(ctx, client.KeyInput{Principal: "agent", ExpiresAt: &soon})
	if err != nil {
		t.Fatal(err)
	}
	chatOnly, _ := f.admin.CreateKey(ctx, client.KeyInput{Principal: "agent", Scope: client.Scope{Models: []string{"gpt-4o-mini"}, Endpoints: []string{"chat"}}})
	farAway, _ := f.admin.CreateKey(ctx, client.KeyInput{Principal: "agent", Scope: client.Scope{CIDRs: []string{"10.0.0.0/8"}}})
	time.Sleep(350 * time.Millisecond)

	good := f.key
	flipped := []byte(good)
	flipped[10] ^= 1
	tests := []struct {
		name   string
		key    string
		params openai.ChatCompletionNewParams
		status int
		code   string
	}{
		{"unknown key", string(vkey.Generate(vkey.KindVirtual)), chatParams("gpt-4o", 5), 401, "invalid_api_key"},
		{"bad checksum", string(flipped), chatParams("gpt-4o", 5), 401, "invalid_api_key"},
		{"provider key", "sk-proj-abcdef", chatParams("gpt-4o", 5), 401, "invalid_api_key"},
		{"admin key on data plane", f.adminKey, chatParams("gpt-4o", 5), 401, "invalid_api_key"},
		{"revoked", revoked.Secret, chatParams("gpt-4o", 5), 401, "key_revoked"},
		{"expired", expiring.Secret, chatParams("gpt-4o", 5), 401, "key_expired"},
		{"model out of scope", chatOnly.Secret, chatParams("gpt-4o", 5), 403, "model_not_allowed"},
		{"source out of scope", farAway.Secret, chatParams("gpt-4o", 5), 403, "source_not_allowed"},
		{"unknown model", good, chatParams("llama-3", 5), 404, "model_not_found"},
		{"anthropic model on openai route", good, chatParams("claude-haiku-4-5", 5), 400, "wrong_api"},
	}
	for _, tt := range tests {
		oc := f.openai(tt.key)
		_, err := oc.Chat.Completions.New(ctx, tt.params)
		status, code := openAIStatus(t, err)
		if status != tt.status || code != tt.code {
			t.Errorf("%s: got %d %q, want %d %q (%v)", tt.name, status, code, tt.status, tt.code, err)
		}
	}
	// Scope on endpoints: the chat-only key may not embed.
	oc := f.openai(chatOnly.Secret)
	_, err = oc.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "gpt-4o-mini", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("x")}})
	if s, c := openAIStatus(t, err); s != 403 || c != "endpoint_not_allowed" {
		t.Errorf("endpoint scope: %d %q", s, c)
	}
	if got := f.up.Calls.Load(); got != calls {
		t.Fatalf("refused calls reached the upstream: %d calls", got-calls)
	}

	// Raw HTTP for what an SDK will not send.
	u := f.dataURL
	cases := []struct {
		name, path, key, body string
		status                int
		code                  string
	}{
		{"no key", "/v1/chat/completions", "", `{"model":"gpt-4o"}`, 401, "missing_api_key"},
		{"malformed json", "/v1/chat/completions", good, `{"model":`, 400, "invalid_json"},
		{"not an object", "/v1/chat/completions", good, `[1,2]`, 400, "invalid_json"},
		{"missing model", "/v1/chat/completions", good, `{"messages":[]}`, 400, "missing_model"},
		{"model wrong type", "/v1/chat/completions", good, `{"model":42}`, 400, "invalid_model"},
		{"stream wrong type", "/v1/chat/completions", good, `{"model":"gpt-4o","stream":"yes"}`, 400, "invalid_type"},
		{"embeddings cannot stream", "/v1/embeddings", good, `{"model":"text-embedding-3-small","stream":true,"input":"x"}`, 400, "stream_unsupported"},
		{"unknown route", "/v1/fine_tuning/jobs", good, `{}`, 404, "unknown_url"},
		{"too large", "/v1/chat/completions", good, `{"model":"gpt-4o","messages":[{"role":"user","content":"` + strings.Repeat("x", 17<<20) + `"}]}`, 413, "request_too_large"},
	}
	for _, c := range cases {
		status, body, hdr := rawCall(t, u+c.path, c.key, c.body, nil)
		if status != c.status || errCode(body) != c.code {
			t.Errorf("%s: got %d %v, want %d %q", c.name, status, body, c.status, c.code)
		}
		if hdr.Get("x-request-id") == "" {
			t.Errorf("%s: no x-request-id", c.name)
		}
		msg, _ := body["error"].(map[string]any)["message"].(string)
		if !strings.Contains(msg, hdr.Get("x-request-id")) {
			t.Errorf("%s: message %q lacks the request id", c.name, msg)
		}
	}
	req, _ := http.NewRequest("GET", u+"/v1/chat/completions", nil)
	resp, _ := http.DefaultClient.Do(req)
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET on a POST route: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	resp.Body.Close()

	// Anthropic's route answers in Anthropic's shape.
	ac := f.anthropic("gk_nope")
	_, err = ac.Messages.New(ctx, anthropic.MessageNewParams{Model: "claude-haiku-4-5", MaxTokens: 5,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))}})
	var ae *anthropic.Error
	if !errors.As(err, &ae) || ae.StatusCode != 401 {
		t.Fatalf("anthropic bad key: %v", err)
	}
	status, body, hdr := rawCall(t, u+"/v1/messages", good, `{"model":"claude-haiku-4-5"`, nil)
	inner, _ := body["error"].(map[string]any)
	if status != 400 || body["type"] != "error" || inner["type"] != "invalid_request_error" || body["request_id"] != hdr.Get("request-id") {
		t.Errorf("anthropic-shaped 400: %d %v (request-id %q)", status, body, hdr.Get("request-id"))
	}
	if f.up.Calls.Load() != calls {
		t.Fatal("a refused raw call reached the upstream")
	}
}

// TestUpstreamFaults covers upstream errors, timeouts, broken streams, streams
// without usage, and a caller that disconnects midway.
func TestUpstreamFaults(t *testing.T) {
	f := newFixture(t, gwOptions{mutate: func(c *config.Config) {
		c.UpstreamTimeout = config.Duration(700 * time.Millisecond)
	}})
	ctx := context.Background()
	oc := f.openai(f.key)

	f.up.SetFault(sim.Fault{Status: 500})
	_, err := oc.Chat.Completions.New(ctx, chatParams("gpt-4o", 5))
	if s, c := openAIStatus(t, err); s != 502 || c != "upstream_error" {
		t.Errorf("upstream 500: %d %q", s, c)
	}
	f.up.SetFault(sim.Fault{Status: 429})
	_, err = oc.Chat.Completions.New(ctx, chatParams("gpt-4o", 5))
	if s, c := openAIStatus(t, err); s != 429 || c != "upstream_rate_limited" {
		t.Errorf("upstream 429: %d %q", s, c)
	}
	f.up.SetFault(sim.Fault{Latency: 2 * time.Second})
	_, err = oc.Chat.Completions.New(ctx, chatParams("gpt-4o", 5))
	if s, c := openAIStatus(t, err); s != 504 || c != "upstream_timeout" {
		t.Errorf("upstream hang: %d %q", s, c)
	}
	f.up.SetFault(sim.Fault{})

	// The upstream's request errors pass through, with its message.
	status, body, _ := rawCall(t, f.dataURL+"/v1/chat/completions", f.key, `{"model":"gpt-4o","messages":[]}`, nil)
	if msg, _ := body["error"].(map[string]any)["message"].(string); status != 400 || !strings.Contains(msg, "too short") {
		t.Errorf("upstream 400: %d %v", status, body)
	}

	// A stream cut after a few events ends with an error the SDK reports.
	f.up.SetFault(sim.Fault{CutAfter: 3})
	stream := oc.Chat.Completions.NewStreaming(ctx, chatParams("gpt-4o", 50))
	n := 0
	for stream.Next() {
		n++
	}
	if stream.Err() == nil || n == 0 {
		t.Errorf("cut stream: %d chunks, err %v; want some chunks and an error", n, stream.Err())
	}

	// A stream without usage is counted locally and flagged.
	f.up.SetFault(sim.Fault{NoUsage: true})
	stream = oc.Chat.Completions.NewStreaming(ctx, chatParams("gpt-4o", 8))
	for stream.Next() {
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}

	// A caller that disconnects cancels the upstream call.
	f.up.SetFault(sim.Fault{ChunkDelay: 100 * time.Millisecond})
	cctx, cancel := context.WithCancel(ctx)
	stream = oc.Chat.Completions.NewStreaming(cctx, chatParams("gpt-4o", 200))
	stream.Next()
	stream.Next() // the second event comes 100ms after the first
	cancel()
	for stream.Next() {
	}
	f.up.SetFault(sim.Fault{})

	recs := f.usageOf(t, f.keyID, 8)
	codes := map[string]client.UsageRecord{}
	for _, r := range recs {
		codes[r.ErrorCode] = r
	}
	for code, status := range map[string]int{"upstream_error": 502, "upstream_rate_limited": 429, "upstream_timeout": 504, "upstream_stream_broken": 502, "upstream_rejected": 400, "client_closed": 499} {
		if r, ok := codes[code]; !ok || r.Status != status {
			t.Errorf("no record with %s/%d among %+v", code, status, codes)
		}
	}
	if r := codes["client_closed"]; r.LatencyMillis > 2000 || r.LatencyMillis < 100 || !r.Stream || r.OutputTokens == 0 {
		t.Errorf("disconnect record %+v: the upstream stream (200 tokens at 100ms) was not cut short", r)
	}
	var est *client.UsageRecord
	for i := range recs {
		if recs[i].Estimated && recs[i].Status == 200 {
			est = &recs[i]
		}
	}
	if est == nil || est.OutputTokens < 8 || est.InputTokens == 0 || est.CostMicros == 0 {
		t.Errorf("no-usage stream record: %+v", est)
	}
}

// TestUpstreamCredentialFailure: a wrong upstream key is the operator's
// problem; the caller gets a 502 and nothing of the key, and neither do logs.
func TestUpstreamCredentialFailure(t *testing.T) {
	f := newFixture(t, gwOptions{})
	ctx := context.Background()
	wrong := "sk-wrong-LEAKCHECK-9876543210"
	if _, err := f.admin.CreateProvider(ctx, client.ProviderInput{Name: "misconfigured", Type: "openai", BaseURL: f.up.OpenAIBaseURL(), Models: []string{"o1-pro"}, Keys: []string{wrong}}); err != nil {
		t.Fatal(err)
	}
	status, body, _ := rawCall(t, f.dataURL+"/v1/chat/completions", f.key, `{"model":"o1-pro","messages":[{"role":"user","content":"x"}]}`, nil)
	raw, _ := json.Marshal(body)
	if status != 502 || errCode(body) != "upstream_auth_failed" || strings.Contains(string(raw), wrong[:10]) || strings.Contains(string(raw), "LEAK") {
		t.Fatalf("upstream 401: %d %s", status, raw)
	}
	if strings.Contains(f.logs.String(), "LEAKCHECK") {
		t.Fatal("the upstream's message quoting our key reached the log")
	}
}

// TestNoSecretsAnywhere runs a busy session and then scans every log line, every
// usage record and every admin answer for any credential.
func TestNoSecretsAnywhere(t *testing.T) {
	f := newFixture(t, gwOptions{})
	ctx := context.Background()
	oc := f.openai(f.key)
	oc.Chat.Completions.New(ctx, chatParams("gpt-4o", 3))
	st := oc.Chat.Completions.NewStreaming(ctx, chatParams("gpt-4o", 3))
	for st.Next() {
	}
	bad := f.openai(f.key + "x")
	bad.Chat.Completions.New(ctx, chatParams("gpt-4o", 3))
	f.up.SetFault(sim.Fault{Status: 503})
	oc.Chat.Completions.New(ctx, chatParams("gpt-4o", 3))
	f.up.SetFault(sim.Fault{})

	var dump strings.Builder
	for _, get := range []func() (any, error){
		func() (any, error) { return f.admin.Usage(ctx, client.UsageQuery{}) },
		func() (any, error) { return f.admin.ListKeys(ctx, client.KeyFilter{IncludeRevoked: true}) },
		func() (any, error) { return f.admin.ListProviders(ctx) },
	} {
		v, err := get()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(v)
		dump.Write(b)
	}
	f.stop()
	db, err := os.ReadFile(filepath.Join(f.srv.DataDir(), "gatehouse.db"))
	if err != nil {
		t.Fatal(err)
	}
	wal, _ := os.ReadFile(filepath.Join(f.srv.DataDir(), "gatehouse.db-wal"))
	for what, text := range map[string]string{"logs": f.logs.String(), "admin answers": dump.String(), "database": string(db) + string(wal)} {
		for _, secret := range []string{upstreamKey, f.key, f.adminKey, f.key[:20], f.adminKey[:20]} {
			if strings.Contains(text, secret) {
				t.Errorf("a secret (%s…) appears in the %s", secret[:6], what)
			}
		}
	}
	if !strings.Contains(f.logs.String(), `"msg":"call"`) {
		t.Fatal("the scan saw no call log lines: it would pass vacuously")
	}
}

// TestRevocationNextRequest: revoking through the admin API takes effect on
// the very next request.
func TestRevocationNextRequest(t *testing.T) {
	f := newFixture(t, gwOptions{})
	ctx := context.Background()
	oc := f.openai(f.key)
	if _, err := oc.Chat.Completions.New(ctx, chatParams("gpt-4o", 2)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.admin.RevokeKey(ctx, f.keyID, ""); err != nil {
		t.Fatal(err)
	}
	_, err := oc.Chat.Completions.New(ctx, chatParams("gpt-4o", 2))
	if s, c := openAIStatus(t, err); s != 401 || c != "key_revoked" {
		t.Fatalf("after revoke: %d %q", s, c)
	}
	// A disabled principal's keys stop too.
	k2, _ := f.admin.CreateKey(ctx, client.KeyInput{Principal: "agent"})
	yes := true
	if _, err := f.admin.UpdatePrincipal(ctx, "agent", client.PrincipalInput{Disabled: &yes}, ""); err != nil {
		t.Fatal(err)
	}
	oc2 := f.openai(k2.Secret)
	_, err = oc2.Chat.Completions.New(ctx, chatParams("gpt-4o", 2))
	if s, c := openAIStatus(t, err); s != 401 || c != "principal_disabled" {
		t.Fatalf("disabled principal: %d %q", s, c)
	}
}

// TestTwoReplicasSeeRevocation: two gateways on one PostgreSQL; a key revoked
// through one is refused by the other within a few seconds.
func TestTwoReplicasSeeRevocation(t *testing.T) {
	dsn := backends(t)["postgres"](t)
	kek := "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
	t.Setenv("GATEHOUSE_KEK", kek)
	a := newFixture(t, gwOptions{database: dsn})
	b := startGateway(t, gwOptions{database: dsn})
	ctx := context.Background()
	bc := openai.NewClient(optionsFor(b.dataURL, a.key)...)
	if _, err := bc.Chat.Completions.New(ctx, chatParams("gpt-4o", 2)); err != nil {
		t.Fatalf("replica B does not accept replica A's key: %v", err)
	}
	if _, err := a.admin.RevokeKey(ctx, a.keyID, ""); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		_, err := bc.Chat.Completions.New(ctx, chatParams("gpt-4o", 2))
		if err != nil {
			if s, c := openAIStatus(t, err); s != 401 || c != "key_revoked" {
				t.Fatalf("replica B: %d %q", s, c)
			}
			t.Logf("replica B refused the revoked key after %v", time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("replica B still accepts the revoked key after 5s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRestartKeepsState: keys, providers and usage survive a restart on the
// embedded store; the KEK file is private; the upstream key is not in the
// database in clear.
func TestRestartKeepsState(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	f := newFixture(t, gwOptions{dataDir: dir})
	ctx := context.Background()
	oc := f.openai(f.key)
	if _, err := oc.Chat.Completions.New(ctx, chatParams("gpt-4o", 2)); err != nil {
		t.Fatal(err)
	}
	f.usageOf(t, f.keyID, 1)
	f.stop()
	fi, err := os.Stat(filepath.Join(dir, "kek.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("kek.key: %v %v", fi, err)
	}
	g := startGateway(t, gwOptions{dataDir: dir})
	if g.srv.Bootstrap.AdminKey != "" {
		t.Fatal("a second start created another bootstrap admin key")
	}
	f2 := &fixture{gateway: g, up: f.up, key: f.key, keyID: f.keyID}
	f2.admin = f.admin
	f2.admin = client.New("http://"+g.srv.AdminAddr(), f.adminKey)
	oc2 := f2.openai(f.key)
	if _, err := oc2.Chat.Completions.New(ctx, chatParams("gpt-4o", 2)); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if recs := f2.usageOf(t, f.keyID, 2); len(recs) != 2 {
		t.Fatalf("after restart: %d usage records, want 2", len(recs))
	}
}

// TestStreamFlushesPerEvent: the caller sees the first event before the
// upstream has finished the stream.
func TestStreamFlushesPerEvent(t *testing.T) {
	f := newFixture(t, gwOptions{})
	f.up.SetFault(sim.Fault{ChunkDelay: 150 * time.Millisecond})
	req, _ := http.NewRequest("POST", f.dataURL+"/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o","stream":true,"max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+f.key)
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	first := time.Since(start)
	if err != nil || !strings.HasPrefix(line, "data: ") {
		t.Fatalf("first line %q, %v", line, err)
	}
	rest, _ := io.ReadAll(resp.Body)
	total := time.Since(start)
	// 12 events at 150ms: the whole stream takes over 1.5s; the first event
	// must arrive well before the end, i.e. it was not buffered.
	if first > total/2 || !strings.Contains(string(rest), "[DONE]") {
		t.Fatalf("first event after %v of %v: not flushed per event", first, total)
	}
}

// TestKeyRotation: a rotated key's new secret works at once, the old one until
// the grace ends, then 401 key_rotated; budgets and usage stay with the key.
func TestKeyRotation(t *testing.T) {
	f := newFixture(t, gwOptions{})
	ctx := context.Background()
	code, out, errs := runCLI(t, f.gateway, "keys", "rotate", f.keyID, "--grace", "1s", "--json")
	var k struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	if err := json.Unmarshal([]byte(out), &k); code != 0 || err != nil || k.ID != f.keyID || !strings.HasPrefix(k.Key, "gk_") || k.Key == f.key {
		t.Fatalf("keys rotate: %d %s %s", code, out, errs)
	}
	old, fresh := f.openai(f.key), f.openai(k.Key)
	for name, c := range map[string]openai.Client{"old": old, "new": fresh} {
		if _, err := c.Chat.Completions.New(ctx, chatParams("gpt-4o", 2)); err != nil {
			t.Fatalf("%s secret within the grace: %v", name, err)
		}
	}
	if show := func() string { _, o, _ := runCLI(t, f.gateway, "keys", "show", f.keyID); return o }(); !strings.Contains(show, "Rotated:") {
		t.Fatalf("keys show after rotation:\n%s", show)
	}
	time.Sleep(1100 * time.Millisecond)
	_, err := old.Chat.Completions.New(ctx, chatParams("gpt-4o", 2))
	if s, c := openAIStatus(t, err); s != 401 || c != "key_rotated" {
		t.Fatalf("old secret after the grace: %d %q", s, c)
	}
	if _, err := fresh.Chat.Completions.New(ctx, chatParams("gpt-4o", 2)); err != nil {
		t.Fatalf("new secret after the grace: %v", err)
	}
	if recs := f.usageOf(t, f.keyID, 3); len(recs) < 3 {
		t.Fatalf("usage stays with the key: %d records", len(recs))
	}
}

// TestKEKRotation: rotating the key-encryption key re-wraps every sealed
// secret; after a restart upstream keys, key hashing, signing all still work.
func TestKEKRotation(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	f := newFixture(t, gwOptions{dataDir: dir})
	ctx := context.Background()
	oc := f.openai(f.key)
	if _, err := oc.Chat.Completions.New(ctx, chatParams("gpt-4o", 2)); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "kek.key"))
	f.stop()
	code, out, errs := runCLI(t, f.gateway, "kek", "rotate", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "re-wrapped") {
		t.Fatalf("kek rotate: %d %s %s", code, out, errs)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "kek.key"))
	if bytes.Equal(before, after) || strings.Count(string(after), "\n") != 1 {
		t.Fatalf("key file after rotation: %q", after)
	}
	g := startGateway(t, gwOptions{dataDir: dir})
	f2 := &fixture{gateway: g}
	oc2 := f2.openai(f.key)
	if _, err := oc2.Chat.Completions.New(ctx, chatParams("gpt-4o", 2)); err != nil {
		t.Fatalf("after KEK rotation (key hashing, upstream key): %v", err)
	}
	// The rotation is an admin record in the ledger, which still verifies.
	newID := regexp.MustCompile(`→ (\S+);`).FindStringSubmatch(out)
	if newID == nil {
		t.Fatalf("no new key id in %q", out)
	}
	if resp, body := adminDo(t, g, "GET", "/log/find/kek-rotate-"+newID[1], "", "", nil); resp.StatusCode != 200 || !regexp.MustCompile(`\[\d`).Match(body) {
		t.Fatalf("ledger record of the rotation: %d %s", resp.StatusCode, body)
	}
	_, vk, _ := runCLI(t, g, "audit", "key")
	if code, out, errs := runCLI(t, g, "audit", "verify", "--url", "http://"+g.srv.AdminAddr()+"/log", "--key", strings.TrimSpace(vk), "--state", filepath.Join(t.TempDir(), "s")); code != 0 {
		t.Fatalf("audit verify after an offline record: %d %s %s", code, out, errs)
	}
	// The old KEK no longer opens anything: restore it and the gateway refuses to start.
	os.WriteFile(filepath.Join(dir, "kek.key"), before, 0o600)
	g.stop()
	cfg := config.Default()
	cfg.Listen, cfg.AdminListen, cfg.DataDir = "127.0.0.1:0", "127.0.0.1:0", dir
	cfg.Validate()
	if _, err := server.Open(ctx, cfg, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("the old KEK still opens the store")
	}
}

// TestUpstreamKeyRotation: add a new upstream key, retire the old one upstream
// and in Gatehouse, under steady traffic: no call fails.
func TestUpstreamKeyRotation(t *testing.T) {
	f := newFixture(t, gwOptions{})
	ctx := context.Background()
	p, err := f.admin.Provider(ctx, "fake-openai")
	if err != nil {
		t.Fatal(err)
	}
	oldKeyID := p.Keys[0].ID
	const newKey = "sk-upstream-NEW-abcdef0123456789"
	var failures, calls atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			oc := f.openai(f.key)
			for {
				select {
				case <-stop:
					return
				default:
				}
				calls.Add(1)
				if _, err := oc.Chat.Completions.New(ctx, chatParams("gpt-4o", 2)); err != nil {
					failures.Add(1)
					t.Logf("call failed: %v", err)
				}
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	f.up.SetKeys(upstreamKey, newKey) // 1. the provider issues a new key
	if _, err := f.admin.AddProviderKey(ctx, "fake-openai", newKey); err != nil {
		t.Fatal(err) // 2. Gatehouse uses both
	}
	time.Sleep(200 * time.Millisecond)
	f.up.SetKeys(newKey) // 3. the provider revokes the old key: calls on it are retried on the new one
	time.Sleep(200 * time.Millisecond)
	if err := f.admin.DeleteProviderKey(ctx, "fake-openai", oldKeyID); err != nil {
		t.Fatal(err) // 4. Gatehouse retires it
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	if failures.Load() != 0 || calls.Load() < 20 {
		t.Fatalf("%d of %d calls failed during the rotation", failures.Load(), calls.Load())
	}
}
