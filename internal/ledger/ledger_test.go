package ledger_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/ledger/ledgertest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

const origin = "gatehouse.test/log"

func newLog(t testing.TB) (*ledger.Log, *sqlstore.DB, string) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "gh.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	skey, err := ledger.GenerateKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.New(db, "test", skey, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return l, db, skey
}

func fill(t *testing.T, l *ledger.Log, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		r := ledger.Record{Kind: ledger.KindCallEnd, Time: time.Unix(int64(1_700_000_000+i), 0), RequestID: fmt.Sprintf("req_%04d", i), Model: "gpt-4o", Status: 200, CostMicros: int64(i)}
		idx, err := l.Append(ctx, ledger.Entry{Data: r.Marshal(), RequestID: r.RequestID})
		if err != nil || idx != int64(i) {
			t.Fatalf("append %d: idx %d, %v", i, idx, err)
		}
	}
	if err := l.SignCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestRecordCanonical(t *testing.T) {
	r := ledger.Record{Kind: ledger.KindCallStart, Time: time.Date(2026, 1, 2, 3, 4, 5, 678912345, time.FixedZone("x", 3600)), RequestID: "req_1", Model: "a<b>&c"}
	b := r.Marshal()
	if !bytes.Contains(b, []byte(`"v":1`)) || !bytes.Contains(b, []byte(`a<b>&c`)) || !bytes.Contains(b, []byte(`02:04:05.678912Z`)) {
		t.Fatalf("canonical form: %s", b)
	}
	got, err := ledger.ParseRecord(b)
	if err != nil || got.RequestID != "req_1" {
		t.Fatalf("ParseRecord: %+v %v", got, err)
	}
	for _, bad := range []string{
		strings.Replace(string(b), `"v":1`, `"v":2`, 1),
		strings.Replace(string(b), `{`, `{ `, 1),
		strings.Replace(string(b), `"kind"`, `"secret":"x","kind"`, 1),
		string(b) + "\n",
		`{"v":1}{}`,
	} {
		if _, err := ledger.ParseRecord([]byte(bad)); !errors.Is(err, ledger.ErrBadRecord) {
			t.Errorf("ParseRecord(%q) = %v, want ErrBadRecord", bad, err)
		}
	}
}

