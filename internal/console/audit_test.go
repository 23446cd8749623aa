package console

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// auditAPI adds findings and reviews to fakeAPI: one finding at version 3,
// whose transitions honour If-Match like the admin API's.
type auditAPI struct {
	*fakeAPI
	mu       sync.Mutex
	ifMatch  []string
	reasons  []string
	decided  []map[string]any
	absent   bool // the gateway runs no audits: the routes are unknown
	findings string
}

func (a *auditAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if a.absent && (strings.HasPrefix(r.URL.Path, "/v1/findings") || strings.HasPrefix(r.URL.Path, "/v1/reviews")) {
		a.fakeAPI.ServeHTTP(w, r) // unknown_url
		return
	}
	fail := func(status int, code, msg string) {
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
	}
	switch r.Method + " " + r.URL.Path {
	case "GET /v1/findings":
		a.mu.Lock()
		a.findings = r.URL.RawQuery
		a.mu.Unlock()
		w.Write([]byte(`{"data":[{"id":"fnd_1","rule":"keys.no_expiry","severity":"medium","title":"key <b>x</b> never expires","subject":{"kind":"key","id":"key_1"},"state":"open","version":3}]}`))
	case "GET /v1/findings/fnd_1":
		w.Write([]byte(`{"id":"fnd_1","rule":"keys.no_expiry","severity":"medium","title":"key x never expires","subject":{"kind":"key","id":"key_1"},"state":"open","version":3,
			"evidence":{"summary":"no expiry set","request_ids":["req_1"]},"history":[{"state":"open","by":"gatehouse","reason":"opened","ledger_index":7}]}`))
	case "POST /v1/findings/fnd_1/ack", "POST /v1/findings/fnd_1/resolve":
		var in map[string]string
		json.NewDecoder(r.Body).Decode(&in)
		a.mu.Lock()
		a.ifMatch = append(a.ifMatch, r.Header.Get("If-Match"))
		a.reasons = append(a.reasons, in["reason"])
		a.mu.Unlock()
		if m := r.Header.Get("If-Match"); m != "" && m != `"3"` {
			fail(412, "precondition_failed", "The resource changed since you read it.")
			return
		}
		w.Write([]byte(`{"id":"fnd_1","state":"acknowledged","version":4}`))
	case "GET /v1/reviews":
		w.Write([]byte(`{"data":[]}`))
	case "GET /v1/reviews/rev_1":
		w.Write([]byte(`{"campaign":{"id":"rev_1","scope":"org","state":"open","counts":{"total":1}},"items":[{"id":"rvi_1","kind":"key","subject":"key_1","title":"key x","principal_id":"prn_1"}]}`))
	case "POST /v1/reviews/items/rvi_1/decide":
		var in map[string]any
		json.NewDecoder(r.Body).Decode(&in)
		a.mu.Lock()
		a.decided = append(a.decided, in)
		a.mu.Unlock()
		w.Write([]byte(`{"id":"rvi_1","decision":"reduce","version":2}`))
	default:
		a.fakeAPI.ServeHTTP(w, r)
	}
}

func newAuditEnv(t *testing.T) (*env, *auditAPI, *http.Cookie, string) {
	e := newEnv()
	api := &auditAPI{fakeAPI: e.api}
	e.h.d.API = api
	c, csrf := e.signIn(t)
	return e, api, c, csrf
}

func TestFindingsPageFilters(t *testing.T) {
	e, api, c, _ := newAuditEnv(t)
	for target, want := range map[string]string{
		"/console/findings":                                 "state=open", // open by default
		"/console/findings?state=any&severity=high":         "severity=high",
		"/console/findings?state=resolved":                  "state=resolved",
		"/console/findings?state=bogus&severity=%27%3Cx%3E": "state=open", // unknown values are not passed on
	} {
		w := e.do("GET", target, nil, c, nil)
		if w.Code != 200 {
			t.Fatalf("%s: %d", target, w.Code)
		}
		api.mu.Lock()
		got := api.findings
		api.mu.Unlock()
		if got != want {
			t.Errorf("%s asked the API for %q, want %q", target, got, want)
		}
		if !strings.Contains(w.Body.String(), "key &lt;b&gt;x&lt;/b&gt; never expires") {
			t.Errorf("%s: the finding's title is missing or not escaped", target)
		}
	}
}

func TestFindingsPageWithoutAudits(t *testing.T) {
	e, api, c, _ := newAuditEnv(t)
	api.absent = true
	w := e.do("GET", "/console/findings", nil, c, nil)
	if w.Code != 200 || !strings.Contains(w.Body.String(), "not enabled on this gateway") {
		t.Fatalf("without audits: %d %s", w.Code, w.Body)
	}
}

