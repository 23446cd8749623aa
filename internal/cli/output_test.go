package cli

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// hostileAdmin is an admin API whose answers carry terminal controls where
// callers choose the text (a user agent, a subject), as a compromised or
// spoofed server would send them.
func hostileAdmin(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/lockouts":
			w.Write([]byte(`{"data":[{"subject":"user:\u001b]0;pwned\u0007eve","failures":3,"locks":1,"last_user_agent":"curl\u001b[2J\u202egnp.exe","updated_at":"2026-11-30T12:00:00Z"}]}`))
		case "/v1/findings":
			w.Write([]byte(`{"data":[]}`))
		case "/v1/policies":
			w.Write([]byte(`{"version":7,"note":"tidy\u001b]0;pwned\u0007","created_by":"eve","files":{"a\u202e.cedar":"permit(principal, action, resource);\n\t// \u001b[2J\u009b31m\r\n"}}`))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func runIn(t *testing.T, srv *httptest.Server, args ...string) (int, string, string) {
	t.Helper()
	var out, errs strings.Builder
	e := &Env{Stdout: &out, Stderr: &errs, Getenv: func(k string) string {
		return map[string]string{"GATEHOUSE_ADDR": srv.URL, "GATEHOUSE_ADMIN_KEY": "gka_test"}[k]
	}}
	code := Run(context.Background(), args, e)
	return code, out.String(), errs.String()
}

// TestListOutputEscapesHostileStrings: a list printed through the one output
// path (fetch, tableOf) escapes terminal controls and bidi overrides in a
// table, and prints JSON with --json that still parses to the same value.
func TestListOutputEscapesHostileStrings(t *testing.T) {
	srv := hostileAdmin(t)
	code, out, errs := runIn(t, srv, "users", "lockouts")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if strings.ContainsAny(out, "\x1b\x07\u202e") || !strings.Contains(out, `\u001b[2J\u202egnp.exe`) || !strings.HasPrefix(out, "SUBJECT") {
		t.Fatalf("table: %q", out)
	}
	code, out, errs = runIn(t, srv, "users", "lockouts", "--json")
	if code != 0 || strings.ContainsAny(out, "\x1b\x07\u202e") {
		t.Fatalf("json: %d %q %s", code, out, errs)
	}
	var got []struct {
		Subject       string `json:"subject"`
		LastUserAgent string `json:"last_user_agent"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 1 || got[0].LastUserAgent != "curl\x1b[2J\u202egnp.exe" || got[0].Subject != "user:\x1b]0;pwned\x07eve" {
		t.Fatalf("the JSON does not parse back to the server's value: %+v %v", got, err)
	}
}

// TestListOutputEmptyAndStrayArguments: an empty list prints the command's
// "none" line; a list command refuses a stray argument instead of ignoring
// it (a mistyped filter must not list everything).
func TestListOutputEmptyAndStrayArguments(t *testing.T) {
	srv := hostileAdmin(t)
	if code, out, errs := runIn(t, srv, "findings", "list"); code != 0 || out != "No findings.\n" {
		t.Fatalf("empty: %d %q %s", code, out, errs)
	}
	if code, out, _ := runIn(t, srv, "users", "lockouts", "eve"); code == 0 || out != "" {
		t.Fatalf("a stray argument was accepted: %d %q", code, out)
	}
}

// TestPolicyShowEscapesStoredText: policy text set through the admin API is
// stored as given; "policy show" prints it with terminal controls escaped
// (newlines and tabs kept, so the policy still reads as written).
func TestPolicyShowEscapesStoredText(t *testing.T) {
	srv := hostileAdmin(t)
	code, out, errs := runIn(t, srv, "policy", "show")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if i := strings.IndexFunc(out, unsafeRune); i >= 0 {
		t.Fatalf("policy show printed %q raw: %q", out[i:i+1], out)
	}
	for _, want := range []string{
		`# policy version 7 (tidy\u001b]0;pwned\u0007)`,
		`# --- a\u202e.cedar ---`,
		"permit(principal, action, resource);\n\t// \\u001b[2J\\u009b31m\\u000d\n",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("policy show output lacks %q:\n%s", want, out)
		}
	}
}
