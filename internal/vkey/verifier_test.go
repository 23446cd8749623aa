package vkey

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/store"
)

// memStore is a hand-written fake of the key store: the verifier's own logic
// (cache, TTL, last-used batching) is under test here; the real stores have
// their own conformance suite.
type memStore struct {
	mu      sync.Mutex
	keys    map[string]Key // by hash
	lookups int
	touched map[string]time.Time
	fail    error
}

func (m *memStore) CreateKey(_ context.Context, k Key) error { m.keys[k.Hash] = k; return nil }
func (m *memStore) KeyByHash(_ context.Context, h string) (Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lookups++
	if m.fail != nil {
		return Key{}, m.fail
	}
	k, ok := m.keys[h]
	if !ok {
		return Key{}, store.ErrNotFound
	}
	return k, nil
}
func (m *memStore) Key(context.Context, string) (Key, error)        { return Key{}, nil }
func (m *memStore) ListKeys(context.Context, Filter) ([]Key, error) { return nil, nil }
func (m *memStore) RevokeKey(_ context.Context, id string, at time.Time, _ int64) (Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for h, k := range m.keys {
		if k.ID == id {
			k.RevokedAt = &at
			m.keys[h] = k
			return k, nil
		}
	}
	return Key{}, store.ErrNotFound
}
func (m *memStore) RotateKey(_ context.Context, id, hash, hint string, at, grace time.Time, _ int64) (Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for h, k := range m.keys {
		if k.ID == id {
			k.PrevHash, k.PrevValidUntil, k.Hash, k.Hint, k.RotatedAt = k.Hash, &grace, hash, hint, &at
			delete(m.keys, h)
			m.keys[hash], m.keys[k.PrevHash] = k, k
			return k, nil
		}
	}
	return Key{}, store.ErrNotFound
}
func (m *memStore) SuspendKey(context.Context, string, string, time.Time) error { return nil }
func (m *memStore) ReinstateKey(context.Context, string, int64) (Key, error)    { return Key{}, nil }
func (m *memStore) TouchKeys(_ context.Context, used map[string]time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, t := range used {
		m.touched[id] = t
	}
	return nil
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestVerifier(t *testing.T) {
	ctx := context.Background()
	h, _ := NewHasher([]byte(strings.Repeat("s", 32)))
	st := &memStore{keys: map[string]Key{}, touched: map[string]time.Time{}}
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	v := NewVerifier(st, h, VerifierOptions{TTL: 2 * time.Second, Now: clk.now})

	secret := Generate(KindVirtual)
	exp := clk.t.Add(time.Hour)
	st.CreateKey(ctx, Key{ID: "key_1", Kind: KindVirtual, Hash: h.Hash(secret), ExpiresAt: &exp})

	if _, err := v.Verify(ctx, "gk_garbage", KindVirtual); !errors.Is(err, ErrMalformed) || st.lookups != 0 {
		t.Fatalf("malformed: %v after %d lookups (want none)", err, st.lookups)
	}
	if _, err := v.Verify(ctx, secret.Reveal(), KindAdmin); !errors.Is(err, ErrUnknown) || st.lookups != 0 {
		t.Fatalf("wrong kind: %v after %d lookups", err, st.lookups)
	}
	for range 3 {
		if k, err := v.Verify(ctx, secret.Reveal(), KindVirtual); err != nil || k.ID != "key_1" {
			t.Fatalf("Verify = %v, %v", k, err)
		}
	}
	if st.lookups != 1 {
		t.Fatalf("%d store lookups for 3 verifications within the TTL, want 1", st.lookups)
	}

	// Revoked elsewhere: seen once the TTL passes.
	st.RevokeKey(ctx, "key_1", clk.t, 0)
	if _, err := v.Verify(ctx, secret.Reveal(), KindVirtual); err != nil {
		t.Fatalf("within TTL the cached key still verifies: %v", err)
	}
	clk.t = clk.t.Add(2 * time.Second)
	if _, err := v.Verify(ctx, secret.Reveal(), KindVirtual); !errors.Is(err, ErrRevoked) {
		t.Fatalf("after TTL: %v, want ErrRevoked", err)
	}

	// Revoked here: Forget makes it immediate.
	s2 := Generate(KindVirtual)
	st.CreateKey(ctx, Key{ID: "key_2", Kind: KindVirtual, Hash: h.Hash(s2)})
	v.Verify(ctx, s2.Reveal(), KindVirtual)
	st.RevokeKey(ctx, "key_2", clk.t, 0)
	v.Forget("key_2")
	if _, err := v.Verify(ctx, s2.Reveal(), KindVirtual); !errors.Is(err, ErrRevoked) {
		t.Fatalf("after Forget: %v", err)
	}

	// Expiry is checked on every call, cached or not.
	s3 := Generate(KindVirtual)
	soon := clk.t.Add(time.Second)
	st.CreateKey(ctx, Key{ID: "key_3", Kind: KindVirtual, Hash: h.Hash(s3), ExpiresAt: &soon})
	if _, err := v.Verify(ctx, s3.Reveal(), KindVirtual); err != nil {
		t.Fatal(err)
	}
	clk.t = clk.t.Add(time.Second)
	if _, err := v.Verify(ctx, s3.Reveal(), KindVirtual); !errors.Is(err, ErrExpired) {
		t.Fatalf("at expiry: %v", err)
	}

	// A store fault is an error, not "unknown", and is not cached.
	st.fail = errors.New("disk on fire")
	s4 := Generate(KindVirtual)
	if _, err := v.Verify(ctx, s4.Reveal(), KindVirtual); err == nil || errors.Is(err, ErrUnknown) {
		t.Fatalf("store fault: %v", err)
	}
	st.fail = nil

	// Last-used times are written in one batch by Flush.
	v.Flush(ctx)
	if _, ok := st.touched["key_1"]; !ok || len(st.touched) != 3 {
		t.Fatalf("touched = %v", st.touched)
	}
}

// TestRotationGrace: after a rotation both secrets work; the old one until the
// grace ends, to the second (fake clock).
func TestRotationGrace(t *testing.T) {
	ctx := context.Background()
	h, _ := NewHasher([]byte(strings.Repeat("s", 32)))
	st := &memStore{keys: map[string]Key{}, touched: map[string]time.Time{}}
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	v := NewVerifier(st, h, VerifierOptions{TTL: time.Nanosecond, Now: clk.now})
	old, fresh := Generate(KindVirtual), Generate(KindVirtual)
	st.CreateKey(ctx, Key{ID: "key_r", Kind: KindVirtual, Hash: h.Hash(old)})
	grace := clk.t.Add(24 * time.Hour)
	st.RotateKey(ctx, "key_r", h.Hash(fresh), fresh.Hint(), clk.t, grace, 0)
	v.Forget("key_r")
	for _, tt := range []struct {
		at         time.Time
		oldOK, new bool
	}{
		{clk.t, true, true},
		{grace.Add(-time.Second), true, true},
		{grace, false, true},
		{grace.Add(time.Second), false, true},
	} {
		clk.t = tt.at
		_, errOld := v.Verify(ctx, old.Reveal(), KindVirtual)
		_, errNew := v.Verify(ctx, fresh.Reveal(), KindVirtual)
		if (errOld == nil) != tt.oldOK || (errNew == nil) != tt.new {
			t.Fatalf("at grace%+v: old %v, new %v", tt.at.Sub(grace), errOld, errNew)
		}
		if errOld != nil && !errors.Is(errOld, ErrRotated) {
			t.Fatalf("old secret after grace: %v, want ErrRotated", errOld)
		}
	}
}

// TestMaxAge: with a maximum key age, a key works until created+maxAge and
// not after; a rotation renews it.
func TestMaxAge(t *testing.T) {
	ctx := context.Background()
	h, _ := NewHasher([]byte(strings.Repeat("s", 32)))
	st := &memStore{keys: map[string]Key{}, touched: map[string]time.Time{}}
	born := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := &clock{t: born}
	v := NewVerifier(st, h, VerifierOptions{TTL: time.Nanosecond, Now: clk.now, MaxAge: 90 * 24 * time.Hour})
	s := Generate(KindVirtual)
	st.CreateKey(ctx, Key{ID: "key_m", Kind: KindVirtual, Hash: h.Hash(s), CreatedAt: born})
	clk.t = born.Add(90*24*time.Hour - time.Second)
	if _, err := v.Verify(ctx, s.Reveal(), KindVirtual); err != nil {
		t.Fatalf("1 s before the maximum age: %v", err)
	}
	clk.t = born.Add(90 * 24 * time.Hour)
	if _, err := v.Verify(ctx, s.Reveal(), KindVirtual); !errors.Is(err, ErrExpired) {
		t.Fatalf("at the maximum age: %v", err)
	}
	fresh := Generate(KindVirtual)
	st.RotateKey(ctx, "key_m", h.Hash(fresh), "", clk.t, clk.t, 0)
	if _, err := v.Verify(ctx, fresh.Reveal(), KindVirtual); err != nil {
		t.Fatalf("after a rotation: %v", err)
	}
}

// TestTeamMaxAge: a team's own maximum key age applies to its keys when it is
// stricter than the organisation's, and to no other team's keys.
func TestTeamMaxAge(t *testing.T) {
	ctx := context.Background()
	h, _ := NewHasher([]byte(strings.Repeat("s", 32)))
	st := &memStore{keys: map[string]Key{}, touched: map[string]time.Time{}}
	born := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := &clock{t: born}
	teamAges := map[string]time.Duration{"team_strict": 7 * 24 * time.Hour, "team_lax": 365 * 24 * time.Hour}
	v := NewVerifier(st, h, VerifierOptions{TTL: time.Nanosecond, Now: clk.now, MaxAge: 90 * 24 * time.Hour,
		TeamMaxAge: func(id string) time.Duration { return teamAges[id] }})
	secrets := map[string]Secret{}
	for _, team := range []string{"team_strict", "team_lax", "team_none"} {
		s := Generate(KindVirtual)
		secrets[team] = s
		st.CreateKey(ctx, Key{ID: "key_" + team, Kind: KindVirtual, Hash: h.Hash(s), TeamID: team, CreatedAt: born})
	}
	for _, c := range []struct {
		team string
		age  time.Duration // the age that applies
	}{
		{"team_strict", 7 * 24 * time.Hour}, // stricter than the organisation
		{"team_lax", 90 * 24 * time.Hour},   // the organisation's limit still caps it
		{"team_none", 90 * 24 * time.Hour},
	} {
		clk.t = born.Add(c.age - time.Second)
		if _, err := v.Verify(ctx, secrets[c.team].Reveal(), KindVirtual); err != nil {
			t.Errorf("%s: 1 s before %v: %v", c.team, c.age, err)
		}
		clk.t = born.Add(c.age)
		if _, err := v.Verify(ctx, secrets[c.team].Reveal(), KindVirtual); !errors.Is(err, ErrExpired) {
			t.Errorf("%s: at %v: %v, want ErrExpired", c.team, c.age, err)
		}
	}
}

func TestMinAge(t *testing.T) {
	for _, c := range []struct{ a, b, want time.Duration }{
		{0, 0, 0}, {0, 5, 5}, {5, 0, 5}, {3, 5, 3}, {5, 3, 3}, {-1, 4, 4},
	} {
		if got := MinAge(c.a, c.b); got != c.want {
			t.Errorf("MinAge(%v, %v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

// TestSuspendHoldsBeforeTheStore: a suspension decided in this process holds
// at once, while the store still says the key is active (its write pending or
// failed), against a stale copy a racing lookup caches again, and ends only
// when the store shows a newer version of the key (reinstated).
func TestSuspendHoldsBeforeTheStore(t *testing.T) {
	ctx := context.Background()
	h, _ := NewHasher([]byte(strings.Repeat("s", 32)))
	st := &memStore{keys: map[string]Key{}, touched: map[string]time.Time{}}
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	v := NewVerifier(st, h, VerifierOptions{TTL: 2 * time.Second, Now: clk.now})
	secret := Generate(KindVirtual)
	hash := h.Hash(secret)
	st.CreateKey(ctx, Key{ID: "key_1", Kind: KindVirtual, Hash: hash, Version: 3})
	if _, err := v.Verify(ctx, secret.Reveal(), KindVirtual); err != nil {
		t.Fatal(err)
	}

	v.Suspend("key_1", 0, "too fast", clk.t) // the store write has not happened
	_, err := v.Verify(ctx, secret.Reveal(), KindVirtual)
	if !errors.Is(err, ErrSuspended) {
		t.Fatalf("after Suspend, store unchanged: %v, want ErrSuspended", err)
	}
	if k := v.Overlay(st.keys[hash]); k.State(clk.t) != ErrSuspended || k.SuspendReason != "too fast" {
		t.Fatalf("Overlay of the stored key: %v %q", k.State(clk.t), k.SuspendReason)
	}
	// The TTL passes: the store still says active (the write failed); the
	// key stays suspended here.
	v.Written("key_1")
	clk.t = clk.t.Add(5 * time.Second)
	if _, err := v.Verify(ctx, secret.Reveal(), KindVirtual); !errors.Is(err, ErrSuspended) {
		t.Fatalf("after the TTL, store unchanged: %v", err)
	}
	// An admin reinstates (a newer version, not suspended): the store decides.
	k := st.keys[hash]
	k.Version = 5
	st.keys[hash] = k
	v.Forget("key_1")
	if _, err := v.Verify(ctx, secret.Reveal(), KindVirtual); err != nil {
		t.Fatalf("after reinstatement: %v", err)
	}
	// A stale copy (the version the suspension was decided on) no longer
	// reads as suspended once the store moved on: the mark is gone.
	if k := v.Overlay(Key{ID: "key_1", Version: 3}); k.SuspendedAt != nil {
		t.Fatal("the mark outlived the store's newer version")
	}

	// A key not in use here (nothing cached, no version given) is left to the store.
	v.Suspend("key_9", 0, "x", clk.t)
	if k := v.Overlay(Key{ID: "key_9", Version: 1}); k.SuspendedAt != nil {
		t.Fatal("an unknown key was marked")
	}
	// A version given by the caller (a token's key, cached elsewhere) is held.
	v.Suspend("key_8", 2, "x", clk.t)
	if k := v.Overlay(Key{ID: "key_8", Version: 2}); k.SuspendedAt == nil {
		t.Fatal("the given version was not held")
	}
}

// suspendSetup returns a verifier over a store holding key_1 (version 3) and
// key_10 (another key of the same principal), and their secrets.
func suspendSetup(t *testing.T) (*Verifier, *memStore, *clock, *Hasher, Secret, Secret) {
	t.Helper()
	h, _ := NewHasher([]byte(strings.Repeat("s", 32)))
	st := &memStore{keys: map[string]Key{}, touched: map[string]time.Time{}}
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	v := NewVerifier(st, h, VerifierOptions{TTL: 2 * time.Second, Now: clk.now})
	s1, s10 := Generate(KindVirtual), Generate(KindVirtual)
	st.CreateKey(context.Background(), Key{ID: "key_1", PrincipalID: "prn_1", Kind: KindVirtual, Hash: h.Hash(s1), Version: 3})
	st.CreateKey(context.Background(), Key{ID: "key_10", PrincipalID: "prn_1", Kind: KindVirtual, Hash: h.Hash(s10), Version: 3})
	for _, s := range []Secret{s1, s10} {
		if _, err := v.Verify(context.Background(), s.Reveal(), KindVirtual); err != nil {
			t.Fatal(err)
		}
	}
	return v, st, clk, h, s1, s10
}

// setVersion changes the stored key with that id as an admin's write would.
func (m *memStore) setVersion(id string, version int64, suspended *time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for h, k := range m.keys {
		if k.ID == id {
			k.Version, k.SuspendedAt = version, suspended
			m.keys[h] = k
		}
	}
}

// TestSuspendReachesNoOtherKey is the attack "make the overlay suspend a
// different key": a suspension marks its key id only, not another key of
// the same principal nor one whose id it prefixes, whatever their versions.
func TestSuspendReachesNoOtherKey(t *testing.T) {
	ctx := context.Background()
	v, _, _, _, s1, s10 := suspendSetup(t)
	v.Suspend("key_1", 3, "too fast", time.Now())
	if _, err := v.Verify(ctx, s1.Reveal(), KindVirtual); !errors.Is(err, ErrSuspended) {
		t.Fatalf("the suspended key: %v, want ErrSuspended", err)
	}
	if _, err := v.Verify(ctx, s10.Reveal(), KindVirtual); err != nil {
		t.Fatalf("another key of the principal: %v", err)
	}
	for _, k := range []Key{{ID: "key_10", Version: 3}, {ID: "key_", Version: 1}, {ID: "", Version: 3}, {ID: "KEY_1", Version: 3}} {
		if v.Overlay(k).SuspendedAt != nil {
			t.Fatalf("Overlay suspended %+v", k)
		}
	}
}

// TestSuspendedKeysPreviousSecretRefused is the attack "call with a rotated
// key's old secret after the trip": both secrets of a key in its rotation
// grace are refused from the moment of the suspension.
func TestSuspendedKeysPreviousSecretRefused(t *testing.T) {
	ctx := context.Background()
	v, st, clk, h, old, _ := suspendSetup(t)
	fresh := Generate(KindVirtual)
	st.RotateKey(ctx, "key_1", h.Hash(fresh), fresh.Hint(), clk.t, clk.t.Add(time.Hour), 0)
	st.setVersion("key_1", 4, nil)
	v.Forget("key_1")
	for _, s := range []Secret{old, fresh} {
		if _, err := v.Verify(ctx, s.Reveal(), KindVirtual); err != nil {
			t.Fatalf("before the trip: %v", err)
		}
	}
	v.Suspend("key_1", 0, "too fast", clk.t)
	for _, s := range []Secret{old, fresh} {
		if _, err := v.Verify(ctx, s.Reveal(), KindVirtual); !errors.Is(err, ErrSuspended) {
			t.Fatalf("after the trip: %v, want ErrSuspended", err)
		}
	}
}

// TestSuspendHoldsThroughANewerVersionWhileItsWriteWaits is the attack
// "change the key just before it trips": an admin's write (a narrowed scope,
// a rotation) made the stored key newer than the copy the suspension was
// decided on. While the suspension's own write has not returned, that newer
// version is not a reinstatement and must not lift the mark; once it has,
// the store decides (suspended, then reinstated).
func TestSuspendHoldsThroughANewerVersionWhileItsWriteWaits(t *testing.T) {
	ctx := context.Background()
	v, st, clk, _, s1, _ := suspendSetup(t)
	st.setVersion("key_1", 4, nil) // the admin's change, not yet seen here
	v.Suspend("key_1", 3, "too fast", clk.t)
	clk.t = clk.t.Add(5 * time.Second) // caches stale: the store is read again
	if _, err := v.Verify(ctx, s1.Reveal(), KindVirtual); !errors.Is(err, ErrSuspended) {
		t.Fatalf("while the suspension's write waits, a newer stored version: %v, want ErrSuspended", err)
	}
	at := clk.t
	st.setVersion("key_1", 5, &at) // the suspension committed
	v.Written("key_1")
	v.Forget("key_1")
	if _, err := v.Verify(ctx, s1.Reveal(), KindVirtual); !errors.Is(err, ErrSuspended) {
		t.Fatalf("stored as suspended: %v", err)
	}
	st.setVersion("key_1", 6, nil) // reinstated
	v.Forget("key_1")
	if _, err := v.Verify(ctx, s1.Reveal(), KindVirtual); err != nil {
		t.Fatalf("after reinstatement: %v", err)
	}
}

// TestReinstatedKeyTripsAgain: a key reinstated after a suspension holds a
// second suspension at once too (the first mark is gone, the new one is made
// at the reinstated version), and lifts on a second reinstatement.
func TestReinstatedKeyTripsAgain(t *testing.T) {
	ctx := context.Background()
	v, st, clk, _, s1, _ := suspendSetup(t)
	v.Suspend("key_1", 3, "too fast", clk.t)
	at := clk.t
	st.setVersion("key_1", 4, &at)
	v.Written("key_1")
	st.setVersion("key_1", 5, nil) // reinstated
	v.Forget("key_1")
	if _, err := v.Verify(ctx, s1.Reveal(), KindVirtual); err != nil {
		t.Fatalf("after reinstatement: %v", err)
	}
	v.Suspend("key_1", 0, "too fast again", clk.t) // the store still says active
	_, err := v.Verify(ctx, s1.Reveal(), KindVirtual)
	var d *Denied
	if !errors.Is(err, ErrSuspended) || !errors.As(err, &d) || d.KeyID != "key_1" {
		t.Fatalf("second trip: %v, want ErrSuspended", err)
	}
	if k := v.Overlay(Key{ID: "key_1", Version: 5}); k.SuspendReason != "too fast again" {
		t.Fatalf("second trip's reason %q", k.SuspendReason)
	}
	v.Written("key_1") // the write failed; an admin reinstates again
	st.setVersion("key_1", 6, nil)
	v.Forget("key_1")
	if _, err := v.Verify(ctx, s1.Reveal(), KindVirtual); err != nil {
		t.Fatalf("after the second reinstatement: %v", err)
	}
}

// TestSuspendTwiceKeepsTheNewestVersion: the server marks a key at once at
// the version cached for its secrets, then again at the version its tokens
// run with; a second mark at an older version does not narrow the first.
func TestSuspendTwiceKeepsTheNewestVersion(t *testing.T) {
	v, _, clk, _, _, _ := suspendSetup(t)
	v.Suspend("key_1", 5, "too fast", clk.t)
	v.Suspend("key_1", 3, "too fast", clk.t)
	v.Written("key_1") // its write failed: only a newer version lifts it
	if k := v.Overlay(Key{ID: "key_1", Version: 5}); k.SuspendedAt == nil {
		t.Fatal("a second mark at an older version lifted the suspension of version 5")
	}
}
