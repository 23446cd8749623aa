package console

import (
	"bytes"
	"context"
	"database/sql"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/console/sessionstore"
	"github.com/gatehouse-gw/gatehouse/internal/sso"
	"github.com/gatehouse-gw/gatehouse/internal/sso/ssotest"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
	"github.com/gatehouse-gw/gatehouse/internal/store/storetest"
)

// backends runs fn on each real store: SQLite, and PostgreSQL when
// GATEHOUSE_TEST_POSTGRES_URL is set (CI sets it).
func backends(t *testing.T, fn func(t *testing.T, db *sqlstore.DB)) {
	t.Run("sqlite", func(t *testing.T) {
		db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "g.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		fn(t, db)
	})
	t.Run("postgres", func(t *testing.T) { fn(t, pgtest.Open(t)) })
}

// replicas returns two consoles (two gateway replicas) over one store, one
// admin API and one clock.
func replicas(db sessionstore.Store, d Deps) (*env, *env) {
	api := &fakeAPI{}
	if d.API == nil {
		d.API = api
	}
	c := &clock{t: time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)}
	d.Now, d.Sessions = c.now, db
	if d.IdleTimeout == 0 {
		d.IdleTimeout, d.AbsoluteTimeout = 10*time.Minute, time.Hour
	}
	return &env{h: New(d), api: api, clock: c}, &env{h: New(d), api: api, clock: c}
}

func csrfOf(t *testing.T, e *env, c *http.Cookie) string {
	t.Helper()
	page := e.do("GET", "/console/keys", nil, c, nil)
	if page.Code != 200 {
		t.Fatalf("keys page: %d", page.Code)
	}
	_, rest, _ := strings.Cut(page.Body.String(), `name="csrf" value="`)
	csrf, _, _ := strings.Cut(rest, `"`)
	return csrf
}

func TestSessionMadeOnOneReplicaWorksOnTheOther(t *testing.T) {
	backends(t, func(t *testing.T, db *sqlstore.DB) {
		a, b := replicas(db, Deps{})
		c, csrf := a.signIn(t)
		if w := b.do("GET", "/console/keys", nil, c, nil); w.Code != 200 {
			t.Fatalf("replica b does not know replica a's session: %d", w.Code)
		}
		if got := csrfOf(t, b, c); got != csrf {
			t.Fatalf("the CSRF token differs between replicas")
		}
		// A state change on b with the token a's page gave.
		if w := b.do("POST", "/console/keys/key_1/revoke", url.Values{"csrf": {csrf}}, c, nil); w.Code != http.StatusSeeOther || a.api.called("POST /v1/keys/key_1/revoke") != 1 {
			t.Fatalf("revoke through b: %d", w.Code)
		}
		// Logout on b ends it on both.
		if w := b.do("POST", "/console/logout", url.Values{"csrf": {csrf}}, c, nil); w.Code != http.StatusSeeOther {
			t.Fatalf("logout on b: %d", w.Code)
		}
		for name, e := range map[string]*env{"a": a, "b": b} {
			if w := e.do("GET", "/console/keys", nil, c, nil); w.Code != http.StatusSeeOther {
				t.Fatalf("replica %s after logout on b: %d", name, w.Code)
			}
			if w := e.do("POST", "/console/keys/key_1/revoke", url.Values{"csrf": {csrf}}, c, nil); w.Code != http.StatusUnauthorized {
				t.Fatalf("replica %s, a state change after logout: %d", name, w.Code)
			}
		}
		if n := a.api.called("POST /v1/keys/key_1/revoke"); n != 1 {
			t.Fatalf("the admin API was called %d times, want 1", n)
		}
	})
}

