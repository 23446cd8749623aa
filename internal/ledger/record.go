// Package ledger is Gatehouse's tamper-evident log: every API call and every
// admin action is a record, and records are the leaves of an RFC 6962 / 9162
// Merkle tree (hashing and proofs by golang.org/x/mod/sumdb/tlog), appended by
// one sequencer in batches (group commit), with signed checkpoints in the C2SP
// tlog-checkpoint format (golang.org/x/mod/sumdb/note, Ed25519) and served in
// the C2SP tlog-tiles layout, so that an auditor can verify the log without
// trusting the operator.
//
// # Records
//
// A record is canonical JSON: a fixed struct, fields in a fixed order, no HTML
// escaping, no insignificant white space, schema version "v": 1. The leaf hash
// is computed over the stored bytes, so verification never re-encodes. No
// secret ever enters a record: keys appear by id, bodies by SHA-256.
//
// # Write-ahead
//
// A call's start record is durable before the upstream is called; if it cannot
// be written the call fails closed (503) and the upstream is never called. The
// end record follows the call. Start records left without an end by a crash are
// closed by an "incomplete" end record on recovery.
package ledger

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// SchemaVersion is the record format version.
const SchemaVersion = 1

// Kinds of record.
const (
	KindCallStart = "call.start"
	KindCallEnd   = "call.end"
	KindAdmin     = "admin"   // an admin API change
	KindBreaker   = "breaker" // a key suspended by the spend-velocity breaker
)

// Record is one entry of the log. Fields that do not apply are omitted.
type Record struct {
	V         int       `json:"v"`
	Kind      string    `json:"kind"`
	Time      time.Time `json:"time"`
	RequestID string    `json:"request_id"`

	// Who.
	PrincipalID string `json:"principal_id,omitempty"`
	KeyID       string `json:"key_id,omitempty"`
	TeamID      string `json:"team_id,omitempty"`
	SourceIP    string `json:"source_ip,omitempty"`
	UserAgent   string `json:"user_agent,omitempty"`

	// Calls.
	Endpoint          string   `json:"endpoint,omitempty"`
	Model             string   `json:"model,omitempty"`
	Provider          string   `json:"provider,omitempty"`
	Stream            bool     `json:"stream,omitempty"`
	Decision          string   `json:"decision,omitempty"` // "allow" or "deny"
	Reasons           []string `json:"reasons,omitempty"`
	BodySHA256        string   `json:"body_sha256,omitempty"`
	Status            int      `json:"status,omitempty"`
	ErrorCode         string   `json:"error_code,omitempty"`
	InputTokens       int64    `json:"input_tokens,omitempty"`
	CachedInputTokens int64    `json:"cached_input_tokens,omitempty"`
	OutputTokens      int64    `json:"output_tokens,omitempty"`
	CostMicros        int64    `json:"cost_micros,omitempty"`
	Estimated         bool     `json:"estimated,omitempty"`
	LatencyMillis     int64    `json:"latency_ms,omitempty"`
	UpstreamRequestID string   `json:"upstream_request_id,omitempty"`

	// Admin actions.
	Action string `json:"action,omitempty"` // e.g. "POST /v1/keys"
	Target string `json:"target,omitempty"` // the resource's id, when known
	Detail string `json:"detail,omitempty"`

	// Aggregated records (a refused credential's calls, package denylog):
	// how many calls the record stands for.
	Count int64 `json:"count,omitempty"`
}

// Marshal returns the canonical encoding of r.
func (r Record) Marshal() []byte {
	r.V = SchemaVersion
	r.Time = r.Time.UTC().Truncate(time.Microsecond)
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		panic(fmt.Sprintf("ledger: encoding a record: %v", err)) // plain fields only: cannot fail
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// ErrBadRecord is returned by ParseRecord.
var ErrBadRecord = errors.New("ledger: malformed record")

// ParseRecord decodes a stored record, refusing unknown fields, other schema
// versions and anything that is not canonical (re-encoding must give the same
// bytes), so that two different byte strings never mean the same record.
func ParseRecord(data []byte) (Record, error) {
	var r Record
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	if dec.More() {
		return Record{}, fmt.Errorf("%w: trailing data", ErrBadRecord)
	}
	if r.V != SchemaVersion {
		return Record{}, fmt.Errorf("%w: schema version %d", ErrBadRecord, r.V)
	}
	if !bytes.Equal(r.Marshal(), data) {
		return Record{}, fmt.Errorf("%w: not in canonical form", ErrBadRecord)
	}
	return r, nil
}
