package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Finding is a result of the audit (see docs/audits.md).
type Finding struct {
	ID          string    `json:"id"`
	Fingerprint string    `json:"fingerprint"`
	Rule        string    `json:"rule"`
	Severity    string    `json:"severity"` // low, medium, high
	Subject     Subject   `json:"subject"`
	Title       string    `json:"title"`
	Evidence    Evidence  `json:"evidence"`
	State       string    `json:"state"` // open, acknowledged, resolved, dismissed
	StateBy     string    `json:"state_by,omitempty"`
	StateReason string    `json:"state_reason,omitempty"`
	StateAt     time.Time `json:"state_at"`
	FirstSeen   time.Time `json:"first_seen"`
	LastSeen    time.Time `json:"last_seen"`
	Occurrences int64     `json:"occurrences"`
	History     []Event   `json:"history"`
	Version     int64     `json:"version"`
}

// Subject is what a finding is about.
type Subject struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
}

// Evidence backs a finding.
type Evidence struct {
	Summary       string           `json:"summary"`
	Values        map[string]int64 `json:"values,omitempty"`
	Items         []string         `json:"items,omitempty"`
	RequestIDs    []string         `json:"request_ids,omitempty"`
	LedgerIndexes []int64          `json:"ledger_indexes,omitempty"`
}

// Event is one state change of a finding.
type Event struct {
	At          time.Time `json:"at"`
	State       string    `json:"state"`
	By          string    `json:"by"`
	Reason      string    `json:"reason,omitempty"`
	LedgerIndex int64     `json:"ledger_index"`
}

// FindingFilter selects findings.
type FindingFilter struct {
	State, Severity, Rule, Subject string
	Since                          time.Time
}

// RunResult is what a findings run did.
type RunResult struct {
	At        time.Time `json:"at"`
	Rules     int       `json:"rules"`
	Opened    []string  `json:"opened"`
	Updated   int       `json:"updated"`
	Resolved  []string  `json:"resolved"`
	Open      int       `json:"open"`
	Truncated bool      `json:"truncated,omitempty"`
}

// ListFindings lists findings, most severe first.
func (c *Client) ListFindings(ctx context.Context, f FindingFilter) ([]Finding, error) {
	q := url.Values{}
	for k, v := range map[string]string{"state": f.State, "severity": f.Severity, "rule": f.Rule, "subject": f.Subject} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339))
	}
	var out listOf[Finding]
	_, err := c.do(ctx, "GET", "/v1/findings?"+q.Encode(), nil, nil, &out)
	return out.Data, err
}

// Finding returns one finding with its history.
func (c *Client) Finding(ctx context.Context, id string) (Finding, error) {
	var out Finding
	_, err := c.do(ctx, "GET", "/v1/findings/"+esc(id), nil, nil, &out)
	return out, err
}

// RunFindings evaluates every rule now.
func (c *Client) RunFindings(ctx context.Context) (RunResult, error) {
	var out RunResult
	_, err := c.do(ctx, "POST", "/v1/findings/run", nil, map[string]string{}, &out)
	return out, err
}

// SetFindingState acknowledges, resolves or dismisses a finding; verb is
// "ack", "resolve" or "dismiss"; reason is required.
func (c *Client) SetFindingState(ctx context.Context, id, verb, reason string) (Finding, error) {
	var out Finding
	_, err := c.do(ctx, "POST", "/v1/findings/"+esc(id)+"/"+verb, nil, map[string]string{"reason": reason}, &out)
	return out, err
}

// LeakResult says what a reported secret was; it never holds the secret.
type LeakResult struct {
	Hint      string `json:"hint"`
	Valid     bool   `json:"valid_format"`
	KeyID     string `json:"key_id,omitempty"`
	Live      bool   `json:"live"`
	Revoked   bool   `json:"revoked"`
	FindingID string `json:"finding_id,omitempty"`
}

// ReportLeaked sends secrets found leaked (sources: where each was found,
// optional); with revoke the live ones are revoked at once.
func (c *Client) ReportLeaked(ctx context.Context, secrets, sources []string, revoke bool) ([]LeakResult, error) {
	var out listOf[LeakResult]
	_, err := c.do(ctx, "POST", "/v1/keys/leaked", nil, map[string]any{"secrets": secrets, "sources": sources, "revoke": revoke}, &out)
	return out.Data, err
}

// ReportInfo names a stored report.
type ReportInfo struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	GeneratedAt time.Time `json:"generated_at"`
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
}

// CreateReport generates and stores a report over the last span (e.g. "7d")
// and returns it as JSON (raw, to render or to keep).
func (c *Client) CreateReport(ctx context.Context, since string) (json.RawMessage, error) {
	var out json.RawMessage
	_, err := c.do(ctx, "POST", "/v1/reports", nil, map[string]string{"since": since}, &out)
	return out, err
}

// ListReports lists stored reports, newest first.
func (c *Client) ListReports(ctx context.Context) ([]ReportInfo, error) {
	var out listOf[ReportInfo]
	_, err := c.do(ctx, "GET", "/v1/reports", nil, nil, &out)
	return out.Data, err
}

