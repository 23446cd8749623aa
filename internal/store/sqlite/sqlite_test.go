package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		db, err := Open(context.Background(), filepath.Join(t.TempDir(), FileName))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	})
}

func TestReopenKeepsData(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName)
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.PutSecretIfAbsent(ctx, "s", []byte("v")); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = Open(ctx, path) // migrations must not run twice
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got, err := db.Secret(ctx, "s"); err != nil || string(got) != "v" {
		t.Fatalf("after reopen: %q, %v", got, err)
	}
}

// TestSynchronousFullByDefault: every connection of the pool syncs each
// commit (synchronous=FULL, 2) unless NORMAL (1) is asked for; anything else
// is refused rather than silently weakened.
func TestSynchronousFullByDefault(t *testing.T) {
	for _, c := range []struct {
		opt  string
		want int
	}{{"", 2}, {"full", 2}, {"NORMAL", 1}} {
		db, err := OpenWith(context.Background(), filepath.Join(t.TempDir(), FileName), Options{Synchronous: c.opt, MaxOpenConns: 3})
		if err != nil {
			t.Fatal(err)
		}
		// Hold every connection of the pool at once, so each is checked.
		var conns []*sql.Conn
		for range 3 {
			cn, err := db.SQL().Conn(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, cn)
		}
		for i, cn := range conns {
			var got int
			if err := cn.QueryRowContext(context.Background(), "PRAGMA synchronous").Scan(&got); err != nil || got != c.want {
				t.Fatalf("synchronous %q, connection %d: %d, %v; want %d", c.opt, i, got, err, c.want)
			}
			cn.Close()
		}
		db.Close()
	}
	if _, err := OpenWith(context.Background(), filepath.Join(t.TempDir(), FileName), Options{Synchronous: "OFF"}); err == nil {
		t.Fatal("synchronous OFF accepted")
	}
}

// TestReadOnlyStore: the store offline tools read (audit verify) opens a
// closed database and one a gateway has open, sees what was committed, and
// cannot write.
func TestReadOnlyStore(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName)
	if _, err := OpenReadOnly(ctx, path); err == nil {
		t.Fatal("a read-only open created a store")
	}
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.PutSecretIfAbsent(ctx, "a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	db.Close() // a clean close removes the -wal and -shm files
	ro, err := OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ro.Secret(ctx, "a"); err != nil || string(got) != "1" {
		t.Fatalf("read-only, closed store: %q, %v", got, err)
	}
	ro.Close()

	db, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ro, err = OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if _, err := db.PutSecretIfAbsent(ctx, "b", []byte("2")); err != nil {
		t.Fatal(err)
	}
	if got, err := ro.Secret(ctx, "b"); err != nil || string(got) != "2" {
		t.Fatalf("read-only next to a writer: %q, %v", got, err)
	}
	if _, err := ro.PutSecretIfAbsent(ctx, "c", []byte("3")); err == nil {
		t.Fatal("the read-only store wrote")
	}
}
