package breaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/alert"
	"github.com/gatehouse-gw/gatehouse/internal/store"
)

type recorder struct {
	suspended map[string]string
	alerts    []alert.Alert
}

func (r *recorder) Send(a alert.Alert) { r.alerts = append(r.alerts, a) }

func setup(cfg Config) (*Breaker, *recorder, *time.Time) {
	r := &recorder{suspended: map[string]string{}}
	b := New(cfg, func(_ context.Context, id string, sp Suspension) (bool, Suspension, error) {
		first := r.suspended[id] == ""
		if first {
			r.suspended[id] = sp.Reason
		}
		return first, sp, nil
	}, r, slog.New(slog.DiscardHandler))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b.SetClock(func() time.Time { return now })
	return b, r, &now
}

func TestCeiling(t *testing.T) {
	b, r, now := setup(Config{Enabled: true, Window: 5 * time.Minute, CeilingMicros: 1000})
	ctx := context.Background()
	for i := range 10 {
		if b.Observe(ctx, "k", 100) {
			t.Fatalf("tripped at %d micros, not over 1000", (i+1)*100)
		}
		*now = now.Add(10 * time.Second)
	}
	if !b.Observe(ctx, "k", 1) {
		t.Fatal("did not trip over the ceiling")
	}
	if r.suspended["k"] == "" || len(r.alerts) != 1 || r.alerts[0].Kind != "breaker_tripped" {
		t.Fatalf("suspended %v, alerts %v", r.suspended, r.alerts)
	}
	if b.Observe(ctx, "k", 1000) || len(r.alerts) != 1 {
		t.Fatal("tripped twice")
	}
	// Spend spread beyond the window does not trip.
	*now = now.Add(time.Hour)
	for range 30 {
		if b.Observe(ctx, "other", 300) {
			t.Fatal("spread spend tripped the breaker")
		}
		*now = now.Add(2 * time.Minute)
	}
}

func TestBaseline(t *testing.T) {
	b, r, now := setup(Config{Enabled: true, Window: 5 * time.Minute, BaselineMultiple: 10, MinSpendMicros: 500})
	ctx := context.Background()
	// An hour of steady spend: 100 micros every 30 s, 1000 a window.
	for range 120 {
		if b.Observe(ctx, "k", 100) {
			t.Fatal("steady spend tripped the breaker")
		}
		*now = now.Add(30 * time.Second)
	}
	// A burst of 20× the usual rate trips within the window.
	tripped := false
	for range 100 {
		if b.Observe(ctx, "k", 500) {
			tripped = true
			break
		}
		*now = now.Add(time.Second)
	}
	if !tripped || r.suspended["k"] == "" {
		t.Fatal("a burst far over the baseline did not trip")
	}
}

func TestDisabled(t *testing.T) {
	b, _, _ := setup(Config{Enabled: false, CeilingMicros: 1})
	if b.Observe(context.Background(), "k", 1_000_000) {
		t.Fatal("a disabled breaker tripped")
	}
}

// TestTripWhoseWriteFailedIsRetriedWithoutCalls is the attack "the store
// refuses the suspension's write when the key trips": the server holds the
// suspension in memory at once, so the key's later calls are refused before
// they reach Observe and none retries the write. Run's retry must make it
// durable (and alert once) with no further call, and must not overrule an
// admin who reinstated the key meanwhile.
func TestTripWhoseWriteFailedIsRetriedWithoutCalls(t *testing.T) {
	ctx := context.Background()
	failing := true
	stored := map[string]string{}
	r := &recorder{suspended: stored}
	b := New(Config{Enabled: true, Window: 5 * time.Minute, CeilingMicros: 1000}, func(_ context.Context, id string, sp Suspension) (bool, Suspension, error) {
		if strings.HasPrefix(id, "wif:") {
			return false, sp, fmt.Errorf("suspend: %w", store.ErrNotFound)
		}
		if failing {
			return false, sp, errors.New("store unreachable")
		}
		first := stored[id] == ""
		stored[id] = sp.Reason
		return first, sp, nil
	}, r, slog.New(slog.DiscardHandler))

	if b.Observe(ctx, "k", 2000) {
		t.Fatal("reported a trip whose suspension was not stored")
	}
	b.retry(ctx) // still failing: kept
	if stored["k"] != "" || len(r.alerts) != 0 {
		t.Fatalf("stored %v, alerts %v while the store refused", stored, r.alerts)
	}
	failing = false
	b.retry(ctx) // no call of the key came: the retry alone stores it
	if stored["k"] == "" || len(r.alerts) != 1 || r.alerts[0].Kind != "breaker_tripped" {
		t.Fatalf("after the store came back: stored %v, alerts %v; want the suspension and one alert", stored, r.alerts)
	}
	b.retry(ctx)
	if len(r.alerts) != 1 {
		t.Fatalf("retried a stored suspension: %d alerts", len(r.alerts))
	}
	if b.Observe(ctx, "k", 1) {
		t.Fatal("tripped again while stored as suspended")
	}

	// A caller with no key in the store (a workload identity) is not
	// retried: there is nothing to suspend.
	b.Observe(ctx, "wif:ci", 2000)
	b.mu.Lock()
	_, kept := b.unsaved["wif:ci"]
	b.mu.Unlock()
	if kept {
		t.Fatal("a caller the store has no key for waits to be suspended")
	}

	// A trip whose write failed, then an admin reinstates the key (Reset on
	// this replica, Rearm on another): the retry no longer writes it.
	for _, lift := range []func(string){b.Reset, b.Rearm} {
		failing = true
		delete(stored, "j")
		b.Reset("j")
		b.Observe(ctx, "j", 2000)
		lift("j")
		failing = false
		b.retry(ctx)
		if stored["j"] != "" {
			t.Fatal("a retry suspended a key reinstated after its trip")
		}
	}
}

