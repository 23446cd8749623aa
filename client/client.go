// Package client is a typed Go client for the Gatehouse admin API. The CLI uses
// it, and so can any Go program that administers Gatehouse.
//
//	c := client.New("http://127.0.0.1:8081", os.Getenv("GATEHOUSE_ADMIN_KEY"))
//	k, err := c.CreateKey(ctx, client.KeyInput{Principal: "agent-1"})
//	fmt.Println(k.Secret) // shown once
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client talks to one Gatehouse admin API.
type Client struct {
	base string
	key  string
	HTTP *http.Client
}

// New returns a client for the admin API at base, authenticating with key.
func New(base, key string) *Client {
	return &Client{base: strings.TrimRight(base, "/"), key: key, HTTP: &http.Client{Timeout: 60 * time.Second}}
}

// Error is an error answer of the admin API.
type Error struct {
	Status  int
	Type    string
	Code    string
	Param   string
	Message string
}

func (e *Error) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("%s (%d %s)", e.Message, e.Status, e.Code)
	}
	return fmt.Sprintf("%s (%d)", e.Message, e.Status)
}

// do sends a request and decodes the answer into out; it returns the ETag.
func (c *Client) do(ctx context.Context, method, path string, header http.Header, in, out any) (string, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return "", err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return "", err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return "", fmt.Errorf("admin API at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode >= 400 {
		var e struct {
			Error struct {
				Message string  `json:"message"`
				Type    string  `json:"type"`
				Code    *string `json:"code"`
				Param   *string `json:"param"`
			} `json:"error"`
		}
		apiErr := &Error{Status: resp.StatusCode, Message: strings.TrimSpace(string(b))}
		if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
			apiErr.Message, apiErr.Type = e.Error.Message, e.Error.Type
			if e.Error.Code != nil {
				apiErr.Code = *e.Error.Code
			}
			if e.Error.Param != nil {
				apiErr.Param = *e.Error.Param
			}
		}
		return "", apiErr
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return "", fmt.Errorf("admin API: decoding answer: %w", err)
		}
	}
	return resp.Header.Get("ETag"), nil
}

func ifMatch(etag string) http.Header {
	if etag == "" {
		return nil
	}
	return http.Header{"If-Match": {etag}}
}

type listOf[T any] struct {
	Data []T `json:"data"`
}

func esc(s string) string { return url.PathEscape(s) }

// Team is a team.
type Team struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	MaxKeyAge string    `json:"max_key_age,omitempty"` // Go duration text; "" when the organisation's limit alone applies
	CreatedAt time.Time `json:"created_at"`
	Version   int64     `json:"version"`
}

// TeamInput creates or changes a team; nil fields are left alone.
type TeamInput struct {
	Name      *string `json:"name,omitempty"`
	MaxKeyAge *string `json:"max_key_age,omitempty"` // a duration such as "2160h"; "0s" clears it
}

// ListTeams lists teams.
func (c *Client) ListTeams(ctx context.Context) ([]Team, error) {
	var out listOf[Team]
	_, err := c.do(ctx, "GET", "/v1/teams", nil, nil, &out)
	return out.Data, err
}

// CreateTeam creates a team.
func (c *Client) CreateTeam(ctx context.Context, name string) (Team, error) {
	return c.CreateTeamWith(ctx, TeamInput{Name: &name})
}

// CreateTeamWith creates a team with the given settings.
func (c *Client) CreateTeamWith(ctx context.Context, in TeamInput) (Team, error) {
	var t Team
	_, err := c.do(ctx, "POST", "/v1/teams", nil, in, &t)
	return t, err
}

// UpdateTeam changes a team; etag "" skips the concurrency check.
func (c *Client) UpdateTeam(ctx context.Context, idOrName string, in TeamInput, etag string) (Team, error) {
	var t Team
	_, err := c.do(ctx, "PATCH", "/v1/teams/"+esc(idOrName), ifMatch(etag), in, &t)
	return t, err
}

// Team returns a team by id or name.
func (c *Client) Team(ctx context.Context, idOrName string) (Team, error) {
	var t Team
	_, err := c.do(ctx, "GET", "/v1/teams/"+esc(idOrName), nil, nil, &t)
	return t, err
}

