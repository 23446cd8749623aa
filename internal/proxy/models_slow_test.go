package proxy

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/ledger/ledgertest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
)

// slowStore is a log store whose every commit takes delay (it honours its
// context: a commit past its deadline fails).
type slowStore struct {
	ledger.Store
	delay time.Duration
}

func (s *slowStore) LedgerAppend(ctx context.Context, instance string, entries []ledger.Entry, hashes func(int64, []ledger.Entry, tlog.HashReader) ([][]tlog.Hash, error)) ([]int64, error) {
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.Store.LedgerAppend(ctx, instance, entries, hashes)
}

// TestModelsRecordSaysWhatTheCallerGotOnASlowStore: a models call that waits
// in the queue behind a slow commit gives up at CommitTimeout, while its own
// commit (which started later, with its own CommitTimeout) still succeeds.
// The caller must be answered as its record says: it was answered 503 while
// the log recorded 200 allow.
func TestModelsRecordSaysWhatTheCallerGotOnASlowStore(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "gh.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	skey, _ := ledger.GenerateKey("test/log")
	l, err := ledger.New(&slowStore{Store: db, delay: 300 * time.Millisecond}, "gw.1", skey, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	l.CommitTimeout, l.LagWait, l.Linger = 400*time.Millisecond, 0, 0
	stop := ledgertest.Run(t, l)
	h := modelsHandler(t, l, oneCaller{}, &memUsage{})
	var mu sync.Mutex
	got := map[string]int{}
	call := func() {
		req := httptest.NewRequest("GET", "/v1/models", nil)
		req.Header.Set("Authorization", "Bearer gk_test")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		mu.Lock()
		got[w.Header().Get("X-Request-Id")] = w.Code
		mu.Unlock()
	}
	// The first call's commit takes 300 ms; the second, queued 200 ms
	// later, waits 100 ms for it, then its own commit takes 300 ms: done at
	// 600 ms, 100 ms inside its commit's deadline but 200 ms past its
	// caller's (400 ms after it was queued).
	var wg sync.WaitGroup
	wg.Go(call)
	time.Sleep(200 * time.Millisecond)
	wg.Go(call)
	wg.Wait()
	stop()
	recs := logEntries(t, db)
	for _, b := range recs {
		r, err := ledger.ParseRecord(b)
		if err != nil {
			t.Fatal(err)
		}
		if want, ok := got[r.RequestID]; ok && r.Status != want {
			t.Errorf("request %s: the caller got %d, its record says %d (%s %s)", r.RequestID, want, r.Status, r.Decision, r.ErrorCode)
		}
	}
}
