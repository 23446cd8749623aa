package budget

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Admission in memory (docs/design/one-write-per-phase.md). With the
// sequencer, a call's hold is not written by Reserve in a transaction of its
// own: Admit decides in memory, and the hold rides the call's start entry
// into the sequencer's batch, whose transaction inserts it and adds the
// batch's holds to each counter row with one conditional UPDATE. The store
// stays the judge: a hold that memory admitted but the row cannot cover is
// refused there (the batch splits), so memory can only cost a split, never an
// overshoot.
//
// Memory knows, per budget-period row, the counters the store last returned
// (spent + reserved, refreshed by every batch that touches the row, in commit
// order) and the holds admitted here whose start entries are not final yet.
// A call fits when committed + pending + amount ≤ limit at every hard budget.
// When it does not (or the row is not known yet: at start, after recovery, on
// a period roll), the row is read again from the store, and the call is
// refused only if the store's own counters cannot cover it (as the store
// returned them at most `fresh` ago); otherwise it goes to the batch, where
// the store decides. So memory never refuses a call the store would have
// taken a moment before.

type rowKey struct {
	id     string
	period int64
}

type counter struct {
	committed int64 // spent + reserved, as the store last returned it
	known     bool
	at        time.Time // when the store returned committed
	pending   int64     // holds admitted here, their start entries not final yet
}

// fresh is how long a counter the store returned is trusted to refuse a
// call without asking the store again: under a flood of calls that do not
// fit, the store is read a few times a second per budget, not once per call.
const fresh = 50 * time.Millisecond

// maxCounters bounds the rows kept in memory (old periods are dropped).
const maxCounters = 4096

func (l *Ledger) counter(k rowKey) *counter {
	c := l.counters[k]
	if c == nil {
		if len(l.counters) >= maxCounters {
			for k2, c2 := range l.counters {
				if c2.pending == 0 {
					delete(l.counters, k2)
				}
			}
		}
		c = &counter{}
		l.counters[k] = c
	}
	return c
}

// learn records counters the store returned (under l.mu), as of at: when
// the read that returned them was sent. A row memory learned later than
// that (a batch that committed while the read was in flight) keeps the
// newer counters: an old read must not bring back money already released.
func (l *Ledger) learn(spends []Spend, at time.Time) {
	for _, sp := range spends {
		c := l.counter(rowKey{sp.BudgetID, sp.PeriodStart})
		if c.known && c.at.After(at) {
			continue
		}
		c.committed, c.known, c.at = sp.Spent+sp.Reserved, true, at
	}
}

// Forget makes memory read every counter again from the store (after
// recovery, or a change made outside the call path).
func (l *Ledger) Forget() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.counters {
		c.known = false
	}
}

// Admit decides in memory whether a call may hold amount at every budget
// that applies to c, and returns the hold to make durable with the call's
// start entry (Hold.Reservation), or a *Refusal naming a hard budget whose
// counters in the store cannot cover it. The hold is not durable until the
// start entry's batch commits: the sequencer then calls Hold.Started. With no
// budget applying it returns a nil Hold.
func (l *Ledger) Admit(ctx context.Context, id string, c Call, amount int64) (*Hold, error) {
	r, ap, err := l.reservation(id, c, amount)
	if len(ap) == 0 || err != nil {
		return nil, err
	}
	l.mu.Lock()
	fits := true
	for _, a := range ap {
		if !a.charge.Hard {
			continue
		}
		ct := l.counter(rowKey{a.charge.BudgetID, a.charge.PeriodStart})
		if ct.known && ct.committed+amount > a.charge.Limit && time.Since(ct.at) < fresh {
			// The store said so a moment ago: refuse without asking again.
			ref := &Refusal{Budget: a.budget, Remaining: max(a.charge.Limit-ct.committed, 0), Needed: amount}
			l.mu.Unlock()
			return nil, ref
		}
		if !ct.known || ct.committed+ct.pending+amount > a.charge.Limit {
			fits = false
		}
	}
	l.mu.Unlock()
	if !fits {
		// Memory cannot say yes: ask the store.
		var keys []Charge
		var hard []applied
		for _, a := range ap {
			if a.charge.Hard {
				keys, hard = append(keys, a.charge), append(hard, a)
			}
		}
		rctx, cancel := context.WithTimeout(ctx, l.Timeout)
		asked := time.Now()
		sp, err := l.store.Spend(rctx, keys)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("budget: reserve: %w", err)
		}
		l.mu.Lock()
		l.learn(sp, asked)
		l.mu.Unlock()
		for i, a := range hard {
			if committed := sp[i].Spent + sp[i].Reserved; committed+amount > a.charge.Limit {
				return nil, &Refusal{Budget: a.budget, Remaining: max(a.charge.Limit-committed, 0), Needed: amount}
			}
		}
	}
	l.mu.Lock()
	for _, a := range ap {
		l.counter(rowKey{a.charge.BudgetID, a.charge.PeriodStart}).pending += amount
	}
	l.live[id] = struct{}{}
	l.mu.Unlock()
	return &Hold{l: l, id: id, amount: amount, applied: ap, res: r, sequenced: true}, nil
}

// Reservation returns the hold's reservation, for the call's start entry.
func (h *Hold) Reservation() Reservation { return h.res }

// Sequenced reports whether the hold rides the sequencer's entries (Admit)
// rather than being written by Reserve and Settle.
func (h *Hold) Sequenced() bool { return h != nil && h.sequenced }

// Started is told the fate of the hold's start entry (by the sequencer, in
// commit order): committed (err nil, with the store's counters after the
// batch), refused by the store (*InsufficientError), or failed. A failed
// start may have committed unseen: the call's end entry settles it (at no
// charge), so the hold stays live until then.
func (h *Hold) Started(spends []Spend, err error) {
	l := h.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if h.started {
		return
	}
	h.started = true
	for _, a := range h.applied {
		l.counter(rowKey{a.charge.BudgetID, a.charge.PeriodStart}).pending -= h.amount
	}
	if err == nil {
		l.learn(spends, time.Now())
		return
	}
	if _, refused := err.(*InsufficientError); refused {
		for _, a := range h.applied {
			l.counter(rowKey{a.charge.BudgetID, a.charge.PeriodStart}).known = false
		}
		delete(l.live, h.id)
	}
}

// Abandon is called once the call is over: a hold whose start entry never
// reached the sequencer (the call failed before it) leaves memory's pending
// money; its end entry settles whatever the store holds.
func (h *Hold) Abandon() { h.Started(nil, errNotStarted) }

var errNotStarted = errors.New("budget: the call's start was not written")

// Settled is told that the hold's end entry committed: settled says whether
// the hold was still there to settle, spends are its budgets' counters after.
// It fires the threshold alerts (on Run's goroutine).
func (h *Hold) Settled(settled bool, spends []Spend) {
	l := h.l
	l.mu.Lock()
	if settled {
		l.learn(spends, time.Now())
	}
	delete(l.live, h.id)
	l.mu.Unlock()
	if settled && len(spends) > 0 {
		select {
		case l.alertQ <- thresholdCheck{h.applied, spends}:
		default: // the next settlement checks again; alerts fire once per period
		}
	}
}

type thresholdCheck struct {
	applied []applied
	spends  []Spend
}
