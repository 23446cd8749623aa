package e2e

import (
	"context"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse-gw/gatehouse/client"
)

func postChat(t *testing.T, url, key string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// TestRateLimits: RPM with OpenAI's headers on every answer, and a 429 with
// Retry-After when the limit is reached; concurrency limits.
func TestRateLimits(t *testing.T) {
	f := newFixture(t, gwOptions{})
	ctx := context.Background()
	if _, err := f.admin.SetLimit(ctx, client.Limit{Scope: "key", ScopeID: f.keyID, RPM: 3, TPM: 100_000}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		resp := postChat(t, f.dataURL, f.key)
		if resp.StatusCode != 200 || resp.Header.Get("x-ratelimit-limit-requests") != "3" ||
			resp.Header.Get("x-ratelimit-remaining-requests") != strconv.Itoa(2-i) || resp.Header.Get("x-ratelimit-limit-tokens") != "100000" {
			t.Fatalf("call %d: %d %v", i, resp.StatusCode, resp.Header)
		}
	}
	resp := postChat(t, f.dataURL, f.key)
	ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	if resp.StatusCode != 429 || ra < 1 || ra > 20 || resp.Header.Get("x-ratelimit-remaining-requests") != "0" {
		t.Fatalf("over the limit: %d, Retry-After %q, %v", resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header)
	}
	// The SDK sees OpenAI's error shape.
	oc := f.openai(f.key)
	_, err := oc.Chat.Completions.New(ctx, chatParams("gpt-4o", 5))
	if s, c := openAIStatus(t, err); s != 429 || c != "rate_limit_exceeded" {
		t.Fatalf("SDK: %d %q", s, c)
	}
}

// TestRateLimitsAcrossReplicas: two gateways sharing Redis hold one limit.
func TestRateLimitsAcrossReplicas(t *testing.T) {
	redisURL := os.Getenv("GATEHOUSE_TEST_REDIS_URL")
	if redisURL == "" {
		t.Skip("GATEHOUSE_TEST_REDIS_URL not set; skipping the shared rate-limit test")
	}
	dsn := backends(t)["postgres"](t)
	t.Setenv("GATEHOUSE_KEK", "BQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQU=")
	withRedis := func(c *configT) { c.RedisURL = redisURL }
	a := newFixture(t, gwOptions{database: dsn, mutate: withRedis})
	b := startGateway(t, gwOptions{database: dsn, mutate: withRedis})
	ctx := context.Background()
	if _, err := a.admin.SetLimit(ctx, client.Limit{Scope: "principal", ScopeID: "agent", RPM: 10}); err != nil {
		t.Fatal(err)
	}
	if err := b.srv.Reload(ctx); err != nil { // do not wait for B's config poll
		t.Fatal(err)
	}
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			url := a.dataURL
			if i%2 == 1 {
				url = b.dataURL
			}
			s := postChat(t, url, a.key).StatusCode
			mu.Lock()
			codes[s]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if codes[200] != 10 || codes[429] != 20 {
		t.Fatalf("across two replicas: %v, want 10 admitted and 20 refused", codes)
	}
}
