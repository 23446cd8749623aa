package ledger_test

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestStats: the log reports its size, checkpoint and append latencies. (Its
// verification is the audit's: audit.LogVerifier, tested there.)
func TestStats(t *testing.T) {
	ctx := context.Background()
	l, _, _ := newLog(t)
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
	if err != nil || st.Size != 20 || st.CheckpointSize != 20 || st.CheckpointSigned.IsZero() {
		t.Fatalf("stats %+v, %v", st, err)
	}
}
