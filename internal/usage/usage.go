// Package usage records what every data-plane call consumed: tokens as the
// upstream reported them (or as counted locally, flagged), the cost at the model's
// price, status and latency. One Record per request, keyed by its request id.
package usage

import (
	"context"
	"time"
)

// Tokens is a call's token usage, normalised across providers. Input counts every
// input token, cached and cache-writing ones included; CachedInput and CacheWrite
// are the parts of Input billed at other prices.
type Tokens struct {
	Input       int64 `json:"input_tokens"`
	CachedInput int64 `json:"cached_input_tokens"`
	CacheWrite  int64 `json:"cache_write_tokens"`
	Output      int64 `json:"output_tokens"`
}

// Clamp returns t with negative counts (a buggy or hostile upstream) as zero,
// and the cached and cache-write parts no larger than the input.
func (t Tokens) Clamp() Tokens {
	t.Input, t.CachedInput, t.CacheWrite, t.Output = max(t.Input, 0), max(t.CachedInput, 0), max(t.CacheWrite, 0), max(t.Output, 0)
	t.CachedInput = min(t.CachedInput, t.Input)
	t.CacheWrite = min(t.CacheWrite, t.Input-t.CachedInput)
	return t
}

// Total returns input plus output tokens.
func (t Tokens) Total() int64 { return t.Input + t.Output }

// Record is one data-plane call. It never holds a secret: keys appear by id only.
type Record struct {
	ID          string    `json:"request_id"`
	Time        time.Time `json:"time"`
	KeyID       string    `json:"key_id"`
	PrincipalID string    `json:"principal_id"`
	TeamID      string    `json:"team_id,omitempty"`
	Endpoint    string    `json:"endpoint"`
	Model       string    `json:"model"`
	Provider    string    `json:"provider"`
	Stream      bool      `json:"stream"`
	Status      int       `json:"status"`
	ErrorCode   string    `json:"error_code,omitempty"`
	Tokens                // embedded: its fields sit at the top level in JSON
	CostMicros  int64     `json:"cost_micros"`
	Priced      bool      `json:"priced"`    // false: no price known for the model, cost is 0
	Estimated   bool      `json:"estimated"` // true: usage counted locally, upstream gave none; charged the whole hold
	// OverReservation: the upstream reported more than the gateway reserved
	// (charged as reported; a worst-case bound was wrong).
	OverReservation   bool     `json:"over_reservation,omitempty"`
	LatencyMillis     int64    `json:"latency_ms"`
	UpstreamRequestID string   `json:"upstream_request_id,omitempty"`
	Reasons           []string `json:"policy_reasons,omitempty"` // ids of the policies that decided

	Started bool `json:"-"` // the call's start record is in the ledger
	// StartTried: the call's start record was sent to the ledger (it may be
	// durable even when the call was told it failed).
	StartTried bool `json:"-"`
}

// Query selects records. Zero fields do not filter.
type Query struct {
	KeyID       string
	PrincipalID string
	TeamID      string
	Model       string
	Since       time.Time
	Until       time.Time
	Limit       int // 0: the store's default (1000)
}

// GroupBy names a dimension for Summarize.
type GroupBy string

const (
	ByKey       GroupBy = "key"
	ByPrincipal GroupBy = "principal"
	ByTeam      GroupBy = "team"
	ByModel     GroupBy = "model"
	ByDay       GroupBy = "day"
)

// Summary is the usage of one group.
type Summary struct {
	Group      string `json:"group"`
	Requests   int64  `json:"requests"`
	Tokens            // embedded
	CostMicros int64  `json:"cost_micros"`
	Estimated  int64  `json:"estimated_requests"`
}

// Store is what usage needs from storage.
type Store interface {
	InsertUsage(ctx context.Context, r Record) error
	ListUsage(ctx context.Context, q Query) ([]Record, error)
	SummarizeUsage(ctx context.Context, q Query, by GroupBy) ([]Summary, error)
}