// versioned is a key store as the breaker's retries meet it
// (sqlstore.SuspendKeyFirst behind server.suspendKey): each key has a
// version that a suspension and a reinstatement bump; a suspension decided
// at a version takes effect only while the key is still at it; a key found
// suspended at the suspension's own instant is its own earlier write.
type versioned struct {
	down      bool
	lost      bool // the write commits, its answer is lost (a timeout)
	clock     int
	version   map[string]int64
	suspended map[string]int // the instant of the suspension, 0: active
	writes    []int64        // the version each write carried
}

func (v *versioned) suspend(_ context.Context, id string, sp Suspension) (bool, Suspension, error) {
	v.writes = append(v.writes, sp.Version)
	if sp.At.IsZero() { // a trip: the instant and the version it is decided at
		v.clock++
		sp.At = time.Unix(int64(v.clock), 0)
		sp.Version = v.version[id]
	}
	if v.down {
		return false, sp, errors.New("store unreachable")
	}
	if at := v.suspended[id]; at != 0 {
		return int64(at) == sp.At.Unix(), sp, nil // its own earlier write: first
	}
	if sp.Version != 0 && v.version[id] > sp.Version {
		return false, sp, ErrChanged
	}
	v.suspended[id] = int(sp.At.Unix())
	v.version[id]++
	if v.lost {
		return false, sp, context.DeadlineExceeded
	}
	return true, sp, nil
}

func (v *versioned) reinstate(id string) {
	v.suspended[id] = 0
	v.version[id]++
}

// onVersioned returns a breaker (ceiling 1000 in 5 minutes) that suspends
// keys in st, and the recorder of what it records and alerts.
func onVersioned(st *versioned) (*Breaker, *recorder) {
	r := &recorder{suspended: map[string]string{}}
	return New(Config{Enabled: true, Window: 5 * time.Minute, CeilingMicros: 1000}, st.suspend, r, slog.New(slog.DiscardHandler)), r
}

// TestRetryDoesNotOverruleAReinstatementItDidNotHearOf: a trip whose write
// failed is retried at the key's version of the trip, so an admin's
// reinstatement in between wins even when this replica never heard of it
// (a change notification lost in the same outage): the retry ends without
// suspending or alerting, and so does a trip on a later call of the key
// (its mark lifted by the reinstatement) judged on the old spend.
func TestRetryDoesNotOverruleAReinstatementItDidNotHearOf(t *testing.T) {
	ctx := context.Background()
	st := &versioned{down: true, version: map[string]int64{"k": 4, "j": 7, "i": 2}, suspended: map[string]int{}}
	b, r := onVersioned(st)

	b.Observe(ctx, "k", 2000) // trips at version 4; the write fails
	st.down = false
	st.reinstate("k") // on another replica; no Rearm reaches this one
	b.retry(ctx)
	if st.suspended["k"] != 0 || len(r.alerts) != 0 {
		t.Fatalf("the retry suspended a key reinstated after its trip (writes at versions %v), alerts %v", st.writes, r.alerts)
	}
	if got := st.writes[len(st.writes)-1]; got != 4 {
		t.Fatalf("the retry was written at version %d; want the trip's 4", got)
	}
	b.mu.Lock()
	_, kept := b.unsaved["k"]
	b.mu.Unlock()
	if kept {
		t.Fatal("a retry overruled by a reinstatement is still waiting")
	}
	// The reinstated key calls again: judged on spend after the change.
	if b.Observe(ctx, "k", 10) || st.suspended["k"] != 0 {
		t.Fatal("the old spend suspended the reinstated key again")
	}

	// The same without a retry: the outage ends, the admin reinstates, and
	// the key's next call trips on the old spend before any retry ran.
	st.down = true
	b.Observe(ctx, "j", 2000)
	st.down = false
	st.reinstate("j")
	if b.Observe(ctx, "j", 1) || st.suspended["j"] != 0 {
		t.Fatalf("a call after the reinstatement suspended the key on the spend from before it (writes %v)", st.writes)
	}
	// A key still at its trip's version is suspended by the retry, once.
	st.down = true
	b.Observe(ctx, "i", 2000)
	st.down = false
	b.retry(ctx)
	if st.suspended["i"] == 0 || len(r.alerts) != 1 {
		t.Fatalf("suspended %v, %d alerts; want the retry to suspend and alert once", st.suspended["i"], len(r.alerts))
	}
}

