package vkey

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/glob"
)

// Key is what the store knows of a key: everything but the key itself.
type Key struct {
	ID          string     `json:"id"`
	Kind        Kind       `json:"kind"`
	Name        string     `json:"name"`
	Hash        string     `json:"-"` // stored form, see Hasher; never leaves the server
	Hint        string     `json:"hint"`
	PrincipalID string     `json:"principal_id"`
	TeamID      string     `json:"team_id,omitempty"`
	Scope       Scope      `json:"scope"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	LastUsedAt  *time.Time `json:"last_used_at,omitempty"`
	// SuspendedAt is set by the spend-velocity breaker; an admin reinstates.
	SuspendedAt   *time.Time `json:"suspended_at,omitempty"`
	SuspendReason string     `json:"suspend_reason,omitempty"`
	// After a rotation the previous secret keeps working until PrevValidUntil.
	PrevHash       string     `json:"-"`
	PrevHint       string     `json:"previous_hint,omitempty"`
	PrevValidUntil *time.Time `json:"previous_valid_until,omitempty"`
	RotatedAt      *time.Time `json:"rotated_at,omitempty"`
	// MFARequired keys cannot call the data plane themselves: their owner
	// exchanges them with a TOTP code for a short-lived token.
	MFARequired bool  `json:"mfa_required,omitempty"`
	Version     int64 `json:"version"`
}

// Endpoints that a scope can name.
const (
	EndpointChat        = "chat"        // POST /v1/chat/completions
	EndpointCompletions = "completions" // POST /v1/completions
	EndpointEmbeddings  = "embeddings"  // POST /v1/embeddings
	EndpointResponses   = "responses"   // POST /v1/responses
	EndpointMessages    = "messages"    // POST /v1/messages (Anthropic)
	EndpointModels      = "models"      // GET /v1/models
)

// Endpoints lists every endpoint name a scope may use.
var Endpoints = []string{EndpointChat, EndpointCompletions, EndpointEmbeddings, EndpointResponses, EndpointMessages, EndpointModels}

// Scope narrows what a key may do. An empty list means "no restriction" for that
// dimension; restrictions combine with AND.
type Scope struct {
	Models    []string `json:"models,omitempty"`       // model name globs
	Endpoints []string `json:"endpoints,omitempty"`    // see Endpoints
	CIDRs     []string `json:"source_cidrs,omitempty"` // caller address ranges
}

// Validate checks that every part of s parses.
func (s Scope) Validate() error {
	for _, e := range s.Endpoints {
		if !slices.Contains(Endpoints, e) {
			return fmt.Errorf("unknown endpoint %q (want one of %v)", e, Endpoints)
		}
	}
	for _, c := range s.CIDRs {
		if _, err := netip.ParsePrefix(c); err != nil {
			if _, err := netip.ParseAddr(c); err != nil {
				return fmt.Errorf("bad source CIDR %q", c)
			}
		}
	}
	for _, m := range s.Models {
		if m == "" {
			return errors.New("empty model pattern")
		}
	}
	return nil
}

// AllowsModel reports whether the scope admits model.
func (s Scope) AllowsModel(model string) bool {
	return len(s.Models) == 0 || glob.MatchAny(s.Models, model)
}

// AllowsEndpoint reports whether the scope admits endpoint.
func (s Scope) AllowsEndpoint(endpoint string) bool {
	return len(s.Endpoints) == 0 || slices.Contains(s.Endpoints, endpoint)
}

// AllowsAddr reports whether the scope admits a caller at addr.
func (s Scope) AllowsAddr(addr netip.Addr) bool {
	if len(s.CIDRs) == 0 {
		return true
	}
	addr = addr.Unmap()
	for _, c := range s.CIDRs {
		if p, err := netip.ParsePrefix(c); err == nil {
			if p.Contains(addr) {
				return true
			}
		} else if a, err := netip.ParseAddr(c); err == nil && a.Unmap() == addr {
			return true
		}
	}
	return false
}

// Expiry returns when k stops working: its expiry, or, with a maximum key age,
// its creation (or last rotation) plus maxAge, whichever is first; nil: never.
func (k Key) Expiry(maxAge time.Duration) *time.Time {
	exp := k.ExpiresAt
	if maxAge > 0 {
		born := k.CreatedAt
		if k.RotatedAt != nil {
			born = *k.RotatedAt
		}
		if byAge := born.Add(maxAge); exp == nil || byAge.Before(*exp) {
			exp = &byAge
		}
	}
	return exp
}

// MinAge returns the stricter of two maximum ages, where 0 means no limit.
func MinAge(a, b time.Duration) time.Duration {
	if a <= 0 || (b > 0 && b < a) {
		return b
	}
	return a
}

// State returns why k cannot be used at now, or nil.
func (k Key) State(now time.Time) error {
	if k.RevokedAt != nil && !now.Before(*k.RevokedAt) {
		return ErrRevoked
	}
	if k.ExpiresAt != nil && !now.Before(*k.ExpiresAt) {
		return ErrExpired
	}
	if k.SuspendedAt != nil {
		return ErrSuspended
	}
	return nil
}

// Errors from Verifier.Verify. None names the key.
var (
	ErrUnknown = errors.New("vkey: unknown key")
	ErrRevoked = errors.New("vkey: key revoked")
	ErrExpired = errors.New("vkey: key expired")
	// ErrRotated: the key was rotated and the grace period of this secret ended.
	ErrRotated = errors.New("vkey: key rotated; this secret's grace period ended")
	// ErrSuspended: the spend-velocity breaker suspended the key.
	ErrSuspended = errors.New("vkey: key suspended")
)

// Filter selects keys in List.
type Filter struct {
	Kind           Kind
	PrincipalID    string
	TeamID         string
	IncludeRevoked bool
}

// Store is what vkey needs from storage.
type Store interface {
	CreateKey(ctx context.Context, k Key) error
	KeyByHash(ctx context.Context, hash string) (Key, error)
	Key(ctx context.Context, id string) (Key, error)
	ListKeys(ctx context.Context, f Filter) ([]Key, error)
	// RevokeKey sets revoked_at; version is the expected version or store.AnyVersion.
	RevokeKey(ctx context.Context, id string, at time.Time, version int64) (Key, error)
	// TouchKeys records last-used times, keeping the later of stored and given.
	TouchKeys(ctx context.Context, used map[string]time.Time) error
	// SuspendKey marks a key suspended (idempotent: the first reason stays).
	SuspendKey(ctx context.Context, id, reason string, at time.Time) error
	// ReinstateKey lifts a suspension; version as for RevokeKey.
	ReinstateKey(ctx context.Context, id string, version int64) (Key, error)
	// RotateKey gives a key a new secret (its hash and hint); the current one
	// becomes the previous, valid until graceUntil. KeyByHash finds a key by
	// either. A revoked key cannot rotate (store.ErrConflict).
	RotateKey(ctx context.Context, id, hash, hint string, at, graceUntil time.Time, version int64) (Key, error)
}
