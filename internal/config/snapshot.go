package config

import (
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
	"github.com/gatehouse-gw/gatehouse/internal/pricing"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
	"github.com/gatehouse-gw/gatehouse/internal/ratelimit"
)

// Snapshot is the read-mostly state of the request path: routes, prices and
// budgets (their definitions; the money counters live in the store). It
// is immutable; the server builds a new one when the store's config generation
// changes and swaps it in whole behind one atomic pointer.
type Snapshot struct {
	Generation int64
	Router     *provider.Router
	Prices     *pricing.Table
	Budgets    []budget.Budget
	Limits     []ratelimit.Limit
	Policies   *policy.Set
	PolicyVer  int64 // 0: the shipped defaults
	// TeamKeyAges holds the teams' own maximum key ages by team id.
	TeamKeyAges map[string]time.Duration
}
