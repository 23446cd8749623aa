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
// Whatever a caller puts in a Record, Marshal's output is canonical and fits
// one entry: every string is made valid UTF-8 (invalid bytes become U+FFFD),
// cut on a rune boundary to its field's bound (see FieldBound), and the fields cut
// are named in "truncated". Nothing a hostile request sends can produce a record
// that ParseRecord refuses or that is too large to append
// (FuzzRecordRoundTrip, TestRecordWorstCaseFits).
//
// # Write-ahead
//
// A call's start record is durable before the upstream is called; if it cannot
// be written the call fails closed (503) and the upstream is never called. The
// end record follows the call. Start records left without an end by a crash are
// closed by an "incomplete" end record on recovery.
//
// # Outages
//
// While the store is unreachable, starts fail closed and end records wait in
// memory, retried in order. End records of refused calls with nothing at stake
// (Entry.NothingAtStake) are bounded: past Log.MaxDeferredRefusals waiting,
// they are counted into "call.summary" records, one per key × error code ×
// minute (at most MaxSummaries; then up to MaxSummaries overflow summaries,
// one per key × error code × status, and past them one with no key), which wait in the
// place of their first call and are written when the store returns. Records
// that settle money are never counted or dropped (docs/design/faults.md).
//
// # Exports
//
// The Exporter copies the log to SIEMs (a JSON-lines file, a signed webhook)
// by reading it from the store from a durable cursor per target: at least
// once, in log order, each line carrying its log_index; nothing committed is
// left out, whoever wrote it and whatever happened since; a target whose
// cursor is past the log's end (a partial restore) stalls, loudly, until an
// operator resets it (docs/design/ledger-export.md).
package ledger

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// SchemaVersion is the record format version.
const SchemaVersion = 1

// Kinds of record.
const (
	KindCallStart = "call.start"
	KindCallEnd   = "call.end"
	KindAdmin     = "admin"   // an admin API change
	KindBreaker   = "breaker" // a key suspended by the spend-velocity breaker
	// KindCallSummary stands for refused calls with nothing at stake whose
	// end records the sequencer counted instead of keeping them while the
	// store was unreachable (Entry.NothingAtStake, Log.MaxDeferredRefusals):
	// one per key × error code × minute, "count" calls, the first call's
	// request id, the last one's time and source, both ids in "detail".
	KindCallSummary = "call.summary"
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

	// Aggregated records (a refused credential's calls, package denylog;
	// KindCallSummary): how many calls the record stands for.
	Count int64 `json:"count,omitempty"`

	// Truncated names the fields (by their JSON names, in field order) that
	// Marshal cut to their bound; their values are the start of what was sent.
	Truncated []string `json:"truncated,omitempty"`
}

// FieldBound returns the largest size, in bytes of UTF-8, of a record's string
// field (by JSON name; each reason for "reasons"), or 0 for a name that is not
// one. Even if every string were at its bound and made of characters JSON
// escapes as six bytes, a record fits MaxEntrySize (TestRecordWorstCaseFits).
func FieldBound(name string) int { return bounds[name] }

var bounds = map[string]int{
	"kind": 32, "request_id": 128, "principal_id": 128, "key_id": 128, "team_id": 128, "source_ip": 64,
	"user_agent": 256, "endpoint": 128, "model": 256, "provider": 128, "decision": 16, "reasons": 128,
	"body_sha256": 64, "error_code": 64, "upstream_request_id": 256, "action": 512, "target": 256, "detail": 2048,
}

// MaxReasons is the most policy reasons a record keeps.
const MaxReasons = 32

// field is one bounded string of a record.
type field struct {
	name string
	p    *string
}

func (r *Record) strings() [17]field {
	return [17]field{{"kind", &r.Kind}, {"request_id", &r.RequestID}, {"principal_id", &r.PrincipalID}, {"key_id", &r.KeyID},
		{"team_id", &r.TeamID}, {"source_ip", &r.SourceIP}, {"user_agent", &r.UserAgent}, {"endpoint", &r.Endpoint},
		{"model", &r.Model}, {"provider", &r.Provider}, {"decision", &r.Decision}, {"body_sha256", &r.BodySHA256},
		{"error_code", &r.ErrorCode}, {"upstream_request_id", &r.UpstreamRequestID}, {"action", &r.Action},
		{"target", &r.Target}, {"detail", &r.Detail}}
}

