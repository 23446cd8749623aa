package console

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/sso"
	"github.com/gatehouse-gw/gatehouse/internal/sso/ssotest"
)

// oidcAPI adds POST /v1/auth/oidc to fakeAPI: it verifies the ID token with
// the real verifier against the test identity provider, as the admin API does.
type oidcAPI struct {
	*fakeAPI
	v      *sso.Verifier
	mu     sync.Mutex
	logins []string // the user names of accepted ID tokens
}

func (a *oidcAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method+" "+r.URL.Path != "POST /v1/auth/oidc" {
		a.fakeAPI.ServeHTTP(w, r)
		return
	}
	var in struct {
		IDToken string `json:"id_token"`
	}
	json.NewDecoder(r.Body).Decode(&in)
	id, err := a.v.Verify(r.Context(), in.IDToken)
	if err != nil {
		w.WriteHeader(401)
		json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": "invalid_login", "message": "The ID token was refused."}})
		return
	}
	a.mu.Lock()
	a.logins = append(a.logins, id.Username)
	a.mu.Unlock()
	json.NewEncoder(w).Encode(map[string]string{"session": token, "principal_id": "prn_ada"})
}

func (a *oidcAPI) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.logins)
}

func newOIDCEnv(t *testing.T) (*env, *oidcAPI, *ssotest.IdP) {
	idp := ssotest.New(t)
	idp.SetUser(map[string]any{"sub": "u-ada", "email": "ada@example.com", "groups": []string{"ml"}})
	cfg := sso.Config{Issuer: idp.URL, ClientID: idp.ClientID, Groups: []sso.Group{{Group: "ml", Teams: []string{"ml"}}}}
	api := &oidcAPI{fakeAPI: &fakeAPI{}, v: sso.NewVerifier(cfg, nil, nil)}
	c := &clock{t: time.Now()}
	e := &env{h: New(Deps{API: api, Now: c.now, OIDC: cfg}), api: api.fakeAPI, clock: c}
	return e, api, idp
}

