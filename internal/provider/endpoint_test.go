package provider

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
)

// TestNewRequestHeaders: the upstream request carries exactly the headers
// the protocol defines, each with its own value, the key of the slot and
// none of the caller's credentials; values that share one backing array
// stay apart when a later hand (a tracer's Inject, the transport) appends.
func TestNewRequestHeaders(t *testing.T) {
	caller := httptest.NewRequest("POST", "/v1/x", nil)
	caller.Header.Set("Authorization", "Bearer gk_caller")
	caller.Header.Set("X-Api-Key", "gk_caller")
	caller.Header.Set("Accept", "text/event-stream")
	caller.Header.Set("Anthropic-Version", "2024-01-01")
	caller.Header.Set("Anthropic-Beta", "tools-1")
	caller.Header.Set("Cookie", "s=1")
	for _, tc := range []struct {
		typ  Type
		slot uint64
		want http.Header
	}{
		{TypeOpenAI, 1, http.Header{"Content-Type": {"application/json"}, "User-Agent": {"gatehouse"}, "Accept": {"text/event-stream"},
			"Authorization": {"Bearer sk-two"}}},
		{TypeAnthropic, 2, http.Header{"Content-Type": {"application/json"}, "User-Agent": {"gatehouse"}, "Accept": {"text/event-stream"},
			"Anthropic-Version": {"2024-01-01"}, "Anthropic-Beta": {"tools-1"}, "X-Api-Key": {"sk-one"}}},
	} {
		u := NewUpstream(Provider{Name: "p", Type: tc.typ, BaseURL: "http://upstream.test/v1/"}, []APIKey{"sk-one", "sk-two"}, http.DefaultClient)
		body := []byte(`{"model":"m"}`)
		req, err := u.NewRequest(context.Background(), caller, Chat, body, tc.slot+2) // slot modulo the pool
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(req.Header, tc.want) {
			t.Fatalf("%s: headers %v, want %v", tc.typ, req.Header, tc.want)
		}
		req.Header["Content-Type"] = append(req.Header["Content-Type"], "text/plain")
		req.Header.Add("User-Agent", "other")
		if got := req.Header["Accept"]; len(got) != 1 || got[0] != "text/event-stream" {
			t.Fatalf("%s: appending to one header changed another: Accept %q", tc.typ, got)
		}
		if got := req.Header["User-Agent"]; len(got) != 2 || got[0] != "gatehouse" {
			t.Fatalf("%s: User-Agent %q", tc.typ, got)
		}
		if req.URL.String() != "http://upstream.test/v1/chat/completions" || req.ContentLength != int64(len(body)) {
			t.Fatalf("%s: %s, length %d", tc.typ, req.URL, req.ContentLength)
		}
		got, _ := io.ReadAll(req.Body)
		if string(got) != string(body) {
			t.Fatalf("%s: body %q", tc.typ, got)
		}
	}
}
