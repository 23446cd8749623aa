package audit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/alert"
	"github.com/gatehouse-gw/gatehouse/internal/glob"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/store"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// Access reviews: a campaign asks reviewers to confirm who keeps access. It
// has one item per key and per team membership and admin role in its scope;
// each item has reviewers (by default the admins of the team; the
// organisation's admins for org scope), and nobody reviews their own access.
// A decision (keep, revoke, reduce) takes effect at once and is a ledger
// record. Items left undecided at the due date are escalated (to every
// organisation admin, with an alert) or, when the campaign says so, revoked.

// Campaign is an access-review campaign.
type Campaign struct {
	ID        string     `json:"id"`
	Scope     string     `json:"scope"` // "org" or "team:<id>"
	Reviewer  string     `json:"reviewer,omitempty"`
	OnOverdue string     `json:"on_overdue"` // escalate or revoke
	CreatedBy string     `json:"created_by"`
	CreatedAt time.Time  `json:"created_at"`
	Due       time.Time  `json:"due"`
	State     string     `json:"state"` // open or closed
	ClosedAt  *time.Time `json:"closed_at,omitempty"`
	Counts    Counts     `json:"counts"`
	Version   int64      `json:"version"`
}

// Counts summarise a campaign's items.
type Counts struct {
	Total     int `json:"total"`
	Decided   int `json:"decided"`
	Kept      int `json:"kept"`
	Revoked   int `json:"revoked"`
	Reduced   int `json:"reduced"`
	Escalated int `json:"escalated"`
}

// Item is one access to review.
type Item struct {
	ID         string     `json:"id"`
	CampaignID string     `json:"campaign_id"`
	Kind       string     `json:"kind"` // key, membership, role
	Subject    string     `json:"subject"`
	Principal  string     `json:"principal_id"` // whose access it is
	Team       string     `json:"team_id,omitempty"`
	Role       string     `json:"role,omitempty"`
	Title      string     `json:"title"`
	Reviewers  []string   `json:"reviewers"`
	Decision   string     `json:"decision,omitempty"` // keep, revoke, reduce
	Reason     string     `json:"reason,omitempty"`
	DecidedBy  string     `json:"decided_by,omitempty"`
	DecidedAt  *time.Time `json:"decided_at,omitempty"`
	Escalated  bool       `json:"escalated,omitempty"`
	Ledger     int64      `json:"ledger_index,omitempty"`
	Reductions *Reduction `json:"reduction,omitempty"`
	Version    int64      `json:"version"`
}

