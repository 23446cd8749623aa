package audit_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/ledger/ledgertest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// The gateway verifies its own log as an auditor would: a new log has nothing
// to verify; a good one records its size and root; a record changed in the
// store is caught, and the last good verification is kept.
func TestLogVerifier(t *testing.T) {
	ctx := context.Background()
	db := openStore(t)
	skey, _ := ledger.GenerateKey("check.example/log")
	lg, err := ledger.New(db, "t", skey, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	v := &audit.LogVerifier{Source: ledger.StoreSource{Store: db}, Key: lg.Key, Store: db, Now: clk.Now}
	if _, err := v.Check(ctx); !errors.Is(err, audit.ErrNoCheckpoint) {
		t.Fatalf("a new log: %v", err)
	}
	if c, _ := db.LogCheck(ctx); c != nil {
		t.Fatalf("a new log left a check: %+v", c)
	}
	for i := range 3 {
		r := ledger.Record{Kind: ledger.KindAdmin, Time: clk.Now(), RequestID: "r" + string(rune('0'+i)), Action: "test"}
		if _, err := lg.Append(ctx, ledger.Entry{Data: r.Marshal(), RequestID: r.RequestID}); err != nil {
			t.Fatal(err)
		}
	}
	if err := lg.SignCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	good, err := v.Check(ctx)
	if err != nil || !good.OK || good.Size != 3 || good.Root == "" || !good.LastGood.Equal(clk.Now()) {
		t.Fatalf("good log: %+v %v", good, err)
	}
	// Someone edits a record in the database.
	if _, err := db.SQL().ExecContext(ctx, `UPDATE ledger_entries SET data = REPLACE(data, '"test"', '"tEst"') WHERE idx = 1`); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Hour)
	bad, err := v.Check(ctx)
	if err != nil || bad.OK || !strings.Contains(bad.Error, "TAMPERED") || !bad.LastGood.Equal(good.LastGood) {
		t.Fatalf("tampered log: %+v %v", bad, err)
	}
	e := audit.New(audit.Deps{Store: db, Now: clk.Now})
	if _, err := e.Run(ctx, audit.SystemActor); err != nil {
		t.Fatal(err)
	}
	fs, _ := e.List(ctx, audit.Filter{Rule: "config.log_unverified"})
	if len(fs) != 1 || fs[0].Title != "the log failed verification" || fs[0].Severity != audit.High {
		t.Fatalf("findings %+v", fs)
	}
}