func TestCheckpointFormat(t *testing.T) {
	c := ledger.Checkpoint{Origin: origin, Size: 42, Hash: tlog.RecordHash([]byte("x"))}
	got, err := ledger.ParseCheckpoint(c.Text())
	if err != nil || got != c {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	if _, err := ledger.ParseCheckpoint(c.Text() + "extension line\n"); err != nil {
		t.Fatalf("extension lines must be allowed: %v", err)
	}
	for _, bad := range []string{"", origin + "\n42\n", origin + "\n042\n" + strings.Split(c.Text(), "\n")[2] + "\n", origin + "\n-1\nAAAA\n", "\n1\nAAAA\n"} {
		if _, err := ledger.ParseCheckpoint(bad); err == nil {
			t.Errorf("ParseCheckpoint(%q) accepted", bad)
		}
	}
}

// TestTamperDetected is proof 1 of issue #4: every kind of tampering is caught.
func TestTamperDetected(t *testing.T) {
	ctx := context.Background()
	tamper := []struct {
		name string
		do   func(t *testing.T, db *sql.DB, skey string, l *ledger.Log)
		want string
	}{
		{"change one byte", func(t *testing.T, db *sql.DB, _ string, _ *ledger.Log) {
			exec(t, db, `UPDATE ledger_entries SET data = replace(data, '"cost_micros":17', '"cost_micros":18') WHERE idx = 17`)
		}, "TAMPERED"},
		{"change a byte and its stored leaf hash", func(t *testing.T, db *sql.DB, _ string, _ *ledger.Log) {
			var d []byte
			db.QueryRow(`SELECT data FROM ledger_entries WHERE idx = 17`).Scan(&d)
			d = bytes.Replace(d, []byte(`"cost_micros":17`), []byte(`"cost_micros":18`), 1)
			h := tlog.RecordHash(d)
			exec(t, db, `UPDATE ledger_entries SET data = ? WHERE idx = 17`, d)
			exec(t, db, `UPDATE ledger_hashes SET hash = ? WHERE idx = ?`, h[:], tlog.StoredHashIndex(0, 17))
		}, "TAMPERED"},
		{"delete a record", func(t *testing.T, db *sql.DB, _ string, _ *ledger.Log) {
			exec(t, db, `DELETE FROM ledger_entries WHERE idx = 250`)
		}, "entry 250 missing"},
		{"reorder two", func(t *testing.T, db *sql.DB, _ string, _ *ledger.Log) {
			exec(t, db, `UPDATE ledger_entries SET idx = -1 WHERE idx = 3`)
			exec(t, db, `UPDATE ledger_entries SET idx = 3 WHERE idx = 4`)
			exec(t, db, `UPDATE ledger_entries SET idx = 4 WHERE idx = -1`)
		}, "TAMPERED"},
		{"forged record under a forged checkpoint", func(t *testing.T, db *sql.DB, _ string, _ *ledger.Log) {
			other, _ := ledger.GenerateKey(origin)
			s, _ := note.NewSigner(other)
			signed, _ := ledger.Sign(ledger.Checkpoint{Origin: origin, Size: 301, Hash: tlog.Hash{1}}, s)
			exec(t, db, `UPDATE ledger_checkpoints SET signed = ?, size = 301`, signed)
		}, "signature"},
	}
	for _, tt := range tamper {
		t.Run(tt.name, func(t *testing.T) {
			l, db, skey := newLog(t)
			fill(t, l, 300)
			src := ledger.StoreSource{Store: db}
			vkey := l.Key()
			if _, _, err := ledger.Verify(ctx, src, vkey, nil, nil); err != nil {
				t.Fatalf("untampered log fails: %v", err)
			}
			tt.do(t, db.SQL(), skey, l)
			_, _, err := ledger.Verify(ctx, src, vkey, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("verify after %s: %v, want an error mentioning %q", tt.name, err, tt.want)
			}
		})
	}

	// Truncation and forks need the verifier's memory of an earlier checkpoint.
	t.Run("truncate and re-sign", func(t *testing.T) {
		l, db, skey := newLog(t)
		fill(t, l, 300)
		src := ledger.StoreSource{Store: db}
		_, state, err := ledger.Verify(ctx, src, l.Key(), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		exec(t, db.SQL(), `DELETE FROM ledger_entries WHERE idx >= 200`)
		resign(t, db, skey, 200)
		if _, _, err := ledger.Verify(ctx, src, l.Key(), state, nil); err == nil || !strings.Contains(err.Error(), "TRUNCATED") {
			t.Fatalf("truncated log: %v", err)
		}
	})
	t.Run("fork served to a verifier that saw an earlier tree", func(t *testing.T) {
		l, db, skey := newLog(t)
		fill(t, l, 100)
		src := ledger.StoreSource{Store: db}
		_, state, err := ledger.Verify(ctx, src, l.Key(), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		// The operator rewrites history (record 5) and re-signs a bigger tree
		// over the rewritten records with the real key.
		fill(t, l, 0)
		var d []byte
		db.SQL().QueryRow(`SELECT data FROM ledger_entries WHERE idx = 5`).Scan(&d)
		exec(t, db.SQL(), `UPDATE ledger_entries SET data = ? WHERE idx = 5`, bytes.Replace(d, []byte(`"status":200`), []byte(`"status":500`), 1))
		rebuildHashes(t, db)
		resign(t, db, skey, 100)
		_, _, err = ledger.Verify(ctx, src, l.Key(), nil, nil)
		if err != nil {
			t.Fatalf("a fresh verifier cannot tell a well-formed rewrite: %v", err)
		}
		if _, _, err := ledger.Verify(ctx, src, l.Key(), state, nil); err == nil || !strings.Contains(err.Error(), "FORKED") {
			t.Fatalf("forked log against the earlier state: %v", err)
		}
	})
}

func exec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatal(err)
	}
}

// rebuildHashes and resign: the tamperer's moves (ledgertest).
func rebuildHashes(t *testing.T, db *sqlstore.DB) { ledgertest.RebuildTree(t, db) }

func resign(t *testing.T, db *sqlstore.DB, skey string, size int64) {
	ledgertest.Resign(t, db, skey, origin, size)
}

// TestInterop is proof 5: checkpoints, tiles and proofs served by Gatehouse
// verify with x/mod's tlog the way the Go checksum database client uses it:
// a TileHashReader over fetched tiles, CheckRecord and CheckTree.
func TestInterop(t *testing.T) {
	ctx := context.Background()
	l, _, _ := newLog(t)
	fill(t, l, 1000)
	srv := httptest.NewServer(l.Handler())
	defer srv.Close()
	get := func(path string) []byte {
		resp, err := http.Get(srv.URL + "/log/" + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b.String())
		}
		return b.Bytes()
	}
	c, err := ledger.OpenCheckpoint(get("checkpoint"), strings.TrimSpace(string(get("key"))))
	if err != nil || c.Size != 1000 {
		t.Fatalf("checkpoint: %+v %v", c, err)
	}
	tr := tileReader{get: get}
	hr := tlog.TileHashReader(tlog.Tree{N: c.Size, Hash: c.Hash}, &tr)
	for _, i := range []int64{0, 1, 255, 256, 511, 999} {
		entries, err := ledger.ParseBundle(get(ledger.TilePath(tlog.Tile{H: 8, L: -1, N: i / 256, W: int(min(256, c.Size-i/256*256))})))
		if err != nil {
			t.Fatal(err)
		}
		p, err := tlog.ProveRecord(c.Size, i, hr)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckRecord(p, c.Size, c.Hash, i, tlog.RecordHash(entries[i%256])); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	// Consistency with an older tree, as a client that saw size 300 checks.
	old, err := tlog.TreeHash(300, hr)
	if err != nil {
		t.Fatal(err)
	}
	tp, err := tlog.ProveTree(c.Size, 300, hr)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckTree(tp, c.Size, c.Hash, 300, old); err != nil {
		t.Fatal(err)
	}
	// The /log/proof endpoint's proofs check too, and verification over HTTP passes.
	if _, _, err := ledger.Verify(ctx, ledger.HTTPSource{Base: srv.URL + "/log"}, l.Key(), nil, nil); err != nil {
		t.Fatal(err)
	}
	if tr.fetched == 0 {
		t.Fatal("no tiles fetched: the test would pass vacuously")
	}
}

type tileReader struct {
	get     func(string) []byte
	fetched int
}

func (r *tileReader) Height() int { return 8 }
func (r *tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		out[i] = r.get(ledger.TilePath(t))
		r.fetched++
	}
	return out, nil
}
func (r *tileReader) SaveTiles([]tlog.Tile, [][]byte) {}

