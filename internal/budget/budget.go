// Package budget holds spend to money caps that never overshoot.
//
// A Budget caps spend at one scope (a key, a principal, a team or the whole
// organisation), optionally narrowed to a model glob, per calendar period (day,
// ISO week, month, in the budget's time zone) or for its lifetime. Hard budgets
// are enforced by reservation: before the upstream call the worst-case cost of
// the call is reserved, atomically, at every budget that applies, and only if
// every hard budget can still cover it (spent + reserved + amount ≤ limit);
// after the call the reservation is settled to the actual cost. So the sum of
// what is spent and reserved never passes a hard limit, however many calls race,
// on one replica or many (the check and the increment are one conditional UPDATE
// in the shared store).
//
// Reservations are rows, owned by the gateway instance (and epoch) that made
// them. A settlement the store cannot take is kept in memory and retried until
// it can (settling is idempotent). If an instance dies, its open reservations
// are settled at their full amount by the next instance that notices (at start
// for the embedded store, after a missed heartbeat on PostgreSQL), which first
// claims (fences) the dead instance so that it can never beat again: spend is
// never under-counted, and a live instance's calls are never swept.
//
// With the ledger's sequencer (admit.go), a hold is admitted in memory and
// written with the call's start record in one batch transaction, which adds
// the batch's holds to each counter row with one conditional UPDATE; the
// store still refuses what does not fit. Its settlement rides the end record.
//
// A period starts at the same instant on every replica: the binary carries
// the time zone database (time/tzdata, used where the host's lacks a zone),
// and a call whose budget's zone cannot be loaded is not admitted rather
// than charged to a period read in UTC (another counter row). On a shared
// store, which period a call falls in is read from the store's clock, not
// the replica's; a call within the clock's uncertainty of a boundary holds
// and is charged in both periods, and without a usable store clock a call
// under a hard period budget is refused (period.go).
//
// Money is integer micro-dollars everywhere.
package budget

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
	_ "time/tzdata" // every replica of a build knows every zone a budget may name

	"github.com/gatehouse-gw/gatehouse/internal/glob"
)

// Scope is what a budget caps.
type Scope string

const (
	ScopeKey       Scope = "key"
	ScopePrincipal Scope = "principal"
	ScopeTeam      Scope = "team"
	ScopeOrg       Scope = "org"
)

// Period is a budget's reset cycle.
type Period string

const (
	Day      Period = "day"
	Week     Period = "week" // ISO week, from Monday 00:00
	Month    Period = "month"
	Lifetime Period = "lifetime"
)

// Budget is a money cap.
type Budget struct {
	ID          string    `json:"id"`
	Scope       Scope     `json:"scope"`
	ScopeID     string    `json:"scope_id,omitempty"` // "" for the organisation
	Model       string    `json:"model,omitempty"`    // glob; "" for every model
	Period      Period    `json:"period"`
	TimeZone    string    `json:"time_zone"` // IANA name; default UTC
	LimitMicros int64     `json:"limit_micros"`
	Hard        bool      `json:"hard"`       // refuse calls that could pass it
	Clamp       bool      `json:"clamp"`      // hard only: lower max_tokens to fit instead of refusing
	Thresholds  []int     `json:"thresholds"` // percent of the limit that fire an alert, once a period
	CreatedAt   time.Time `json:"created_at"`
	Version     int64     `json:"version"`
}

// DefaultThresholds fire alerts at half, most and all of a budget.
var DefaultThresholds = []int{50, 80, 100}

// Validate checks b before it is stored.
func (b *Budget) Validate() error {
	switch b.Scope {
	case ScopeKey, ScopePrincipal, ScopeTeam:
		if b.ScopeID == "" {
			return fmt.Errorf("a %s budget names its %s", b.Scope, b.Scope)
		}
	case ScopeOrg:
		b.ScopeID = ""
	default:
		return fmt.Errorf("scope %q: want key, principal, team or org", b.Scope)
	}
	switch b.Period {
	case Day, Week, Month, Lifetime:
	default:
		return fmt.Errorf("period %q: want day, week, month or lifetime", b.Period)
	}
	if b.TimeZone == "" {
		b.TimeZone = "UTC"
	}
	if _, err := loadZone(b.TimeZone); err != nil {
		return fmt.Errorf("time zone %q: %v", b.TimeZone, err)
	}
	if b.LimitMicros < 0 {
		return errors.New("limit must not be negative")
	}
	if b.Clamp && !b.Hard {
		return errors.New("clamp applies to hard budgets only")
	}
	if b.Thresholds == nil {
		b.Thresholds = slices.Clone(DefaultThresholds)
	}
	for _, t := range b.Thresholds {
		if t <= 0 || t > 1000 {
			return fmt.Errorf("threshold %d%%: want 1 to 1000", t)
		}
	}
	slices.Sort(b.Thresholds)
	return nil
}

// Call is what decides which budgets apply to a request.
type Call struct {
	KeyID, PrincipalID, TeamID, Model string
}