// ReportAs returns a stored report rendered as json, md, html or csv.
func (c *Client) ReportAs(ctx context.Context, id, format string) ([]byte, error) {
	return c.getRaw(ctx, "/v1/reports/"+esc(id)+"?format="+url.QueryEscape(format))
}

// Evidence returns the evidence bundle (zip) of the last span (e.g. "30d").
func (c *Client) Evidence(ctx context.Context, since string) ([]byte, error) {
	return c.getRaw(ctx, "/v1/audit/evidence?since="+url.QueryEscape(since))
}

// Campaign is an access-review campaign.
type Campaign struct {
	ID        string     `json:"id"`
	Scope     string     `json:"scope"`
	Reviewer  string     `json:"reviewer,omitempty"`
	OnOverdue string     `json:"on_overdue"`
	CreatedBy string     `json:"created_by"`
	CreatedAt time.Time  `json:"created_at"`
	Due       time.Time  `json:"due"`
	State     string     `json:"state"`
	ClosedAt  *time.Time `json:"closed_at,omitempty"`
	Counts    struct {
		Total     int `json:"total"`
		Decided   int `json:"decided"`
		Kept      int `json:"kept"`
		Revoked   int `json:"revoked"`
		Reduced   int `json:"reduced"`
		Escalated int `json:"escalated"`
	} `json:"counts"`
	Version int64 `json:"version"`
}

// ReviewItem is one access to review.
type ReviewItem struct {
	ID         string     `json:"id"`
	CampaignID string     `json:"campaign_id"`
	Kind       string     `json:"kind"`
	Subject    string     `json:"subject"`
	Principal  string     `json:"principal_id"`
	Team       string     `json:"team_id,omitempty"`
	Role       string     `json:"role,omitempty"`
	Title      string     `json:"title"`
	Reviewers  []string   `json:"reviewers"`
	Decision   string     `json:"decision,omitempty"`
	Reason     string     `json:"reason,omitempty"`
	DecidedBy  string     `json:"decided_by,omitempty"`
	DecidedAt  *time.Time `json:"decided_at,omitempty"`
	Escalated  bool       `json:"escalated,omitempty"`
	Version    int64      `json:"version"`
}

// Review is a campaign with its items.
type Review struct {
	Campaign Campaign     `json:"campaign"`
	Items    []ReviewItem `json:"items"`
}

// ReviewInput starts a campaign.
type ReviewInput struct {
	Scope     string `json:"scope"` // "org" or "team:NAME"
	Reviewer  string `json:"reviewer,omitempty"`
	Due       string `json:"due,omitempty"`        // e.g. "7d"
	OnOverdue string `json:"on_overdue,omitempty"` // escalate (default) or revoke
}

// StartReview opens an access-review campaign.
func (c *Client) StartReview(ctx context.Context, in ReviewInput) (Review, error) {
	var out Review
	_, err := c.do(ctx, "POST", "/v1/reviews", nil, in, &out)
	return out, err
}

// ListReviews lists campaigns, newest first.
func (c *Client) ListReviews(ctx context.Context) ([]Campaign, error) {
	var out listOf[Campaign]
	_, err := c.do(ctx, "GET", "/v1/reviews", nil, nil, &out)
	return out.Data, err
}

// Review returns a campaign with its items.
func (c *Client) Review(ctx context.Context, id string) (Review, error) {
	var out Review
	_, err := c.do(ctx, "GET", "/v1/reviews/"+esc(id), nil, nil, &out)
	return out, err
}

// Decision is a reviewer's decision on an item.
type Decision struct {
	Decision  string     `json:"decision"` // keep, revoke, reduce
	Reason    string     `json:"reason"`
	Models    []string   `json:"models,omitempty"`    // reduce: the models the key keeps
	Endpoints []string   `json:"endpoints,omitempty"` // reduce: the endpoints it keeps
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// DecideReview decides an item; the decision takes effect at once.
func (c *Client) DecideReview(ctx context.Context, itemID string, d Decision) (ReviewItem, error) {
	var out ReviewItem
	_, err := c.do(ctx, "POST", "/v1/reviews/items/"+esc(itemID)+"/decide", nil, d, &out)
	return out, err
}

// CloseReview closes a campaign and returns its final state.
func (c *Client) CloseReview(ctx context.Context, id string) (Review, error) {
	var out Review
	_, err := c.do(ctx, "POST", "/v1/reviews/"+esc(id)+"/close", nil, map[string]string{}, &out)
	return out, err
}

// getRaw GETs a non-JSON answer (a rendered report, a zip).
func (c *Client) getRaw(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+path, nil)
	if err != nil {
		return nil, err
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin API at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 512<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 400 {
		var e struct {
			Error struct {
				Message string `json:"message"`
				Type    string `json:"type"`
			} `json:"error"`
		}
		apiErr := &Error{Status: resp.StatusCode, Message: strings.TrimSpace(string(b))}
		if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
			apiErr.Message, apiErr.Type = e.Error.Message, e.Error.Type
		}
		return nil, apiErr
	}
	return b, nil
}
