package provider

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// Endpoint is a data-plane operation and how it maps upstream.
type Endpoint struct {
	Name     string // as in key scopes: "chat", "messages", …
	Protocol Type   // which upstream type serves it
	Path     string // appended to the provider's base URL
	Streams  bool   // the endpoint can stream SSE
	Output   bool   // the endpoint generates output tokens
}

// The data-plane endpoints.
var (
	Chat        = Endpoint{Name: "chat", Protocol: TypeOpenAI, Path: "/chat/completions", Streams: true, Output: true}
	Completions = Endpoint{Name: "completions", Protocol: TypeOpenAI, Path: "/completions", Streams: true, Output: true}
	Embeddings  = Endpoint{Name: "embeddings", Protocol: TypeOpenAI, Path: "/embeddings"}
	Responses   = Endpoint{Name: "responses", Protocol: TypeOpenAI, Path: "/responses", Streams: true, Output: true}
	Messages    = Endpoint{Name: "messages", Protocol: TypeAnthropic, Path: "/v1/messages", Streams: true, Output: true}
)

// AnthropicVersion is sent upstream when the caller names none.
const AnthropicVersion = "2023-06-01"

// Upstream is a provider ready to call: its keys opened, a client to call with.
// Keys are used round-robin; Next rotates past a key that just failed.
type Upstream struct {
	ID, Name string
	Type     Type
	BaseURL  string
	Models   []string
	keys     []APIKey
	bearer   []APIKey // "Bearer " + keys[i], built once (redacted like the keys)
	next     atomic.Uint64
	Client   *http.Client
}

// NewUpstream returns an Upstream for p with opened keys.
// The client is used with redirects off (NoRedirects).
func NewUpstream(p Provider, keys []APIKey, client *http.Client) *Upstream {
	bearer := make([]APIKey, len(keys))
	for i, k := range keys {
		bearer[i] = "Bearer " + k
	}
	return &Upstream{ID: p.ID, Name: p.Name, Type: p.Type, BaseURL: strings.TrimRight(p.BaseURL, "/"), Models: p.Models, keys: keys, bearer: bearer, Client: NoRedirects(client)}
}

// KeyCount returns how many keys the upstream holds.
func (u *Upstream) KeyCount() int { return len(u.keys) }

// NextSlot draws the key slot a call starts at: calls spread over the keys
// round-robin, and attempt i of a call uses slot+i, so a retry always moves to
// the next key whatever other calls do meanwhile.
func (u *Upstream) NextSlot() uint64 { return u.next.Add(1) - 1 }

// NewRequest builds the upstream request for ep with body under ctx, using
// the key at slot (modulo the pool), copying from r only the caller headers
// that the protocol defines as the caller's to choose. The caller's own
// credential is never forwarded. body is sent as it is, not copied: the
// caller must not change it until the request is done.
func (u *Upstream) NewRequest(ctx context.Context, r *http.Request, ep Endpoint, body []byte, slot uint64) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.BaseURL+ep.Path, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("provider: %s: %w", u.Name, err)
	}
	// The header values share one backing array (one allocation, not one
	// per header); each is capped at its length, so appending to one
	// cannot overwrite the next.
	vals := make([]string, 0, 6)
	set := func(k, v string) { // k is canonical
		vals = append(vals, v)
		req.Header[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	set("Content-Type", "application/json")
	set("User-Agent", "gatehouse")
	if accept := r.Header.Get("Accept"); accept != "" {
		set("Accept", accept)
	}
	n := len(u.keys)
	switch u.Type {
	case TypeAnthropic:
		v := r.Header.Get("Anthropic-Version")
		if v == "" {
			v = AnthropicVersion
		}
		set("Anthropic-Version", v)
		if b := r.Header.Get("Anthropic-Beta"); b != "" {
			set("Anthropic-Beta", b)
		}
		if n > 0 && u.keys[slot%uint64(n)] != "" {
			set("X-Api-Key", u.keys[slot%uint64(n)].reveal())
		}
	default:
		if n > 0 && u.keys[slot%uint64(n)] != "" {
			set("Authorization", u.bearer[slot%uint64(n)].reveal())
		}
	}
	return req, nil
}

// Retryable reports whether a failed attempt may be retried on another key
// before anything reached the client: connection failures, 429, 5xx, and a
// refused credential (401, 403: one key of the pool may be revoked upstream
// while the others work, as during a rotation).
func Retryable(status int, err error) bool {
	if err != nil {
		return true
	}
	return status == http.StatusTooManyRequests || status >= 500 || status == http.StatusUnauthorized || status == http.StatusForbidden
}

// RetryDelay is the pause before attempt n (1-based) of a retried call.
func RetryDelay(n int) time.Duration {
	return time.Duration(n) * 50 * time.Millisecond
}
