// Package provider speaks to upstream LLM APIs: OpenAI and every
// OpenAI-compatible server (type "openai"), and Anthropic (type "anthropic").
//
// It owns the wire formats the gateway must understand: which upstream path and
// auth header a request takes, how usage is reported in JSON bodies and in SSE
// streams, and what an upstream error looks like. It does not decide whether a
// call may happen; that is the proxy's job. Usage is read strictly (usage.go):
// a report that reads two ways (a duplicate name, a case or '_'/'-' variant of
// a field) is no report, so the call is charged its hold.
//
// Upstream keys are held by the store sealed under the keyring and only opened
// into a Snapshot's memory; APIKey redacts itself everywhere.
package provider

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/org"
)

// Type is the wire protocol of an upstream.
type Type string

const (
	TypeOpenAI    Type = "openai"    // OpenAI and OpenAI-compatible (vLLM, Ollama, …)
	TypeAnthropic Type = "anthropic" // Anthropic Messages API
)

// Provider is a configured upstream.
type Provider struct {
	ID        string        `json:"id"`
	Name      string        `json:"name"`
	Type      Type          `json:"type"`
	BaseURL   string        `json:"base_url"`
	Models    []string      `json:"models"` // model name globs routed here
	Keys      []UpstreamKey `json:"keys"`   // metadata only
	CreatedAt time.Time     `json:"created_at"`
	Version   int64         `json:"version"`
}

// UpstreamKey is what may be shown of an upstream credential: never any of it.
type UpstreamKey struct {
	ID        string    `json:"id"`
	Sealed    []byte    `json:"-"` // keyring blob, bound to "provider-key/<id>"
	CreatedAt time.Time `json:"created_at"`
}

// SealAAD is the associated data that binds a sealed upstream key to its row.
func SealAAD(keyID string) []byte { return []byte("provider-key/" + keyID) }

// DefaultBaseURL returns the public API root of t.
func DefaultBaseURL(t Type) string {
	if t == TypeAnthropic {
		return "https://api.anthropic.com"
	}
	return "https://api.openai.com/v1"
}

// Validate checks p before it is stored.
func (p Provider) Validate() error {
	if err := org.ValidateName(p.Name); err != nil {
		return fmt.Errorf("provider %w", err)
	}
	if p.Type != TypeOpenAI && p.Type != TypeAnthropic {
		return fmt.Errorf("provider type %q: want %q or %q", p.Type, TypeOpenAI, TypeAnthropic)
	}
	u, err := url.Parse(p.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("provider base URL %q: want http(s)://host[/path]", p.BaseURL)
	}
	if u.User != nil {
		return fmt.Errorf("provider base URL must not carry credentials; add keys instead")
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(p.BaseURL, "#") {
		return fmt.Errorf("provider base URL %q must not have a query or fragment: the endpoint path is appended to it", p.BaseURL)
	}
	if len(p.Models) == 0 {
		return fmt.Errorf("provider %s routes no models: give at least one model name or glob", p.Name)
	}
	if slices.Contains(p.Models, "") {
		return fmt.Errorf("provider %s: empty model pattern", p.Name)
	}
	return nil
}

// APIKey is an opened upstream credential. It never prints itself.
type APIKey string

func (APIKey) String() string               { return "[REDACTED]" }
func (APIKey) GoString() string             { return "[REDACTED]" }
func (APIKey) LogValue() slog.Value         { return slog.StringValue("[REDACTED]") }
func (APIKey) MarshalText() ([]byte, error) { return []byte("[REDACTED]"), nil }
func (k APIKey) reveal() string             { return string(k) }

// Store is what provider needs from storage.
type Store interface {
	CreateProvider(ctx context.Context, p Provider) error
	Provider(ctx context.Context, idOrName string) (Provider, error)
	ListProviders(ctx context.Context) ([]Provider, error)
	DeleteProvider(ctx context.Context, id string, version int64) error
	AddProviderKey(ctx context.Context, providerID string, k UpstreamKey) error
	DeleteProviderKey(ctx context.Context, providerID, keyID string) error
}

// scrub removes anything shaped like a credential from text that came from an
// upstream (an error message may quote part of the key it was given).
func scrub(s string) string {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '"' || r == '\'' || r == ',' || r == ':' })
	for _, f := range fields {
		if len(f) >= 12 && (strings.HasPrefix(f, "sk-") || strings.HasPrefix(f, "gk_") || strings.HasPrefix(f, "gka_") || strings.HasPrefix(f, "sk_")) {
			s = strings.ReplaceAll(s, f, "[REDACTED]")
		}
	}
	return s
}
