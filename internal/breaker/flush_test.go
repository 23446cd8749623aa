package breaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// memShared is a Shared in memory (no batch method: the flusher's per-key
// path, as for Redis); fail makes every call fail.
type memShared struct {
	mu    sync.Mutex
	spent map[string]map[int64]int64
	calls int
	fail  bool
	// failAfter, when > 0: calls after this many fail (a flush that breaks
	// half way).
	failAfter int
}

func (m *memShared) AddBreakerSpend(_ context.Context, keyID string, bucket, cost int64, n int) ([]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.fail || m.failAfter > 0 && m.calls > m.failAfter {
		return nil, errors.New("connection refused")
	}
	if m.spent == nil {
		m.spent = map[string]map[int64]int64{}
	}
	if m.spent[keyID] == nil {
		m.spent[keyID] = map[int64]int64{}
	}
	m.spent[keyID][bucket] += cost
	out := make([]int64, n)
	for i := range n {
		out[i] = m.spent[keyID][bucket-int64(n)+1+int64(i)]
	}
	return out, nil
}

func (m *memShared) ResetBreakerSpend(_ context.Context, keyID string, _ int64, _ int) error {
	m.mu.Lock()
	delete(m.spent, keyID)
	m.mu.Unlock()
	return nil
}

func (m *memShared) total(keyID string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var sum int64
	for _, v := range m.spent[keyID] {
		sum += v
	}
	return sum
}

// logCount counts log records by message.
type logCount struct {
	mu  sync.Mutex
	msg map[string]int
}

func (l *logCount) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCount) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.msg[r.Message]++
	l.mu.Unlock()
	return nil
}
func (l *logCount) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCount) WithGroup(string) slog.Handler      { return l }

// countLogs has b log to a logCount, which it returns.
func countLogs(b *Breaker) *logCount {
	l := &logCount{msg: map[string]int{}}
	b.log = slog.New(l)
	return l
}

func (l *logCount) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for m, c := range l.msg {
		if strings.Contains(m, sub) {
			n += c
		}
	}
	return n
}

// TestObserveDoesNotWaitForTheSharedWindow: a call's cost reaches the
// shared window only through a flush, and a replica's own spend still trips
// at once, on the call that passes the ceiling.
func TestObserveDoesNotWaitForTheSharedWindow(t *testing.T) {
	b, r, _ := setup(Config{Enabled: true, Window: 5 * time.Minute, CeilingMicros: 1000})
	m := &memShared{}
	b.Shared = m
	ctx := context.Background()
	for range 10 {
		if b.Observe(ctx, "k", 100) {
			t.Fatal("tripped at the ceiling, not over it")
		}
	}
	if m.calls != 0 {
		t.Fatalf("Observe called the shared window %d times; want none", m.calls)
	}
	b.Flush(ctx)
	if m.total("k") != 1000 || m.calls != 1 {
		t.Fatalf("flushed %d in %d calls; want 1000 in one", m.total("k"), m.calls)
	}
	if !b.Observe(ctx, "k", 1) || r.suspended["k"] == "" {
		t.Fatal("this replica's own spend over the ceiling did not trip at once")
	}
	if m.calls != 1 {
		t.Fatal("the trip called the shared window")
	}
	// The suspended key's spend is not sent (its record holds it; see
	// TestReinstatedKeyNotTrippedByItsOldSpend): nothing to flush.
	b.Flush(ctx)
	if m.calls != 1 {
		t.Fatal("an empty flush called the shared window")
	}
}

