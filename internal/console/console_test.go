package console

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeAPI stands in for the admin API: it checks the session token and
// records the calls the console makes.
type fakeAPI struct {
	mu        sync.Mutex
	calls     []string
	bodies    []string
	stepUp    bool // POST /v1/keys needs a step-up first
	steppedUp bool
}

const token = "gks_sessiontoken_0123456789"

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.calls = append(f.calls, r.Method+" "+r.URL.Path)
	f.bodies = append(f.bodies, string(b))
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fail := func(status int, code string) {
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": "refused: " + code}})
	}
	if r.URL.Path == "/v1/auth/login" {
		var in map[string]string
		json.Unmarshal(b, &in)
		switch {
		case in["password"] != "pw":
			fail(401, "invalid_login")
		case in["user"] == "newbie": // require_mfa, no second factor yet
			json.NewEncoder(w).Encode(map[string]any{"session": token, "principal_id": "prn_2", "enrollment_only": true, "mfa": false})
		case in["code"] == "":
			fail(401, "mfa_required")
		default:
			json.NewEncoder(w).Encode(map[string]string{"session": token, "principal_id": "prn_1"})
		}
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+token {
		fail(401, "invalid_session")
		return
	}
	switch r.Method + " " + r.URL.Path {
	case "GET /v1/keys", "GET /v1/principals", "GET /v1/teams", "GET /v1/spend":
		w.Write([]byte(`{"data":[]}`))
	case "POST /v1/auth/step-up":
		var in map[string]string
		json.Unmarshal(b, &in)
		if in["code"] != "123456" {
			fail(401, "invalid_code")
			return
		}
		f.mu.Lock()
		f.steppedUp = true
		f.mu.Unlock()
		w.Write([]byte(`{}`))
	case "POST /v1/keys":
		f.mu.Lock()
		need := f.stepUp && !f.steppedUp
		f.mu.Unlock()
		if need {
			fail(403, "step_up_required")
			return
		}
		w.WriteHeader(201)
		w.Write([]byte(`{"id":"key_1","key":"gka_SECRET_SHOWN_ONCE"}`))
	case "POST /v1/keys/key_1/revoke", "POST /v1/auth/logout":
		w.Write([]byte(`{}`))
	default:
		fail(404, "unknown_url")
	}
}

func (f *fakeAPI) called(call string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c == call {
			n++
		}
	}
	return n
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	h     *Handler
	api   *fakeAPI
	clock *clock
}

func newEnv() *env {
	api := &fakeAPI{}
	c := &clock{t: time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)}
	return &env{h: New(Deps{API: api, Now: c.now, IdleTimeout: 10 * time.Minute, AbsoluteTimeout: time.Hour}), api: api, clock: c}
}

