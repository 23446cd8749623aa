package ledgertest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
)

// Run runs l's sequencer until the test ends or stop is called (stop ends
// Run and waits for it to return; later calls do nothing), and returns once
// Run has taken over appends (WaitRunning).
func Run(t testing.TB, l *ledger.Log) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	WaitRunning(t, l)
	return stop
}

// WaitRunning waits until l's Run, started in a goroutine, has taken over
// appends. Until then Append and Enqueue commit each entry alone, without a
// queue, batch, linger or lag wait: a test of those that appends earlier
// tests nothing, or fails when a loaded machine starts the goroutine late.
// It fails t if Run has not started within a minute.
func WaitRunning(t testing.TB, l *ledger.Log) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !l.Running() {
		if time.Now().After(deadline) {
			t.Fatal("ledgertest: the sequencer's Run did not start within a minute")
		}
		time.Sleep(time.Millisecond)
	}
}