// TestTripLagsByOneFlush: two replicas' spend passes the ceiling only
// together; the trip comes on the first flush after the sum passed it (so
// it lags the call by at most FlushInterval plus one flush), also when the
// call and the flush fall in different buckets.
func TestTripLagsByOneFlush(t *testing.T) {
	m := &memShared{}
	cfg := Config{Enabled: true, Window: 5 * time.Minute, CeilingMicros: 1000}
	a, ra, now := setup(cfg)
	b, _, _ := setup(cfg)
	b.SetClock(func() time.Time { return *now }) // one clock for both
	b.suspend, b.alerts = a.suspend, ra
	a.Shared, b.Shared = m, m
	var flushTrips []string // what the server counts in gatehouse_breaker_trips_total
	a.OnFlushTrip = func(id string) { flushTrips = append(flushTrips, "a:"+id) }
	b.OnFlushTrip = func(id string) { flushTrips = append(flushTrips, "b:"+id) }
	ctx := context.Background()
	// Just before a bucket boundary (buckets are 30 s).
	*now = now.Truncate(30 * time.Second).Add(29 * time.Second)
	if a.Observe(ctx, "k", 600) {
		t.Fatal("replica a tripped on its own 600")
	}
	a.Flush(ctx)
	if b.Observe(ctx, "k", 600) {
		t.Fatal("replica b tripped on its own 600 before any flush told it of a's")
	}
	if ra.suspended["k"] != "" {
		t.Fatal("suspended before the flush that carries the sum over the ceiling")
	}
	*now = now.Add(2 * time.Second) // the flush comes in the next bucket
	b.Flush(ctx)
	if ra.suspended["k"] == "" {
		t.Fatal("the first flush after the shared sum passed the ceiling did not trip")
	}
	if len(ra.alerts) != 1 {
		t.Fatalf("%d alerts; want one", len(ra.alerts))
	}
	if !slices.Equal(flushTrips, []string{"b:k"}) {
		t.Fatalf("trips reported by flushes: %v; want b's one", flushTrips)
	}
	// a learns the sum on its next flush too (its view is refreshed), without
	// alerting again: the key is suspended already.
	a.Observe(ctx, "k", 1)
	a.Flush(ctx)
	if len(ra.alerts) != 1 || len(flushTrips) != 1 {
		t.Fatalf("%d alerts, trips reported %v after a's flush; want one each", len(ra.alerts), flushTrips)
	}
}

// TestFlushFailure: while the shared window is down each key is judged on
// this replica's view, the failure is logged once (not per call or per
// flush), and the spend is sent when it is back.
func TestFlushFailure(t *testing.T) {
	b, r, now := setup(Config{Enabled: true, Window: 5 * time.Minute, CeilingMicros: 1000})
	logs := countLogs(b)
	m := &memShared{fail: true}
	b.Shared = m
	ctx := context.Background()
	for range 9 {
		b.Observe(ctx, "k", 100)
		b.Observe(ctx, "i", 50)
		b.Flush(ctx)
		*now = now.Add(time.Second)
	}
	if n := logs.count("unavailable"); n != 1 {
		t.Fatalf("the failure was logged %d times; want once", n)
	}
	if r.suspended["k"] != "" {
		t.Fatal("tripped under the ceiling")
	}
	if !b.Observe(ctx, "k", 101) {
		t.Fatal("this replica's own spend over the ceiling did not trip while the shared window was down")
	}
	m.mu.Lock()
	m.fail = false
	m.mu.Unlock()
	b.Flush(ctx)
	if got := m.total("i"); got != 450 {
		t.Fatalf("the shared window got %d after it came back; want the 450 spent meanwhile", got)
	}
	if got := m.total("k"); got != 0 {
		t.Fatalf("the shared window got %d of a key suspended meanwhile; its record holds that spend", got)
	}
	if logs.count("back") != 1 {
		t.Fatal("the recovery was not logged")
	}
	// Down again: logged once more.
	m.mu.Lock()
	m.fail = true
	m.mu.Unlock()
	b.Observe(ctx, "j", 1)
	b.Flush(ctx)
	b.Observe(ctx, "j", 1)
	b.Flush(ctx)
	if n := logs.count("unavailable"); n != 2 {
		t.Fatalf("logged %d times over two outages; want 2", n)
	}
	// Spend that left the window while the shared window was down is dropped.
	*now = now.Add(10 * time.Minute)
	b.Flush(ctx)
	b.mu.Lock()
	left := len(b.pending["j"])
	b.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d buckets older than the window still wait to be sent", left)
	}
}