// DeleteTeam deletes a team; etag "" skips the concurrency check.
func (c *Client) DeleteTeam(ctx context.Context, idOrName, etag string) error {
	_, err := c.do(ctx, "DELETE", "/v1/teams/"+esc(idOrName), ifMatch(etag), nil, nil)
	return err
}

// Principal is a user or service account.
type Principal struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Kind      string    `json:"kind"`
	Teams     []string  `json:"teams"`
	Roles     []string  `json:"roles"`
	Disabled  bool      `json:"disabled"`
	CreatedAt time.Time `json:"created_at"`
	Version   int64     `json:"version"`
}

// PrincipalInput creates or changes a principal; nil fields are left alone.
type PrincipalInput struct {
	Name     *string   `json:"name,omitempty"`
	Kind     *string   `json:"kind,omitempty"`
	Teams    *[]string `json:"teams,omitempty"`
	Roles    *[]string `json:"roles,omitempty"`
	Disabled *bool     `json:"disabled,omitempty"`
}

// ListPrincipals lists principals, of one team when team is not "".
func (c *Client) ListPrincipals(ctx context.Context, team string) ([]Principal, error) {
	var out listOf[Principal]
	_, err := c.do(ctx, "GET", "/v1/principals?team="+url.QueryEscape(team), nil, nil, &out)
	return out.Data, err
}

// CreatePrincipal creates a principal.
func (c *Client) CreatePrincipal(ctx context.Context, in PrincipalInput) (Principal, error) {
	var p Principal
	_, err := c.do(ctx, "POST", "/v1/principals", nil, in, &p)
	return p, err
}

// Principal returns a principal by id or name, with its ETag.
func (c *Client) Principal(ctx context.Context, idOrName string) (Principal, string, error) {
	var p Principal
	etag, err := c.do(ctx, "GET", "/v1/principals/"+esc(idOrName), nil, nil, &p)
	return p, etag, err
}

// UpdatePrincipal changes a principal; etag "" skips the concurrency check.
func (c *Client) UpdatePrincipal(ctx context.Context, idOrName string, in PrincipalInput, etag string) (Principal, error) {
	var p Principal
	_, err := c.do(ctx, "PATCH", "/v1/principals/"+esc(idOrName), ifMatch(etag), in, &p)
	return p, err
}

// DeletePrincipal deletes a principal.
func (c *Client) DeletePrincipal(ctx context.Context, idOrName, etag string) error {
	_, err := c.do(ctx, "DELETE", "/v1/principals/"+esc(idOrName), ifMatch(etag), nil, nil)
	return err
}

// Scope narrows a key.
type Scope struct {
	Models    []string `json:"models,omitempty"`
	Endpoints []string `json:"endpoints,omitempty"`
	CIDRs     []string `json:"source_cidrs,omitempty"`
}

// Key is a key's metadata; never its secret.
type Key struct {
	ID            string     `json:"id"`
	Kind          string     `json:"kind"`
	Name          string     `json:"name"`
	Hint          string     `json:"hint"`
	PrincipalID   string     `json:"principal_id"`
	TeamID        string     `json:"team_id,omitempty"`
	Scope         Scope      `json:"scope"`
	ExpiresAt     *time.Time `json:"expires_at,omitempty"`
	RevokedAt     *time.Time `json:"revoked_at,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	LastUsedAt    *time.Time `json:"last_used_at,omitempty"`
	SuspendedAt   *time.Time `json:"suspended_at,omitempty"`
	SuspendReason string     `json:"suspend_reason,omitempty"`
	// After a rotation: the previous secret's hint and how long it still works.
	PrevHint       string     `json:"previous_hint,omitempty"`
	PrevValidUntil *time.Time `json:"previous_valid_until,omitempty"`
	RotatedAt      *time.Time `json:"rotated_at,omitempty"`
	MFARequired    bool       `json:"mfa_required,omitempty"`
	Version        int64      `json:"version"`
	// State is what the data plane enforces now: active, expired, revoked or
	// suspended (an expired maximum key age included).
	State string `json:"state,omitempty"`
	// EffectiveExpiresAt is when the key stops working, the maximum key age
	// of its organisation and team included; nil: never.
	EffectiveExpiresAt *time.Time `json:"effective_expires_at,omitempty"`
}

// CreatedKey is a new key with its secret, which is shown this once.
type CreatedKey struct {
	Key
	Secret string `json:"key"`
}

// KeyInput creates a key.
type KeyInput struct {
	Name        string     `json:"name,omitempty"`
	Kind        string     `json:"kind,omitempty"` // "virtual" (default) or "admin"
	Principal   string     `json:"principal"`
	Team        string     `json:"team,omitempty"`
	Scope       Scope      `json:"scope"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	ExpiresIn   string     `json:"expires_in,omitempty"`
	MFARequired bool       `json:"mfa_required,omitempty"` // the owner (a user) must exchange it with a TOTP code
}

