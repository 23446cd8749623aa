package budget

import (
	"errors"
	"fmt"
	"time"
)

// Periods on a shared store follow the store's clock (Ledger.StoreClock),
// not the replica's: two replicas whose clocks differ by 30 s around
// midnight would otherwise charge the calls of those 30 s to two different
// day rows, each with a whole limit of its own, and a replica whose clock
// stepped by a day would charge another day's row.
//
// The store's time is known to within an uncertainty u (package instance:
// half a heartbeat's round trip, plus drift since). A call whose [t−u, t+u]
// lies in one period is charged to that period's row, the row every replica
// charges at that moment. A call whose interval contains a boundary could
// belong to either period, so its hold counts against both rows, and its
// settlement charges the actual cost to both: whichever period the call
// "really" fell in, that period's row holds it, so no ordering of replicas
// can let one period's calls pass its limit. Near a boundary spend is
// over-counted (once per row) for at most u on each side, never
// under-counted.
//
// Without the store's time (no heartbeat yet, a stale reading, a stepped
// clock) a call under a hard period budget is refused (the caller answers
// 503 budget_unavailable) rather than charged to a row read from the local
// clock. Soft budgets only count and alert: they fall back to the local
// clock. Lifetime budgets have one row and need no clock.

// ErrClock wraps why the store's clock could not place a call in a period.
var ErrClock = errors.New("budget: the store's clock is not known well enough to tell the period")

// storeTime is one reading of the store's clock for one call.
type storeTime struct {
	at  time.Time
	unc time.Duration
	err error
}

func (l *Ledger) storeTime() storeTime {
	at, unc, err := l.StoreClock()
	if err != nil {
		if !l.clockDown.Swap(true) {
			l.log.Error("budget: the store's clock is not usable; calls under a hard day, week or month budget are refused (503 budget_unavailable) until the next heartbeat reads it", "err", err)
		}
		return storeTime{err: err}
	}
	if l.clockDown.Swap(false) {
		l.log.Info("budget: the store's clock is read again; period budgets admit calls")
	}
	return storeTime{at: at, unc: unc}
}

// periods returns the starts (unix microseconds) of the periods of b that
// the store's time may be in: one, or two across a boundary.
func (st storeTime) periods(b Budget, local time.Time) ([]int64, error) {
	if st.err != nil {
		if b.Hard {
			return nil, fmt.Errorf("budget %s: %w: %w", b.ID, ErrClock, st.err)
		}
		start, err := b.period(local) // soft: counting by this host's clock beats not counting
		if err != nil {
			return nil, err
		}
		return []int64{start.UnixMicro()}, nil
	}
	lo, err := b.period(st.at.Add(-st.unc))
	if err != nil {
		return nil, err
	}
	hi, err := b.period(st.at.Add(st.unc))
	if err != nil {
		return nil, err
	}
	if lo.Equal(hi) {
		return []int64{lo.UnixMicro()}, nil
	}
	if _, end := b.Window(lo); !end.Equal(hi) {
		// An uncertainty as long as a period: no hold of two rows covers it.
		return nil, fmt.Errorf("budget %s: %w: ±%v spans more than two periods", b.ID, ErrClock, st.unc)
	}
	return []int64{lo.UnixMicro(), hi.UnixMicro()}, nil
}
