package token

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// sqlBackends are storeBackends as the store itself, to count its rows.
func sqlBackends() map[string]func(t *testing.T) *sqlstore.DB {
	return map[string]func(t *testing.T) *sqlstore.DB{
		"sqlite": func(t *testing.T) *sqlstore.DB {
			db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "g.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		},
		"postgres": func(t *testing.T) *sqlstore.DB { return pgtest.Open(t) },
	}
}

func countJTIs(t *testing.T, db *sqlstore.DB, where string) int {
	t.Helper()
	var n int
	if err := db.SQL().QueryRow("SELECT count(*) FROM dpop_jtis WHERE " + where).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDPoPFloodOfDistinctProofsIsBounded is the attack "fill the replay set":
// the holder of a bound token and its key sends distinct proofs as fast as
// it can. Each would be a row in the store's replay set; past MaxPerKey
// proofs of one key in a replay period the proof is refused before anything
// is stored, so the rows stay bounded; other keys are not affected, and the
// key gets its quota back in the next period. Before the fix every proof was
// stored.
func TestDPoPFloodOfDistinctProofsIsBounded(t *testing.T) {
	for name, open := range sqlBackends() {
		t.Run(name, func(t *testing.T) {
			db := open(t)
			clk := &clock{t: time.Now()}
			d := NewDPoP()
			d.SetClock(clk.now)
			d.Shared = db
			d.MaxPerKey = 40
			_, flood, _ := ed25519.GenerateKey(rand.Reader)
			_, other, _ := ed25519.GenerateKey(rand.Reader)
			u := "https://gw.example/v1/chat/completions"
			mk := func(priv ed25519.PrivateKey, jti string) string {
				return proof(t, priv, map[string]any{"jti": jti, "htm": "POST", "htu": u, "iat": clk.t.Unix(), "ath": AccessTokenHash("tok")}, "dpop+jwt")
			}
			served, refused := 0, 0
			for i := range 300 {
				_, err := d.Check(mk(flood, fmt.Sprintf("flood-%d", i)), "POST", u, "tok")
				switch {
				case err == nil:
					served++
				case errors.Is(err, ErrProof) && strings.Contains(err.Error(), "too many proofs"):
					refused++
				default:
					t.Fatalf("proof %d: %v", i, err)
				}
			}
			if served != 40 || refused != 260 {
				t.Fatalf("a flood of 300 distinct proofs of one key: %d served, %d refused; want 40 and 260", served, refused)
			}
			if n := countJTIs(t, db, "1=1"); n != 40 {
				t.Fatalf("%d rows in the replay set after the flood; want 40 (the key's quota)", n)
			}
			if _, err := d.Check(mk(other, "other-1"), "POST", u, "tok"); err != nil {
				t.Fatalf("another key during the flood: %v", err)
			}
			clk.t = clk.t.Add(2*d.Window + time.Second) // the next replay period
			if _, err := d.Check(mk(flood, "flood-next"), "POST", u, "tok"); err != nil {
				t.Fatalf("the flooding key in the next period: %v", err)
			}
		})
	}
}

// TestDPoPStoreSweepsDeadRows: rows past their expiry (the proof's iat is out
// of the window) are deleted by the store's periodic sweep, so the replay
// set holds only live proofs plus at most one sweep interval of dead ones.
func TestDPoPStoreSweepsDeadRows(t *testing.T) {
	for name, open := range sqlBackends() {
		t.Run(name, func(t *testing.T) {
			db := open(t)
			ctx := context.Background()
			for i := range 50 { // dead since the epoch
				if _, err := db.SQL().Exec(fmt.Sprintf("INSERT INTO dpop_jtis (key, expires_at) VALUES ('dead-%d', 1)", i)); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 1024 { // one sweep interval of live proofs
				if ok, err := db.Once(ctx, fmt.Sprintf("dpop:live:%d", i), time.Hour); !ok || err != nil {
					t.Fatalf("live proof %d: %v %v", i, ok, err)
				}
			}
			if n := countJTIs(t, db, "key LIKE 'dead-%'"); n != 0 {
				t.Fatalf("%d dead rows left after a sweep interval; want 0", n)
			}
			if n := countJTIs(t, db, "1=1"); n != 1024 {
				t.Fatalf("%d rows; want the 1024 live ones", n)
			}
		})
	}
}
