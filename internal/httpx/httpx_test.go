package httpx

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestRenderShapes(t *testing.T) {
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	h := Middleware(log, func(r *http.Request) Flavor {
		if strings.HasPrefix(r.URL.Path, "/a") {
			return Anthropic
		}
		return OpenAI
	}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		flavor := OpenAI
		if strings.HasPrefix(r.URL.Path, "/a") {
			flavor = Anthropic
		}
		switch r.URL.Path {
		case "/o/plain", "/a/plain":
			Render(w, r, log, flavor, errors.New("db password=hunter2 leaked in cause"))
		case "/o/typed", "/a/typed":
			Render(w, r, log, flavor, Errorf(403, "model_not_allowed", "nope").WithParam("model"))
		case "/o/panic":
			panic("boom")
		}
	}))
	get := func(path string) (int, map[string]any, http.Header) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		var m map[string]any
		json.Unmarshal(rec.Body.Bytes(), &m)
		return rec.Code, m, rec.Header()
	}
	code, m, hdr := get("/o/plain")
	e := m["error"].(map[string]any)
	if code != 500 || e["type"] != "server_error" || strings.Contains(e["message"].(string), "hunter2") || !strings.Contains(e["message"].(string), hdr.Get("x-request-id")) {
		t.Errorf("plain error: %d %v", code, m)
	}
	code, m, _ = get("/o/typed")
	e = m["error"].(map[string]any)
	if code != 403 || e["code"] != "model_not_allowed" || e["param"] != "model" || e["type"] != "permission_error" {
		t.Errorf("typed error: %d %v", code, m)
	}
	code, m, hdr = get("/a/typed")
	if code != 403 || m["type"] != "error" || m["error"].(map[string]any)["type"] != "permission_error" || m["request_id"] != hdr.Get("request-id") {
		t.Errorf("anthropic error: %d %v", code, m)
	}
	code, m, _ = get("/o/panic")
	if code != 500 || m["error"] == nil {
		t.Errorf("panic: %d %v", code, m)
	}
	if !strings.Contains(logs.String(), "hunter2") || !strings.Contains(logs.String(), "boom") {
		t.Error("causes must reach the log")
	}
}

func TestNewRequestID(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id := NewRequestID()
		if !regexp.MustCompile(`^req_[0-9a-f]{32}$`).MatchString(id) || seen[id] {
			t.Fatalf("request id %q (seen before: %v)", id, seen[id])
		}
		seen[id] = true
	}
}
