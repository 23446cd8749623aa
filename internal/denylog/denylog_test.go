package denylog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
)

type memLog struct {
	mu   sync.Mutex
	recs []ledger.Record
	fail int // fail this many appends first
}

func (m *memLog) Append(_ context.Context, e ledger.Entry) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail > 0 {
		m.fail--
		return 0, errors.New("ledger down")
	}
	r, err := ledger.ParseRecord(e.Data)
	if err != nil {
		return 0, err
	}
	if e.RequestID != r.RequestID {
		return 0, errors.New("entry request id differs from the record's")
	}
	m.recs = append(m.recs, r)
	return int64(len(m.recs)), nil
}

func (m *memLog) records() []ledger.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]ledger.Record(nil), m.recs...)
}

// sum adds up the counts of the records of one key ("" for unmatched).
func sum(recs []ledger.Record, keyID string) (n int64, records int) {
	for _, r := range recs {
		if r.KeyID == keyID {
			n += r.Count
			records++
		}
	}
	return n, records
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTest(o Options) (*Recorder, *memLog, *clock) {
	m := &memLog{}
	c := &clock{t: time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)}
	r := New(m, slog.New(slog.NewTextHandler(io.Discard, nil)), o)
	r.now = c.now
	return r, m, c
}

func revoked(i int) Event {
	return Event{RequestID: "req_" + string(rune('a'+i%26)), KeyID: "key_1", PrincipalID: "p_1", Reason: "key_revoked", Status: 401,
		Endpoint: "chat", SourceIP: "203.0.113.9", UserAgent: "curl/8"}
}

// TestFloodOneRecordPerSecond: 1,000 refusals within one interval are one
// record at once and one flush record, whose counts add up to 1,000.
func TestFloodOneRecordPerSecond(t *testing.T) {
	r, m, c := newTest(Options{})
	ctx := context.Background()
	for i := range 1000 {
		r.Observe(ctx, revoked(i))
		c.add(500 * time.Microsecond) // 1,000 calls in half a second
	}
	if recs := m.records(); len(recs) != 1 || recs[0].Count != 1 || recs[0].Kind != Kind || recs[0].ErrorCode != "key_revoked" ||
		recs[0].SourceIP != "203.0.113.9" || recs[0].UserAgent != "curl/8" || recs[0].Decision != "deny" {
		t.Fatalf("after the flood, before a flush: %+v", recs)
	}
	r.flush(ctx, false) // not due yet: the interval has not passed
	if n := len(m.records()); n != 1 {
		t.Fatalf("a flush within the interval wrote %d records", n)
	}
	c.add(time.Second)
	r.flush(ctx, false)
	n, records := sum(m.records(), "key_1")
	if n != 1000 || records != 2 {
		t.Fatalf("%d records counting %d calls, want 2 counting 1000", records, n)
	}
}

// TestSuppressedCountCarriedByNextRecord: without a flush, the next record
// of the key carries the calls suppressed before it.
func TestSuppressedCountCarriedByNextRecord(t *testing.T) {
	r, m, c := newTest(Options{})
	ctx := context.Background()
	r.Observe(ctx, revoked(0))
	for i := range 9 {
		c.add(50 * time.Millisecond)
		r.Observe(ctx, revoked(i+1))
	}
	c.add(600 * time.Millisecond)
	r.Observe(ctx, revoked(10))
	recs := m.records()
	if len(recs) != 2 || recs[0].Count != 1 || recs[1].Count != 10 {
		t.Fatalf("records %+v: want counts 1 and 10", recs)
	}
	// Over a long flood at a steady rate: at most one record per interval.
	for range 100 {
		c.add(100 * time.Millisecond)
		r.Observe(ctx, revoked(0))
	}
	c.add(time.Second)
	r.Flush(ctx)
	n, records := sum(m.records(), "key_1")
	if n != 111 || records > 2+11 {
		t.Fatalf("%d records counting %d calls over ~11s, want at most 13 counting 111", records, n)
	}
}

