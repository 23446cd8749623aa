package usage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
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