func TestFindingActionCarriesVersionAndReason(t *testing.T) {
	e, api, c, csrf := newAuditEnv(t)
	// No reason: refused in the page, the API is not called.
	w := e.do("POST", "/console/findings/fnd_1/ack", url.Values{"csrf": {csrf}, "version": {"3"}, "reason": {"  "}}, c, nil)
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "a reason is required") || len(api.reasons) != 0 {
		t.Fatalf("without a reason: %d, API called %d times", w.Code, len(api.reasons))
	}
	// The version the page showed goes as If-Match.
	w = e.do("POST", "/console/findings/fnd_1/ack", url.Values{"csrf": {csrf}, "version": {"3"}, "reason": {"on it"}}, c, nil)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/console/findings/fnd_1" {
		t.Fatalf("acknowledge: %d %s", w.Code, w.Header().Get("Location"))
	}
	// A stale page: the API refuses with 412, the page says so.
	w = e.do("POST", "/console/findings/fnd_1/resolve", url.Values{"csrf": {csrf}, "version": {"2"}, "reason": {"fixed"}}, c, nil)
	if w.Code != http.StatusConflict || !strings.Contains(w.Body.String(), "Someone changed this finding") {
		t.Fatalf("stale version: %d", w.Code)
	}
	// A version that is not a number is not sent as If-Match.
	e.do("POST", "/console/findings/fnd_1/ack", url.Values{"csrf": {csrf}, "version": {`3", W/"x`}, "reason": {"again"}}, c, nil)
	api.mu.Lock()
	got := strings.Join(api.ifMatch, "|")
	reasons := strings.Join(api.reasons, "|")
	api.mu.Unlock()
	if got != `"3"|"2"|` || reasons != "on it|fixed|again" {
		t.Fatalf("If-Match %q, reasons %q", got, reasons)
	}
	// Unknown verbs and forged posts do nothing.
	if w := e.do("POST", "/console/findings/fnd_1/delete", url.Values{"csrf": {csrf}, "reason": {"x"}}, c, nil); w.Code != http.StatusNotFound {
		t.Fatalf("unknown verb: %d", w.Code)
	}
	if w := e.do("POST", "/console/findings/fnd_1/ack", url.Values{"csrf": {"forged"}, "reason": {"x"}}, c, nil); w.Code != http.StatusForbidden {
		t.Fatalf("wrong CSRF token: %d", w.Code)
	}
	if w := e.do("POST", "/console/findings/fnd_1/ack", url.Values{"csrf": {csrf}, "reason": {"x"}}, c, map[string]string{"Sec-Fetch-Site": "cross-site"}); w.Code != http.StatusForbidden {
		t.Fatalf("cross-site: %d", w.Code)
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if n := len(api.reasons); n != 3 {
		t.Fatalf("the API was called %d times, want 3: refused posts must not reach it", n)
	}
}

func TestDecideReviewItem(t *testing.T) {
	e, api, c, csrf := newAuditEnv(t)
	if w := e.do("GET", "/console/reviews/rev_1", nil, c, nil); w.Code != 200 || !strings.Contains(w.Body.String(), `action="/console/reviews/items/rvi_1/decide"`) {
		t.Fatalf("review page: %d", w.Code)
	}
	for _, bad := range []url.Values{
		{"csrf": {csrf}, "campaign": {"rev_1"}, "decision": {"delete"}, "reason": {"x"}},
		{"csrf": {csrf}, "campaign": {"rev_1"}, "decision": {"keep"}, "reason": {""}},
	} {
		if w := e.do("POST", "/console/reviews/items/rvi_1/decide", bad, c, nil); w.Code != http.StatusBadRequest {
			t.Fatalf("%v: %d", bad, w.Code)
		}
	}
	w := e.do("POST", "/console/reviews/items/rvi_1/decide", url.Values{"csrf": {csrf}, "campaign": {"rev_1"}, "decision": {"reduce"},
		"reason": {"only the small model"}, "models": {"gpt-4o-mini, "}, "endpoints": {"chat"}}, c, nil)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/console/reviews/rev_1" {
		t.Fatalf("decide: %d %s", w.Code, w.Header().Get("Location"))
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if len(api.decided) != 1 {
		t.Fatalf("the API got %d decisions", len(api.decided))
	}
	b, _ := json.Marshal(api.decided[0])
	if string(b) != `{"decision":"reduce","endpoints":["chat"],"models":["gpt-4o-mini"],"reason":"only the small model"}` {
		t.Fatalf("decision sent: %s", b)
	}
}
