// Package audit is Gatehouse's regular audits: a findings engine (rules
// evaluated over the store and the ledger, on demand and on a schedule, whose
// results people acknowledge, resolve or dismiss), leaked-key handling (the
// admin API's report and the secret-scanning partner endpoint), reports (md,
// json, csv, self-contained HTML), access-review campaigns, evidence bundles
// verifiable offline, the gateway's verification of its own log, and the
// Scheduler that runs all of it in the server. docs/audits.md is the user's
// view.
//
// # Contract
//
//   - A finding is identified by its rule and its subject (a key, principal,
//     team, budget, policy or the configuration): Fingerprint. A finding that
//     recurs is the same finding, updated (last seen, evidence, occurrences),
//     never a new one. A resolved finding that recurs is reopened; a dismissed
//     one (a false positive) stays dismissed and keeps being updated.
//   - States: open → acknowledged, resolved or dismissed; each change carries who
//     and why, is appended to the finding's history, and is a ledger record
//     (kind "finding"). A condition rule that no longer holds resolves its open
//     findings ("no longer observed", by "gatehouse").
//   - Evidence holds numbers and the request ids and ledger indexes they come
//     from; never a secret.
//   - Rules are pure functions of Facts (gathered once per run from the store,
//     the ledger and the configuration), so each is table-tested on fixture data.
//   - Time comes from an injected clock (Engine.Now); scheduled runs use it too.
//   - New high-severity findings are sent to the alert webhook (package alert).
//
// The engine is safe for concurrent use; replicas sharing a store may run it at
// the same time: a fingerprint is unique in the store, so two replicas that see
// the same new finding store one, and updates carry versions. A finding seen
// again unchanged is only touched (last seen, occurrences) without a new
// version, so an admin's If-Match is not broken by the schedule.
//
// Every change of state, leaked-key revocation, review decision, report and
// evidence export is a ledger record; the engine never holds a secret longer
// than it takes to hash it.
package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Severity ranks findings.
type Severity string

const (
	Low    Severity = "low"
	Medium Severity = "medium"
	High   Severity = "high"
)

// Rank orders severities: high is 3.
func (s Severity) Rank() int {
	switch s {
	case High:
		return 3
	case Medium:
		return 2
	case Low:
		return 1
	}
	return 0
}

// State is where a finding is in its life.
type State string

const (
	Open         State = "open"
	Acknowledged State = "acknowledged"
	Resolved     State = "resolved"
	Dismissed    State = "dismissed" // a false positive
)

// ParseState checks a state name.
func ParseState(s string) (State, error) {
	switch st := State(s); st {
	case Open, Acknowledged, Resolved, Dismissed:
		return st, nil
	}
	return "", fmt.Errorf("unknown state %q (want open, acknowledged, resolved or dismissed)", s)
}

// Subject is what a finding is about.
type Subject struct {
	Kind string `json:"kind"` // key, principal, team, budget, policy, config
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
}

// Evidence backs a finding: what was measured, and where it comes from.
type Evidence struct {
	Summary       string           `json:"summary"`
	Values        map[string]int64 `json:"values,omitempty"`
	Items         []string         `json:"items,omitempty"` // models, addresses, hours … that the rule names
	RequestIDs    []string         `json:"request_ids,omitempty"`
	LedgerIndexes []int64          `json:"ledger_indexes,omitempty"`
}

// Event is one change of a finding's state.
type Event struct {
	At          time.Time `json:"at"`
	State       State     `json:"state"`
	By          string    `json:"by"` // principal id, or "gatehouse"
	Reason      string    `json:"reason,omitempty"`
	LedgerIndex int64     `json:"ledger_index"` // -1 when the ledger did not take it
}

// Finding is one result of the audit.
type Finding struct {
	ID          string    `json:"id"`
	Fingerprint string    `json:"fingerprint"`
	Rule        string    `json:"rule"`
	Severity    Severity  `json:"severity"`
	Subject     Subject   `json:"subject"`
	Title       string    `json:"title"`
	Evidence    Evidence  `json:"evidence"`
	State       State     `json:"state"`
	StateBy     string    `json:"state_by,omitempty"`
	StateReason string    `json:"state_reason,omitempty"`
	StateAt     time.Time `json:"state_at"`
	FirstSeen   time.Time `json:"first_seen"`
	LastSeen    time.Time `json:"last_seen"`
	Occurrences int64     `json:"occurrences"`
	History     []Event   `json:"history"`
	Version     int64     `json:"version"`
}

// Fingerprint identifies a finding across runs: its rule and its subject.
func Fingerprint(rule string, s Subject) string {
	h := sha256.Sum256([]byte(rule + "\x00" + s.Kind + "\x00" + s.ID))
	return hex.EncodeToString(h[:16])
}

// Filter selects findings; zero fields do not filter.
type Filter struct {
	State    State
	Severity Severity
	Rule     string
	Subject  string // subject id
	Since    time.Time
	Limit    int
}

// Errors.
var (
	ErrBadTransition = errors.New("audit: state change not allowed")
	ErrNeedReason    = errors.New("audit: a reason is required")
)

// SystemActor is who the engine's own changes are by.
const SystemActor = "gatehouse"

// LedgerKind is the kind of the ledger records of finding changes.
const LedgerKind = "finding"