// KeyFilter selects keys.
type KeyFilter struct {
	Kind, Principal, Team string
	IncludeRevoked        bool
}

// ListKeys lists keys.
func (c *Client) ListKeys(ctx context.Context, f KeyFilter) ([]Key, error) {
	q := url.Values{}
	for k, v := range map[string]string{"kind": f.Kind, "principal": f.Principal, "team": f.Team} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.IncludeRevoked {
		q.Set("include_revoked", "true")
	}
	var out listOf[Key]
	_, err := c.do(ctx, "GET", "/v1/keys?"+q.Encode(), nil, nil, &out)
	return out.Data, err
}

// CreateKey creates a key.
func (c *Client) CreateKey(ctx context.Context, in KeyInput) (CreatedKey, error) {
	var k CreatedKey
	_, err := c.do(ctx, "POST", "/v1/keys", nil, in, &k)
	return k, err
}

// Key returns a key by id.
func (c *Client) Key(ctx context.Context, id string) (Key, error) {
	var k Key
	_, err := c.do(ctx, "GET", "/v1/keys/"+esc(id), nil, nil, &k)
	return k, err
}

// RevokeKey revokes a key; etag "" skips the concurrency check.
func (c *Client) RevokeKey(ctx context.Context, id, etag string) (Key, error) {
	var k Key
	_, err := c.do(ctx, "POST", "/v1/keys/"+esc(id)+"/revoke", ifMatch(etag), nil, &k)
	return k, err
}

// RotateKey gives a key a new secret (returned once); the old secret works for
// grace more (e.g. "24h"; "" for the default 24h).
func (c *Client) RotateKey(ctx context.Context, id, grace string) (CreatedKey, error) {
	var k CreatedKey
	_, err := c.do(ctx, "POST", "/v1/keys/"+esc(id)+"/rotate", nil, map[string]string{"grace": grace}, &k)
	return k, err
}

// ReinstateKey lifts a breaker's suspension of a key.
func (c *Client) ReinstateKey(ctx context.Context, id, etag string) (Key, error) {
	var k Key
	_, err := c.do(ctx, "POST", "/v1/keys/"+esc(id)+"/reinstate", ifMatch(etag), nil, &k)
	return k, err
}

