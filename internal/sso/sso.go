// Package sso logs users in through an organisation's OpenID Connect identity
// provider: it verifies the provider's ID token (github.com/coreos/go-oidc) and
// maps the user's groups to Gatehouse teams and roles.
//
// The identity provider is the source of truth: each login sets the user's
// teams and roles to what its groups map to, and a user none of whose groups
// map to anything is refused.
package sso

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// Config configures OIDC login.
type Config struct {
	Issuer        string   `yaml:"issuer"`         // the provider's issuer URL (discovery at /.well-known/openid-configuration)
	ClientID      string   `yaml:"client_id"`      // Gatehouse's client id at the provider; the aud of ID tokens
	UsernameClaim string   `yaml:"username_claim"` // the claim that names the user; default email
	GroupsClaim   string   `yaml:"groups_claim"`   // a string array claim; default groups
	MFAMethods    []string `yaml:"mfa_amr"`        // amr values that count as a second factor; default mfa, otp, hwk, swk, fpt, face
	Scopes        []string `yaml:"scopes"`         // requested by the CLI; default openid, profile, email, groups
	Groups        []Group  `yaml:"groups"`         // group → teams and roles
}

// Group maps one of the provider's groups to teams and roles.
type Group struct {
	Group string   `yaml:"group"`
	Teams []string `yaml:"teams"` // team names
	Roles []string `yaml:"roles"`
}

// Enabled reports whether OIDC login is configured.
func (c Config) Enabled() bool { return c.Issuer != "" }

// Validate checks c.
func (c Config) Validate() error {
	if !c.Enabled() {
		return nil
	}
	if c.ClientID == "" {
		return errors.New("oidc_login: client_id is required with issuer")
	}
	if len(c.Groups) == 0 {
		return errors.New("oidc_login: map at least one group (groups: [{group, teams, roles}])")
	}
	for i, g := range c.Groups {
		if g.Group == "" || (len(g.Teams) == 0 && len(g.Roles) == 0) {
			return fmt.Errorf("oidc_login: groups[%d]: want a group and at least one team or role", i)
		}
	}
	return nil
}

// WithDefaults fills in the defaults.
func (c Config) WithDefaults() Config {
	if c.UsernameClaim == "" {
		c.UsernameClaim = "email"
	}
	if c.GroupsClaim == "" {
		c.GroupsClaim = "groups"
	}
	if c.MFAMethods == nil {
		c.MFAMethods = []string{"mfa", "otp", "hwk", "swk", "fpt", "face"}
	}
	if c.Scopes == nil {
		c.Scopes = []string{oidc.ScopeOpenID, "profile", "email", "groups"}
	}
	return c
}

// Identity is a verified user.
type Identity struct {
	Subject  string
	Username string
	Groups   []string
	Teams    []string // team names, sorted, no duplicates
	Roles    []string // sorted, no duplicates
	MFAAt    *time.Time
}

// ErrNoAccess means none of the user's groups maps to a team (every
// principal belongs to at least one).
var ErrNoAccess = errors.New("none of your groups is mapped to a Gatehouse team")

// Verifier verifies ID tokens. The provider is discovered on first use and
// retried on later calls while it is unreachable, so Gatehouse starts when the
// identity provider is down.
type Verifier struct {
	cfg    Config
	client *http.Client
	now    func() time.Time

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier
}

// NewVerifier returns a Verifier for cfg; client nil means http.DefaultClient
// with a 10 s timeout, now nil means time.Now.
func NewVerifier(cfg Config, client *http.Client, now func() time.Time) *Verifier {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	if now == nil {
		now = time.Now
	}
	return &Verifier{cfg: cfg.WithDefaults(), client: client, now: now}
}

// Config returns the configuration in use, with defaults.
func (v *Verifier) Config() Config { return v.cfg }

func (v *Verifier) idVerifier(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.verifier != nil {
		return v.verifier, nil
	}
	p, err := oidc.NewProvider(oidc.ClientContext(context.WithoutCancel(ctx), v.client), v.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("identity provider %s: %w", v.cfg.Issuer, err)
	}
	v.verifier = p.VerifierContext(oidc.ClientContext(context.Background(), v.client), &oidc.Config{ClientID: v.cfg.ClientID, Now: v.now})
	return v.verifier, nil
}

// ErrUnavailable wraps failures to reach the identity provider.
var ErrUnavailable = errors.New("identity provider unavailable")

// Verify checks a raw ID token (signature, issuer, audience, expiry) and maps
// its groups. Errors: ErrUnavailable (wrapped), ErrNoAccess, or why the token
// was refused.
func (v *Verifier) Verify(ctx context.Context, raw string) (Identity, error) {
	iv, err := v.idVerifier(ctx)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	tok, err := iv.Verify(ctx, raw)
	if err != nil {
		return Identity{}, err
	}
	claims := map[string]any{}
	if err := tok.Claims(&claims); err != nil {
		return Identity{}, err
	}
	return v.identity(tok.Subject, claims)
}

func (v *Verifier) identity(subject string, claims map[string]any) (Identity, error) {
	id := Identity{Subject: subject}
	id.Username, _ = claims[v.cfg.UsernameClaim].(string)
	if id.Username == "" {
		return Identity{}, fmt.Errorf("the ID token has no %q claim to name the user", v.cfg.UsernameClaim)
	}
	if verified, ok := claims["email_verified"].(bool); ok && !verified && claimIsEmail(claims, id.Username) {
		return Identity{}, errors.New("the ID token's email is not verified")
	}
	id.Groups = stringList(claims[v.cfg.GroupsClaim])
	for _, g := range v.cfg.Groups {
		if slices.Contains(id.Groups, g.Group) {
			id.Teams = append(id.Teams, g.Teams...)
			id.Roles = append(id.Roles, g.Roles...)
		}
	}
	if len(id.Teams) == 0 { // every principal belongs to a team
		return Identity{}, ErrNoAccess
	}
	slices.Sort(id.Teams)
	id.Teams = slices.Compact(id.Teams)
	slices.Sort(id.Roles)
	id.Roles = slices.Compact(id.Roles)
	for _, m := range stringList(claims["amr"]) {
		if slices.Contains(v.cfg.MFAMethods, m) {
			at := v.now()
			if t, ok := claims["auth_time"].(float64); ok && t > 0 && time.Unix(int64(t), 0).Before(at) {
				at = time.Unix(int64(t), 0)
			}
			id.MFAAt = &at
			break
		}
	}
	return id, nil
}

func claimIsEmail(claims map[string]any, username string) bool {
	e, _ := claims["email"].(string)
	return e != "" && e == username
}

// stringList reads a claim that is a string or an array of strings.
func stringList(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