// TestSessionTimeoutsAcrossReplicas: use on either replica keeps a session
// alive; neither can keep it past the idle or the absolute timeout.
func TestSessionTimeoutsAcrossReplicas(t *testing.T) {
	backends(t, func(t *testing.T, db *sqlstore.DB) {
		a, b := replicas(db, Deps{})
		c, _ := a.signIn(t)
		for i := range 6 { // 54 minutes of alternating use
			a.clock.add(9 * time.Minute)
			e := []*env{a, b}[i%2]
			if w := e.do("GET", "/console/keys", nil, c, nil); w.Code != 200 {
				t.Fatalf("an active session ended at step %d", i)
			}
		}
		a.clock.add(9 * time.Minute) // 63 minutes: past the absolute hour
		for _, e := range []*env{b, a} {
			if w := e.do("GET", "/console/keys", nil, c, nil); w.Code != http.StatusSeeOther {
				t.Fatalf("past the absolute timeout: %d", w.Code)
			}
		}
		c, _ = b.signIn(t)
		a.clock.add(10 * time.Minute)
		for _, e := range []*env{a, b} {
			if w := e.do("GET", "/console/keys", nil, c, nil); w.Code != http.StatusSeeOther {
				t.Fatalf("past the idle timeout: %d", w.Code)
			}
		}
	})
}

// TestSessionStoreHoldsNoSecrets: what the database holds does not sign
// anybody in: no cookie value, no admin session token, no CSRF token, no
// OIDC state, binding or PKCE verifier.
func TestSessionStoreHoldsNoSecrets(t *testing.T) {
	backends(t, func(t *testing.T, db *sqlstore.DB) {
		a, _ := replicas(db, Deps{})
		c, csrf := a.signIn(t)
		dump := dumpTables(t, db.SQL(), "console_sessions", "console_oidc_logins")
		for name, secret := range map[string]string{"cookie": c.Value, "admin token": token, "csrf": csrf} {
			if bytes.Contains(dump, []byte(secret)) {
				t.Errorf("the session table holds the %s", name)
			}
		}
		if !bytes.Contains(dump, sessionIDHash(c.Value)) {
			t.Fatal("the dump does not hold the session row (the check above proves nothing)")
		}
	})
}

func dumpTables(t *testing.T, db *sql.DB, tables ...string) []byte {
	t.Helper()
	var out []byte
	for _, tb := range tables {
		rows, err := db.Query(`SELECT * FROM ` + tb)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for _, v := range vals {
				switch v := v.(type) {
				case []byte:
					out = append(out, v...)
				case string:
					out = append(out, v...)
				}
				out = append(out, 0)
			}
		}
		rows.Close()
	}
	return out
}

// TestSessionRowGraftedUnderAnotherCookie: someone who can write the table
// copies a victim's sealed token into a row keyed by a cookie of their own;
// the token does not open under that row, so nobody is signed in.
func TestSessionRowGraftedUnderAnotherCookie(t *testing.T) {
	backends(t, func(t *testing.T, db *sqlstore.DB) {
		a, b := replicas(db, Deps{})
		victim, _ := a.signIn(t)
		st, err := db.TouchConsoleSession(context.Background(), sessionIDHash(victim.Value), a.clock.now(), a.clock.now().Add(-time.Hour), a.clock.now().Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		mine := randomToken()
		st.IDHash = sessionIDHash(mine)
		if err := db.CreateConsoleSession(context.Background(), st); err != nil {
			t.Fatal(err)
		}
		forged := &http.Cookie{Name: victim.Name, Value: mine}
		if w := b.do("GET", "/console/keys", nil, forged, nil); w.Code != http.StatusSeeOther {
			t.Fatalf("a grafted row signed in: %d", w.Code)
		}
		if _, err := db.TouchConsoleSession(context.Background(), sessionIDHash(mine), a.clock.now(), a.clock.now().Add(-time.Hour), a.clock.now().Add(-time.Hour)); err == nil {
			t.Fatal("the grafted row was kept")
		}
		if w := a.do("GET", "/console/keys", nil, victim, nil); w.Code != 200 {
			t.Fatalf("the victim's own session: %d", w.Code)
		}
	})
}

// TestEndedSessionsAreSwept: a sign-in removes the rows of sessions that
// ended without a logout.
func TestEndedSessionsAreSwept(t *testing.T) {
	backends(t, func(t *testing.T, db *sqlstore.DB) {
		a, b := replicas(db, Deps{})
		a.signIn(t)
		b.signIn(t)
		a.clock.add(11 * time.Minute)
		a.signIn(t)
		var n int
		if err := db.SQL().QueryRow(`SELECT COUNT(*) FROM console_sessions`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("%d session rows after a sweep (err %v), want 1", n, err)
		}
	})
}

// TestSessionStoreDownFailsClosed: with the store gone, a cookie opens
// nothing (503), and a sign-in sets no cookie and ends the admin session it
// created instead of leaving it unreachable.
func TestSessionStoreDownFailsClosed(t *testing.T) {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := replicas(db, Deps{})
	c, _ := a.signIn(t)
	db.Close()
	if w := a.do("GET", "/console/keys", nil, c, nil); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("a cookie with the store down: %d", w.Code)
	}
	w := a.do("POST", "/console/login", url.Values{"user": {"alice"}, "password": {"pw"}, "code": {"000000"}}, nil, nil)
	if sessionCookie(w) != nil {
		t.Fatal("a sign-in with the store down set a session cookie")
	}
	if n := a.api.called("POST /v1/auth/logout"); n != 1 {
		t.Fatalf("the admin session of a sign-in that could not be kept was ended %d times, want 1", n)
	}
}