// TestRunFlushesOnStop: the spend of the last interval is sent when Run
// stops (a clean shutdown loses none of it).
func TestRunFlushesOnStop(t *testing.T) {
	b, _, _ := setup(Config{Enabled: true, Window: 5 * time.Minute, CeilingMicros: 1000, FlushInterval: time.Hour})
	m := &memShared{}
	b.Shared = m
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.Run(ctx, time.Hour); close(done) }()
	b.Observe(context.Background(), "k", 250)
	cancel()
	<-done
	if got := m.total("k"); got != 250 {
		t.Fatalf("the shared window has %d after Run stopped; want 250", got)
	}
}

// TestKeylessCaller: a caller with no key to suspend (workload identity,
// client certificate) that passes the ceiling alerts and logs once, not on
// every later call, and alerts again only after its window calmed down.
func TestKeylessCaller(t *testing.T) {
	b, r, now := setup(Config{Enabled: true, Window: 5 * time.Minute, CeilingMicros: 1000})
	logs := countLogs(b)
	tries := 0
	b.suspend = func(_ context.Context, _ string, sp Suspension) (bool, Suspension, error) {
		tries++
		return false, sp, ErrNoKey
	}
	ctx := context.Background()
	for range 50 {
		if b.Observe(ctx, "wif:ci", 100) {
			t.Fatal("reported a suspension it could not make")
		}
	}
	if tries != 1 || len(r.alerts) != 1 || logs.count("no key") != 1 {
		t.Fatalf("tried %d suspensions, %d alerts, %d logs; want one of each", tries, len(r.alerts), logs.count("no key"))
	}
	if logs.count("failed") != 0 {
		t.Fatal("logged a failure for a caller that has no key")
	}
	b.retry(ctx)
	if tries != 1 {
		t.Fatal("Run retried a suspension of a caller that has no key")
	}
	// A calm window later, a new burst alerts once more.
	*now = now.Add(10 * time.Minute)
	b.Observe(ctx, "wif:ci", 1)
	for range 20 {
		b.Observe(ctx, "wif:ci", 100)
	}
	if tries != 2 || len(r.alerts) != 2 {
		t.Fatalf("after a calm window: %d tries, %d alerts; want 2 and 2", tries, len(r.alerts))
	}
}

// TestFlushFailsHalfWay: a flush that breaks after some keys were added (a
// Shared without batches, like Redis) sends only the rest again: no key's
// spend is counted twice.
func TestFlushFailsHalfWay(t *testing.T) {
	b, _, _ := setup(Config{Enabled: true, Window: 5 * time.Minute, CeilingMicros: 1_000_000})
	m := &memShared{failAfter: 2}
	b.Shared = m
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c", "d"} {
		b.Observe(ctx, id, 100)
	}
	b.Flush(ctx) // a and b go, c fails
	m.mu.Lock()
	m.failAfter = 0
	m.mu.Unlock()
	b.Flush(ctx)
	for _, id := range []string{"a", "b", "c", "d"} {
		if got := m.total(id); got != 100 {
			t.Errorf("key %s: the shared window has %d, want 100", id, got)
		}
	}
}