// TestUnmatchedAggregated: credentials that match no key share one bucket per
// reason, however many different ones an attacker makes up.
func TestUnmatchedAggregated(t *testing.T) {
	r, m, c := newTest(Options{})
	ctx := context.Background()
	for i := range 5000 {
		r.Observe(ctx, Event{RequestID: "r", Reason: "invalid_api_key", Status: 401, SourceIP: "198.51.100." + string(rune('0'+i%10))})
	}
	if len(r.windows) != 1 {
		t.Fatalf("%d windows for unmatched credentials", len(r.windows))
	}
	c.add(time.Second)
	r.Flush(ctx)
	n, records := sum(m.records(), "")
	if n != 5000 || records != 2 {
		t.Fatalf("%d records counting %d, want 2 counting 5000", records, n)
	}
}

// TestKeyWindowsBounded: keys beyond MaxKeys share the overflow bucket and
// their calls are still counted.
func TestKeyWindowsBounded(t *testing.T) {
	r, m, c := newTest(Options{MaxKeys: 3})
	ctx := context.Background()
	for i := range 100 {
		e := revoked(i)
		e.KeyID = "key_" + string(rune('a'+i%20))
		r.Observe(ctx, e)
	}
	if len(r.windows) > 4 {
		t.Fatalf("%d windows with MaxKeys 3", len(r.windows))
	}
	c.add(time.Second)
	r.Flush(ctx)
	var total int64
	for _, rec := range m.records() {
		total += rec.Count
	}
	if total != 100 {
		t.Fatalf("counted %d of 100 calls", total)
	}
	// Idle windows are forgotten.
	c.add(3 * time.Second)
	r.flush(ctx, false)
	if len(r.windows) != 0 {
		t.Fatalf("%d idle windows kept", len(r.windows))
	}
}

// TestCountSurvivesLedgerFailure: a record that cannot be written gives its
// count back; a later record carries it.
func TestCountSurvivesLedgerFailure(t *testing.T) {
	r, m, c := newTest(Options{})
	ctx := context.Background()
	m.fail = 2
	r.Observe(ctx, revoked(0)) // fails
	for range 4 {
		r.Observe(ctx, revoked(1))
	}
	c.add(time.Second)
	r.flush(ctx, false) // fails
	c.add(time.Second)
	r.flush(ctx, false)
	n, records := sum(m.records(), "key_1")
	if n != 5 || records != 1 {
		t.Fatalf("%d records counting %d, want 1 counting 5", records, n)
	}
}

// TestConcurrentFlood: concurrent refusals on a real clock; every one counted.
func TestConcurrentFlood(t *testing.T) {
	m := &memLog{}
	r := New(m, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{Interval: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := range 250 {
				e := revoked(i)
				e.KeyID = []string{"key_1", "key_2"}[w%2]
				r.Observe(ctx, e)
			}
		})
	}
	wg.Wait()
	cancel()
	<-done
	r.Flush(context.Background())
	a, _ := sum(m.records(), "key_1")
	b, _ := sum(m.records(), "key_2")
	if a != 2000 || b != 2000 {
		t.Fatalf("counted %d and %d, want 2000 each", a, b)
	}
}

// TestHostileFieldsVerify: any user agent gives a record in canonical form,
// valid UTF-8, at most 256 bytes, cut on a rune boundary.
func TestHostileFieldsVerify(t *testing.T) {
	for _, ua := range []string{"\xff\xfe bad", strings.Repeat("é", 200), strings.Repeat("a", 255) + "€", "\u2028<script>\x00"} {
		r, m, _ := newTest(Options{})
		e := revoked(0)
		e.UserAgent = ua
		r.Observe(context.Background(), e)
		recs := m.records() // memLog parses every record: canonical or refused
		if len(recs) != 1 || !utf8.ValidString(recs[0].UserAgent) || len(recs[0].UserAgent) > 256 {
			t.Fatalf("user agent %q: %+v", ua, recs)
		}
	}
}

