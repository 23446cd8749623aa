package ledger_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/ledger/ledgertest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

// outageLog returns a running Log over a SQLite store that can be taken
// down, with maxRefusals end records of refused calls kept one by one.
func outageLog(t *testing.T, maxRefusals int) (*ledger.Log, *ledgertest.DownStore, *sqlstore.DB) {
	return ledgertest.DownLog(t, func(l *ledger.Log) { l.MaxDeferredRefusals = maxRefusals })
}

var t0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// refusal is the end entry of a refused call with nothing at stake.
func refusal(id, key, code string, at time.Time) ledger.Entry {
	r := ledger.Record{Kind: ledger.KindCallEnd, Time: at, RequestID: id, KeyID: key, PrincipalID: "prn_" + key, Endpoint: "chat.completions",
		Model: "gpt-4o", Decision: "deny", Status: 403, ErrorCode: code, SourceIP: "192.0.2.1"}
	e := r.Entry()
	e.Closes, e.NothingAtStake = true, true
	return e
}

// waitDeferred waits until n entries wait for the store (everything
// enqueued was taken by the sequencer).
func waitDeferred(t *testing.T, l *ledger.Log, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for l.Deferred() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d entries wait for the store, want %d", l.Deferred(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// logged returns the log's records.
func logged(t *testing.T, db *sqlstore.DB) []ledger.Record {
	t.Helper()
	return ledgertest.Records(t, db)
}

// verified signs a checkpoint and verifies the whole log against it.
func verified(t *testing.T, l *ledger.Log, db *sqlstore.DB) ledger.Report {
	t.Helper()
	ctx := context.Background()
	if err := l.SignCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	rep, _, err := ledger.Verify(ctx, ledger.StoreSource{Store: db}, l.Key(), nil, nil)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return rep
}

// TestRefusalsPastTheBoundAreSummarizedInOrder: while the store is
// unreachable, end records of refused calls past MaxDeferredRefusals are
// counted into one summary per key × error code × minute, which waits at the
// place of its first call; end records that settle money are never counted,
// and everything is written in the order it waited once the store returns.
func TestRefusalsPastTheBoundAreSummarizedInOrder(t *testing.T) {
	ctx := context.Background()
	l, st, db := outageLog(t, 3)
	for _, id := range []string{"m1", "m2"} {
		if _, err := l.Append(ctx, rec(ledger.KindCallStart, id)); err != nil {
			t.Fatal(err)
		}
	}
	st.Down.Store(true)
	var r4 atomic.Value
	in := []ledger.Entry{
		refusal("r1", "key_a", "policy_denied", t0),
		refusal("r2", "key_a", "policy_denied", t0.Add(time.Second)),
		rec(ledger.KindCallEnd, "m1"), // a started call's end: never counted
		refusal("r3", "key_a", "rate_limit_exceeded", t0.Add(2*time.Second)),
		refusal("r4", "key_a", "policy_denied", t0.Add(3*time.Second)), // past the bound: summary S1 opens here
		refusal("r5", "key_b", "policy_denied", t0.Add(4*time.Second)), // S2
		rec(ledger.KindCallEnd, "m2"),
		refusal("r6", "key_a", "policy_denied", t0.Add(5*time.Second)),       // S1
		refusal("r7", "key_a", "policy_denied", t0.Add(61*time.Second)),      // another minute: S3
		refusal("r8", "key_a", "rate_limit_exceeded", t0.Add(6*time.Second)), // S4
	}
	in[4].Done = func(err error) { r4.Store(fmt.Sprint(err)) }
	// A refusal that carries a cost is not counted, whatever its flag says.
	costly := refusal("r9", "key_a", "policy_denied", t0.Add(7*time.Second))
	costly.Usage = &usage.Record{ID: "r9", CostMicros: 5}
	in = append(in, costly)
	for _, e := range in {
		if err := l.Enqueue(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	waitDeferred(t, l, 3+2+4+1)
	if got := l.Aggregated(); got != 5 {
		t.Fatalf("Aggregated = %d, want 5", got)
	}
	if got, _ := r4.Load().(string); got != ledger.ErrAggregated.Error() {
		t.Fatalf("Done of a counted refusal got %q, want ErrAggregated", got)
	}
	if l.Ready() == nil {
		t.Fatal("Ready while records wait for the store")
	}

	st.Down.Store(false)
	waitDeferred(t, l, 0)
	rep := verified(t, l, db)
	if rep.OpenCalls != 0 {
		t.Fatalf("%d open calls", rep.OpenCalls)
	}
	var got []string
	for _, r := range logged(t, db) {
		s := r.Kind + " " + r.RequestID
		if r.Kind == ledger.KindCallSummary {
			s = fmt.Sprintf("%s %s %s %s n=%d", r.Kind, r.KeyID, r.ErrorCode, r.RequestID, r.Count)
		}
		got = append(got, s)
	}
	want := []string{
		"call.start m1", "call.start m2",
		"call.end r1", "call.end r2", "call.end m1", "call.end r3",
		"call.summary key_a policy_denied r4 n=2",
		"call.summary key_b policy_denied r5 n=1",
		"call.end m2",
		"call.summary key_a policy_denied r7 n=1",
		"call.summary key_a rate_limit_exceeded r8 n=1",
		"call.end r9",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("log:\n%q\nwant\n%q", got, want)
	}
	for _, r := range logged(t, db) {
		if r.Kind == ledger.KindCallSummary && r.RequestID == "r4" {
			if r.Time != t0.Add(5*time.Second) || r.PrincipalID != "prn_key_a" || r.Status != 403 || r.Decision != "deny" ||
				r.Detail != "2 refused calls with nothing at stake, counted while the store was unreachable; first r4 at 2026-11-30T12:00:03Z, last r6 at 2026-11-30T12:00:05Z" {
				t.Fatalf("summary %+v", r)
			}
		}
	}

	// The summaries were written: a refusal of the same bucket in a later
	// outage opens a new one.
	st.Down.Store(true)
	for _, id := range []string{"r10", "r11", "r12", "r13"} {
		if err := l.Enqueue(ctx, refusal(id, "key_a", "policy_denied", t0.Add(8*time.Second))); err != nil {
			t.Fatal(err)
		}
	}
	waitDeferred(t, l, 3+1)
	st.Down.Store(false)
	waitDeferred(t, l, 0)
	recs := logged(t, db)
	if last := recs[len(recs)-1]; last.Kind != ledger.KindCallSummary || last.RequestID != "r13" || last.Count != 1 {
		t.Fatalf("last record %+v, want a new summary of r13", last)
	}
	verified(t, l, db)
}

// TestSummariesAreBounded: a flood of refusals from more buckets than
// 2×MaxSummaries (distinct keys) keeps at most MaxSummaries summaries,
// MaxSummaries overflow summaries of one key each and one overflow summary
// with no key, whose counts add up to every call.
func TestSummariesAreBounded(t *testing.T) {
	ctx := context.Background()
	l, st, db := outageLog(t, 0)
	st.Down.Store(true)
	const n = 2*ledger.MaxSummaries + 100
	for i := range n {
		if err := l.Enqueue(ctx, refusal(fmt.Sprintf("r%d", i), fmt.Sprintf("key_%d", i), "policy_denied", t0)); err != nil {
			t.Fatal(err)
		}
	}
	waitAggregated(t, l, n)
	waitDeferred(t, l, 2*ledger.MaxSummaries+1)
	st.Down.Store(false)
	waitDeferred(t, l, 0)
	verified(t, l, db)
	var calls int64
	var keyed, keyless []ledger.Record
	for _, r := range logged(t, db) {
		if r.Kind != ledger.KindCallSummary {
			t.Fatalf("record %+v, want summaries only (no refusal kept one by one)", r)
		}
		calls += r.Count
		if strings.Contains(r.Detail, "too many summaries waited at once") {
			if r.KeyID == "" {
				keyless = append(keyless, r)
			} else {
				keyed = append(keyed, r)
			}
		}
	}
	if calls != n || len(keyed) != ledger.MaxSummaries || len(keyless) != 1 || keyless[0].Count != 100 || keyless[0].ErrorCode != ledger.SummaryOverflow {
		t.Fatalf("%d calls counted, %d overflow summaries with a key, keyless %+v; want %d, %d and one of 100 calls",
			calls, len(keyed), keyless, n, ledger.MaxSummaries)
	}
}

// waitAggregated waits until n refusals were counted into summaries (every
// one taken by the sequencer: the count of waiting records stops changing
// once the overflow summaries are open).
func waitAggregated(t *testing.T, l *ledger.Log, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for l.Aggregated() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d refusals counted, want %d", l.Aggregated(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFloodPastTheSummaryBoundKeepsItsKey is the attack "hide a denial
// flood from the audit": while the store is down, refusals of other keys (or
// the attacker's own, over error codes and minutes) open MaxSummaries
// summaries, and the attacker's flood comes after. Its calls must still be
// counted under its key with their status (the audit's usage.denials counts
// 403s per key; a summary with no key is invisible to it), and no summary
// may name another key for them.
func TestFloodPastTheSummaryBoundKeepsItsKey(t *testing.T) {
	ctx := context.Background()
	l, st, db := outageLog(t, 0)
	st.Down.Store(true)
	for i := range ledger.MaxSummaries {
		if err := l.Enqueue(ctx, refusal(fmt.Sprintf("n%d", i), fmt.Sprintf("key_%d", i), "rate_limited", t0)); err != nil {
			t.Fatal(err)
		}
	}
	const flood = 300
	codes := []string{"policy_denied", "model_not_allowed", "endpoint_not_allowed"}
	for i := range flood {
		at := t0.Add(time.Duration(i) * time.Second) // over several minutes
		if err := l.Enqueue(ctx, refusal(fmt.Sprintf("a%d", i), "key_attacker", codes[i%len(codes)], at)); err != nil {
			t.Fatal(err)
		}
	}
	waitAggregated(t, l, ledger.MaxSummaries+flood)
	st.Down.Store(false)
	waitDeferred(t, l, 0)
	verified(t, l, db)
	var attacker, keyless int64
	for _, r := range logged(t, db) {
		switch {
		case r.KeyID == "key_attacker" && r.Status == 403:
			attacker += r.Count
		case r.KeyID == "":
			keyless += r.Count
		}
	}
	if attacker != flood || keyless != 0 {
		t.Fatalf("the attacker's key has %d refused calls (403) in the log and %d were counted with no key; want %d and 0", attacker, keyless, flood)
	}
}

// TestSummariesGivenUpAtShutdownAreFinal: stopping while the store is down
// gives up the waiting summaries like the end records (no hang, no panic).
func TestSummariesGivenUpAtShutdownAreFinal(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "gh.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st := &ledgertest.DownStore{Store: db}
	skey, _ := ledger.GenerateKey("test/log")
	l, err := ledger.New(st, "gw.1", skey, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	l.MaxDeferredRefusals = 1
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { l.Run(runCtx); close(done) }()
	ledgertest.WaitRunning(t, l)
	st.Down.Store(true)
	for _, id := range []string{"r1", "r2", "r3"} {
		if err := l.Enqueue(ctx, refusal(id, "key_a", "policy_denied", t0)); err != nil {
			t.Fatal(err)
		}
	}
	waitDeferred(t, l, 2)
	stop()
	<-done
	if l.Deferred() != 0 {
		t.Fatalf("%d deferred after stopping", l.Deferred())
	}
}
