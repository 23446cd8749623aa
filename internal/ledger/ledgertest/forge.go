// Package ledgertest holds what tests of the log need: the moves of an
// operator who edits the stored log and covers their tracks (writing the
// store's ledger tables directly, SQL with ? placeholders: SQLite), and a
// running log over a store that can be taken down (DownLog).
package ledgertest

import (
	"context"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// RebuildTree recomputes the stored tree from the (tampered) records, as an
// operator covering their tracks would.
func RebuildTree(t testing.TB, db *sqlstore.DB) {
	t.Helper()
	ctx := context.Background()
	size, _ := db.LedgerSize(ctx)
	entries, err := db.LedgerEntries(ctx, 0, size)
	if err != nil {
		t.Fatal(err)
	}
	var hashes []tlog.Hash
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = hashes[x]
		}
		return out, nil
	})
	for i, e := range entries {
		hs, _ := tlog.StoredHashes(int64(i), e, r)
		hashes = append(hashes, hs...)
	}
	exec(t, db, `DELETE FROM ledger_hashes`)
	for i, h := range hashes {
		exec(t, db, `INSERT INTO ledger_hashes (idx, hash) VALUES (?, ?)`, i, h[:])
	}
}

// Resign signs the stored tree of the given size with the log's own signing
// key skey and makes it the log's checkpoint and size.
func Resign(t testing.TB, db *sqlstore.DB, skey, origin string, size int64) {
	t.Helper()
	ctx := context.Background()
	root, err := tlog.TreeHash(size, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) { return db.LedgerHashes(ctx, idx) }))
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := ledger.Sign(ledger.Checkpoint{Origin: origin, Size: size, Hash: root}, s)
	if err != nil {
		t.Fatal(err)
	}
	exec(t, db, `UPDATE ledger_checkpoints SET signed = ?, size = ?`, signed, size)
	exec(t, db, `UPDATE ledger_state SET size = ?`, size)
}

func exec(t testing.TB, db *sqlstore.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.SQL().Exec(q, args...); err != nil {
		t.Fatal(err)
	}
}