// Reduction narrows a key: models and endpoints it keeps, an expiry.
type Reduction struct {
	Models    []string   `json:"models,omitempty"`
	Endpoints []string   `json:"endpoints,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// ReviewStore keeps campaigns and their items, and narrows keys.
type ReviewStore interface {
	CreateCampaign(ctx context.Context, c Campaign, items []Item) error
	Campaign(ctx context.Context, id string) (Campaign, error)
	ListCampaigns(ctx context.Context) ([]Campaign, error)
	UpdateCampaign(ctx context.Context, c Campaign, version int64) (Campaign, error)
	ReviewItems(ctx context.Context, campaignID string) ([]Item, error)
	ReviewItem(ctx context.Context, id string) (Item, error)
	UpdateReviewItem(ctx context.Context, it Item, version int64) (Item, error)
	UpdatePrincipal(ctx context.Context, p org.Principal, version int64) (org.Principal, error)
	// NarrowKey sets a key's scope and expiry if the key is at version
	// (store.ErrConflict otherwise; store.AnyVersion skips the check).
	NarrowKey(ctx context.Context, id string, version int64, scope vkey.Scope, expires *time.Time) (vkey.Key, error)
}

// Review errors.
var (
	ErrSelfReview  = errors.New("audit: a reviewer cannot review their own access")
	ErrNotReviewer = errors.New("audit: not a reviewer of this item")
	ErrDecided     = errors.New("audit: the item is decided already")
	ErrClosed      = errors.New("audit: the campaign is closed")
	ErrBadDecision = errors.New("audit: bad decision")
)

func (e *Engine) reviews() (ReviewStore, error) {
	rs, ok := e.d.Store.(ReviewStore)
	if !ok {
		return nil, errors.New("audit: the store keeps no reviews")
	}
	return rs, nil
}

// StartReview opens a campaign over scope ("org" or "team:NAME-or-ID").
func (e *Engine) StartReview(ctx context.Context, scope, reviewer, onOverdue, by string, due time.Duration) (Campaign, []Item, error) {
	rs, err := e.reviews()
	if err != nil {
		return Campaign{}, nil, err
	}
	if onOverdue == "" {
		onOverdue = "escalate"
	}
	if onOverdue != "escalate" && onOverdue != "revoke" {
		return Campaign{}, nil, fmt.Errorf("%w: on_overdue must be escalate or revoke", ErrBadDecision)
	}
	if due <= 0 {
		return Campaign{}, nil, fmt.Errorf("%w: due must be positive", ErrBadDecision)
	}
	now := e.d.Now().UTC()
	ps, err := e.d.Store.ListPrincipals(ctx, "")
	if err != nil {
		return Campaign{}, nil, err
	}
	teamID := ""
	if scope != "org" {
		name, ok := cutPrefix(scope, "team:")
		if !ok || name == "" {
			return Campaign{}, nil, fmt.Errorf("%w: scope must be org or team:NAME", ErrBadDecision)
		}
		t, err := e.d.Store.Team(ctx, name)
		if err != nil {
			return Campaign{}, nil, err
		}
		teamID, scope = t.ID, "team:"+t.ID
	}
	if reviewer != "" {
		p, err := e.d.Store.Principal(ctx, reviewer)
		if err != nil {
			return Campaign{}, nil, err
		}
		reviewer = p.ID
	}
	var orgAdmins, teamAdmins []string
	for _, p := range ps {
		if p.Disabled || !slices.Contains(p.Roles, "admin") {
			continue
		}
		orgAdmins = append(orgAdmins, p.ID)
		if teamID != "" && slices.Contains(p.Teams, teamID) {
			teamAdmins = append(teamAdmins, p.ID)
		}
	}
	reviewers := func(subject string) []string {
		var base []string
		switch {
		case reviewer != "":
			base = []string{reviewer}
		case len(teamAdmins) > 0:
			base = teamAdmins
		default:
			base = orgAdmins
		}
		return slices.DeleteFunc(slices.Clone(base), func(id string) bool { return id == subject })
	}
	c := Campaign{ID: vkey.NewID("rev"), Scope: scope, Reviewer: reviewer, OnOverdue: onOverdue, CreatedBy: by, CreatedAt: now, Due: now.Add(due), State: "open", Version: 1}
	var items []Item
	add := func(it Item) {
		it.ID, it.CampaignID, it.Version = vkey.NewID("rvi"), c.ID, 1
		it.Reviewers = reviewers(it.Principal)
		if len(it.Reviewers) == 0 {
			it.Reviewers = slices.DeleteFunc(slices.Clone(orgAdmins), func(id string) bool { return id == it.Principal })
		}
		items = append(items, it)
	}
	names := map[string]string{}
	for _, p := range ps {
		names[p.ID] = p.Name
	}
	keys, err := e.d.Store.ListKeys(ctx, vkey.Filter{TeamID: teamID})
	if err != nil {
		return Campaign{}, nil, err
	}
	for _, k := range keys {
		add(Item{Kind: "key", Subject: k.ID, Principal: k.PrincipalID, Team: k.TeamID, Title: fmt.Sprintf("%s key %s (%s) of %s", k.Kind, k.Name, k.ID, names[k.PrincipalID])})
	}
	for _, p := range ps {
		if p.Disabled {
			continue
		}
		for _, t := range p.Teams {
			if teamID == "" || t == teamID {
				add(Item{Kind: "membership", Subject: p.ID, Principal: p.ID, Team: t, Title: fmt.Sprintf("%s is a member of team %s", p.Name, t)})
			}
		}
		if slices.Contains(p.Roles, "admin") && (teamID == "" || slices.Contains(p.Teams, teamID)) {
			add(Item{Kind: "role", Subject: p.ID, Principal: p.ID, Role: "admin", Title: fmt.Sprintf("%s has the admin role", p.Name)})
		}
	}
	c.Counts.Total = len(items)
	if err := rs.CreateCampaign(ctx, c, items); err != nil {
		return Campaign{}, nil, err
	}
	e.record(ctx, ledger.Record{Kind: LedgerKind, Time: now, RequestID: "review-" + c.ID, PrincipalID: actor(by), Action: "review.start", Target: c.ID,
		Detail: fmt.Sprintf("%s, %d items, due %s, overdue: %s", scope, len(items), c.Due.Format(time.RFC3339), onOverdue)})
	return c, items, nil
}

func cutPrefix(s, p string) (string, bool) {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):], true
	}
	return "", false
}

// Decide records a reviewer's decision on an item and applies it at once.
// isAdmin lets an organisation admin decide items they are not assigned.
func (e *Engine) Decide(ctx context.Context, itemID, decision, reason, by string, isAdmin bool, red *Reduction) (Item, error) {
	rs, err := e.reviews()
	if err != nil {
		return Item{}, err
	}
	if reason == "" {
		return Item{}, ErrNeedReason
	}
	it, err := rs.ReviewItem(ctx, itemID)
	if err != nil {
		return Item{}, err
	}
	if it.Principal == by {
		return Item{}, ErrSelfReview
	}
	if !slices.Contains(it.Reviewers, by) && !isAdmin {
		return Item{}, ErrNotReviewer
	}
	c, err := rs.Campaign(ctx, it.CampaignID)
	if err != nil {
		return Item{}, err
	}
	if c.State != "open" {
		return Item{}, ErrClosed
	}
	if it.Decision != "" {
		return Item{}, ErrDecided
	}
	return e.apply(ctx, rs, it, decision, reason, by, red)
}

// apply checks a decision, claims the item for it (a versioned write: of
// two decisions racing on one item exactly one wins, and only the winner's
// effect happens), then applies its effect and records it in the ledger. An
// effect that fails gives the item back undecided.
func (e *Engine) apply(ctx context.Context, rs ReviewStore, it Item, decision, reason, by string, red *Reduction) (Item, error) {
	now := e.d.Now().UTC()
	switch decision {
	case "keep", "revoke":
	case "reduce":
		if it.Kind != "key" || red == nil || (len(red.Models) == 0 && len(red.Endpoints) == 0 && red.ExpiresAt == nil) {
			return Item{}, fmt.Errorf("%w: reduce applies to keys and names models, endpoints or an expiry", ErrBadDecision)
		}
		k, err := e.d.Store.Key(ctx, it.Subject)
		if err != nil {
			return Item{}, err
		}
		if _, _, err := reduced(k, red); err != nil { // refused before the item is claimed
			return Item{}, err
		}
		it.Reductions = red
	default:
		return Item{}, fmt.Errorf("%w: want keep, revoke or reduce", ErrBadDecision)
	}
	undecided := it
	it.Decision, it.Reason, it.DecidedBy, it.DecidedAt = decision, reason, by, &now
	claimed, err := rs.UpdateReviewItem(ctx, it, it.Version)
	if errors.Is(err, store.ErrConflict) {
		return Item{}, ErrDecided
	}
	if err != nil {
		return Item{}, err
	}
	var effect error
	switch decision {
	case "revoke":
		effect = e.revokeAccess(ctx, rs, it, now)
	case "reduce":
		effect = e.narrowKey(ctx, rs, it.Subject, red)
	}
	if effect != nil {
		undecided.Version = claimed.Version
		if _, err := rs.UpdateReviewItem(ctx, undecided, claimed.Version); err != nil {
			e.d.Log.Error("review item left decided although its effect failed", "item", it.ID, "err", err)
		}
		return Item{}, effect
	}
	claimed.Ledger = e.record(ctx, ledger.Record{Kind: LedgerKind, Time: now, RequestID: "review-" + it.CampaignID, PrincipalID: actor(by), Action: "review." + decision,
		Target: it.ID, KeyID: keyIfKey(it), Detail: it.Title + ": " + reason, Status: http.StatusOK})
	up, err := rs.UpdateReviewItem(ctx, claimed, claimed.Version)
	if err != nil {
		return Item{}, err
	}
	return up, e.recount(ctx, rs, it.CampaignID)
}

// reduced returns k's scope and expiry with a reviewer's reduction applied
// (an expiry only ever moves earlier).
func reduced(k vkey.Key, red *Reduction) (vkey.Scope, *time.Time, error) {
	sc, err := narrow(k.Scope, red)
	if err != nil {
		return vkey.Scope{}, nil, err
	}
	exp := k.ExpiresAt
	if red.ExpiresAt != nil && (exp == nil || red.ExpiresAt.Before(*exp)) {
		exp = red.ExpiresAt
	}
	return sc, exp, nil
}

// narrowKey applies a reduction to the key as it is now: read, reduce, write
// only if nobody wrote the key in between (its version), else read again. So
// two reductions racing on one key (two campaigns, two replicas) both hold,
// and a reduction never writes back a scope an admin or another reviewer has
// narrowed since. A reduction that the key's newer scope makes a widening is
// refused (ErrBadDecision) and the item stays undecided.
func (e *Engine) narrowKey(ctx context.Context, rs ReviewStore, id string, red *Reduction) error {
	for attempt := 0; ; attempt++ {
		k, err := e.d.Store.Key(ctx, id)
		if err != nil {
			return err
		}
		sc, exp, err := reduced(k, red)
		if err != nil {
			return err
		}
		_, err = rs.NarrowKey(ctx, id, k.Version, sc, exp)
		if err == nil {
			e.d.ForgetKey(id)
			return nil
		}
		if !errors.Is(err, store.ErrConflict) || attempt == 7 {
			return err
		}
	}
}

// narrow returns scope with a reviewer's reduction applied, refusing any
// reduction that would let the key do something it could not before: every
// model pattern must lie within the key's patterns, every endpoint among its
// endpoints (an unrestricted key can be narrowed to anything).
func narrow(scope vkey.Scope, red *Reduction) (vkey.Scope, error) {
	sc := scope
	if len(red.Models) > 0 {
		for _, m := range red.Models {
			if len(scope.Models) > 0 && !slices.ContainsFunc(scope.Models, func(p string) bool { return within(m, p) }) {
				return vkey.Scope{}, fmt.Errorf("%w: reduce would widen the key: model %q is outside its scope %v", ErrBadDecision, m, scope.Models)
			}
		}
		sc.Models = red.Models
	}
	if len(red.Endpoints) > 0 {
		for _, ep := range red.Endpoints {
			if !scope.AllowsEndpoint(ep) {
				return vkey.Scope{}, fmt.Errorf("%w: reduce would widen the key: endpoint %q is outside its scope %v", ErrBadDecision, ep, scope.Endpoints)
			}
		}
		sc.Endpoints = red.Endpoints
	}
	if err := sc.Validate(); err != nil {
		return vkey.Scope{}, fmt.Errorf("%w: %v", ErrBadDecision, err)
	}
	return sc, nil
}

// within reports (conservatively) whether every name pattern m matches is
// matched by pattern p: p matches m read as a literal string, and a '*' in m
// is not taken up by a '?' of p (which stands for one character only).
func within(m, p string) bool {
	if strings.Contains(m, "*") && strings.Contains(p, "?") {
		return m == p
	}
	return glob.Match(p, m)
}

func keyIfKey(it Item) string {
	if it.Kind == "key" {
		return it.Subject
	}
	return ""
}

func (e *Engine) revokeAccess(ctx context.Context, rs ReviewStore, it Item, now time.Time) error {
	switch it.Kind {
	case "key":
		if _, err := e.d.Store.RevokeKey(ctx, it.Subject, now, store.AnyVersion); err != nil {
			return err
		}
		e.d.ForgetKey(it.Subject)
		return nil
	case "membership", "role":
		p, err := e.d.Store.Principal(ctx, it.Principal)
		if err != nil {
			return err
		}
		if it.Kind == "membership" {
			p.Teams = slices.DeleteFunc(slices.Clone(p.Teams), func(t string) bool { return t == it.Team })
		} else {
			p.Roles = slices.DeleteFunc(slices.Clone(p.Roles), func(r string) bool { return r == it.Role })
		}
		_, err = rs.UpdatePrincipal(ctx, p, store.AnyVersion)
		return err
	}
	return fmt.Errorf("%w: unknown item kind %q", ErrBadDecision, it.Kind)
}

func (e *Engine) recount(ctx context.Context, rs ReviewStore, campaignID string) error {
	for range 5 {
		c, err := rs.Campaign(ctx, campaignID)
		if err != nil {
			return err
		}
		items, err := rs.ReviewItems(ctx, campaignID)
		if err != nil {
			return err
		}
		c.Counts = count(items)
		if _, err := rs.UpdateCampaign(ctx, c, c.Version); !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return store.ErrConflict
}

func count(items []Item) Counts {
	n := Counts{Total: len(items)}
	for _, it := range items {
		if it.Escalated {
			n.Escalated++
		}
		switch it.Decision {
		case "":
			continue
		case "keep":
			n.Kept++
		case "revoke":
			n.Revoked++
		case "reduce":
			n.Reduced++
		}
		n.Decided++
	}
	return n
}

// SweepReviews handles overdue items of open campaigns: revoked when the
// campaign says so, escalated otherwise (once, with an alert).
func (e *Engine) SweepReviews(ctx context.Context) (int, error) {
	rs, err := e.reviews()
	if err != nil {
		return 0, err
	}
	cs, err := rs.ListCampaigns(ctx)
	if err != nil {
		return 0, err
	}
	now := e.d.Now().UTC()
	n := 0
	for _, c := range cs {
		if c.State != "open" || now.Before(c.Due) {
			continue
		}
		items, err := rs.ReviewItems(ctx, c.ID)
		if err != nil {
			return n, err
		}
		for _, it := range items {
			if it.Decision != "" || (it.Escalated && c.OnOverdue == "escalate") {
				continue
			}
			if c.OnOverdue == "revoke" {
				if _, err := e.apply(ctx, rs, it, "revoke", "not reviewed by the due date", SystemActor, nil); errors.Is(err, ErrDecided) {
					continue // a reviewer decided it meanwhile
				} else if err != nil {
					return n, err
				}
				n++
				continue
			}
			v := it.Version
			it.Escalated = true
			e.record(ctx, ledger.Record{Kind: LedgerKind, Time: now, RequestID: "review-" + c.ID, Action: "review.escalate", Target: it.ID, KeyID: keyIfKey(it),
				Detail: it.Title + ": not reviewed by " + c.Due.Format(time.RFC3339)})
			if _, err := rs.UpdateReviewItem(ctx, it, v); err != nil {
				return n, err
			}
			if e.d.Alerts != nil {
				e.d.Alerts.Send(alert.Alert{Kind: "review_overdue", Time: now, Message: fmt.Sprintf("access review %s: %q was not reviewed by %s", c.ID, it.Title, c.Due.Format(time.RFC3339)),
					Details: map[string]any{"campaign_id": c.ID, "item_id": it.ID, "reviewers": it.Reviewers}})
			}
			n++
		}
		if err := e.recount(ctx, rs, c.ID); err != nil {
			return n, err
		}
	}
	return n, nil
}

// CloseReview closes a campaign; its report lists every item and decision.
func (e *Engine) CloseReview(ctx context.Context, id, by string) (Campaign, []Item, error) {
	rs, err := e.reviews()
	if err != nil {
		return Campaign{}, nil, err
	}
	c, err := rs.Campaign(ctx, id)
	if err != nil {
		return Campaign{}, nil, err
	}
	if c.State != "open" {
		return Campaign{}, nil, ErrClosed
	}
	items, err := rs.ReviewItems(ctx, id)
	if err != nil {
		return Campaign{}, nil, err
	}
	now := e.d.Now().UTC()
	c.State, c.ClosedAt, c.Counts = "closed", &now, count(items)
	up, err := rs.UpdateCampaign(ctx, c, c.Version)
	if err != nil {
		return Campaign{}, nil, err
	}
	e.record(ctx, ledger.Record{Kind: LedgerKind, Time: now, RequestID: "review-" + c.ID, PrincipalID: actor(by), Action: "review.close", Target: c.ID,
		Detail: fmt.Sprintf("%d of %d decided: %d kept, %d revoked, %d reduced, %d escalated", c.Counts.Decided, c.Counts.Total, c.Counts.Kept, c.Counts.Revoked, c.Counts.Reduced, c.Counts.Escalated)})
	return up, items, nil
}

// ReviewState returns a campaign and its items.
func (e *Engine) ReviewState(ctx context.Context, id string) (Campaign, []Item, error) {
	rs, err := e.reviews()
	if err != nil {
		return Campaign{}, nil, err
	}
	c, err := rs.Campaign(ctx, id)
	if err != nil {
		return Campaign{}, nil, err
	}
	items, err := rs.ReviewItems(ctx, id)
	return c, items, err
}

// Campaigns lists the campaigns, newest first.
func (e *Engine) Campaigns(ctx context.Context) ([]Campaign, error) {
	rs, err := e.reviews()
	if err != nil {
		return nil, err
	}
	return rs.ListCampaigns(ctx)
}