func FuzzParseRecord(f *testing.F) {
	f.Add(ledger.Record{Kind: ledger.KindAdmin, RequestID: "r", Action: "POST /v1/keys"}.Marshal())
	f.Add([]byte(`{"v":1,"kind":"x","time":"0001-01-01T00:00:00Z","request_id":""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ledger.ParseRecord(b)
		if err != nil {
			return
		}
		if !bytes.Equal(r.Marshal(), b) {
			t.Fatalf("accepted a non-canonical record %q", b)
		}
	})
}

func FuzzParseCheckpoint(f *testing.F) {
	f.Add(ledger.Checkpoint{Origin: origin, Size: 7, Hash: tlog.Hash{9}}.Text())
	f.Add("a\n1\n\n")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ledger.ParseCheckpoint(s)
		if err != nil {
			return
		}
		back, err := ledger.ParseCheckpoint(c.Text())
		if err != nil || back != c {
			t.Fatalf("round trip of %q: %+v %v", s, back, err)
		}
	})
}

func FuzzParseBundle(f *testing.F) {
	f.Add([]byte{0, 2, 'h', 'i', 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := ledger.ParseBundle(b)
		if err != nil {
			return
		}
		total := 0
		for _, e := range entries {
			total += 2 + len(e)
		}
		if total != len(b) {
			t.Fatalf("bundle of %d bytes parsed into %d", len(b), total)
		}
	})
}