// UpstreamKey is an upstream credential's metadata.
type UpstreamKey struct {
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"created_at"`
}

// Provider is a configured upstream.
type Provider struct {
	ID        string        `json:"id"`
	Name      string        `json:"name"`
	Type      string        `json:"type"`
	BaseURL   string        `json:"base_url"`
	Models    []string      `json:"models"`
	Keys      []UpstreamKey `json:"keys"`
	CreatedAt time.Time     `json:"created_at"`
	Version   int64         `json:"version"`
}

// ProviderInput adds a provider.
type ProviderInput struct {
	Name    string   `json:"name"`
	Type    string   `json:"type"`
	BaseURL string   `json:"base_url,omitempty"`
	Models  []string `json:"models"`
	Keys    []string `json:"keys,omitempty"`
}

// ListProviders lists providers.
func (c *Client) ListProviders(ctx context.Context) ([]Provider, error) {
	var out listOf[Provider]
	_, err := c.do(ctx, "GET", "/v1/providers", nil, nil, &out)
	return out.Data, err
}

// CreateProvider adds a provider.
func (c *Client) CreateProvider(ctx context.Context, in ProviderInput) (Provider, error) {
	var p Provider
	_, err := c.do(ctx, "POST", "/v1/providers", nil, in, &p)
	return p, err
}

// Provider returns a provider by id or name.
func (c *Client) Provider(ctx context.Context, idOrName string) (Provider, error) {
	var p Provider
	_, err := c.do(ctx, "GET", "/v1/providers/"+esc(idOrName), nil, nil, &p)
	return p, err
}

// DeleteProvider removes a provider.
func (c *Client) DeleteProvider(ctx context.Context, idOrName, etag string) error {
	_, err := c.do(ctx, "DELETE", "/v1/providers/"+esc(idOrName), ifMatch(etag), nil, nil)
	return err
}

// AddProviderKey adds an upstream key to a provider.
func (c *Client) AddProviderKey(ctx context.Context, idOrName, key string) (UpstreamKey, error) {
	var k UpstreamKey
	_, err := c.do(ctx, "POST", "/v1/providers/"+esc(idOrName)+"/keys", nil, map[string]string{"key": key}, &k)
	return k, err
}

// DeleteProviderKey removes an upstream key.
func (c *Client) DeleteProviderKey(ctx context.Context, idOrName, keyID string) error {
	_, err := c.do(ctx, "DELETE", "/v1/providers/"+esc(idOrName)+"/keys/"+esc(keyID), nil, nil, nil)
	return err
}

// Price is a model's price in micro-dollars per million tokens.
type Price struct {
	Model       string     `json:"model"`
	Aliases     []string   `json:"aliases,omitempty"`
	Input       int64      `json:"input_micros_per_mtok"`
	CachedInput int64      `json:"cached_input_micros_per_mtok"`
	CacheWrite  int64      `json:"cache_write_micros_per_mtok"`
	Output      int64      `json:"output_micros_per_mtok"`
	MaxOutput   int64      `json:"max_output_tokens,omitempty"`
	LongContext *PriceTier `json:"long_context,omitempty"`
	Source      string     `json:"source,omitempty"`     // "default" or "override"
	SourceURL   string     `json:"source_url,omitempty"` // where a default's list price was read
	Checked     string     `json:"checked,omitempty"`    // the day it was read
	Note        string     `json:"note,omitempty"`
	UpdatedAt   time.Time  `json:"updated_at,omitzero"`
}

// PriceTier is a long-context tier: a request with more than Above input
// tokens pays these prices for all its tokens.
type PriceTier struct {
	Above       int64 `json:"above_input_tokens"`
	Input       int64 `json:"input_micros_per_mtok"`
	CachedInput int64 `json:"cached_input_micros_per_mtok"`
	CacheWrite  int64 `json:"cache_write_micros_per_mtok"`
	Output      int64 `json:"output_micros_per_mtok"`
}

// Model is a routable model.
type Model struct {
	ID       string `json:"id"`
	Provider string `json:"provider"`
	Price    *Price `json:"price,omitempty"`
}

// Models lists routable models and whether the simulator serves them.
func (c *Client) Models(ctx context.Context) ([]Model, bool, error) {
	var out struct {
		Data      []Model `json:"data"`
		Simulated bool    `json:"simulated"`
	}
	_, err := c.do(ctx, "GET", "/v1/models", nil, nil, &out)
	return out.Data, out.Simulated, err
}

// Prices lists the effective price table.
func (c *Client) Prices(ctx context.Context) ([]Price, error) {
	var out listOf[Price]
	_, err := c.do(ctx, "GET", "/v1/prices", nil, nil, &out)
	return out.Data, err
}

// PriceOf returns the price that applies to a model id (exact id, alias or
// operator glob), or a 404 error when the model is unpriced.
func (c *Client) PriceOf(ctx context.Context, model string) (Price, error) {
	var out listOf[Price]
	if _, err := c.do(ctx, "GET", "/v1/prices?model="+url.QueryEscape(model), nil, nil, &out); err != nil {
		return Price{}, err
	}
	if len(out.Data) != 1 {
		return Price{}, fmt.Errorf("gatehouse: %d prices for one model", len(out.Data))
	}
	return out.Data[0], nil
}

// SetPrice overrides a model's price.
func (c *Client) SetPrice(ctx context.Context, p Price) (Price, error) {
	var out Price
	model := p.Model
	p.Model, p.Source = "", ""
	_, err := c.do(ctx, "PUT", "/v1/prices/"+esc(model), nil, struct {
		Input       int64      `json:"input_micros_per_mtok"`
		CachedInput int64      `json:"cached_input_micros_per_mtok"`
		CacheWrite  int64      `json:"cache_write_micros_per_mtok"`
		Output      int64      `json:"output_micros_per_mtok"`
		MaxOutput   int64      `json:"max_output_tokens"`
		LongContext *PriceTier `json:"long_context,omitempty"`
	}{p.Input, p.CachedInput, p.CacheWrite, p.Output, p.MaxOutput, p.LongContext}, &out)
	return out, err
}

// DeletePrice removes a price override.
func (c *Client) DeletePrice(ctx context.Context, model string) error {
	_, err := c.do(ctx, "DELETE", "/v1/prices/"+esc(model), nil, nil, nil)
	return err
}

// UsageRecord is one call.
type UsageRecord struct {
	RequestID         string    `json:"request_id"`
	Time              time.Time `json:"time"`
	KeyID             string    `json:"key_id"`
	PrincipalID       string    `json:"principal_id"`
	TeamID            string    `json:"team_id"`
	Endpoint          string    `json:"endpoint"`
	Model             string    `json:"model"`
	Provider          string    `json:"provider"`
	Stream            bool      `json:"stream"`
	Status            int       `json:"status"`
	ErrorCode         string    `json:"error_code,omitempty"`
	InputTokens       int64     `json:"input_tokens"`
	CachedInputTokens int64     `json:"cached_input_tokens"`
	CacheWriteTokens  int64     `json:"cache_write_tokens"`
	OutputTokens      int64     `json:"output_tokens"`
	CostMicros        int64     `json:"cost_micros"`
	Priced            bool      `json:"priced"`
	Estimated         bool      `json:"estimated"`
	OverReservation   bool      `json:"over_reservation,omitempty"` // the upstream reported more than was reserved
	LatencyMillis     int64     `json:"latency_ms"`
	UpstreamRequestID string    `json:"upstream_request_id,omitempty"`
	Reasons           []string  `json:"policy_reasons,omitempty"` // the policies that decided
}

// UsageSummary is the usage of one group.
type UsageSummary struct {
	Group             string `json:"group"`
	Requests          int64  `json:"requests"`
	InputTokens       int64  `json:"input_tokens"`
	CachedInputTokens int64  `json:"cached_input_tokens"`
	CacheWriteTokens  int64  `json:"cache_write_tokens"`
	OutputTokens      int64  `json:"output_tokens"`
	CostMicros        int64  `json:"cost_micros"`
	Cost              string `json:"cost"`
	Estimated         int64  `json:"estimated_requests"`
}

// UsageQuery selects usage; empty fields do not filter.
type UsageQuery struct {
	Key, Principal, Team, Model string
	Since, Until                time.Time
	Limit                       int
}

func (q UsageQuery) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"key": q.Key, "principal": q.Principal, "team": q.Team, "model": q.Model} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339))
	}
	if !q.Until.IsZero() {
		v.Set("until", q.Until.UTC().Format(time.RFC3339))
	}
	if q.Limit > 0 {
		v.Set("limit", fmt.Sprint(q.Limit))
	}
	return v
}

// Usage lists usage records, newest first.
func (c *Client) Usage(ctx context.Context, q UsageQuery) ([]UsageRecord, error) {
	var out listOf[UsageRecord]
	_, err := c.do(ctx, "GET", "/v1/usage?"+q.values().Encode(), nil, nil, &out)
	return out.Data, err
}

// UsageSummary sums usage by "key", "principal", "team", "model" or "day".
func (c *Client) UsageSummary(ctx context.Context, q UsageQuery, groupBy string) ([]UsageSummary, error) {
	v := q.values()
	v.Set("group_by", groupBy)
	var out listOf[UsageSummary]
	_, err := c.do(ctx, "GET", "/v1/usage/summary?"+v.Encode(), nil, nil, &out)
	return out.Data, err
}

// Budget is a money cap with its current period's counters.
type Budget struct {
	ID          string    `json:"id"`
	Scope       string    `json:"scope"`
	ScopeID     string    `json:"scope_id,omitempty"`
	Model       string    `json:"model,omitempty"`
	Period      string    `json:"period"`
	TimeZone    string    `json:"time_zone"`
	LimitMicros int64     `json:"limit_micros"`
	Hard        bool      `json:"hard"`
	Clamp       bool      `json:"clamp"`
	Thresholds  []int     `json:"thresholds"`
	CreatedAt   time.Time `json:"created_at"`
	Version     int64     `json:"version"`
	PeriodStart time.Time `json:"period_start"`
	PeriodEnd   time.Time `json:"period_end"`
	Spent       int64     `json:"spent_micros"`
	Reserved    int64     `json:"reserved_micros"`
	Remaining   int64     `json:"remaining_micros"`
	Limit       string    `json:"limit"`
	SpentText   string    `json:"spent"`
	RemainText  string    `json:"remaining"`
}

// BudgetInput creates or changes a budget; nil fields are left alone.
type BudgetInput struct {
	Scope       *string `json:"scope,omitempty"` // key, principal, team or org
	ScopeID     *string `json:"scope_id,omitempty"`
	Model       *string `json:"model,omitempty"`
	Period      *string `json:"period,omitempty"` // day, week, month or lifetime
	TimeZone    *string `json:"time_zone,omitempty"`
	LimitMicros *int64  `json:"limit_micros,omitempty"`
	Hard        *bool   `json:"hard,omitempty"`
	Clamp       *bool   `json:"clamp,omitempty"`
	Thresholds  *[]int  `json:"thresholds,omitempty"`
}

// ListBudgets lists budgets with their current counters.
func (c *Client) ListBudgets(ctx context.Context) ([]Budget, error) {
	var out listOf[Budget]
	_, err := c.do(ctx, "GET", "/v1/budgets", nil, nil, &out)
	return out.Data, err
}

// CreateBudget sets a budget.
func (c *Client) CreateBudget(ctx context.Context, in BudgetInput) (Budget, error) {
	var b Budget
	_, err := c.do(ctx, "POST", "/v1/budgets", nil, in, &b)
	return b, err
}

// Budget returns a budget with its counters.
func (c *Client) Budget(ctx context.Context, id string) (Budget, error) {
	var b Budget
	_, err := c.do(ctx, "GET", "/v1/budgets/"+esc(id), nil, nil, &b)
	return b, err
}

// UpdateBudget changes a budget's limit, model, hardness, clamp, thresholds or zone.
func (c *Client) UpdateBudget(ctx context.Context, id string, in BudgetInput, etag string) (Budget, error) {
	var b Budget
	_, err := c.do(ctx, "PATCH", "/v1/budgets/"+esc(id), ifMatch(etag), in, &b)
	return b, err
}

// DeleteBudget deletes a budget.
func (c *Client) DeleteBudget(ctx context.Context, id, etag string) error {
	_, err := c.do(ctx, "DELETE", "/v1/budgets/"+esc(id), ifMatch(etag), nil, nil)
	return err
}

// Spend returns the budgets that apply to a key, principal or team ("" for
// all), with their counters. Give at most one.
func (c *Client) Spend(ctx context.Context, key, principal, team string) ([]Budget, error) {
	q := url.Values{}
	for k, v := range map[string]string{"key": key, "principal": principal, "team": team} {
		if v != "" {
			q.Set(k, v)
		}
	}
	var out listOf[Budget]
	_, err := c.do(ctx, "GET", "/v1/spend?"+q.Encode(), nil, nil, &out)
	return out.Data, err
}

// Limit is the rate limits of one scope.
type Limit struct {
	ID         string    `json:"id"`
	Scope      string    `json:"scope"`
	ScopeID    string    `json:"scope_id"`
	RPM        int64     `json:"rpm"`
	TPM        int64     `json:"tpm"`
	Concurrent int64     `json:"concurrent"`
	CreatedAt  time.Time `json:"created_at"`
	Version    int64     `json:"version"`
}

// SetLimit creates or replaces the rate limits of a scope (key, principal or
// team); zero fields do not limit.
func (c *Client) SetLimit(ctx context.Context, l Limit) (Limit, error) {
	var out Limit
	_, err := c.do(ctx, "PUT", "/v1/limits", nil, map[string]any{"scope": l.Scope, "scope_id": l.ScopeID, "rpm": l.RPM, "tpm": l.TPM, "concurrent": l.Concurrent}, &out)
	return out, err
}

// ListLimits lists rate limits.
func (c *Client) ListLimits(ctx context.Context) ([]Limit, error) {
	var out listOf[Limit]
	_, err := c.do(ctx, "GET", "/v1/limits", nil, nil, &out)
	return out.Data, err
}

// DeleteLimit deletes a scope's rate limits.
func (c *Client) DeleteLimit(ctx context.Context, id string) error {
	_, err := c.do(ctx, "DELETE", "/v1/limits/"+esc(id), nil, nil, nil)
	return err
}

// PolicyVersion is an applied policy set.
type PolicyVersion struct {
	Version   int64             `json:"version"`
	Files     map[string]string `json:"files,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
	CreatedBy string            `json:"created_by"`
	Note      string            `json:"note"`
}

