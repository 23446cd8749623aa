package ledger_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/gatehouse-gw/gatehouse/internal/faultnet"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/ledger/ledgertest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
)

// TestEndRecordsSurviveAFullDisk: while the disk is full a start fails
// closed, an end record is kept in memory (ErrDeferred, Ready reports it) and
// written, once and in order, as soon as the disk has room again; the log
// verifies afterwards.
func TestEndRecordsSurviveAFullDisk(t *testing.T) {
	var disk faultnet.Disk
	ctx := context.Background()
	db, err := sqlite.OpenWith(ctx, filepath.Join(t.TempDir(), "gh.db"), sqlite.Options{Wrap: disk.Connector})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	skey, _ := ledger.GenerateKey("test/log")
	l, err := ledger.New(db, "gw.1", skey, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	l.CommitTimeout = 2 * time.Second
	defer ledgertest.Run(t, l)() // stopped before the store closes

	for _, id := range []string{"req_1", "req_2"} {
		if _, err := l.Append(ctx, rec(ledger.KindCallStart, id)); err != nil {
			t.Fatal(err)
		}
	}
	disk.Fill()
	if _, err := l.Append(ctx, rec(ledger.KindCallStart, "req_3")); !errors.Is(err, ledger.ErrUnavailable) {
		t.Fatalf("start on a full disk: want ErrUnavailable, got %v", err)
	}
	for _, id := range []string{"req_1", "req_2"} {
		if _, err := l.Append(ctx, rec(ledger.KindCallEnd, id)); !errors.Is(err, ledger.ErrDeferred) {
			t.Fatalf("end on a full disk: want ErrDeferred, got %v", err)
		}
	}
	if l.Ready() == nil || l.Deferred() != 2 {
		t.Fatalf("Ready = %v with %d deferred; want not ready with 2", l.Ready(), l.Deferred())
	}
	// A start while end records wait for a full disk fails closed.
	if _, err := l.Append(ctx, rec(ledger.KindCallStart, "req_4")); !errors.Is(err, ledger.ErrUnavailable) {
		t.Fatalf("start while end records wait: want ErrUnavailable, got %v", err)
	}
	disk.Free()
	deadline := time.Now().Add(10 * time.Second)
	for l.Deferred() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d end records still deferred 10 s after the disk was freed", l.Deferred())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := l.Ready(); err != nil {
		t.Fatalf("Ready after recovery: %v", err)
	}
	var order []int64
	for _, id := range []string{"req_1", "req_2"} {
		idx, err := db.LedgerFind(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(idx) != 2 {
			t.Fatalf("%s: %d records, want start and one end", id, len(idx))
		}
		order = append(order, idx[1])
	}
	if order[0] > order[1] {
		t.Fatalf("end records out of order: %v", order)
	}
	open, err := db.LedgerAbandoned(ctx, "other.1", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(open) != 0 {
		t.Fatalf("calls left open: %+v", open)
	}
	// A second end for a closed call is refused, not appended.
	if _, err := l.Append(ctx, rec(ledger.KindCallEnd, "req_1")); !errors.Is(err, ledger.ErrAlreadyClosed) {
		t.Fatalf("second end: want ErrAlreadyClosed, got %v", err)
	}
	if err := l.SignCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	rep, _, err := ledger.Verify(ctx, ledger.StoreSource{Store: db}, l.Key(), nil, nil)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if rep.Size != 4 || rep.OpenCalls != 0 {
		t.Fatalf("verified %d records with %d open calls; want 4 and 0", rep.Size, rep.OpenCalls)
	}
}

func rec(kind, id string) ledger.Entry {
	r := ledger.Record{Kind: kind, Time: time.Unix(1_700_000_000, 0), RequestID: id, Model: "gpt-4o"}
	return ledger.Entry{Data: r.Marshal(), RequestID: id, Opens: kind == ledger.KindCallStart, Closes: kind == ledger.KindCallEnd}
}

// TestStartFailsWithinTheCommitTimeout: a store that never answers fails a
// start after CommitTimeout, whatever the caller's context.
func TestStartFailsWithinTheCommitTimeout(t *testing.T) {
	st := &stuckStore{}
	skey, _ := ledger.GenerateKey("test/log")
	l, err := ledger.New(st, "gw.1", skey, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	l.CommitTimeout = 200 * time.Millisecond
	ledgertest.Run(t, l)
	_, err = l.Append(context.Background(), rec(ledger.KindCallStart, "r"))
	if !errors.Is(err, ledger.ErrUnavailable) {
		t.Fatalf("want ErrUnavailable, got %v", err)
	}
}

func (stuckStore) LedgerSize(ctx context.Context) (int64, error) {
	<-ctx.Done()
	return 0, ctx.Err()
}

// stuckStore blocks every append until its context ends (a black hole with
// a deadline).
type stuckStore struct{ ledger.Store }

func (stuckStore) LedgerAppend(ctx context.Context, _ string, _ []ledger.Entry, _ func(int64, []ledger.Entry, tlog.HashReader) ([][]tlog.Hash, error)) ([]int64, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