// fieldOrder is the order of the names in Truncated: the fields' order.
var fieldOrder = [...]string{"kind", "request_id", "principal_id", "key_id", "team_id", "source_ip", "user_agent",
	"endpoint", "model", "provider", "decision", "reasons", "body_sha256", "error_code", "upstream_request_id",
	"action", "target", "detail"}

// Bound returns s as valid UTF-8 (each invalid byte replaced by U+FFFD, as
// string([]rune(s)) does), cut on a rune boundary to at most n bytes, and
// whether it was cut: the result is the longest prefix of the valid form that
// fits.
func Bound(s string, n int) (string, bool) {
	if len(s) <= n && utf8.ValidString(s) {
		return s, false
	}
	var b strings.Builder
	b.Grow(min(len(s), n))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		w := utf8.RuneLen(r)
		if b.Len()+w > n {
			return b.String(), true
		}
		if r == utf8.RuneError && size == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String(), false
}

// fieldIndex is each name's position in fieldOrder.
var fieldIndex = func() map[string]int {
	m := make(map[string]int, len(fieldOrder))
	for i, n := range &fieldOrder {
		m[n] = i
	}
	return m
}()

// sanitize bounds every string of r and records in r.Truncated what was cut.
func (r *Record) sanitize() {
	var cut [len(fieldOrder)]bool // by fieldIndex; unknown names are dropped
	for _, t := range r.Truncated {
		if i, ok := fieldIndex[t]; ok {
			cut[i] = true
		}
	}
	for _, f := range r.strings() {
		var c bool
		if *f.p, c = Bound(*f.p, bounds[f.name]); c {
			cut[fieldIndex[f.name]] = true
		}
	}
	if len(r.Reasons) > 0 {
		reasons := make([]string, 0, min(len(r.Reasons), MaxReasons))
		ri := fieldIndex["reasons"]
		for i, s := range r.Reasons {
			if i == MaxReasons {
				cut[ri] = true
				break
			}
			s, c := Bound(s, bounds["reasons"])
			cut[ri] = cut[ri] || c
			reasons = append(reasons, s)
		}
		r.Reasons = reasons
	}
	r.Truncated = nil
	for i, name := range &fieldOrder {
		if cut[i] {
			r.Truncated = append(r.Truncated, name)
		}
	}
	// time.Time encodes years 0 to 9999 only.
	if y := r.Time.Year(); y < 0 || y > 9999 {
		r.Time = time.Date(min(max(y, 0), 9999), 1, 1, 0, 0, 0, 0, time.UTC)
	}
}

// Marshal returns the canonical encoding of r, with its strings bounded (see
// FieldBound): always a record ParseRecord accepts, never larger than MaxEntrySize.
func (r Record) Marshal() []byte {
	r.V = SchemaVersion
	r.Time = r.Time.UTC().Truncate(time.Microsecond)
	r.sanitize() // copies Reasons: the caller's slice is not changed
	return r.encode()
}

// Entry returns r as a log entry: Data is Marshal's canonical bytes and
// RequestID the record's own (bounded) request id. Append and Enqueue do not
// parse an entry made so a second time (ParseRecord(Marshal(r)) always holds,
// FuzzRecordRoundTrip); an entry whose Data was replaced afterwards is parsed
// and checked as any other. Do not change Data's bytes in place.
func (r Record) Entry() Entry {
	r.V = SchemaVersion
	r.Time = r.Time.UTC().Truncate(time.Microsecond)
	r.sanitize()
	data := r.encode()
	return Entry{Data: data, RequestID: r.RequestID, made: data}
}

// encode is the canonical JSON of r as it is.
func (r Record) encode() []byte {
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
// Records written before fields were bounded stay valid: the check re-encodes
// without bounding.
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
	c := r
	c.Time = c.Time.UTC().Truncate(time.Microsecond)
	if !bytes.Equal(c.encode(), data) {
		return Record{}, fmt.Errorf("%w: not in canonical form", ErrBadRecord)
	}
	return r, nil
}