// Policies returns the policy set in force (version 0: the shipped defaults).
func (c *Client) Policies(ctx context.Context) (PolicyVersion, error) {
	var v PolicyVersion
	_, err := c.do(ctx, "GET", "/v1/policies", nil, nil, &v)
	return v, err
}

// ApplyPolicies validates files and makes them the policy set in force.
func (c *Client) ApplyPolicies(ctx context.Context, files map[string]string, note string) (PolicyVersion, error) {
	var v PolicyVersion
	_, err := c.do(ctx, "PUT", "/v1/policies", nil, map[string]any{"files": files, "note": note}, &v)
	return v, err
}

// PolicyHistory lists applied versions, newest first.
func (c *Client) PolicyHistory(ctx context.Context) ([]PolicyVersion, error) {
	var out listOf[PolicyVersion]
	_, err := c.do(ctx, "GET", "/v1/policies/history", nil, nil, &out)
	return out.Data, err
}

// RollbackPolicies applies version again (0: the one before the current).
func (c *Client) RollbackPolicies(ctx context.Context, version int64) (PolicyVersion, error) {
	var v PolicyVersion
	_, err := c.do(ctx, "POST", "/v1/policies/rollback", nil, map[string]any{"version": version}, &v)
	return v, err
}

// WhatIfChange is a group of recorded calls whose decision would change.
type WhatIfChange struct {
	Principal string   `json:"principal_id"`
	From      string   `json:"from"`
	To        string   `json:"to"`
	Reasons   []string `json:"reasons"`
	Calls     int      `json:"calls"`
	Example   string   `json:"example_request_id"`
}