// Applies reports whether b caps c.
func (b Budget) Applies(c Call) bool {
	if b.Model != "" && !glob.Match(b.Model, c.Model) {
		return false
	}
	switch b.Scope {
	case ScopeKey:
		return b.ScopeID == c.KeyID
	case ScopePrincipal:
		return b.ScopeID == c.PrincipalID
	case ScopeTeam:
		return b.ScopeID == c.TeamID
	case ScopeOrg:
		return true
	}
	return false
}

// Window returns the period that contains now: [start, end). Lifetime budgets
// have one window starting at the Unix epoch. A time zone this process
// cannot load is read as UTC here (for display); the call path uses period,
// which refuses instead.
func (b Budget) Window(now time.Time) (start, end time.Time) {
	loc, err := loadZone(b.TimeZone)
	if err != nil {
		loc = time.UTC
	}
	return b.window(now, loc)
}

// period is the start of the period that contains now, for a call's hold.
// A time zone that cannot be loaded now fails: read in UTC, the period
// would start at another instant than on the replicas that have the zone,
// i.e. at another counter row, and the call would escape the row they
// charge (a second limit per period).
func (b Budget) period(now time.Time) (time.Time, error) {
	loc, err := loadZone(b.TimeZone)
	if err != nil {
		return time.Time{}, fmt.Errorf("budget %s: time zone: %w", b.ID, err)
	}
	start, _ := b.window(now, loc)
	return start, nil
}

// zones holds the time zones loaded so far, by name: time.LoadLocation reads
// and parses a file on every call (on the call path, once per budget with a
// zone), and a read can fail when the process is short of file descriptors.
// Only zones that loaded are kept, so there are at most as many as the
// database has.
var zones sync.Map

func loadZone(name string) (*time.Location, error) {
	if l, ok := zones.Load(name); ok {
		return l.(*time.Location), nil
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	zones.Store(name, l)
	return l, nil
}

func (b Budget) window(now time.Time, loc *time.Location) (start, end time.Time) {
	t := now.In(loc)
	switch b.Period {
	case Day:
		start = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc)
		return start, start.AddDate(0, 0, 1)
	case Week:
		off := (int(t.Weekday()) + 6) % 7 // days since Monday
		start = time.Date(t.Year(), t.Month(), t.Day()-off, 0, 0, 0, 0, loc)
		return start, start.AddDate(0, 0, 7)
	case Month:
		start = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, loc)
		return start, start.AddDate(0, 1, 0)
	}
	return time.Unix(0, 0).UTC(), time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
}

// Charge is one budget-period a reservation counts against.
type Charge struct {
	BudgetID    string `json:"budget_id"`
	PeriodStart int64  `json:"period_start"` // unix microseconds
	Limit       int64  `json:"limit"`
	Hard        bool   `json:"hard"`
}

// Reservation is money held for one call until it settles.
type Reservation struct {
	ID        string // the request id
	Instance  string // the gateway instance that holds it
	Amount    int64
	Charges   []Charge
	CreatedAt time.Time
}

// Spend is one budget-period's counters.
type Spend struct {
	BudgetID    string `json:"budget_id"`
	PeriodStart int64  `json:"period_start"`
	Spent       int64  `json:"spent_micros"`
	Reserved    int64  `json:"reserved_micros"`
}

// InsufficientError says which hard budget could not cover a reservation.
type InsufficientError struct {
	BudgetID  string
	Limit     int64
	Remaining int64 // limit − spent − reserved, at the moment of refusal
	Needed    int64
}

func (e *InsufficientError) Error() string {
	return fmt.Sprintf("budget %s: %d micros needed, %d of %d remaining", e.BudgetID, e.Needed, e.Remaining, e.Limit)
}

// Store is what budget needs from storage. Reserve and Settle are atomic.
type Store interface {
	CreateBudget(ctx context.Context, b Budget) error
	Budget(ctx context.Context, id string) (Budget, error)
	ListBudgets(ctx context.Context) ([]Budget, error)
	UpdateBudget(ctx context.Context, b Budget, version int64) (Budget, error)
	DeleteBudget(ctx context.Context, id string, version int64) error

	// Reserve adds r.Amount to the reserved money of every charge, failing with
	// *InsufficientError (and changing nothing) if a hard charge cannot cover it.
	Reserve(ctx context.Context, r Reservation) error
	// Settle removes reservation id, moving its charges from reserved to
	// actual spend. It returns the resulting counters; settling a reservation
	// that no longer exists is a no-op returning none.
	Settle(ctx context.Context, id string, actual int64) ([]Spend, error)
	// Spend returns the counters of the given budget-periods (zero if unused).
	Spend(ctx context.Context, keys []Charge) ([]Spend, error)
	// Abandoned claims (fences) every instance but self without a heartbeat
	// since staleBefore (in the clock heartbeats record: the store's own
	// where it has one), then returns the ids of the reservations of claimed
	// or unknown instances other than self.
	Abandoned(ctx context.Context, self string, staleBefore time.Time) ([]string, error)
	// Owned returns the ids of instance's reservations made before before.
	Owned(ctx context.Context, instance string, before time.Time) ([]string, error)
	// MarkAlert records that an alert fired; false if it had fired already.
	MarkAlert(ctx context.Context, budgetID string, periodStart int64, threshold int) (bool, error)
}
