package budget

import "time"

// Pending is the money admitted in memory whose start entries are not final
// yet, summed over every counter; Live is how many holds memory still
// counts as open (from Admit or Reserve to their settlement).
func (l *Ledger) Pending() (pending int64, live int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.counters {
		pending += c.pending
	}
	return pending, len(l.live)
}

// SetNow replaces the ledger's clock.
func (l *Ledger) SetNow(now func() time.Time) { l.now = now }
