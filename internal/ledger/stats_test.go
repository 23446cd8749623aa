package ledger_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
)

// TestStatsAndSelfVerify: the log reports its size, checkpoint and append
// latencies, and its self-verification passes on an honest log, follows it as
// it grows, and fails (counted) once the stored log is altered, even when the
// tamperer rebuilds the tree and re-signs it with the log's own key.
func TestStatsAndSelfVerify(t *testing.T) {
	ctx := context.Background()
	l, db, skey := newLog(t)
	var mu sync.Mutex
	appends, failed := 0, 0
	l.ObserveAppends(func(d time.Duration, err error) {
		mu.Lock()
		defer mu.Unlock()
		appends++
		if err != nil || d < 0 {
			failed++
		}
	})
	fill(t, l, 20)
	if appends != 20 || failed != 0 {
		t.Fatalf("observed %d appends, %d failed", appends, failed)
	}
	st, err := l.Stats(ctx)
	if err != nil || st.Size != 20 || st.CheckpointSize != 20 || st.CheckpointSigned.IsZero() || !st.Verified.IsZero() {
		t.Fatalf("stats %+v, %v", st, err)
	}
	if err := l.SelfVerify(ctx); err != nil {
		t.Fatalf("an honest log: %v", err)
	}
	if st, _ = l.Stats(ctx); st.Verified.IsZero() || st.VerifyFailures != 0 {
		t.Fatalf("after a passing verification: %+v", st)
	}
	verified := st.Verified

	// The tamperer changes a record, rebuilds the stored tree from the
	// records and signs it with the log's key: a consistent log, but not the
	// one verified before.
	exec(t, db.SQL(), `UPDATE ledger_entries SET data = replace(data, '"cost_micros":7', '"cost_micros":8') WHERE idx = 7`)
	rebuildHashes(t, db)
	resign(t, db, skey, 20)
	if err := l.SelfVerify(ctx); err == nil {
		t.Fatal("a rewritten and re-signed log passed self-verification")
	}
	if st, _ = l.Stats(ctx); st.VerifyFailures != 1 || !st.Verified.Equal(verified) {
		t.Fatalf("after a failed verification: %+v", st)
	}
}

// TestSelfVerifyFollowsGrowth: verification after the log grew passes (the
// new tree contains the one verified before); a deleted record then fails.
func TestSelfVerifyFollowsGrowth(t *testing.T) {
	ctx := context.Background()
	l, db, _ := newLog(t)
	fill(t, l, 10)
	if err := l.SelfVerify(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 10; i < 25; i++ {
		r := ledger.Record{Kind: ledger.KindCallEnd, Time: time.Unix(int64(1_700_000_000+i), 0), RequestID: fmt.Sprintf("req_%04d", i), Status: 200}
		if _, err := l.Append(ctx, ledger.Entry{Data: r.Marshal(), RequestID: r.RequestID}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.SignCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.SelfVerify(ctx); err != nil {
		t.Fatalf("after growing: %v", err)
	}
	exec(t, db.SQL(), `DELETE FROM ledger_entries WHERE idx = 9`)
	if err := l.SelfVerify(ctx); err == nil {
		t.Fatal("a deleted record passed self-verification")
	}
	if st, _ := l.Stats(ctx); st.VerifyFailures != 1 || st.Size != 25 {
		t.Fatalf("stats %+v", st)
	}
}
