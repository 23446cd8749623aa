package vkey

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/store"
)

// Verifier authenticates presented keys: checksum, then hash, then a short-lived
// cache, then the store. Cached entries live for TTL, which bounds how long a
// revocation made by another replica takes to be seen; revocations made through
// this process are seen at once (Forget).
//
// Last-used times are collected in memory and written by Run in batches, so that
// authentication does no store write on the request path.
type Verifier struct {
	store   Store
	hasher  *Hasher
	ttl     time.Duration
	maxAge  time.Duration
	teamAge func(teamID string) time.Duration
	now     func() time.Time
	log     *slog.Logger

	mu    sync.Mutex
	cache map[string]cacheEntry // by hash
	gen   uint64                // counts Forget and ForgetAll calls: a lookup in flight across one does not cache
	used  map[string]time.Time  // key id → last use
	// held: keys this process suspended, by id, with the version the
	// suspension was decided on. Until the store shows a newer version,
	// every copy of the key (cached, stale or fresh) reads as suspended: the
	// suspension holds from the moment it is decided, not from the moment
	// its write commits, and a lookup that raced the write cannot cache the
	// key as active.
	held map[string]held
}

type held struct {
	version int64
	reason  string
	at      time.Time
	// writing: the suspension's store write has not returned yet. Until
	// it has, a newer version in the store is some other change (an admin
	// narrowed or rotated the key just before the trip), not the end of
	// the suspension, and does not lift the mark.
	writing bool
}

type cacheEntry struct {
	key     Key
	err     error // ErrUnknown is cached too, briefly, to blunt guessing floods
	fetched time.Time
}

// VerifierOptions configures a Verifier; zero values take defaults.
type VerifierOptions struct {
	TTL    time.Duration    // default 2s
	Now    func() time.Time // default time.Now
	Logger *slog.Logger
	MaxAge time.Duration // keys older than this (since creation or rotation) are expired; 0: no limit
	// TeamMaxAge returns a team's own maximum key age (0: none); the smaller
	// of it and MaxAge applies. Nil: no team limits.
	TeamMaxAge func(teamID string) time.Duration
}

// NewVerifier returns a Verifier over st.
func NewVerifier(st Store, h *Hasher, o VerifierOptions) *Verifier {
	if o.TTL <= 0 {
		o.TTL = 2 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Verifier{store: st, hasher: h, ttl: o.TTL, maxAge: o.MaxAge, teamAge: o.TeamMaxAge, now: o.Now, log: o.Logger,
		cache: make(map[string]cacheEntry), used: make(map[string]time.Time), held: make(map[string]held)}
}

// Hasher returns the hasher in use.
func (v *Verifier) Hasher() *Hasher { return v.hasher }

// Verify returns the key for presented, which must be of kind want. Errors are
// ErrMalformed, ErrChecksum, ErrUnknown, ErrRevoked, ErrExpired or a store error.
// For the previous secret of a rotated key, in its grace, the key's ExpiresAt
// is no later than the end of the grace: what the secret is exchanged for
// ends with it.
func (v *Verifier) Verify(ctx context.Context, presented string, want Kind) (Key, error) {
	kind, secret, err := Parse(presented)
	if err != nil {
		return Key{}, err
	}
	if kind != want {
		return Key{}, ErrUnknown
	}
	return v.lookup(ctx, v.hasher.Hash(secret))
}

// VerifyHash is Verify for a caller that hashed the key itself (a dev-mode admin
// key of free form, for instance).
func (v *Verifier) VerifyHash(ctx context.Context, hash string) (Key, error) {
	return v.lookup(ctx, hash)
}

func (v *Verifier) lookup(ctx context.Context, hash string) (Key, error) {
	now := v.now()
	v.mu.Lock()
	e, ok := v.cache[hash]
	gen := v.gen
	v.mu.Unlock()
	if !ok || now.Sub(e.fetched) >= v.ttl {
		k, err := v.store.KeyByHash(ctx, hash)
		switch {
		case errors.Is(err, store.ErrNotFound):
			err = ErrUnknown
		case err != nil:
			return Key{}, err // a store fault is not cached
		}
		e = cacheEntry{key: k, err: err, fetched: now}
		v.mu.Lock()
		if v.gen == gen { // else a Forget came during the read, which may predate it
			if len(v.cache) > 100_000 { // bound memory under a flood of distinct keys
				clear(v.cache)
			}
			v.cache[hash] = e
		}
		v.mu.Unlock()
	}
	if e.err != nil {
		return Key{}, e.err
	}
	e.key = v.Overlay(e.key)
	if err := e.key.State(now); err != nil {
		return Key{}, &Denied{KeyID: e.key.ID, PrincipalID: e.key.PrincipalID, Err: err}
	}
	if exp := e.key.Expiry(v.maxAgeOf(e.key)); exp != nil && !now.Before(*exp) {
		return Key{}, &Denied{KeyID: e.key.ID, PrincipalID: e.key.PrincipalID, Err: ErrExpired}
	}
	if e.key.Hash != hash { // the previous secret of a rotated key
		if e.key.PrevValidUntil == nil || !now.Before(*e.key.PrevValidUntil) {
			return Key{}, &Denied{KeyID: e.key.ID, PrincipalID: e.key.PrincipalID, Err: ErrRotated}
		}
		// The key as this secret sees it: it stops working when its grace
		// ends, and so does what it is exchanged for (a token's exp).
		if e.key.ExpiresAt == nil || e.key.PrevValidUntil.Before(*e.key.ExpiresAt) {
			until := *e.key.PrevValidUntil
			e.key.ExpiresAt = &until
		}
	}
	v.mu.Lock()
	v.used[e.key.ID] = now
	v.mu.Unlock()
	return e.key, nil
}

// maxAgeOf is k's maximum age: the organisation's, or its team's when
// stricter (0: none).
func (v *Verifier) maxAgeOf(k Key) time.Duration {
	if v.teamAge != nil {
		return MinAge(v.maxAge, v.teamAge(k.TeamID))
	}
	return v.maxAge
}

// WithMaxAge returns k with its ExpiresAt at the earliest of its own expiry
// and the end of its maximum age, so that State reports a key past its
// maximum age as expired, as Verify does. For keys read by id (the key a
// token was exchanged for): a token dies with its key.
func (v *Verifier) WithMaxAge(k Key) Key {
	k.ExpiresAt = k.Expiry(v.maxAgeOf(k))
	return k
}

// Suspend suspends the key with that id in this process at once, before
// (and whatever becomes of) the store write that makes it durable: every copy
// of the key at or below the version it was used with (version, or a newer
// one cached here) reads as suspended. Once the caller tells that the write
// returned (Written), the mark ends when the store shows a newer version (an
// admin's change such as reinstatement). It returns the version marked (0:
// none, the key is not in use here).
func (v *Verifier) Suspend(id string, version int64, reason string, at time.Time) int64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	for h, e := range v.cache {
		if e.key.ID == id {
			version = max(version, e.key.Version)
			delete(v.cache, h)
		}
	}
	if h, ok := v.held[id]; ok { // marked already: keep the newest version seen
		version = max(version, h.version)
	}
	if version <= 0 {
		return 0 // not in use here: lookups go to the store
	}
	if len(v.held) > 100_000 {
		clear(v.held)
	}
	v.held[id] = held{version: version, reason: reason, at: at, writing: true}
	return version
}