// TestReinstatedKeyNotTrippedByItsOldSpend: a key trips on replica a before
// a flushed its spend; an admin reinstates it on replica b, which empties the
// shared window; a's next flush must not carry the spend from before the
// trip into the emptied window and suspend the key again (e2e:
// TestReinstatedOnAnotherReplicaTripsAgain failed so).
func TestReinstatedKeyNotTrippedByItsOldSpend(t *testing.T) {
	m := &memShared{}
	cfg := Config{Enabled: true, Window: 5 * time.Minute, CeilingMicros: 1000}
	a, ra, now := setup(cfg)
	b, _, _ := setup(cfg)
	b.SetClock(func() time.Time { return *now })
	a.Shared, b.Shared = m, m
	ctx := context.Background()
	for range 10 {
		a.Observe(ctx, "k", 100)
	}
	if !a.Observe(ctx, "k", 100) || ra.suspended["k"] == "" {
		t.Fatal("did not trip over the ceiling")
	}
	a.Observe(ctx, "k", 100) // a call in flight when it tripped ends
	b.Reset("k")             // reinstated through b
	delete(ra.suspended, "k")
	a.Flush(ctx)
	a.Rearm("k") // the change reaches a after its flush
	if got := m.total("k"); got != 0 {
		t.Fatalf("the emptied shared window got %d of the spend from before the reinstatement", got)
	}
	if ra.suspended["k"] != "" {
		t.Fatal("the reinstated key was suspended again by its old spend")
	}
	// It still trips on new spend, here and through the shared window.
	for range 10 {
		a.Observe(ctx, "k", 100)
	}
	a.Flush(ctx)
	if m.total("k") != 1000 {
		t.Fatalf("shared window %d after 1000 of new spend", m.total("k"))
	}
	if !a.Observe(ctx, "k", 100) {
		t.Fatal("the reinstated key did not trip again over the ceiling")
	}
}

// stallShared is a memShared whose AddBreakerSpend, once armed, reads the
// sums and then waits for release before answering: a flush in flight.
type stallShared struct {
	*memShared
	read, release chan struct{}
}

func (s *stallShared) AddBreakerSpend(ctx context.Context, keyID string, bucket, cost int64, n int) ([]int64, error) {
	got, err := s.memShared.AddBreakerSpend(ctx, keyID, bucket, cost, n)
	if s.read != nil {
		close(s.read)
		<-s.release
	}
	return got, err
}

// TestRearmDuringFlushKeepsStaleSumsOut: a key another replica suspended is
// reinstated (its shared window emptied, this replica rearmed by the
// change notification) while this replica's flush is in flight with the
// sums read before the reinstatement. Those sums must not suspend the key
// again: the flush's answer for a key rearmed meanwhile is dropped.
func TestRearmDuringFlushKeepsStaleSumsOut(t *testing.T) {
	b, r, _ := setup(Config{Enabled: true, Window: 5 * time.Minute, CeilingMicros: 1000})
	m := &memShared{}
	s := &stallShared{memShared: m}
	b.Shared = s
	ctx := context.Background()
	// Another replica's 900 is in the shared window, and it suspended the key.
	m.AddBreakerSpend(ctx, "k", bucketOf(b.now(), 30*time.Second), 900, buckets)
	r.suspended["k"] = "another replica's trip"
	// This replica's own 200 (a call that ended after the trip) is pending.
	if b.Observe(ctx, "k", 200) {
		t.Fatal("tripped on this replica's own 200")
	}
	s.read, s.release = make(chan struct{}), make(chan struct{})
	done := make(chan struct{})
	go func() { b.Flush(ctx); close(done) }()
	<-s.read // the flush holds 1100, read before the reinstatement
	// The admin reinstates the key elsewhere: the store, the shared window,
	// then this replica's notification.
	delete(r.suspended, "k")
	m.ResetBreakerSpend(ctx, "k", 0, buckets)
	b.Rearm("k")
	close(s.release)
	<-done
	if reason := r.suspended["k"]; reason != "" {
		t.Fatalf("the reinstated key was suspended again by a flush carrying the sums from before its reinstatement: %s", reason)
	}
	// The next flush judges afresh.
	b.Observe(ctx, "k", 1)
	s.read = nil
	b.Flush(ctx)
	if r.suspended["k"] != "" {
		t.Fatal("suspended after the reinstatement on 1 micro")
	}
}

