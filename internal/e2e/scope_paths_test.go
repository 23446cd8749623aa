package e2e

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/client"
)

// TestScopedKeyCannotReachOtherRoutes is the attack "a leaked key scoped to
// one cheap endpoint and model reaches another": path tricks (a doubled
// slash, dot segments, an encoded slash, case, a trailing slash or segment),
// the Anthropic routes, another model on its own endpoint in other
// spellings, and the admin API on both listeners. None may reach the
// upstream or answer 2xx; the key works where it is scoped.
func TestScopedKeyCannotReachOtherRoutes(t *testing.T) {
	f := newFixture(t, gwOptions{})
	ctx := context.Background()
	k, err := f.admin.CreateKey(ctx, client.KeyInput{Principal: "agent", Scope: client.Scope{Models: []string{"text-embedding-3-small"}, Endpoints: []string{"embeddings"}}})
	if err != nil {
		t.Fatal(err)
	}
	// Raw requests (no redirect following, no path cleaning by a client).
	send := func(base, method, path, body string, hdr map[string]string) (int, string) {
		t.Helper()
		u := strings.TrimPrefix(base, "http://")
		conn, err := net.DialTimeout("tcp", u, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var b strings.Builder
		b.WriteString(method + " " + path + " HTTP/1.1\r\nHost: " + u + "\r\nConnection: close\r\nContent-Type: application/json\r\n")
		for k, v := range hdr {
			b.WriteString(k + ": " + v + "\r\n")
		}
		b.WriteString("Content-Length: " + itoa(len(body)) + "\r\n\r\n" + body)
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.WriteString(conn, b.String()); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufioReader(conn), nil)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(out)
	}
	bearer := map[string]string{"Authorization": "Bearer " + k.Secret}
	embed := `{"model":"text-embedding-3-small","input":"x"}`
	if s, body := send(f.dataURL, "POST", "/v1/embeddings", embed, bearer); s != 200 {
		t.Fatalf("the scoped key on its own endpoint and model: %d %s", s, body)
	}
	calls := f.up.Calls.Load()
	chat := `{"model":"gpt-4o","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}`
	msg := `{"model":"claude-haiku-4-5","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}`
	for _, c := range []struct {
		path, body string
		hdr        map[string]string
	}{
		{"/v1/chat/completions", chat, bearer},
		{"//v1/chat/completions", chat, bearer},
		{"/v1//chat/completions", chat, bearer},
		{"/v1/./chat/completions", chat, bearer},
		{"/v1/embeddings/../chat/completions", chat, bearer},
		{"/v1/embeddings/%2e%2e/chat/completions", chat, bearer},
		{"/v1/chat%2Fcompletions", chat, bearer},
		{"/v1/chat%2fcompletions", chat, bearer},
		{"/V1/CHAT/COMPLETIONS", chat, bearer},
		{"/v1/chat/completions/", chat, bearer},
		{"/v1/chat/completions;embeddings", chat, bearer},
		{"/v1/chat/completions?endpoint=embeddings", chat, bearer},
		{"/v1/completions", `{"model":"gpt-4o","prompt":"hi","max_tokens":3}`, bearer},
		{"/v1/responses", `{"model":"gpt-4o","input":"hi","max_output_tokens":16}`, bearer},
		{"/v1/messages", msg, map[string]string{"x-api-key": k.Secret, "anthropic-version": "2023-06-01"}},
		{"/v1/messages/count_tokens", msg, map[string]string{"x-api-key": k.Secret, "anthropic-version": "2023-06-01"}},
		// Its own endpoint, another model, in other spellings.
		{"/v1/embeddings", `{"model":"gpt-4o","input":"x"}`, bearer},
		{"/v1/embeddings", `{"model":"TEXT-EMBEDDING-3-SMALL","input":"x"}`, bearer},
		{"/v1/embeddings", `{"model":"text-embedding-3-small ","input":"x"}`, bearer},
		{"/v1/embeddings", `{"model":"text-embedding-3-large","input":"x"}`, bearer},
		{"/v1/embeddings", `{"model":"text-embedding-3-small","Model":"gpt-4o","input":"x"}`, bearer},
		{"/v1/embeddings", `{"model":"text-embedding-3-small","model":"gpt-4o","input":"x"}`, bearer},
		{"/v1/embeddings", `{"model":"text-embedding-3-small\u0000","input":"x"}`, bearer},
	} {
		s, body := send(f.dataURL, "POST", c.path, c.body, c.hdr)
		if s < 300 {
			t.Errorf("POST %s %s: %d %s (the key is scoped to embeddings of text-embedding-3-small)", c.path, c.body, s, body)
		}
	}
	if got := f.up.Calls.Load(); got != calls {
		t.Errorf("the scoped key reached the upstream %d times outside its scope", got-calls)
	}
	// The admin API: not on the data plane, and a caller key is no admin key.
	adminURL := "http://" + f.srv.AdminAddr()
	for _, p := range []string{"/v1/keys", "/v1/principals", "/v1/policies", "/v1/lockouts"} {
		if s, body := send(f.dataURL, "GET", p, "", bearer); s < 300 {
			t.Errorf("data plane GET %s with a caller key: %d %s", p, s, body)
		}
		if s, body := send(adminURL, "GET", p, "", bearer); s != http.StatusUnauthorized && s != http.StatusForbidden {
			t.Errorf("admin GET %s with a caller key: %d %s", p, s, body)
		}
	}
	if s, body := send(adminURL, "POST", "/v1/keys", `{"principal":"agent","kind":"admin"}`, bearer); s != http.StatusUnauthorized && s != http.StatusForbidden {
		t.Errorf("admin POST /v1/keys with a caller key: %d %s", s, body)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func bufioReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }
