// Package auth authenticates data-plane callers: it turns a presented credential
// into a Caller (the key and the principal behind it), refusing malformed,
// unknown, revoked and expired keys and keys whose principal is disabled.
// Later layers (tokens, DPoP, mTLS) will produce the same Caller.
package auth

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// Caller is an authenticated data-plane caller.
type Caller struct {
	Key       vkey.Key
	Principal org.Principal
	MFAAt     int64 // unix seconds of the last second factor (tokens exchanged with TOTP); 0: none
	PoP       bool  // the credential is proof-of-possession bound (DPoP)
}

// ErrDisabled: the key's principal is disabled.
var ErrDisabled = errors.New("auth: principal disabled")

// PrincipalStore is what auth needs of org (and of keys, by id).
type PrincipalStore interface {
	Principal(ctx context.Context, idOrName string) (org.Principal, error)
	Key(ctx context.Context, id string) (vkey.Key, error)
}

// Authenticator checks virtual keys. Principals are cached for the same TTL as
// keys, so disabling one takes effect within it (at once when Forget is
// called: by the admin API of this process, or a change notification).
type Authenticator struct {
	keys       *vkey.Verifier
	principals PrincipalStore
	ttl        time.Duration
	now        func() time.Time

	mu    sync.Mutex
	cache map[string]entry[org.Principal]
	byID  map[string]entry[vkey.Key]
	gen   uint64 // counts Forget, ForgetKey and ForgetAll calls, guarded by mu
}

// entry is a value read from the store, and when.
type entry[T any] struct {
	v       T
	fetched time.Time
}

// New returns an Authenticator.
func New(keys *vkey.Verifier, principals PrincipalStore, ttl time.Duration) *Authenticator {
	if ttl <= 0 {
		ttl = 2 * time.Second
	}
	return &Authenticator{keys: keys, principals: principals, ttl: ttl, now: time.Now, cache: map[string]entry[org.Principal]{}, byID: map[string]entry[vkey.Key]{}}
}

// Authenticate returns the caller presenting credential.
func (a *Authenticator) Authenticate(ctx context.Context, credential string) (Caller, error) {
	k, err := a.keys.Verify(ctx, credential, vkey.KindVirtual)
	if err != nil {
		return Caller{}, err
	}
	p, err := a.principal(ctx, k.PrincipalID)
	if err != nil {
		return Caller{}, err
	}
	if p.Disabled {
		return Caller{}, &vkey.Denied{KeyID: k.ID, PrincipalID: p.ID, Err: ErrDisabled}
	}
	return Caller{Key: k, Principal: p}, nil
}

// Principal returns a principal, cached for the TTL.
func (a *Authenticator) Principal(ctx context.Context, id string) (org.Principal, error) {
	return a.principal(ctx, id)
}

// KeyByID returns a key by id, cached for the TTL: tokens exchanged for a key
// die with it (revoked, expired, suspended) within the TTL. The key is as
// this process sees it: suspended when the breaker marked it (Overlay), and
// its ExpiresAt no later than its maximum age allows (WithMaxAge), so that
// its State says what Verify would.
func (a *Authenticator) KeyByID(ctx context.Context, id string) (vkey.Key, error) {
	k, err := cached(ctx, a, a.byID, id, a.principals.Key)
	if err != nil {
		return vkey.Key{}, err
	}
	return a.keys.WithMaxAge(a.keys.Overlay(k)), nil
}

func (a *Authenticator) principal(ctx context.Context, id string) (org.Principal, error) {
	return cached(ctx, a, a.cache, id, a.principals.Principal)
}

// cached returns m's entry for id while it is younger than the TTL, and
// otherwise reads it with fetch and caches it (m, guarded by a.mu, is
// emptied first when it holds over 100,000 entries). A read in flight when
// Forget, ForgetKey or ForgetAll is called is returned but not cached: it may be older
// than the change the Forget announces.
func cached[T any](ctx context.Context, a *Authenticator, m map[string]entry[T], id string, fetch func(context.Context, string) (T, error)) (T, error) {
	now := a.now()
	a.mu.Lock()
	e, ok := m[id]
	gen := a.gen
	a.mu.Unlock()
	if ok && now.Sub(e.fetched) < a.ttl {
		return e.v, nil
	}
	v, err := fetch(ctx, id)
	if err != nil {
		var zero T
		return zero, err
	}
	a.mu.Lock()
	if a.gen == gen {
		if len(m) > 100_000 {
			clear(m)
		}
		m[id] = entry[T]{v: v, fetched: now}
	}
	a.mu.Unlock()
	return v, nil
}

// ForgetKey drops a key cached by id.
func (a *Authenticator) ForgetKey(id string) {
	a.mu.Lock()
	delete(a.byID, id)
	a.gen++
	a.mu.Unlock()
}

// Forget drops a cached principal, so a change made through this process takes
// effect on the next request. Principals are cached under the id or name they
// were asked for (mTLS maps a certificate to a name), so every entry holding
// the principal goes, not only the one under its id.
func (a *Authenticator) Forget(principalID string) {
	a.mu.Lock()
	delete(a.cache, principalID)
	for k, e := range a.cache {
		if e.v.ID == principalID {
			delete(a.cache, k)
		}
	}
	a.gen++
	a.mu.Unlock()
}

// ForgetAll drops every cached key and principal: after changes this process
// may not have been told of (a change listener that reconnected, whose
// notifications sent meanwhile are lost).
func (a *Authenticator) ForgetAll() {
	a.mu.Lock()
	clear(a.cache)
	clear(a.byID)
	a.gen++
	a.mu.Unlock()
}