// startOIDC begins a sign-in and lets the (auto-approving) identity provider
// answer: it returns the binding cookie and the callback URL (path and query).
func startOIDC(t *testing.T, e *env, next string) (*http.Cookie, string) {
	t.Helper()
	w := e.do("GET", "/console/login/oidc?next="+url.QueryEscape(next), nil, nil, nil)
	if w.Code != http.StatusSeeOther {
		t.Fatalf("start: %d %s", w.Code, w.Body)
	}
	auth, err := url.Parse(w.Header().Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	q := auth.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || len(q.Get("state")) < 40 ||
		q.Get("redirect_uri") != "http://gatehouse.test/console/login/oidc/callback" || !strings.Contains(q.Get("scope"), "openid") {
		t.Fatalf("authorization request %s", auth)
	}
	var binding *http.Cookie
	for _, c := range w.Result().Cookies() {
		if c.Name == "gatehouse-console-oidc" {
			binding = c
		}
	}
	if binding == nil || !binding.HttpOnly || binding.SameSite != http.SameSiteLaxMode || binding.Value == q.Get("state") {
		t.Fatalf("binding cookie %+v", binding)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(auth.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	back, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || back.Query().Get("state") != q.Get("state") {
		t.Fatalf("the provider answered %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	return binding, back.RequestURI()
}

func sessionCookie(w interface{ Result() *http.Response }) *http.Cookie {
	for _, c := range w.Result().Cookies() {
		if c.Name == "gatehouse-console" && c.Value != "" {
			return c
		}
	}
	return nil
}

func TestOIDCSignIn(t *testing.T) {
	e, api, _ := newOIDCEnv(t)
	if w := e.do("GET", "/console/login?next=/console/budgets", nil, nil, nil); !strings.Contains(w.Body.String(), `href="/console/login/oidc?next=%2fconsole%2fbudgets"`) {
		t.Fatalf("the sign-in page offers no single sign-on:\n%s", w.Body)
	}
	binding, callback := startOIDC(t, e, "/console/budgets")
	w := e.do("GET", callback, nil, binding, nil)
	sc := sessionCookie(w)
	if w.Code != 200 || sc == nil || !strings.Contains(w.Body.String(), `id="continue" data-auto="1"`) || !strings.Contains(w.Body.String(), `href="/console/budgets"`) {
		t.Fatalf("callback: %d %s", w.Code, w.Body)
	}
	if sc.SameSite != http.SameSiteStrictMode || !sc.HttpOnly || strings.Contains(w.Body.String(), token) {
		t.Fatalf("session cookie %+v, or the admin token in the page", sc)
	}
	page := e.do("GET", "/console/budgets", nil, sc, nil)
	if page.Code != 200 || !strings.Contains(page.Body.String(), "ada@example.com") {
		t.Fatalf("signed in through OIDC, the budgets page: %d", page.Code)
	}
	// The state is good once.
	if w := e.do("GET", callback, nil, binding, nil); w.Code != http.StatusBadRequest || sessionCookie(w) != nil {
		t.Fatalf("a replayed callback: %d", w.Code)
	}
	if api.count() != 1 {
		t.Fatalf("%d ID tokens went to the admin API, want 1", api.count())
	}
}

func TestOIDCCallbackAttacks(t *testing.T) {
	e, api, _ := newOIDCEnv(t)
	refused := func(name string, w interface {
		Result() *http.Response
	}, status int) {
		t.Helper()
		if w.Result().StatusCode != status || sessionCookie(w) != nil {
			t.Fatalf("%s: %d (signed in: %v), want %d", name, w.Result().StatusCode, sessionCookie(w) != nil, status)
		}
	}
	// Login CSRF: the attacker's own callback link, opened in the victim's
	// browser (no binding cookie, or another sign-in's).
	_, callback := startOIDC(t, e, "")
	refused("no binding cookie", e.do("GET", callback, nil, nil, nil), http.StatusForbidden)
	other, _ := startOIDC(t, e, "")
	_, callback = startOIDC(t, e, "")
	refused("another sign-in's cookie", e.do("GET", callback, nil, other, nil), http.StatusForbidden)
	// PKCE: a code issued to one sign-in cannot finish another (its verifier
	// does not match the code's challenge).
	b1, cb1 := startOIDC(t, e, "")
	b2, cb2 := startOIDC(t, e, "")
	u1, _ := url.Parse(cb1)
	u2, _ := url.Parse(cb2)
	q := u2.Query()
	q.Set("code", u1.Query().Get("code"))
	refused("a code from another sign-in", e.do("GET", "/console/login/oidc/callback?"+q.Encode(), nil, b2, nil), http.StatusUnauthorized)
	// Unknown, empty and expired states; the provider's refusal.
	refused("unknown state", e.do("GET", "/console/login/oidc/callback?state=forged&code=ac-1", nil, b1, nil), http.StatusBadRequest)
	refused("no state", e.do("GET", "/console/login/oidc/callback?code=ac-1", nil, b1, nil), http.StatusBadRequest)
	b3, cb3 := startOIDC(t, e, "")
	e.clock.add(oidcPendingTTL)
	refused("expired", e.do("GET", cb3, nil, b3, nil), http.StatusBadRequest)
	b4, cb4 := startOIDC(t, e, "")
	u4, _ := url.Parse(cb4)
	q = u4.Query()
	q.Del("code")
	q.Set("error", "access_denied")
	refused("the provider refused", e.do("GET", "/console/login/oidc/callback?"+q.Encode(), nil, b4, nil), http.StatusUnauthorized)
	if api.count() != 0 {
		t.Fatalf("%d ID tokens reached the admin API from refused callbacks", api.count())
	}
	// An open redirect through next is not possible.
	b5, cb5 := startOIDC(t, e, "https://evil.example/console/")
	if w := e.do("GET", cb5, nil, b5, nil); w.Code != 200 || !strings.Contains(w.Body.String(), `href="/console/"`) || strings.Contains(w.Body.String(), "evil") {
		t.Fatalf("next=https://evil: %d %s", w.Code, w.Body)
	}
}

func TestOIDCOffWithoutConfig(t *testing.T) {
	e := newEnv()
	if w := e.do("GET", "/console/login", nil, nil, nil); strings.Contains(w.Body.String(), "oidc-login") {
		t.Fatal("single sign-on offered without oidc_login")
	}
	if w := e.do("GET", "/console/login/oidc", nil, nil, nil); w.Code != http.StatusNotFound {
		t.Fatalf("/console/login/oidc without oidc_login: %d", w.Code)
	}
}

func TestOIDCProviderDown(t *testing.T) {
	cfg := sso.Config{Issuer: "http://127.0.0.1:1", ClientID: "gatehouse", Groups: []sso.Group{{Group: "ml", Teams: []string{"ml"}}}}
	h := New(Deps{API: &fakeAPI{}, OIDC: cfg})
	e := &env{h: h}
	if w := e.do("GET", "/console/login/oidc", nil, nil, nil); w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "cannot be reached") {
		t.Fatalf("provider down: %d", w.Code)
	}
}
