package e2e

import (
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
)

// TestLagEndRecordsUnderAttack: with end records lagging (the handler does
// not wait for the commit of the settlement and usage row), the attack of
// the incident still spends at most the budget, every hold is settled and every
// authenticated call has one usage row.
func TestLagEndRecordsUnderAttack(t *testing.T) {
	for name, db := range map[string]func(t *testing.T) string{"sqlite": func(*testing.T) string { return "" }, "postgres": func(t *testing.T) string { return pgtest.DSN(t) }} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, gwOptions{database: db(t), mutate: func(c *config.Config) { c.Ledger.LagEndRecords = true }})
			limit := callsAffected * worstCase(attackBody)
			b := setBudget(t, f.admin, f.keyID, limit, false)
			const calls = 120
			res := attack(t, []string{f.dataURL}, f.key, attackBody, calls, 4, f.up, nil)
			after := waitSettled(t, f.admin, b.ID)
			if after.Spent > limit || after.Reserved != 0 {
				t.Fatalf("spent %d reserved %d of %d", after.Spent, after.Reserved, limit)
			}
			if res.ok.Load() < callsAffected || res.other.Load() != 0 {
				t.Fatalf("%d admitted, %d refused, %d other", res.ok.Load(), res.refused.Load(), res.other.Load())
			}
			if recs := f.usageOf(t, f.keyID, calls); len(recs) != calls {
				t.Fatalf("%d usage rows for %d calls", len(recs), calls)
			}
		})
	}
}
