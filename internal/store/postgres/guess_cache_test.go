package postgres_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
)

// TestRefusedGuessLeavesNoHashesBehind: a batch whose guess the server
// refuses and whose two-round-trip retry keeps nothing (a request closed
// twice; likewise a hold a hard budget refuses) called the ledger's hashes
// callback only on the guess. The ledger took that call's hashes, computed
// for a record that was never written, into its cache, and gave the record
// to its export sink. When another replica then wrote that index, this one's
// next append read the phantom hash and stored a tree that does not verify.
func TestRefusedGuessLeavesNoHashesBehind(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dsn := pgtest.DSN(t)
	a, err := postgres.OpenWith(ctx, dsn, postgres.Options{MaxOpenConns: 1, MinOpenConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := postgres.OpenWith(ctx, dsn, postgres.Options{MaxOpenConns: 1, MinOpenConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	skey, _ := ledger.GenerateKey("redpg.example/log")
	la, err := ledger.New(a, "a", skey, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	lb, err := ledger.New(b, "b", skey, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var exported []string
	la.Sink = func(data []byte) {
		mu.Lock()
		exported = append(exported, string(data))
		mu.Unlock()
	}
	rec := func(id, action string) []byte {
		return ledger.Record{Kind: ledger.KindAdmin, Time: time.Now(), RequestID: id, Action: action}.Marshal()
	}
	if _, err := la.Append(ctx, ledger.Entry{Data: rec("req_1", "start"), RequestID: "req_1", Opens: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := la.Append(ctx, ledger.Entry{Data: rec("req_1", "end"), RequestID: "req_1", Closes: true}); err != nil {
		t.Fatal(err)
	}
	// The request closed twice: a's guess (size 2) is refused by the claim,
	// the retry keeps nothing.
	if _, err := la.Append(ctx, ledger.Entry{Data: rec("req_1", "end again"), RequestID: "req_1", Closes: true}); !errors.Is(err, ledger.ErrAlreadyClosed) {
		t.Fatalf("second end: %v, want ErrAlreadyClosed", err)
	}
	// Another replica writes index 2, then a writes index 3 (whose tree
	// node reads index 2's leaf hash).
	if _, err := lb.Append(ctx, ledger.Entry{Data: rec("req_b", "b"), RequestID: "req_b"}); err != nil {
		t.Fatal(err)
	}
	if _, err := la.Append(ctx, ledger.Entry{Data: rec("req_a", "a"), RequestID: "req_a"}); err != nil {
		t.Fatal(err)
	}
	checkLog(t, ctx, a, 4)
	mu.Lock()
	defer mu.Unlock()
	if len(exported) != 3 {
		t.Fatalf("a exported %d records, want the 3 it wrote: %q", len(exported), exported)
	}
}