func oidcReplicas(t *testing.T, db sessionstore.Store) (*env, *env, *oidcAPI) {
	idp := ssotest.New(t)
	idp.SetUser(map[string]any{"sub": "u-ada", "email": "ada@example.com", "groups": []string{"ml"}})
	cfg := sso.Config{Issuer: idp.URL, ClientID: idp.ClientID, Groups: []sso.Group{{Group: "ml", Teams: []string{"ml"}}}}
	api := &oidcAPI{fakeAPI: &fakeAPI{}, v: sso.NewVerifier(cfg, nil, nil)}
	a, b := replicas(db, Deps{API: api, OIDC: cfg})
	a.api, b.api = api.fakeAPI, api.fakeAPI
	now := time.Now()
	a.clock.t = now // the identity provider's tokens carry real times
	return a, b, api
}

// TestOIDCCallbackOnTheOtherReplica: a sign-in started on one replica
// finishes on the other; its state is still good only once, on any replica.
func TestOIDCCallbackOnTheOtherReplica(t *testing.T) {
	backends(t, func(t *testing.T, db *sqlstore.DB) {
		a, b, api := oidcReplicas(t, db)
		binding, callback := startOIDC(t, a, "/console/budgets")
		dump := dumpTables(t, db.SQL(), "console_oidc_logins")
		cb, _ := url.Parse(callback)
		if bytes.Contains(dump, []byte(binding.Value)) || bytes.Contains(dump, []byte(cb.Query().Get("state"))) {
			t.Fatal("the sign-in row holds the state or the binding")
		}
		w := b.do("GET", callback, nil, binding, nil)
		sc := sessionCookie(w)
		if w.Code != 200 || sc == nil {
			t.Fatalf("callback on replica b: %d %s", w.Code, w.Body)
		}
		if page := a.do("GET", "/console/budgets", nil, sc, nil); page.Code != 200 || !strings.Contains(page.Body.String(), "ada@example.com") {
			t.Fatalf("the OIDC session on replica a: %d", page.Code)
		}
		if w := a.do("GET", callback, nil, binding, nil); w.Code != http.StatusBadRequest || sessionCookie(w) != nil {
			t.Fatalf("the callback replayed on replica a: %d", w.Code)
		}
		if api.count() != 1 {
			t.Fatalf("%d ID tokens reached the admin API, want 1", api.count())
		}
	})
}

