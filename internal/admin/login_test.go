package admin

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/mfa"
	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// TestEveryLoginHashes: a login for an unknown name, a service account, a
// user without a password and a real user all wait for a hashing slot (with
// the only slot held they are all shed with 503; with it free they are all
// 401): every path runs argon2id, so none answers faster and existence does
// not leak through timing. (The time itself is measured by
// BenchmarkLoginTiming, not asserted here.)
func TestEveryLoginHashes(t *testing.T) {
	ctx := context.Background()
	db := openStore(t)
	now := time.Now().UTC()
	for _, p := range []org.Principal{
		{ID: "prn_nopw", Name: "nopassword", Kind: org.KindUser, CreatedAt: now, Version: 1},
		{ID: "prn_pw", Name: "real", Kind: org.KindUser, CreatedAt: now, Version: 1},
		{ID: "prn_sa", Name: "robot", Kind: org.KindServiceAccount, CreatedAt: now, Version: 1},
	} {
		if err := db.CreatePrincipal(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	hash, _ := mfa.HashPassword("correct horse battery staple")
	if err := db.SetPassword(ctx, "prn_pw", hash); err != nil {
		t.Fatal(err)
	}
	gate := mfa.NewGate(mfa.HashMemory, 20*time.Millisecond, 100)
	h := New(Deps{Store: db, Passwords: gate, Log: slog.New(slog.DiscardHandler)})
	login := func(user string) int {
		req := httptest.NewRequest("POST", "/v1/auth/login", strings.NewReader(`{"user":"`+user+`","password":"a wrong password guess"}`))
		req.RemoteAddr = "192.0.2.1:1234"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code == http.StatusServiceUnavailable && rec.Header().Get("Retry-After") == "" {
			t.Errorf("%s: 503 without Retry-After", user)
		}
		return rec.Code
	}
	users := []string{"nobody", "robot", "nopassword", "real"}
	release, err := gate.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		if s := login(u); s != http.StatusServiceUnavailable {
			t.Errorf("%s with the only hashing slot held: %d, want 503", u, s)
		}
	}
	release()
	for _, u := range users {
		if s := login(u); s != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", u, s)
		}
	}
}

// openStore opens a SQLite store in the test's directory, closed when the
// test ends.
func openStore(t *testing.T) *sqlstore.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