// newVerifiedLog is a log of n records with a signed checkpoint, and its
// verifier.
func newVerifiedLog(t *testing.T, n int) (*ledger.Log, *sqlstore.DB, string, *audit.LogVerifier) {
	t.Helper()
	db := openStore(t)
	skey, _ := ledger.GenerateKey("check.example/log")
	lg, err := ledger.New(db, "t", skey, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	appendRecords(t, lg, 0, n)
	return lg, db, skey, &audit.LogVerifier{Source: ledger.StoreSource{Store: db}, Key: lg.Key, Store: db}
}

func appendRecords(t *testing.T, lg *ledger.Log, from, to int) {
	t.Helper()
	ctx := context.Background()
	for i := from; i < to; i++ {
		r := ledger.Record{Kind: ledger.KindCallEnd, Time: time.Unix(int64(1_700_000_000+i), 0), RequestID: fmt.Sprintf("req_%04d", i), Status: 200, CostMicros: int64(i)}
		if _, err := lg.Append(ctx, ledger.Entry{Data: r.Marshal(), RequestID: r.RequestID}); err != nil {
			t.Fatal(err)
		}
	}
	if err := lg.SignCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestLogVerifierCatchesRewrittenAndResignedLog: a tamperer who changes a
// record, rebuilds the stored tree from the records and signs it with the
// log's own key leaves a log that verifies on its own — but not one that
// contains the tree verified before. The failure is counted for the metrics,
// and the last good verification stays as it was.
func TestLogVerifierCatchesRewrittenAndResignedLog(t *testing.T) {
	ctx := context.Background()
	_, db, skey, v := newVerifiedLog(t, 20)
	if c, err := v.Check(ctx); err != nil || !c.OK {
		t.Fatalf("an honest log: %+v %v", c, err)
	}
	lastGood, failures, err := v.Verified(ctx)
	if err != nil || lastGood.IsZero() || failures != 0 {
		t.Fatalf("after a passing check: %v %d %v", lastGood, failures, err)
	}

	mustExec(t, db, `UPDATE ledger_entries SET data = replace(data, '"cost_micros":7', '"cost_micros":8') WHERE idx = 7`)
	ledgertest.RebuildTree(t, db)
	ledgertest.Resign(t, db, skey, "check.example/log", 20)
	if rep, _, err := ledger.Verify(ctx, ledger.StoreSource{Store: db}, v.Key(), nil, nil); err != nil || rep.Size != 20 {
		t.Fatalf("the forgery should verify on its own (else this test proves nothing): %v", err)
	}
	if c, err := v.Check(ctx); err != nil || c.OK {
		t.Fatalf("a rewritten and re-signed log passed: %+v %v", c, err)
	}
	if got, failures, err := v.Verified(ctx); err != nil || !got.Equal(lastGood) || failures != 1 {
		t.Fatalf("after a failed check: %v %d %v", got, failures, err)
	}
}

// TestLogVerifierRemembersAcrossRestart: the rewrite-and-re-sign of the test
// above, made while the gateway was down, is caught by the verifier of the
// restarted process too: it starts from the tree the store says was verified
// last, not from nothing; and that tree survives a failed check.
func TestLogVerifierRemembersAcrossRestart(t *testing.T) {
	ctx := context.Background()
	_, db, skey, v := newVerifiedLog(t, 20)
	if c, err := v.Check(ctx); err != nil || !c.OK {
		t.Fatalf("an honest log: %+v %v", c, err)
	}
	mustExec(t, db, `UPDATE ledger_entries SET data = replace(data, '"cost_micros":7', '"cost_micros":8') WHERE idx = 7`)
	ledgertest.RebuildTree(t, db)
	ledgertest.Resign(t, db, skey, "check.example/log", 20)
	for i := range 2 { // a second restart: the good tree outlived the first failure
		restarted := &audit.LogVerifier{Source: v.Source, Key: v.Key, Store: v.Store, Now: v.Now}
		if c, err := restarted.Check(ctx); err != nil || c.OK || c.GoodSize != 20 {
			t.Fatalf("restart %d: a rewritten and re-signed log passed, or the good tree was lost: %+v %v", i+1, c, err)
		}
	}
}

// TestLogVerifierFollowsGrowthThenCatchesDeletion: a check after the log grew
// passes (the new tree contains the one verified before); a record deleted
// from the store then fails.
func TestLogVerifierFollowsGrowthThenCatchesDeletion(t *testing.T) {
	ctx := context.Background()
	lg, db, _, v := newVerifiedLog(t, 10)
	if c, err := v.Check(ctx); err != nil || !c.OK {
		t.Fatalf("%+v %v", c, err)
	}
	appendRecords(t, lg, 10, 25)
	if c, err := v.Check(ctx); err != nil || !c.OK || c.Size != 25 {
		t.Fatalf("after growing: %+v %v", c, err)
	}
	mustExec(t, db, `DELETE FROM ledger_entries WHERE idx = 9`)
	if c, err := v.Check(ctx); err != nil || c.OK {
		t.Fatalf("a deleted record passed: %+v %v", c, err)
	}
	if _, failures, _ := v.Verified(ctx); failures != 1 {
		t.Fatalf("failures %d", failures)
	}
}

// TestLogVerifierNeverVerified: before any check, Verified says so (zero
// time, no failures) rather than inventing a time.
func TestLogVerifierNeverVerified(t *testing.T) {
	_, _, _, v := newVerifiedLog(t, 1)
	if last, failures, err := v.Verified(context.Background()); err != nil || !last.IsZero() || failures != 0 {
		t.Fatalf("%v %d %v", last, failures, err)
	}
}

func mustExec(t *testing.T, db *sqlstore.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.SQL().Exec(q, args...); err != nil {
		t.Fatal(err)
	}
}

// TestLogVerifierConcurrentChecks: the schedule and an on-demand check
// (Server.CheckLog) may run at once; they take turns (under -race the old
// code raced on the remembered tree) and both pass.
func TestLogVerifierConcurrentChecks(t *testing.T) {
	ctx := context.Background()
	db := openStore(t)
	skey, _ := ledger.GenerateKey("check.example/log")
	lg, err := ledger.New(db, "t", skey, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	r := ledger.Record{Kind: ledger.KindAdmin, Time: time.Now(), RequestID: "r0", Action: "test"}
	if _, err := lg.Append(ctx, ledger.Entry{Data: r.Marshal(), RequestID: r.RequestID}); err != nil {
		t.Fatal(err)
	}
	if err := lg.SignCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	v := &audit.LogVerifier{Source: ledger.StoreSource{Store: db}, Key: lg.Key, Store: db}
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			c, err := v.Check(ctx)
			if err == nil && !c.OK {
				err = fmt.Errorf("check failed: %s", c.Error)
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