// TestOIDCCallbackRacedOnTwoReplicas: the same callback sent to both replicas
// at once signs in once.
func TestOIDCCallbackRacedOnTwoReplicas(t *testing.T) {
	backends(t, func(t *testing.T, db *sqlstore.DB) {
		a, b, api := oidcReplicas(t, db)
		for range 5 {
			binding, callback := startOIDC(t, a, "/console/")
			var wg sync.WaitGroup
			var mu sync.Mutex
			signedIn := 0
			for _, e := range []*env{a, b, a, b} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if w := e.do("GET", callback, nil, binding, nil); sessionCookie(w) != nil {
						mu.Lock()
						signedIn++
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			if signedIn != 1 {
				t.Fatalf("one callback raced on two replicas signed in %d times", signedIn)
			}
		}
		if api.count() != 5 {
			t.Fatalf("%d ID tokens reached the admin API, want 5", api.count())
		}
	})
}

// TestOIDCCallbackWithAnotherBrowsersBinding on the other replica is refused
// and burns the state.
func TestOIDCCallbackWithAnotherBrowsersBinding(t *testing.T) {
	backends(t, func(t *testing.T, db *sqlstore.DB) {
		a, b, _ := oidcReplicas(t, db)
		binding, callback := startOIDC(t, a, "/console/")
		attacker, _ := startOIDC(t, b, "/console/")
		if w := b.do("GET", callback, nil, attacker, nil); w.Code != http.StatusForbidden || sessionCookie(w) != nil {
			t.Fatalf("another browser's binding: %d", w.Code)
		}
		if w := a.do("GET", callback, nil, binding, nil); w.Code != http.StatusBadRequest || sessionCookie(w) != nil {
			t.Fatalf("the state after a refused callback: %d", w.Code)
		}
	})
}

// FuzzUnseal: any bytes from the store, under any cookie, either open to
// exactly what was sealed under that cookie and row, or fail; never panic.
func FuzzUnseal(f *testing.F) {
	good, _ := seal("cookie", labelSealToken, []byte("row"), []byte("gks_token"))
	f.Add("cookie", []byte("row"), good)
	f.Add("other", []byte("row"), good)
	f.Add("cookie", []byte("row2"), good)
	f.Add("", []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, cookie string, ad, sealed []byte) {
		out, err := unseal(cookie, labelSealToken, ad, sealed)
		if err == nil && bytes.Equal(sealed, good) && (cookie != "cookie" || string(ad) != "row" || string(out) != "gks_token") {
			t.Fatalf("a sealed token opened under cookie %q row %q as %q", cookie, ad, out)
		}
	})
}

// TestMemorySessionsConform: the in-memory store keeps the same rules as the
// database backends.
func TestMemorySessionsConform(t *testing.T) { storetest.ConsoleSessions(t, sessionstore.NewMemory()) }

// TestOIDCStartFloodFromOneAddress: starting sign-ins writes shared rows,
// and the rows in flight are bounded for everybody; one address is cut off
// by the throttle (429, Retry-After) before it writes anything, and another
// address can still start a sign-in.
func TestOIDCStartFloodFromOneAddress(t *testing.T) {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	idp := ssotest.New(t)
	cfg := sso.Config{Issuer: idp.URL, ClientID: idp.ClientID, Groups: []sso.Group{{Group: "ml", Teams: []string{"ml"}}}}
	var mu sync.Mutex
	seen := map[string]int{}
	throttle := func(r *http.Request) (bool, time.Duration) { // two per address
		mu.Lock()
		defer mu.Unlock()
		seen[r.RemoteAddr]++
		return seen[r.RemoteAddr] <= 2, 1500 * time.Millisecond
	}
	a, _ := replicas(db, Deps{OIDC: cfg, Throttle: throttle})
	start := func(addr string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "http://gatehouse.test/console/login/oidc", nil)
		r.RemoteAddr = addr
		w := httptest.NewRecorder()
		a.h.ServeHTTP(w, r)
		return w
	}
	for range 2 {
		if w := start("203.0.113.9:1"); w.Code != http.StatusSeeOther {
			t.Fatalf("a start within the limit: %d", w.Code)
		}
	}
	for range 10 {
		if w := start("203.0.113.9:1"); w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "1" {
			t.Fatalf("a start over the limit: %d Retry-After %q", w.Code, w.Header().Get("Retry-After"))
		}
	}
	var n int
	if err := db.SQL().QueryRow(`SELECT COUNT(*) FROM console_oidc_logins`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d sign-in rows after the flood (err %v), want 2", n, err)
	}
	if w := start("198.51.100.7:1"); w.Code != http.StatusSeeOther {
		t.Fatalf("another address during the flood: %d", w.Code)
	}
}