func (e *env) do(method, target string, form url.Values, cookie *http.Cookie, hdr map[string]string) *httptest.ResponseRecorder {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r := httptest.NewRequest(method, "http://gatehouse.test"+target, body)
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if method == "POST" {
		r.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	for k, v := range hdr {
		if v == "" {
			r.Header.Del(k)
		} else {
			r.Header.Set(k, v)
		}
	}
	if cookie != nil {
		r.AddCookie(cookie)
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w
}

// signIn signs in with password and code and returns the session cookie and
// the CSRF token of the pages.
func (e *env) signIn(t *testing.T) (*http.Cookie, string) {
	t.Helper()
	w := e.do("POST", "/console/login", url.Values{"user": {"alice"}, "password": {"pw"}, "code": {"000000"}, "next": {"/console/keys?team=a"}}, nil, nil)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/console/keys?team=a" {
		t.Fatalf("sign-in: %d %s", w.Code, w.Header().Get("Location"))
	}
	c := w.Result().Cookies()[0]
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure || c.Name != "gatehouse-console" {
		t.Fatalf("cookie %+v", c)
	}
	if strings.Contains(c.Value, token) {
		t.Fatal("the cookie carries the admin session token")
	}
	page := e.do("GET", "/console/keys", nil, c, nil)
	if page.Code != 200 {
		t.Fatalf("keys page: %d %s", page.Code, page.Body)
	}
	if strings.Contains(page.Body.String(), token) {
		t.Fatal("a page shows the admin session token")
	}
	_, rest, _ := strings.Cut(page.Body.String(), `name="csrf" value="`)
	csrf, _, _ := strings.Cut(rest, `"`)
	if len(csrf) < 40 {
		t.Fatalf("no CSRF token in the page")
	}
	return c, csrf
}

func TestHeadersOnEveryResponse(t *testing.T) {
	e := newEnv()
	for _, target := range []string{"/console/login", "/console/", "/console/nope", "/console/static/console.js", "/console/static/console.css"} {
		w := e.do("GET", target, nil, nil, nil)
		if w.Header().Get("Content-Security-Policy") != CSP || w.Header().Get("X-Frame-Options") != "DENY" || w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: headers %v", target, w.Header())
		}
	}
	if !strings.Contains(CSP, "script-src 'self'") || strings.Contains(CSP, "unsafe") || !strings.Contains(CSP, "frame-ancestors 'none'") {
		t.Fatalf("CSP %q", CSP)
	}
	// No template has inline script, inline style or an inline handler.
	entries, _ := templateFS.ReadDir("templates")
	for _, en := range entries {
		b, _ := templateFS.ReadFile("templates/" + en.Name())
		s := string(b)
		if strings.Contains(s, "<script>") || strings.Contains(s, "style=") || strings.Contains(s, " onclick=") || strings.Contains(s, "javascript:") {
			t.Errorf("%s has inline script or style", en.Name())
		}
	}
}

// TestEnrolmentOnlySignInSaysWhatToDo: under require_mfa a user without a
// second factor gets an enrolment-only session from the API, which may do
// nothing the console offers. The console keeps no session, ends the API's,
// and says how to enrol instead of showing pages that all answer 403.
func TestEnrolmentOnlySignInSaysWhatToDo(t *testing.T) {
	e := newEnv()
	w := e.do("POST", "/console/login", url.Values{"user": {"newbie"}, "password": {"pw"}}, nil, nil)
	if w.Code != http.StatusForbidden || len(w.Result().Cookies()) != 0 {
		t.Fatalf("enrolment-only sign-in: %d, cookies %v", w.Code, w.Result().Cookies())
	}
	if !strings.Contains(w.Body.String(), "totp-enroll") {
		t.Fatalf("the page does not say how to enrol: %s", w.Body.String())
	}
	if e.api.called("POST /v1/auth/logout") != 1 {
		t.Fatal("the enrolment session was left open")
	}
}

func TestSignInAndSecondFactor(t *testing.T) {
	e := newEnv()
	if w := e.do("GET", "/console/keys", nil, nil, nil); w.Code != http.StatusSeeOther || !strings.HasPrefix(w.Header().Get("Location"), "/console/login?next=") {
		t.Fatalf("no session: %d %s", w.Code, w.Header().Get("Location"))
	}
	w := e.do("POST", "/console/login", url.Values{"user": {"alice"}, "password": {"pw"}}, nil, nil)
	if w.Code != 401 || !strings.Contains(w.Body.String(), `id="code"`) || !strings.Contains(w.Body.String(), "required autofocus") || len(w.Result().Cookies()) != 0 {
		t.Fatalf("password without the code: %d", w.Code)
	}
	if w := e.do("POST", "/console/login", url.Values{"user": {"alice"}, "password": {"wrong"}, "code": {"1"}}, nil, nil); w.Code != 401 || len(w.Result().Cookies()) != 0 {
		t.Fatalf("wrong password: %d", w.Code)
	}
	// A sign-in form posted from another site is refused.
	if w := e.do("POST", "/console/login", url.Values{"user": {"alice"}, "password": {"pw"}, "code": {"1"}}, nil, map[string]string{"Sec-Fetch-Site": "cross-site"}); w.Code != 403 || len(w.Result().Cookies()) != 0 {
		t.Fatalf("cross-site sign-in: %d", w.Code)
	}
	e.signIn(t)
}