// WhatIf replays recorded calls since a time against candidate policies.
func (c *Client) WhatIf(ctx context.Context, files map[string]string, since time.Time) (replayed int, changes []WhatIfChange, err error) {
	var out struct {
		Replayed int            `json:"replayed"`
		Changes  []WhatIfChange `json:"changes"`
	}
	_, err = c.do(ctx, "POST", "/v1/policies/whatif", nil, map[string]any{"files": files, "since": since.UTC().Format(time.RFC3339)}, &out)
	return out.Replayed, out.Changes, err
}

// RevokeTokens revokes one access token by its jti, or every token of a
// principal issued until now. Give one.
func (c *Client) RevokeTokens(ctx context.Context, jti, principal string) error {
	_, err := c.do(ctx, "POST", "/v1/tokens/revoke", nil, map[string]string{"jti": jti, "principal": principal}, nil)
	return err
}

// Login starts an admin API session with a user's password and, when the user
// has TOTP, the current code. The session token works where an admin key goes.
func (c *Client) Login(ctx context.Context, user, password, code string) (session string, expires time.Time, err error) {
	s, err := c.LoginSession(ctx, user, password, code)
	return s.Session, s.ExpiresAt, err
}

// LoginSession is what a login answers.
type LoginSession struct {
	Session   string    `json:"session"`
	ExpiresAt time.Time `json:"expires_at"`
	// EnrollmentOnly: require_mfa is on and the user has no second factor
	// yet; the session may only enrol one (EnrollTOTP with the password,
	// then ConfirmTOTP), after which the user logs in again with the code.
	EnrollmentOnly bool   `json:"enrollment_only"`
	Next           string `json:"next,omitempty"`
}