func FuzzObserve(f *testing.F) {
	f.Add("curl/8", "key_revoked", "chat", "k1")
	f.Fuzz(func(t *testing.T, ua, reason, endpoint, key string) {
		r, m, _ := newTest(Options{})
		r.Observe(context.Background(), Event{KeyID: key, Reason: reason, Endpoint: endpoint, UserAgent: ua, RequestID: "req_x", Status: 401})
		if len(m.records()) != 1 {
			t.Fatalf("record not written (not canonical?) for %q %q %q %q", ua, reason, endpoint, key)
		}
	})
}

// BenchmarkObserveFlood: the cost of a refused call to the trace during a
// flood (almost every call only counted), in parallel on one key.
func BenchmarkObserveFlood(b *testing.B) {
	m := &memLog{}
	r := New(m, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{})
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.Observe(ctx, revoked(0))
		}
	})
	b.ReportMetric(float64(len(m.records())), "records")
}

// badKey is the refusal of the i-th of many distinct keys: revoked, expired or
// suspended by turns, from ever-changing addresses.
func badKey(i int) (Event, string) {
	reasons := []string{"key_revoked", "key_expired", "key_suspended"}
	reason := reasons[i%3]
	return Event{RequestID: fmt.Sprintf("req_%d", i), KeyID: fmt.Sprintf("key_%05d", i), PrincipalID: "p_1", Reason: reason, Status: 401,
		Endpoint: "chat", SourceIP: fmt.Sprintf("198.51.%d.%d", i/250%250, i%250+1), UserAgent: "flood/1"}, reason
}

// byReason adds up the calls the records stand for, by refusal reason: a
// record's own reason, or for an aggregated record the counts in its detail
// (which must add up to its count).
func byReason(t *testing.T, recs []ledger.Record) (map[string]int64, int64) {
	t.Helper()
	out, total := map[string]int64{}, int64(0)
	for _, r := range recs {
		total += r.Count
		if r.ErrorCode != SuppressedReason {
			out[r.ErrorCode] += r.Count
			continue
		}
		head, tail, ok := strings.Cut(r.Detail, " more denied credentials suppressed:")
		if n, err := strconv.ParseInt(head, 10, 64); !ok || err != nil || n != r.Count || r.KeyID != "" {
			t.Fatalf("aggregated record: %+v", r)
		}
		var sum int64
		for _, kv := range strings.Fields(tail) {
			k, v, _ := strings.Cut(kv, "=")
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("aggregated detail %q: %v", r.Detail, err)
			}
			out[k] += n
			sum += n
		}
		if sum != r.Count {
			t.Fatalf("aggregated record: reasons add up to %d, count %d", sum, r.Count)
		}
	}
	return out, total
}

// TestFloodOfDistinctBadKeysIsCapped: 10,000 distinct refused keys in one
// second (each its own bucket) write at most MaxRecords records plus one
// aggregated record, and the counts, by reason, add up to the calls sent.
func TestFloodOfDistinctBadKeysIsCapped(t *testing.T) {
	r, m, _ := newTest(Options{})
	ctx := context.Background()
	sent := map[string]int64{}
	for i := range 10_000 {
		e, reason := badKey(i)
		r.Observe(ctx, e)
		sent[reason]++
	}
	if n := len(m.records()); n != 100 {
		t.Fatalf("%d records written during the flood, want the cap of 100", n)
	}
	r.Flush(ctx)
	recs := m.records()
	if len(recs) != 101 {
		t.Fatalf("%d records after the flush, want 100 + 1 aggregated", len(recs))
	}
	got, total := byReason(t, recs)
	if total != 10_000 || !maps.Equal(got, sent) {
		t.Fatalf("counts: %d %v, want 10000 %v", total, got, sent)
	}
	agg := recs[len(recs)-1]
	if agg.ErrorCode != SuppressedReason || agg.Count != 9_900 || agg.Detail != "9900 more denied credentials suppressed: key_expired=3300 key_revoked=3300 key_suspended=3300" {
		t.Fatalf("aggregated record: %+v", agg)
	}
}

