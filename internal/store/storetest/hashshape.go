package storetest

import (
	"context"
	"fmt"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
)

// testLedgerHashesOfWrongShape: a batch whose stored hashes are not, record
// by record, as many as tlog gives each (one too few or too many, one moved
// to the next record, a record's list missing) fails without a panic and
// writes nothing: those hashes would be written at shifted indexes (a log
// that does not verify) or at the next batch's first index (every later
// batch refused). The batches after it append, and every stored hash is the
// one the entries give.
func testLedgerHashesOfWrongShape(t *testing.T, b Backend) {
	ctx := context.Background()
	h := NewHasher()
	size := int64(0)
	good := func(ids ...string) {
		t.Helper()
		var es []ledger.Entry
		for _, id := range ids {
			es = append(es, ledger.Entry{Data: []byte("record " + id), RequestID: id})
		}
		idx, err := b.LedgerAppend(ctx, "gw", es, h.Hashes)
		must(t, err)
		h.Committed()
		for i, x := range idx {
			if x != size+int64(i) {
				t.Fatalf("entry %d at %d, want %d", i, x, size+int64(i))
			}
		}
		size += int64(len(es))
	}
	faults := []struct {
		name  string
		fault func([][]tlog.Hash) [][]tlog.Hash
	}{
		{"a hash too few", func(hs [][]tlog.Hash) [][]tlog.Hash {
			for i := range hs {
				if len(hs[i]) > 1 {
					hs[i] = hs[i][:len(hs[i])-1]
					break
				}
			}
			return hs
		}},
		{"a hash too many", func(hs [][]tlog.Hash) [][]tlog.Hash { hs[0] = append(hs[0], hs[0][0]); return hs }},
		{"one hash moved to the next record", func(hs [][]tlog.Hash) [][]tlog.Hash {
			for i := range hs[:len(hs)-1] {
				if len(hs[i]) > 1 {
					hs[i+1] = append([]tlog.Hash{hs[i][len(hs[i])-1]}, hs[i+1]...)
					hs[i] = hs[i][:len(hs[i])-1]
					break
				}
			}
			return hs
		}},
		{"a record's hashes missing", func(hs [][]tlog.Hash) [][]tlog.Hash { return hs[:len(hs)-1] }},
	}
	good("first")
	for _, f := range faults {
		es := []ledger.Entry{{Data: []byte("x1"), RequestID: "x1"}, {Data: []byte("x2"), RequestID: "x2"}, {Data: []byte("x3"), RequestID: "x3"}, {Data: []byte("x4"), RequestID: "x4"}}
		faulty := func(start int64, kept []ledger.Entry, r tlog.HashReader) ([][]tlog.Hash, error) {
			hs, err := NewHasher().Hashes(start, kept, r)
			if err != nil {
				return nil, err
			}
			return f.fault(hs), nil
		}
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("%s: panic %v", f.name, r)
				}
			}()
			if _, err := b.LedgerAppend(ctx, "gw", es, faulty); err == nil {
				t.Fatalf("%s: appended", f.name)
			}
		}()
		if got, err := b.LedgerSize(ctx); err != nil || got != size {
			t.Fatalf("%s: log size %d (%v), want %d", f.name, got, err, size)
		}
		good(fmt.Sprint("after ", f.name), "y")
		good("z")
	}
	CheckLog(t, ctx, b, size)
	past := tlog.StoredHashCount(size) // one past the end: no hash stored there
	if _, err := b.LedgerHashes(ctx, []int64{past}); err == nil {
		t.Fatalf("a hash stored at %d, past the log's %d", past, past)
	}
}
