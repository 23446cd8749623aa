package console

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/console/sessionstore"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// TestSignInWithTheSessionStoreDownSaysWhatHappened: the admin API accepts
// the password, but the console's database does not take the session. The
// user must be told that (not be sent on to the page they asked for, which
// bounces them back to an empty sign-in form with no word of why), by the
// form and by the passkey sign-in alike.
func TestSignInWithTheSessionStoreDownSaysWhatHappened(t *testing.T) {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	api := &fakeAPI{}
	passkeyAPI := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/auth/passkeys/login/") {
			json.NewEncoder(w).Encode(map[string]string{"session": token, "principal_id": "prn_1"})
			return
		}
		api.ServeHTTP(w, r)
	})
	a, _ := replicas(db, Deps{API: passkeyAPI})
	a.api = api
	db.Close()
	w := a.do("POST", "/console/login", url.Values{"user": {"alice"}, "password": {"pw"}, "code": {"000000"}, "next": {"/console/keys"}}, nil, nil)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Location") != "" || sessionCookie(w) != nil {
		t.Fatalf("form sign-in with the store down: %d, Location %q, cookie %v", w.Code, w.Header().Get("Location"), sessionCookie(w))
	}
	if body := w.Body.String(); !strings.Contains(body, "could not keep the session") || !strings.Contains(body, `value="alice"`) {
		t.Fatalf("the page does not say what happened:\n%.2000s", body)
	}
	r := httptest.NewRequest("POST", "http://gatehouse.test/console/login/passkey/finish/c1", strings.NewReader(`{"id":"x"}`))
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	w = httptest.NewRecorder()
	a.h.ServeHTTP(w, r)
	var out struct{ Error, Next string }
	json.Unmarshal(w.Body.Bytes(), &out)
	if w.Code != http.StatusServiceUnavailable || sessionCookie(w) != nil || out.Next != "" || !strings.Contains(out.Error, "could not keep the session") {
		t.Fatalf("passkey sign-in with the store down: %d %s", w.Code, w.Body)
	}
	if n := api.called("POST /v1/auth/logout"); n != 2 {
		t.Fatalf("%d admin sessions ended, want the 2 that could not be kept", n)
	}
}

// TestCookiePlantedBeforeSignInDoesNotSurviveIt: session fixation. An
// attacker who can set the victim's console cookie (a sibling subdomain, a
// shared machine) plants a value they know; the victim signs in. The
// sign-in must issue a fresh value, and the planted one must open nothing.
func TestCookiePlantedBeforeSignInDoesNotSurviveIt(t *testing.T) {
	backends(t, func(t *testing.T, db *sqlstore.DB) {
		a, b := replicas(db, Deps{})
		planted := &http.Cookie{Name: "gatehouse-console", Value: randomToken()}
		w := a.do("POST", "/console/login", url.Values{"user": {"alice"}, "password": {"pw"}, "code": {"000000"}}, planted, nil)
		got := sessionCookie(w)
		if w.Code != http.StatusSeeOther || got == nil {
			t.Fatalf("sign-in with a planted cookie: %d", w.Code)
		}
		if got.Value == planted.Value {
			t.Fatal("the sign-in kept the planted cookie value")
		}
		for name, e := range map[string]*env{"a": a, "b": b} {
			if w := e.do("GET", "/console/keys", nil, planted, nil); w.Code != http.StatusSeeOther {
				t.Fatalf("replica %s: the planted cookie opens a session: %d", name, w.Code)
			}
			if w := e.do("GET", "/console/keys", nil, got, nil); w.Code != 200 {
				t.Fatalf("replica %s: the issued cookie: %d", name, w.Code)
			}
		}
	})
}

// TestSignInFormPostedCrossSite: login CSRF, the attacker's page posting
// the attacker's own credentials so the victim works in the attacker's
// account. Refused before the admin API is asked.
func TestSignInFormPostedCrossSite(t *testing.T) {
	e := newEnv()
	form := url.Values{"user": {"alice"}, "password": {"pw"}, "code": {"000000"}}
	for name, hdr := range map[string]map[string]string{
		"cross-site":     {"Sec-Fetch-Site": "cross-site"},
		"same-site":      {"Sec-Fetch-Site": "same-site"},
		"no origin":      {"Sec-Fetch-Site": ""},
		"foreign Origin": {"Sec-Fetch-Site": "", "Origin": "http://evil.test"},
	} {
		if w := e.do("POST", "/console/login", form, nil, hdr); w.Code != http.StatusForbidden || sessionCookie(w) != nil {
			t.Errorf("%s: %d", name, w.Code)
		}
	}
	if n := e.api.called("POST /v1/auth/login"); n != 0 {
		t.Fatalf("the admin API was asked %d times", n)
	}
}

// TestStepUpAfterTheSessionEndedElsewhere: the admin session behind a
// console session is ended elsewhere (signed out on another device, all
// sessions ended after a lost laptop) while a step-up prompt is open. The
// step-up used to answer "wrong code, enter it again", forever; it must
// end the console session and send the user to sign in.
func TestStepUpAfterTheSessionEndedElsewhere(t *testing.T) {
	api := &fakeAPI{}
	ended := false
	var mu sync.Mutex
	a, _ := replicas(sessionstore.NewMemory(), Deps{API: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		gone := ended
		mu.Unlock()
		if gone && r.URL.Path != "/v1/auth/login" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":{"code":"invalid_session","message":"The session has ended."}}`))
			return
		}
		api.ServeHTTP(w, r)
	})})
	a.api = api
	for name, post := range map[string]func(c *http.Cookie, csrf string) *httptest.ResponseRecorder{
		"step-up page": func(c *http.Cookie, csrf string) *httptest.ResponseRecorder {
			return a.do("POST", "/console/step-up", url.Values{"csrf": {csrf}, "then": {"/console/keys"}, "code": {"123456"}}, c, nil)
		},
		"upstream key with a code": func(c *http.Cookie, csrf string) *httptest.ResponseRecorder {
			return a.do("POST", "/console/providers/openai/keys", url.Values{"csrf": {csrf}, "upstream_key": {"sk-x"}, "code": {"123456"}}, c, nil)
		},
	} {
		mu.Lock()
		ended = false
		mu.Unlock()
		c, csrf := a.signIn(t)
		mu.Lock()
		ended = true
		mu.Unlock()
		w := post(c, csrf)
		if w.Code != http.StatusSeeOther || !strings.HasPrefix(w.Header().Get("Location"), "/console/login") {
			t.Fatalf("%s: %d %s, want a redirect to sign in", name, w.Code, w.Header().Get("Location"))
		}
		cleared := false
		for _, k := range w.Result().Cookies() {
			cleared = cleared || (k.Name == c.Name && k.MaxAge < 0)
		}
		if !cleared {
			t.Fatalf("%s: the console cookie was not cleared", name)
		}
	}
}
