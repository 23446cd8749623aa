package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/openai/openai-go/v3/option"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
)

// TestHostileCallsLeaveVerifiableLog is issue #9, items 7 and 8, end to end:
// callers with a user agent of invalid UTF-8 or one cut mid-character at 256
// bytes, allowed and denied, through the OpenAI SDK and raw HTTP, and a 70 KB
// model name; afterwards `gatehouse audit verify` passes, and every call has
// its records.
func TestHostileCallsLeaveVerifiableLog(t *testing.T) {
	for name, dsn := range backends(t) {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			f := newFixture(t, gwOptions{dataDir: dir, database: dsn(t)})
			ctx := context.Background()
			scoped, err := f.admin.CreateKey(ctx, client.KeyInput{Principal: "agent", Scope: client.Scope{Models: []string{"gpt-4o-mini"}}})
			if err != nil {
				t.Fatal(err)
			}
			chat := `{"model":"gpt-4o","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}`
			cutUA := strings.Repeat("a", 255) + "€€" // a byte cut at 256 splits the euro sign
			type want struct {
				id      string
				records int // 2: start and end; 1: a denial's end
				ua      string
			}
			var calls []want
			raw := func(key, ua, body string, status int, records int) {
				t.Helper()
				got, _, hdr := rawCall(t, f.dataURL+"/v1/chat/completions", key, body, map[string]string{"User-Agent": ua})
				if got != status && !(status == 0 && got >= 400 && got < 500) {
					t.Fatalf("call with user agent %.20q: status %d, want %d", ua, got, status)
				}
				calls = append(calls, want{hdr.Get("x-request-id"), records, ua})
			}
			raw(f.key, "\xff\xfe hostile", chat, 200, 2)
			raw(f.key, cutUA, chat, 200, 2)
			raw(scoped.Secret, "\xc3", chat, 403, 1) // denied after authentication: still recorded
			// A 70 KB model name: refused (403 out of scope, or 400 too long), recorded.
			raw(scoped.Secret, "x", `{"model":"gpt-`+strings.Repeat("\u00e9", 35<<10)+`","messages":[]}`, 0, 1)

			// The OpenAI SDK with a user agent that is not UTF-8.
			var resp *http.Response
			oc := f.openai(f.key)
			if _, err := oc.Chat.Completions.New(ctx, chatParams("gpt-4o", 3), option.WithHeader("User-Agent", "sdk\x80\x80"), option.WithResponseInto(&resp)); err != nil {
				t.Fatal(err)
			}
			calls = append(calls, want{resp.Header.Get("x-request-id"), 2, "sdk\x80\x80"})

			// Every call's records are in a log that verifies.
			vkey := strings.TrimSpace(mustCLI(t, f.gateway, "audit", "key"))
			var rep ledger.Report
			for deadline := time.Now().Add(10 * time.Second); ; {
				code, out, errs := runCLI(t, f.gateway, "audit", "verify", "--url", "http://"+f.srv.AdminAddr()+"/log", "--key", vkey,
					"--state", filepath.Join(t.TempDir(), "s"), "--json")
				var v struct {
					OK     bool          `json:"ok"`
					Report ledger.Report `json:"report"`
				}
				json.Unmarshal([]byte(out), &v)
				// Until a checkpoint covers every call (one is signed each second).
				if code == 0 && v.OK && v.Report.Kinds[ledger.KindCallEnd] >= len(calls) {
					rep = v.Report
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("audit verify after hostile calls: %d %s %s", code, out, errs)
				}
				time.Sleep(200 * time.Millisecond)
			}
			if rep.Kinds[ledger.KindCallEnd] != len(calls) || rep.Kinds[ledger.KindCallStart] != 3 {
				t.Fatalf("verified %v; want %d ends and 3 starts", rep.Kinds, len(calls))
			}
			for _, c := range calls {
				code, out, errs := runCLI(t, f.gateway, "audit", "show", c.id, "--json")
				var shown []struct {
					Verified bool          `json:"verified"`
					Record   ledger.Record `json:"record"`
				}
				json.Unmarshal([]byte(out), &shown)
				if code != 0 || len(shown) != c.records {
					t.Fatalf("request %s (user agent %.20q): %d records, want %d: %s %s", c.id, c.ua, len(shown), c.records, out, errs)
				}
				for _, s := range shown {
					r := s.Record
					if !s.Verified || !utf8.ValidString(r.UserAgent) || len(r.UserAgent) > 256 || len(r.Model) > 256 {
						t.Errorf("request %s: record %+v", c.id, r)
					}
					if r.UserAgent != "" && !strings.HasPrefix(string([]rune(c.ua)), r.UserAgent) {
						t.Errorf("request %s: user agent %q recorded as %q", c.id, c.ua, r.UserAgent)
					}
				}
			}
		})
	}
}