// TestSuspensionWhoseAnswerWasLostAlertsOnce: the trip's write commits but
// its answer is lost (a timeout); the retry finds the key suspended by that
// very write (its instant) and alerts for it, once, instead of taking it for
// another replica's suspension and alerting for none. Another replica's
// suspension still alerts on that replica only.
func TestSuspensionWhoseAnswerWasLostAlertsOnce(t *testing.T) {
	ctx := context.Background()
	st := &versioned{lost: true, version: map[string]int64{"k": 3}, suspended: map[string]int{}}
	b, r := onVersioned(st)
	if b.Observe(ctx, "k", 2000) {
		t.Fatal("reported a trip whose write returned an error")
	}
	st.lost = false
	b.retry(ctx)
	if len(r.alerts) != 1 {
		t.Fatalf("%d alerts for a suspension this replica's timed-out write made; want one", len(r.alerts))
	}
	b.retry(ctx)
	if len(r.alerts) != 1 {
		t.Fatalf("%d alerts after another retry round; want one", len(r.alerts))
	}
	// Suspended by another replica (another instant) meanwhile: no alert here.
	st.lost = true
	b.Observe(ctx, "j", 2000)
	st.lost = false
	st.reinstate("j")
	st.suspended["j"] = 999
	b.retry(ctx)
	if len(r.alerts) != 1 {
		t.Fatalf("%d alerts; another replica's suspension alerted here too", len(r.alerts))
	}
}

// TestLostAnswerStillAlertsAfterItsOwnNotification: on PostgreSQL a write to
// a key sends a change notification, which Rearms the key on every replica,
// this one included. A suspension whose write committed after its caller
// gave up (the answer lost) notifies that very change: the retry must still
// run, find the key suspended at its own instant and record and alert it
// once, not be dropped by its own notification (the suspension then in the
// store, never recorded nor alerted). A reinstatement's notification still
// ends the retry (ErrChanged), and so does any change of a key whose trip's
// version is unknown.
func TestLostAnswerStillAlertsAfterItsOwnNotification(t *testing.T) {
	ctx := context.Background()
	st := &versioned{lost: true, version: map[string]int64{"k": 3, "j": 5}, suspended: map[string]int{}}
	b, r := onVersioned(st)
	if b.Observe(ctx, "k", 2000) {
		t.Fatal("reported a trip whose write returned an error")
	}
	st.lost = false
	b.Rearm("k") // the notification of the write that committed unanswered
	b.retry(ctx)
	if len(r.alerts) != 1 {
		t.Fatalf("%d alerts for a suspension this replica's timed-out write made, after its own change notification; want one", len(r.alerts))
	}
	b.retry(ctx)
	if len(r.alerts) != 1 {
		t.Fatalf("%d alerts after another retry round; want one", len(r.alerts))
	}

	// A reinstatement heard of: the retry ends, the key stays active.
	st.down = true
	b.Observe(ctx, "j", 2000)
	st.down = false
	st.reinstate("j")
	b.Rearm("j")
	b.retry(ctx)
	if st.suspended["j"] != 0 || len(r.alerts) != 1 {
		t.Fatalf("a retry overruled a reinstatement it heard of: suspended at %d, %d alerts", st.suspended["j"], len(r.alerts))
	}
	b.mu.Lock()
	_, waiting := b.unsaved["j"]
	b.mu.Unlock()
	if waiting {
		t.Fatal("a retry ended by a reinstatement is still waiting")
	}

	// A trip decided at no known version cannot tell a reinstatement from
	// its own write: any change of the key ends it, as before.
	st.down = true
	b.Observe(ctx, "u", 2000) // version 0: unknown
	st.down = false
	b.Rearm("u")
	b.mu.Lock()
	_, waiting = b.unsaved["u"]
	b.mu.Unlock()
	if waiting {
		t.Fatal("a retry without a version survived a change of its key")
	}
}
