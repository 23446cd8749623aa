package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/store"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// Gather reads the facts the rules need, as of now.
func (e *Engine) Gather(ctx context.Context, now time.Time) (*Facts, error) {
	st := e.d.Store
	f := &Facts{Now: now, Principals: map[string]org.Principal{}, MFA: map[string]bool{}, KeyMaxAge: e.d.KeyMaxAge, Settings: e.d.Settings}
	if e.d.UsageDropped != nil {
		f.UsageDropped = e.d.UsageDropped()
	}
	var err error
	if f.Keys, err = st.ListKeys(ctx, vkey.Filter{}); err != nil {
		return nil, fmt.Errorf("audit: keys: %w", err)
	}
	ps, err := st.ListPrincipals(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("audit: principals: %w", err)
	}
	for _, p := range ps {
		f.Principals[p.ID] = p
		has, err := e.hasMFA(ctx, p.ID)
		if err != nil {
			return nil, fmt.Errorf("audit: principals: %w", err)
		}
		f.MFA[p.ID] = has
	}
	if f.Budgets, err = st.ListBudgets(ctx); err != nil {
		return nil, fmt.Errorf("audit: budgets: %w", err)
	}
	if e.d.Spend != nil && len(f.Budgets) > 0 {
		if f.Statuses, err = e.d.Spend(ctx, f.Budgets); err != nil {
			return nil, fmt.Errorf("audit: budgets: %w", err)
		}
	}
	if f.Policies, err = st.PolicyHistory(ctx); err != nil {
		return nil, fmt.Errorf("audit: policies: %w", err)
	}
	if f.LogCheck, err = st.LogCheck(ctx); err != nil {
		return nil, fmt.Errorf("audit: log check: %w", err)
	}
	if err := e.readTail(ctx, f, now.Add(-e.d.Config.BaselineWindow)); err != nil {
		return nil, fmt.Errorf("audit: log: %w", err)
	}
	return f, nil
}

func (e *Engine) hasMFA(ctx context.Context, principalID string) (bool, error) {
	c, err := e.d.Store.Credentials(ctx, principalID)
	if err == nil && c.TOTPSealed != nil {
		return true, nil
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return false, err
	}
	pk, err := e.d.Store.Passkeys(ctx, principalID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return false, err
	}
	return len(pk) > 0, nil
}

// readTail reads the log backwards from its end, in tile-sized chunks, until
// records are older than since or max_ledger_records were read. Calls are
// joined from their start (source address) and end (status, cost) records.
func (e *Engine) readTail(ctx context.Context, f *Facts, since time.Time) error {
	size, err := e.d.Store.LedgerSize(ctx)
	if err != nil {
		return err
	}
	const chunk = 256
	read := 0
	sources := map[string]string{}
	var calls []Call
	var trips []Trip
	for to := size; to > 0; {
		from := max(0, to-chunk)
		if from%chunk != 0 {
			from = to - to%chunk
		}
		entries, err := e.d.Store.LedgerEntries(ctx, from, to)
		if err != nil {
			return err
		}
		older := true
		for i := len(entries) - 1; i >= 0; i-- {
			r, err := ledger.ParseRecord(entries[i])
			if err != nil {
				continue // verification reports bad records; the audit skips them
			}
			if !r.Time.Before(since) {
				older = false
			} else {
				continue
			}
			idx := from + int64(i)
			switch r.Kind {
			case ledger.KindCallStart:
				if r.SourceIP != "" {
					sources[r.RequestID] = r.SourceIP
				}
			case ledger.KindCallEnd:
				if r.KeyID != "" {
					calls = append(calls, Call{Index: idx, RequestID: r.RequestID, Time: r.Time, KeyID: r.KeyID, Model: r.Model,
						Status: r.Status, ErrorCode: r.ErrorCode, Cost: r.CostMicros, SourceIP: r.SourceIP})
				}
			case ledger.KindCallSummary:
				// Refused calls counted during a store outage: they weigh
				// as many calls in the rules that count calls.
				if r.KeyID != "" {
					calls = append(calls, Call{Index: idx, RequestID: r.RequestID, Time: r.Time, KeyID: r.KeyID, Model: r.Model,
						Status: r.Status, ErrorCode: r.ErrorCode, SourceIP: r.SourceIP, Count: r.Count})
				}
			case ledger.KindBreaker:
				trips = append(trips, Trip{Index: idx, Time: r.Time, KeyID: r.KeyID, Detail: r.Detail})
			}
		}
		read += len(entries)
		to = from
		if older && len(entries) > 0 {
			break
		}
		if read >= e.d.Config.MaxLedgerRecords && to > 0 {
			f.Truncated = true
			break
		}
	}
	for i := range calls {
		if calls[i].SourceIP == "" {
			calls[i].SourceIP = sources[calls[i].RequestID]
		}
	}
	slices.Reverse(calls)
	slices.Reverse(trips)
	f.Calls, f.Breaker = calls, trips
	return nil
}