func mustCLI(t *testing.T, g *gateway, args ...string) string {
	t.Helper()
	code, out, errs := runCLI(t, g, args...)
	if code != 0 {
		t.Fatalf("gatehouse %v: %d %s", args, code, errs)
	}
	return out
}

// TestHostileModelKeepsUsageRecord: a model name with NUL or a lone surrogate
// escape, allowed through to the upstream, still leaves its usage record on
// PostgreSQL (whose text type refuses NUL; the record used to be lost).
func TestHostileModelKeepsUsageRecord(t *testing.T) {
	for name, dsn := range backends(t) {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, gwOptions{database: dsn(t)})
			for _, model := range []string{`gpt-4o\u0000x`, `gpt-4o\ud800x`} {
				status, out, _ := rawCall(t, f.dataURL+"/v1/chat/completions", f.key, `{"model":"`+model+`","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}`, nil)
				if status >= 500 {
					t.Fatalf("model %s: %d %v", model, status, out)
				}
			}
			recs := f.usageOf(t, f.keyID, 2)
			if len(recs) != 2 {
				t.Fatalf("%d usage records for 2 calls", len(recs))
			}
			for _, r := range recs {
				if !utf8.ValidString(r.Model) || strings.Contains(r.Model, "\x00") {
					t.Errorf("usage record model %q", r.Model)
				}
			}
		})
	}
}

// TestHostileAdminPathsLeaveVerifiableLog: admin requests whose path carries
// bytes that are not UTF-8, NUL or an over-long model are refused without a
// 500 on both stores; an accepted change with an unusual model id is recorded
// (target from the path), and the log verifies.
func TestHostileAdminPathsLeaveVerifiableLog(t *testing.T) {
	for name, dsn := range backends(t) {
		t.Run(name, func(t *testing.T) {
			g := startGateway(t, gwOptions{database: dsn(t)})
			body := `{"input_micros_per_mtok":1,"output_micros_per_mtok":1}`
			hostile := []string{"/v1/prices/%FF%FE", "/v1/prices/gpt%00x", "/v1/prices/" + strings.Repeat("%E2%82%AC", 100)}
			for _, path := range hostile {
				if resp, b := adminDo(t, g, "PUT", path, g.adminKey, body, nil); resp.StatusCode != 400 {
					t.Errorf("PUT %s: %d %s; want 400", path, resp.StatusCode, b)
				}
				if resp, b := adminDo(t, g, "DELETE", path, g.adminKey, "", nil); resp.StatusCode != 404 {
					t.Errorf("DELETE %s: %d %s; want 404", path, resp.StatusCode, b)
				}
			}
			odd := "/v1/prices/ft:%C3%BCn%C3%AF%3C%26%3E%22%5C:" + strings.Repeat("a", 200)
			for _, m := range []string{"PUT", "DELETE"} {
				if resp, b := adminDo(t, g, m, odd, g.adminKey, body, map[string]string{"User-Agent": "\xff"}); resp.StatusCode >= 300 {
					t.Fatalf("%s %s: %d %s", m, odd, resp.StatusCode, b)
				}
			}
			vkey := strings.TrimSpace(mustCLI(t, g, "audit", "key"))
			for deadline := time.Now().Add(10 * time.Second); ; {
				code, out, errs := runCLI(t, g, "audit", "verify", "--url", "http://"+g.srv.AdminAddr()+"/log", "--key", vkey,
					"--state", filepath.Join(t.TempDir(), "s"), "--json")
				var v struct {
					OK     bool          `json:"ok"`
					Report ledger.Report `json:"report"`
				}
				json.Unmarshal([]byte(out), &v)
				if code == 0 && v.OK && v.Report.Kinds[ledger.KindAdmin] >= 2 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("audit verify after hostile admin paths: %d %s %s", code, out, errs)
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
	}
}
