package sqlite_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
)

// TestPathWithURICharacters: a data directory whose name holds characters
// that mean something in an SQLite file: URI ('%', '?', '#') opens that
// directory's database, read-write and read-only.
func TestPathWithURICharacters(t *testing.T) {
	for _, name := range []string{"50%", "a?b", "c#d", "%41"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), name, "gatehouse.db")
			db, err := sqlite.Open(context.Background(), path)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			if err := db.Ping(context.Background()); err != nil {
				t.Fatal(err)
			}
			db.Close()
			if _, err := os.Stat(path); err != nil {
				t.Fatalf("the database is not where it was asked for: %v", err)
			}
			ro, err := sqlite.OpenReadOnly(context.Background(), path)
			if err != nil {
				t.Fatalf("open read-only: %v", err)
			}
			ro.Close()
		})
	}
}