// LoginSession logs in with a password (and a TOTP code when the user has
// one) and returns the whole answer.
func (c *Client) LoginSession(ctx context.Context, user, password, code string) (LoginSession, error) {
	var out LoginSession
	_, err := c.do(ctx, "POST", "/v1/auth/login", nil, map[string]string{"user": user, "password": password, "code": code}, &out)
	return out, err
}

// OIDCInfo is where users log in through the organisation's identity provider.
type OIDCInfo struct {
	Issuer   string   `json:"issuer"`
	ClientID string   `json:"client_id"`
	Scopes   []string `json:"scopes"`
}

// OIDCInfo returns the OIDC login settings (404 when not configured).
func (c *Client) OIDCInfo(ctx context.Context) (OIDCInfo, error) {
	var out OIDCInfo
	_, err := c.do(ctx, "GET", "/v1/auth/oidc", nil, nil, &out)
	return out, err
}

// LoginOIDC exchanges an ID token from the identity provider for a session.
func (c *Client) LoginOIDC(ctx context.Context, idToken string) (session string, expires time.Time, err error) {
	var out struct {
		Session   string    `json:"session"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	_, err = c.do(ctx, "POST", "/v1/auth/oidc", nil, map[string]string{"id_token": idToken}, &out)
	return out.Session, out.ExpiresAt, err
}

// StepUp records a fresh second factor for the current session.
func (c *Client) StepUp(ctx context.Context, code string) error {
	_, err := c.do(ctx, "POST", "/v1/auth/step-up", nil, map[string]string{"code": code}, nil)
	return err
}

// EnrollTOTP starts TOTP enrolment for the session's user.
func (c *Client) EnrollTOTP(ctx context.Context) (secret, url string, err error) {
	var out struct {
		Secret string `json:"secret"`
		URL    string `json:"otpauth_url"`
	}
	_, err = c.do(ctx, "POST", "/v1/auth/totp/enroll", nil, map[string]string{}, &out)
	return out.Secret, out.URL, err
}

// ConfirmTOTP confirms enrolment with the current code; it returns recovery codes, once.
func (c *Client) ConfirmTOTP(ctx context.Context, code string) ([]string, error) {
	var out struct {
		Codes []string `json:"recovery_codes"`
	}
	_, err := c.do(ctx, "POST", "/v1/auth/totp/confirm", nil, map[string]string{"code": code}, &out)
	return out.Codes, err
}

// SetPassword sets a user's password (and ends the user's sessions).
func (c *Client) SetPassword(ctx context.Context, user, password string) error {
	_, err := c.do(ctx, "PUT", "/v1/principals/"+esc(user)+"/password", nil, map[string]string{"password": password}, nil)
	return err
}

// EndSessions ends every login session of a user.
func (c *Client) EndSessions(ctx context.Context, user string) error {
	_, err := c.do(ctx, "DELETE", "/v1/principals/"+esc(user)+"/sessions", nil, nil, nil)
	return err
}

// DoJSON sends any admin API request: for routes this client has no method for.
func (c *Client) DoJSON(ctx context.Context, method, path string, in, out any) (etag string, err error) {
	return c.do(ctx, method, path, nil, in, out)
}
