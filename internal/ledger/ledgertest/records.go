package ledgertest

import (
	"context"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
)

// LogReader is what the readers below read: a log's store.
type LogReader interface {
	LedgerSize(ctx context.Context) (int64, error)
	LedgerEntries(ctx context.Context, from, to int64) ([][]byte, error)
}

// Entries returns every entry of the log, in log order; it fails t when the
// log cannot be read.
func Entries(t testing.TB, st LogReader) [][]byte {
	t.Helper()
	ctx := context.Background()
	n, err := st.LedgerSize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	data, err := st.LedgerEntries(ctx, 0, n)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// Records returns every record of the log, in log order; it fails t when
// the log cannot be read or holds a record that does not parse.
func Records(t testing.TB, st LogReader) []ledger.Record {
	t.Helper()
	var out []ledger.Record
	for _, d := range Entries(t, st) {
		r, err := ledger.ParseRecord(d)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// RecordsOfKind returns the log's records of kind, in log order (as Records).
func RecordsOfKind(t testing.TB, st LogReader, kind string) []ledger.Record {
	t.Helper()
	var out []ledger.Record
	for _, r := range Records(t, st) {
		if r.Kind == kind {
			out = append(out, r)
		}
	}
	return out
}