// TestPendingBoundedDuringOutage: while the shared window is down, the
// spend waiting for it is held for at most MaxPendingKeys keys, however many
// keys spend and however many flushes fail; the overflow is logged once; a
// key past the bound is still judged (and tripped) on this replica's own
// spend; when the window is back, the held keys' spend reaches it exactly.
func TestPendingBoundedDuringOutage(t *testing.T) {
	b, r, now := setup(Config{Enabled: true, Window: 5 * time.Minute, CeilingMicros: 1000})
	logs := countLogs(b)
	m := &memShared{fail: true}
	b.Shared = m
	ctx := context.Background()
	keys := MaxPendingKeys + 2_000
	for round := range 3 {
		for i := range keys {
			b.Observe(ctx, fmt.Sprintf("key_%06d", i), 10)
		}
		b.Flush(ctx) // fails: the spend is held again
		*now = now.Add(40 * time.Second)
		b.mu.Lock()
		n := len(b.pending)
		b.mu.Unlock()
		if n > MaxPendingKeys {
			t.Fatalf("round %d: spend of %d keys held for the shared window; want at most %d", round, n, MaxPendingKeys)
		}
	}
	if n := logs.count("too many keys"); n != 1 {
		t.Fatalf("the bound was logged %d times; want once", n)
	}
	// A key past the bound is judged on this replica's view.
	last := fmt.Sprintf("key_%06d", keys-1)
	if !b.Observe(ctx, last, 1000) || r.suspended[last] == "" {
		t.Fatal("a key past the bound did not trip on this replica's own spend")
	}
	m.mu.Lock()
	m.fail = false
	m.mu.Unlock()
	b.Flush(ctx)
	if got := m.total("key_000000"); got != 30 {
		t.Fatalf("a held key's shared window got %d; want the 30 spent during the outage", got)
	}
	m.mu.Lock()
	shared := len(m.spent)
	m.mu.Unlock()
	if shared > MaxPendingKeys {
		t.Fatalf("%d keys reached the shared window; at most %d were held", shared, MaxPendingKeys)
	}
	// The next outage (known once a flush fails) logs the bound again.
	m.mu.Lock()
	m.fail = true
	m.mu.Unlock()
	for i := range keys {
		b.Observe(ctx, fmt.Sprintf("key_%06d", i), 1)
	}
	b.Flush(ctx)
	if n := logs.count("too many keys"); n != 2 {
		t.Fatalf("the bound was logged %d times over two outages; want 2", n)
	}
}

// TestPendingNotBoundedWhileSharedIsUp: the bound on held spend is for an
// outage (spend held flush after flush). While the shared window answers,
// every key's spend of the interval reaches it, however many keys spent
// before it: many keys (an attacker's own, say) spending once each must not
// push another key's spend out of the shared window, so that a key spending
// on several replicas is still judged on the sum. Nothing is logged.
func TestPendingNotBoundedWhileSharedIsUp(t *testing.T) {
	b, r, now := setup(Config{Enabled: true, Window: 5 * time.Minute, CeilingMicros: 1000})
	logs := countLogs(b)
	b.maxPending = 3
	m := &memShared{}
	b.Shared = m
	ctx := context.Background()
	// Another replica's 600 for the victim, already in the shared window.
	if _, err := m.AddBreakerSpend(ctx, "victim", bucketOf(*now, b.cfg.Window/buckets), 600, buckets); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		b.Observe(ctx, fmt.Sprintf("flood_%d", i), 1)
	}
	if b.Observe(ctx, "victim", 600) {
		t.Fatal("tripped on this replica's 600 alone")
	}
	b.Flush(ctx)
	if got := m.total("victim"); got != 1200 {
		t.Fatalf("the victim's shared window holds %d after a flood of keys while the window was up; want 1200", got)
	}
	if r.suspended["victim"] == "" {
		t.Fatal("the victim's 1200 over two replicas did not trip it")
	}
	if n := logs.count("too many keys"); n != 0 {
		t.Fatalf("the bound was logged %d times with the shared window up", n)
	}
}