// Written tells that the store write of the key's suspension returned
// (committed or failed): from now on a newer version in the store lifts the
// mark.
func (v *Verifier) Written(id string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if h, ok := v.held[id]; ok {
		h.writing = false
		v.held[id] = h
	}
}

// Overlay returns k as this process sees it: suspended if Suspend marked it
// at its version.
func (v *Verifier) Overlay(k Key) Key {
	v.mu.Lock()
	defer v.mu.Unlock()
	h, ok := v.held[k.ID]
	switch {
	case !ok || k.SuspendedAt != nil:
	case k.Version > h.version && !h.writing:
		delete(v.held, k.ID) // the store moved on: it decides now
	default:
		at := h.at
		k.SuspendedAt, k.SuspendReason = &at, h.reason
	}
	return k
}

// Forget drops every cached entry of the key with that id, so that a revocation
// through this process takes effect on the next request.
func (v *Verifier) Forget(id string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.gen++
	for h, e := range v.cache {
		if e.key.ID == id {
			delete(v.cache, h)
		}
	}
}

// ForgetAll drops every cached entry: after changes this process may not
// have been told of (a change listener that reconnected, whose notifications
// sent meanwhile are lost). A lookup in flight does not cache what it read.
func (v *Verifier) ForgetAll() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.gen++
	clear(v.cache)
}

// Run writes last-used times every interval until ctx ends, then once more.
func (v *Verifier) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			// Flush with a fresh, bounded context: shutdown must not lose them.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			v.Flush(fctx)
			cancel()
			return nil
		case <-t.C:
			v.Flush(ctx)
		}
	}
}

// Flush writes collected last-used times now.
func (v *Verifier) Flush(ctx context.Context) {
	v.mu.Lock()
	used := v.used
	v.used = make(map[string]time.Time)
	v.mu.Unlock()
	if len(used) == 0 {
		return
	}
	if err := v.store.TouchKeys(ctx, used); err != nil {
		v.log.Warn("vkey: recording last-used times failed", "keys", len(used), "err", err)
		v.mu.Lock()
		for id, t := range used {
			if t.After(v.used[id]) {
				v.used[id] = t
			}
		}
		v.mu.Unlock()
	}
}
