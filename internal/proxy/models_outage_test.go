package proxy

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/ledger/ledgertest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// TestModelsRecordDuringOutageSaysWhatTheCallerGot: during a store outage a
// models call's record (kept in memory, written when the store returns)
// says the status the caller got. It used to say 200 allow for calls that
// were answered 503 ledger_unavailable. While end records wait for the
// store, models calls are not served (503), and their records say so.
func TestModelsRecordDuringOutageSaysWhatTheCallerGot(t *testing.T) {
	l, st, db := runningLog(t)
	h := modelsHandler(t, l, oneCaller{}, &memUsage{})

	got := map[string]int{} // request id → the status the caller got
	call := func(path string) int {
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("Authorization", "Bearer gk_test")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		id := w.Header().Get("X-Request-Id")
		if id == "" {
			t.Fatalf("%s: no request id", path)
		}
		got[id] = w.Code
		return w.Code
	}
	if s := call("/v1/models"); s != 200 {
		t.Fatalf("before the outage: %d", s)
	}
	st.Down.Store(true)
	var unavailable int
	for i := range 6 {
		path := []string{"/v1/models", "/v1/models/gpt-4o", "/v1/models/nope"}[i%3]
		if call(path) == http.StatusServiceUnavailable {
			unavailable++
		}
	}
	if unavailable == 0 {
		t.Fatal("no models call failed closed while the store was unreachable")
	}
	st.Down.Store(false)
	deadline := time.Now().Add(20 * time.Second)
	for l.Deferred() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d end records still deferred after the store returned", l.Deferred())
		}
		time.Sleep(20 * time.Millisecond)
	}
	recs := logEntries(t, db)
	seen := 0
	for _, b := range recs {
		r, err := ledger.ParseRecord(b)
		if err != nil {
			t.Fatal(err)
		}
		want, ok := got[r.RequestID]
		if !ok || r.Kind != ledger.KindCallEnd {
			t.Fatalf("unexpected record %s", b)
		}
		seen++
		if r.Status != want {
			t.Errorf("request %s: the caller got %d, its record says %d (%s %s)", r.RequestID, want, r.Status, r.Decision, r.ErrorCode)
		}
		if want == http.StatusServiceUnavailable && (r.ErrorCode != "ledger_unavailable" || r.Decision != "deny") {
			t.Errorf("request %s: a 503 recorded as %s %s", r.RequestID, r.Decision, r.ErrorCode)
		}
	}
	if seen != len(got) {
		t.Fatalf("%d records for %d calls", seen, len(got))
	}
}

// runningLog is a running sequencer over a real SQLite log store that can be
// made unreachable (st.Down), stopped at cleanup.
func runningLog(t *testing.T) (*ledger.Log, *ledgertest.DownStore, *sqlstore.DB) {
	return ledgertest.DownLog(t, nil)
}

// logEntries returns every entry of db's log.
func logEntries(t *testing.T, db *sqlstore.DB) [][]byte {
	t.Helper()
	return ledgertest.Entries(t, db)
}
