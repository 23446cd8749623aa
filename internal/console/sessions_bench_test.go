package console

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/console/sessionstore"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
)

// BenchmarkSessionLookup is what a signed-in console request pays to find its
// session (one conditional UPDATE … RETURNING, one AES-GCM open), per store.
func BenchmarkSessionLookup(b *testing.B) {
	run := func(b *testing.B, s sessionstore.Store) {
		h := New(Deps{API: &fakeAPI{}, Sessions: s})
		w := httptest.NewRecorder()
		r := httptest.NewRequest("POST", "http://gatehouse.test/console/login", nil)
		if err := h.startSession(w, r, token, "ada", "prn_1"); err != nil {
			b.Fatal(err)
		}
		c := w.Result().Cookies()[0]
		req := httptest.NewRequest("GET", "http://gatehouse.test/console/keys", nil)
		req.AddCookie(c)
		b.ReportAllocs()
		for b.Loop() {
			if s, err := h.lookup(req); s == nil || err != nil {
				b.Fatal("no session", err)
			}
		}
	}
	b.Run("memory", func(b *testing.B) { run(b, sessionstore.NewMemory()) })
	b.Run("sqlite", func(b *testing.B) {
		db, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "g.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		run(b, db)
	})
	b.Run("postgres", func(b *testing.B) { run(b, pgtest.Open(b)) })
}