func TestCSRF(t *testing.T) {
	e := newEnv()
	c, csrf := e.signIn(t)
	for name, tc := range map[string]struct {
		form url.Values
		hdr  map[string]string
	}{
		"no token":                           {url.Values{}, nil},
		"wrong token":                        {url.Values{"csrf": {csrf[:len(csrf)-1] + "x"}}, nil},
		"right token, cross-site":            {url.Values{"csrf": {csrf}}, map[string]string{"Sec-Fetch-Site": "cross-site"}},
		"right token, no origin information": {url.Values{"csrf": {csrf}}, map[string]string{"Sec-Fetch-Site": ""}},
		"right token, other Origin":          {url.Values{"csrf": {csrf}}, map[string]string{"Sec-Fetch-Site": "", "Origin": "http://evil.test"}},
	} {
		if w := e.do("POST", "/console/keys/key_1/revoke", tc.form, c, tc.hdr); w.Code != http.StatusForbidden {
			t.Errorf("%s: %d", name, w.Code)
		}
	}
	if n := e.api.called("POST /v1/keys/key_1/revoke"); n != 0 {
		t.Fatalf("the admin API was called %d times by refused requests", n)
	}
	if w := e.do("POST", "/console/keys/key_1/revoke", url.Values{"csrf": {csrf}}, c, map[string]string{"Sec-Fetch-Site": "", "Origin": "http://gatehouse.test"}); w.Code != http.StatusSeeOther {
		t.Fatalf("a genuine request (Origin only): %d %s", w.Code, w.Body)
	}
	if w := e.do("POST", "/console/keys/key_1/revoke", url.Values{"csrf": {csrf}}, c, nil); w.Code != http.StatusSeeOther || e.api.called("POST /v1/keys/key_1/revoke") != 2 {
		t.Fatalf("a genuine request: %d", w.Code)
	}
	// The token of one session does not work for another.
	c2, _ := e.signIn(t)
	if w := e.do("POST", "/console/keys/key_1/revoke", url.Values{"csrf": {csrf}}, c2, nil); w.Code != http.StatusForbidden {
		t.Fatalf("another session's token: %d", w.Code)
	}
}

func TestSessionTimeouts(t *testing.T) {
	e := newEnv()
	c, _ := e.signIn(t)
	for range 6 { // active use keeps it alive up to the absolute timeout (54 minutes)
		e.clock.add(9 * time.Minute)
		if w := e.do("GET", "/console/keys", nil, c, nil); w.Code != 200 {
			t.Fatalf("an active session ended after %v", 9*time.Minute)
		}
	}
	e.clock.add(9 * time.Minute) // 63 minutes since sign-in: past the absolute hour
	if w := e.do("GET", "/console/keys", nil, c, nil); w.Code != http.StatusSeeOther {
		t.Fatalf("past the absolute timeout: %d", w.Code)
	}
	c, _ = e.signIn(t)
	e.clock.add(10 * time.Minute)
	if w := e.do("GET", "/console/keys", nil, c, nil); w.Code != http.StatusSeeOther {
		t.Fatalf("past the idle timeout: %d", w.Code)
	}
}