// TestSustainedFloodOfDistinctKeysStaysUnderTheCapEverySecond: the same
// 10,000 keys refused again every second for ten seconds, with Run's flush
// each second: no second has more than MaxRecords + 1 records, and the counts
// add up at the end.
func TestSustainedFloodOfDistinctKeysStaysUnderTheCapEverySecond(t *testing.T) {
	r, m, c := newTest(Options{MaxRecords: 50})
	ctx := context.Background()
	sent := map[string]int64{}
	prev := 0
	for range 10 {
		for i := range 10_000 {
			e, reason := badKey(i)
			r.Observe(ctx, e)
			sent[reason]++
		}
		c.add(time.Second)
		r.flush(ctx, false)
		n := len(m.records())
		if n-prev > 2*(50+1) { // this second's Observe writes and its flush (each under the cap) + the aggregate
			t.Fatalf("%d records in one second", n-prev)
		}
		prev = n
	}
	r.Flush(ctx)
	recs := m.records()
	if len(recs) > 10*(2*50+1)+51 {
		t.Fatalf("%d records in ten seconds", len(recs))
	}
	got, total := byReason(t, recs)
	if total != 100_000 || !maps.Equal(got, sent) {
		t.Fatalf("counts: %d %v, want 100000 %v", total, got, sent)
	}
}

// TestLoneKeyAfterAFloodLeavesItsOwnTrace: once the flood's second has
// passed, a single revoked key's refusal is written at once with its key id.
func TestLoneKeyAfterAFloodLeavesItsOwnTrace(t *testing.T) {
	r, m, c := newTest(Options{})
	ctx := context.Background()
	for i := range 5_000 {
		e, _ := badKey(i)
		r.Observe(ctx, e)
	}
	c.add(time.Second)
	before := len(m.records())
	lone := revoked(0)
	lone.KeyID = "key_lone"
	r.Observe(ctx, lone)
	recs := m.records()
	if len(recs) != before+1 || recs[len(recs)-1].KeyID != "key_lone" || recs[len(recs)-1].Count != 1 {
		t.Fatalf("the lone key's refusal: %d→%d records, last %+v", before, len(recs), recs[len(recs)-1])
	}
}

// TestConcurrentFloodOfDistinctKeysCountsAddUp: eight goroutines refusing
// distinct keys at once, within one second: the cap holds and no call is lost
// or counted twice.
func TestConcurrentFloodOfDistinctKeysCountsAddUp(t *testing.T) {
	r, m, _ := newTest(Options{})
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1_250 {
				e, _ := badKey(g*1_250 + i)
				r.Observe(ctx, e)
			}
		})
	}
	wg.Wait()
	r.Flush(ctx)
	recs := m.records()
	if len(recs) != 101 {
		t.Fatalf("%d records, want 101", len(recs))
	}
	if _, total := byReason(t, recs); total != 10_000 {
		t.Fatalf("counts add up to %d, want 10000", total)
	}
}

// TestAggregatedCountSurvivesLedgerFailure: an aggregated record that cannot
// be written keeps its counts for the next one.
func TestAggregatedCountSurvivesLedgerFailure(t *testing.T) {
	r, m, c := newTest(Options{MaxRecords: 1})
	ctx := context.Background()
	for i := range 10 {
		e, _ := badKey(i)
		r.Observe(ctx, e)
	}
	m.mu.Lock()
	m.fail = 1
	m.mu.Unlock()
	c.add(time.Second)
	r.flush(ctx, false) // the aggregate fails
	c.add(time.Second)
	r.flush(ctx, false)
	recs := m.records()
	if _, total := byReason(t, recs); total != 10 || len(recs) != 2 {
		t.Fatalf("%d records counting %d, want 2 counting 10: %+v", len(recs), total, recs)
	}
}
