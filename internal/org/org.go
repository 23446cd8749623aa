// Package org holds the ownership scopes of Gatehouse: teams and the principals
// (users and service accounts) that belong to them. Keys, budgets and policies
// hang off these.
package org

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Team is an ownership and budget scope inside the organisation.
type Team struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	MaxKeyAge Age       `json:"max_key_age,omitempty"` // no key of the team lives longer (0: the organisation's limit)
	CreatedAt time.Time `json:"created_at"`
	Version   int64     `json:"version"`
}

// Age is a duration written in JSON as Go duration text ("2160h0m0s").
type Age time.Duration

// MarshalText implements encoding.TextMarshaler.
func (a Age) MarshalText() ([]byte, error) { return []byte(time.Duration(a).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (a *Age) UnmarshalText(b []byte) error {
	d, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("want a duration such as 2160h: %w", err)
	}
	if d < 0 {
		return errors.New("a negative duration")
	}
	*a = Age(d)
	return nil
}

// Kind of principal.
type Kind string

const (
	KindUser           Kind = "user"            // a human
	KindServiceAccount Kind = "service_account" // an app or agent
)

// Principal is whoever a key belongs to.
type Principal struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Kind      Kind      `json:"kind"`
	Teams     []string  `json:"teams"` // team ids
	Roles     []string  `json:"roles"`
	Disabled  bool      `json:"disabled"`
	CreatedAt time.Time `json:"created_at"`
	Version   int64     `json:"version"`
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$`)

// ValidateName checks a team or principal name: 1–128 of letters, digits and
// ". _ @ -", not starting with punctuation.
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("name %q: want 1-128 letters, digits, '.', '_', '@' or '-', starting with a letter or digit", name)
	}
	return nil
}

// Validate checks p before it is stored.
func (p Principal) Validate() error {
	if err := ValidateName(p.Name); err != nil {
		return err
	}
	if p.Kind != KindUser && p.Kind != KindServiceAccount {
		return fmt.Errorf("kind %q: want %q or %q", p.Kind, KindUser, KindServiceAccount)
	}
	if len(p.Teams) == 0 {
		return errors.New("a principal belongs to at least one team")
	}
	return nil
}

// InTeam reports whether p belongs to team id.
func (p Principal) InTeam(id string) bool {
	for _, t := range p.Teams {
		if t == id {
			return true
		}
	}
	return false
}

// Store is what org needs from storage.
type Store interface {
	CreateTeam(ctx context.Context, t Team) error
	Team(ctx context.Context, idOrName string) (Team, error)
	ListTeams(ctx context.Context) ([]Team, error)
	UpdateTeam(ctx context.Context, t Team, version int64) (Team, error)
	DeleteTeam(ctx context.Context, id string, version int64) error

	CreatePrincipal(ctx context.Context, p Principal) error
	Principal(ctx context.Context, idOrName string) (Principal, error)
	ListPrincipals(ctx context.Context, teamID string) ([]Principal, error)
	UpdatePrincipal(ctx context.Context, p Principal, version int64) (Principal, error)
	DeletePrincipal(ctx context.Context, id string, version int64) error
}