func TestLogout(t *testing.T) {
	e := newEnv()
	c, csrf := e.signIn(t)
	w := e.do("POST", "/console/logout", url.Values{"csrf": {csrf}}, c, nil)
	if w.Code != http.StatusSeeOther || e.api.called("POST /v1/auth/logout") != 1 {
		t.Fatalf("logout: %d, admin logout called %d", w.Code, e.api.called("POST /v1/auth/logout"))
	}
	if cl := w.Result().Cookies(); len(cl) != 1 || cl[0].MaxAge >= 0 {
		t.Fatalf("logout cookie %+v", cl)
	}
	if w := e.do("GET", "/console/keys", nil, c, nil); w.Code != http.StatusSeeOther {
		t.Fatalf("the old cookie after logout: %d", w.Code)
	}
}

func TestSecureCookieOverTLS(t *testing.T) {
	e := newEnv()
	r := httptest.NewRequest("POST", "https://gatehouse.test/console/login", strings.NewReader(url.Values{"user": {"a"}, "password": {"pw"}, "code": {"1"}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	c := w.Result().Cookies()
	if len(c) != 1 || !c[0].Secure || c[0].Name != "__Host-gatehouse-console" || c[0].Path != "/" || c[0].Domain != "" {
		t.Fatalf("cookie over TLS %+v", c)
	}
}

func TestSecureCookieBehindTLSProxy(t *testing.T) {
	for _, trust := range []bool{false, true} {
		e := newEnv()
		e.h.d.TrustProxyHeaders = trust
		w := e.do("POST", "/console/login", url.Values{"user": {"a"}, "password": {"pw"}, "code": {"1"}}, nil, map[string]string{"X-Forwarded-Proto": "https"})
		if c := w.Result().Cookies(); len(c) != 1 || c[0].Secure != trust {
			t.Fatalf("trust %v: cookie %+v", trust, c)
		}
	}
}

func TestStepUpReplaysTheAction(t *testing.T) {
	e := newEnv()
	e.api.stepUp = true
	c, csrf := e.signIn(t)
	w := e.do("POST", "/console/keys", url.Values{"csrf": {csrf}, "principal": {"alice"}, "name": {"break glass"}, "admin": {"on"}}, c, nil)
	body := w.Body.String()
	if w.Code != http.StatusForbidden || !strings.Contains(body, `id="step-up"`) || !strings.Contains(body, `name="f_name" value="break glass"`) {
		t.Fatalf("step-up prompt: %d %s", w.Code, body)
	}
	form := url.Values{"csrf": {csrf}, "then": {"/console/keys"}, "f_principal": {"alice"}, "f_name": {"break glass"}, "f_admin": {"on"}}
	form.Set("code", "999999")
	if w := e.do("POST", "/console/step-up", form, c, nil); w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), `name="f_name" value="break glass"`) {
		t.Fatalf("a wrong code: %d", w.Code)
	}
	form.Set("code", "123456")
	w = e.do("POST", "/console/step-up", form, c, nil)
	if w.Code != http.StatusCreated || !strings.Contains(w.Body.String(), "gka_SECRET_SHOWN_ONCE") {
		t.Fatalf("after step-up: %d %s", w.Code, w.Body)
	}
	last := e.api.bodies[len(e.api.bodies)-1]
	if !strings.Contains(last, `"kind":"admin"`) || !strings.Contains(last, `"name":"break glass"`) {
		t.Fatalf("the replayed request: %s", last)
	}
	// step-up cannot be pointed outside the console or at itself.
	for _, then := range []string{"https://evil.test/", "/v1/keys", "/console/step-up"} {
		form.Set("then", then)
		if w := e.do("POST", "/console/step-up", form, c, nil); w.Code != http.StatusBadRequest {
			t.Errorf("then=%s: %d", then, w.Code)
		}
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/console/keys?team=a":       "/console/keys?team=a",
		"":                           "/console/",
		"//evil.test/console/":       "/console/",
		"https://evil.test/console/": "/console/",
		"/\\evil.test":               "/console/",
		"/console/../v1/keys":        "/console/",
		"/v1/keys":                   "/console/",
		"/console/\r\nSet-Cookie: x": "/console/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCSVSafe(t *testing.T) {
	for in, want := range map[string]string{"=HYPERLINK(1)": "'=HYPERLINK(1)", "+1": "+1", "-5": "-5", "@x": "'@x", "gpt-4o": "gpt-4o", "-x": "'-x", "": ""} {
		if got := csvSafe(in); got != want {
			t.Errorf("csvSafe(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzSafeNext: whatever a sign-in link carries, the redirect after sign-in
// stays on this site, under /console/.
func FuzzSafeNext(f *testing.F) {
	for _, s := range []string{"/console/keys?x=1", "//evil.test", "/console/../v1", "https://e/console/", "/\\e", "/console/%2e%2e/x", "/console/\t/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, next string) {
		got := safeNext(next)
		u, err := url.Parse(got)
		if err != nil || u.Scheme != "" || u.Host != "" || !strings.HasPrefix(got, "/console/") || strings.HasPrefix(got, "//") || strings.ContainsAny(got, "\\\r\n") {
			t.Fatalf("safeNext(%q) = %q", next, got)
		}
		// What a browser does with it: resolve against the console's origin.
		base, _ := url.Parse("https://gatehouse.test/console/login")
		if r := base.ResolveReference(u); r.Host != "gatehouse.test" || !strings.HasPrefix(r.Path, "/console/") {
			t.Fatalf("safeNext(%q) = %q resolves to %s", next, got, r)
		}
	})
}

// TestUpstreamKeyNeverShown: adding a provider key, with or without the
// step-up it needs, never puts the key into a page.
func TestUpstreamKeyNeverShown(t *testing.T) {
	e := newEnv()
	api := &providerAPI{fakeAPI: e.api}
	e.h.d.API = api
	c, csrf := e.signIn(t)
	const upstream = "sk-upstream-NEVER-SHOWN-0123456789"
	for _, tc := range []struct {
		code   string
		status int
	}{{"", http.StatusForbidden}, {"999999", http.StatusUnauthorized}, {"123456", http.StatusSeeOther}} {
		w := e.do("POST", "/console/providers/prv_1/keys", url.Values{"csrf": {csrf}, "upstream_key": {upstream}, "code": {tc.code}}, c, nil)
		if w.Code != tc.status || strings.Contains(w.Body.String(), upstream) {
			t.Fatalf("code %q: %d (key in the page: %v)", tc.code, w.Code, strings.Contains(w.Body.String(), upstream))
		}
	}
	if api.added != upstream {
		t.Fatalf("the admin API got %q", api.added)
	}
	if w := e.do("GET", "/console/providers", nil, c, nil); w.Code != 200 || strings.Contains(w.Body.String(), upstream) || !strings.Contains(w.Body.String(), "upk_1") {
		t.Fatalf("providers page: %d", w.Code)
	}
}

// providerAPI adds providers to fakeAPI: adding a key needs a step-up.
type providerAPI struct {
	*fakeAPI
	added string
}

func (p *providerAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method + " " + r.URL.Path {
	case "GET /v1/providers":
		w.Write([]byte(`{"data":[{"id":"prv_1","name":"openai","type":"openai","base_url":"https://api.openai.com/v1","models":["gpt-*"],"keys":[{"id":"upk_1","created_at":"2026-11-30T09:00:00Z"}]}]}`))
	case "POST /v1/providers/prv_1/keys":
		p.mu.Lock()
		ok := p.steppedUp
		p.mu.Unlock()
		if !ok {
			w.WriteHeader(403)
			w.Write([]byte(`{"error":{"code":"step_up_required","message":"providers.update needs a second factor"}}`))
			return
		}
		var in map[string]string
		json.NewDecoder(r.Body).Decode(&in)
		p.added = in["key"]
		w.WriteHeader(201)
		w.Write([]byte(`{"id":"upk_2"}`))
	default:
		p.fakeAPI.ServeHTTP(w, r)
	}
}

// TestKeysPageShowsBudgetsAndLimits: each key's own budgets (spent of limit,
// hard or not) and rate limits are shown beside it; other scopes' are not.
func TestKeysPageShowsBudgetsAndLimits(t *testing.T) {
	e := newEnv()
	e.h.d.API = keysAPI{e.api}
	c, _ := e.signIn(t)
	w := e.do("GET", "/console/keys", nil, c, nil)
	if w.Code != 200 {
		t.Fatalf("keys page: %d", w.Code)
	}
	page := w.Body.String()
	row := page[strings.Index(page, `data-key="key_1"`):]
	row = row[:strings.Index(row, "</tr>")]
	for _, want := range []string{"$0.50 of $2.00 a day", "hard", "60 rpm", "4 at once"} {
		if !strings.Contains(row, want) {
			t.Errorf("key_1's row lacks %q:\n%s", want, row)
		}
	}
	if strings.Contains(row, "$9.00") {
		t.Error("key_1's row shows the team's budget")
	}
	other := page[strings.Index(page, `data-key="key_2"`):]
	if other = other[:strings.Index(other, "</tr>")]; !strings.Contains(other, "no budget of its own") || !strings.Contains(other, "no rate limit of its own") {
		t.Errorf("key_2's row:\n%s", other)
	}
}

// keysAPI adds two keys, their budgets and limits to fakeAPI.
type keysAPI struct{ *fakeAPI }

func (k keysAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") == "Bearer "+token && r.Method == "GET" {
		switch r.URL.Path {
		case "/v1/keys":
			w.Write([]byte(`{"data":[{"id":"key_1","name":"a","state":"active","scope":{}},{"id":"key_2","name":"b","state":"active","scope":{}}]}`))
			return
		case "/v1/budgets":
			w.Write([]byte(`{"data":[{"id":"bud_1","scope":"key","scope_id":"key_1","period":"day","hard":true,"limit_micros":2000000,"spent_micros":500000},` +
				`{"id":"bud_2","scope":"team","scope_id":"key_1","period":"month","limit_micros":9000000,"spent_micros":0}]}`))
			return
		case "/v1/limits":
			w.Write([]byte(`{"data":[{"id":"lim_1","scope":"key","scope_id":"key_1","rpm":60,"concurrent":4}]}`))
			return
		}
	}
	k.fakeAPI.ServeHTTP(w, r)
}

// TestOverviewCountsDenialsAndFindings: the overview shows the calls refused
// after authentication in the last 24 hours and the open findings.
func TestOverviewCountsDenialsAndFindings(t *testing.T) {
	e := newEnv()
	e.h.d.API = overviewAPI{e.api}
	c, _ := e.signIn(t)
	w := e.do("GET", "/console/", nil, c, nil)
	if w.Code != 200 {
		t.Fatalf("overview: %d %s", w.Code, w.Body)
	}
	page := w.Body.String()
	for _, want := range []string{`<span class="n">2</span><span>calls refused`, `<a href="/console/findings">3</a></span><span>open findings`} {
		if !strings.Contains(page, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
}

type overviewAPI struct{ *fakeAPI }

func (o overviewAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") == "Bearer "+token && r.Method == "GET" {
		switch r.URL.Path {
		case "/v1/usage/summary":
			w.Write([]byte(`{"data":[{"group":"gpt-4o","requests":5,"cost_micros":100}]}`))
			return
		case "/v1/usage":
			w.Write([]byte(`{"data":[{"status":200},{"status":403},{"status":429},{"status":401},{"status":502}]}`))
			return
		case "/v1/findings":
			if r.URL.Query().Get("state") != "open" { // only open findings count
				w.Write([]byte(`{"data":[]}`))
				return
			}
			w.Write([]byte(`{"data":[{"id":"f1"},{"id":"f2"},{"id":"f3"}]}`))
			return
		}
	}
	o.fakeAPI.ServeHTTP(w, r)
}
