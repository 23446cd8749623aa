package usage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
)

type batchStore struct {
	mu      sync.Mutex
	batches []int
	stored  map[string]bool
}

func (b *batchStore) InsertUsageBatch(_ context.Context, rs []Record) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range rs {
		if b.stored[r.ID] || r.ID == "bad" {
			return errors.New("duplicate")
		}
	}
	for _, r := range rs {
		b.stored[r.ID] = true
	}
	b.batches = append(b.batches, len(rs))
	return nil
}

func TestWriterGroupCommit(t *testing.T) {
	st := &batchStore{stored: map[string]bool{}}
	w := NewWriter(st, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	for !func() bool { w.mu.RLock(); defer w.mu.RUnlock(); return w.running }() {
	}

	var wg sync.WaitGroup
	errs := make(chan error, 500)
	for i := range 500 {
		wg.Go(func() {
			id := fmt.Sprint("req_", i)
			if i == 7 {
				id = "bad"
			}
			errs <- w.Record(context.Background(), Record{ID: id})
		})
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if err != nil {
			failed++
		}
	}
	if failed != 1 || len(st.stored) != 499 {
		t.Fatalf("%d failed, %d stored; want exactly the bad one to fail", failed, len(st.stored))
	}
	if len(st.batches) >= 499 {
		t.Errorf("%d transactions for 499 records: no grouping", len(st.batches))
	}
	cancel()
	<-done
	// After Run stops, Record still stores, alone.
	if err := w.Record(context.Background(), Record{ID: "late"}); err != nil || !st.stored["late"] {
		t.Fatalf("record after stop: %v", err)
	}
}

// flakyStore fails every insert while down.
type flakyStore struct {
	batchStore
	down bool
}

func (f *flakyStore) InsertUsageBatch(ctx context.Context, rs []Record) error {
	f.mu.Lock()
	down := f.down
	f.mu.Unlock()
	if down {
		return errors.New("connection refused")
	}
	return f.batchStore.InsertUsageBatch(ctx, rs)
}

// TestWriterKeepsRecordsWhileTheStoreIsAway: records that fail are kept and
// stored once the store is back; none is lost, none stored twice.
func TestWriterKeepsRecordsWhileTheStoreIsAway(t *testing.T) {
	st := &flakyStore{batchStore: batchStore{stored: map[string]bool{}}, down: true}
	w := NewWriter(st, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	for !func() bool { w.mu.RLock(); defer w.mu.RUnlock(); return w.running }() {
	}
	for i := range 20 {
		if err := w.Record(context.Background(), Record{ID: fmt.Sprint("req_", i)}); err == nil {
			t.Fatal("a record was reported stored while the store was down")
		}
	}
	if w.Pending() != 20 {
		t.Fatalf("%d records kept, want 20", w.Pending())
	}
	st.mu.Lock()
	st.down = false
	st.mu.Unlock()
	for w.Pending() > 0 {
		runtime.Gosched()
	}
	cancel()
	<-done
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.stored) != 20 {
		t.Fatalf("%d records stored, want 20", len(st.stored))
	}
}

// lines counts the log lines of h that contain s.
func lines(h *strings.Builder, s string) int { return strings.Count(h.String(), s) }

// TestWriterDropsPastMaxLoudly: a store away for longer than Max records
// costs the oldest records, and each drop is counted (Dropped: the metric
// and the audit finding read it) and logged with the counts, not silently:
// at the first drop, and once more when the store is back, naming how many
// were lost and the first and last request id. The kept ones are stored.
// Before the fix only a log line per drop named the record, with no count
// for a metric or an audit to read.
func TestWriterDropsPastMaxLoudly(t *testing.T) {
	st := &flakyStore{batchStore: batchStore{stored: map[string]bool{}}, down: true}
	var logs strings.Builder
	var mu sync.Mutex
	w := NewWriter(st, slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil)))
	w.Max = 10
	ctx := context.Background()
	for i := range 15 { // not running: each is written alone, fails, is kept
		if err := w.Record(ctx, Record{ID: fmt.Sprint("req_", i)}); err == nil {
			t.Fatal("a record was reported stored while the store was down")
		}
	}
	if w.Pending() != 10 || w.Dropped() != 5 {
		t.Fatalf("%d kept, %d dropped; want 10 and 5", w.Pending(), w.Dropped())
	}
	mu.Lock()
	if n := lines(&logs, "dropping the oldest"); n != 1 {
		t.Errorf("%d drop lines for one outage's first 5 drops; want 1 (then every 1000th)\n%s", n, logs.String())
	}
	mu.Unlock()
	st.mu.Lock()
	st.down = false
	st.mu.Unlock()
	if n := w.retryFailed(ctx); n != 0 {
		t.Fatalf("%d still kept after the store came back", n)
	}
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	if !strings.Contains(out, "records were dropped while it was away") || !strings.Contains(out, "dropped=5") ||
		!strings.Contains(out, "first_dropped_request_id=req_0") || !strings.Contains(out, "last_dropped_request_id=req_4") {
		t.Errorf("no summary of the outage's drops when the store came back:\n%s", out)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for i := 5; i < 15; i++ {
		if !st.stored[fmt.Sprint("req_", i)] {
			t.Errorf("kept record req_%d not stored", i)
		}
	}
	if w.Dropped() != 5 {
		t.Errorf("Dropped %d after the outage; want 5 (a running total)", w.Dropped())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
