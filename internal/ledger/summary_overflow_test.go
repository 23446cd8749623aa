package ledger_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
)

// TestOverflowSummariesKeepTheErrorCode: past MaxSummaries waiting
// summaries, a key's further refusals are counted per key and error code
// (and status), not under one "summary_overflow" code: the audit's rules read
// the code (a 429 for an exhausted budget, insufficient_quota, is not a rate
// limit), so a flood counted past the bound must keep it. Same status, two
// codes: two summaries, each with its code and count.
func TestOverflowSummariesKeepTheErrorCode(t *testing.T) {
	ctx := context.Background()
	l, st, db := outageLog(t, 0)
	st.Down.Store(true)
	for i := range ledger.MaxSummaries {
		if err := l.Enqueue(ctx, refusal(fmt.Sprintf("n%d", i), fmt.Sprintf("key_%d", i), "policy_denied", t0)); err != nil {
			t.Fatal(err)
		}
	}
	const flood = 200
	codes := []string{"rate_limit_exceeded", "insufficient_quota"} // both 429
	for i := range flood {
		e := refusal(fmt.Sprintf("a%d", i), "key_attacker", codes[i%2], t0.Add(time.Duration(i)*time.Second)) // over several minutes
		r, err := ledger.ParseRecord(e.Data)
		if err != nil {
			t.Fatal(err)
		}
		r.Status = 429
		e.Data = r.Marshal()
		if err := l.Enqueue(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	waitAggregated(t, l, ledger.MaxSummaries+flood)
	st.Down.Store(false)
	waitDeferred(t, l, 0)
	verified(t, l, db)
	byCode := map[string]int64{}
	var summaries int
	for _, r := range logged(t, db) {
		if r.KeyID != "key_attacker" {
			continue
		}
		if r.Kind != ledger.KindCallSummary || r.Status != 429 || !strings.Contains(r.Detail, "too many summaries waited at once") {
			t.Fatalf("attacker record %+v, want overflow summaries of 429s", r)
		}
		byCode[r.ErrorCode] += r.Count
		summaries++
	}
	if want := map[string]int64{"rate_limit_exceeded": flood / 2, "insufficient_quota": flood / 2}; fmt.Sprint(byCode) != fmt.Sprint(want) || summaries != 2 {
		t.Fatalf("the attacker's refusals counted by code %v in %d summaries; want %v in 2", byCode, summaries, want)
	}
}
