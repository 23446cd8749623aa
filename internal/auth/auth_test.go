package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// keyStore is a fake of the key and principal stores: one key, by id, whose
// stored copy the test changes as the store's writes would.
type keyStore struct {
	vkey.Store // only Key and KeyByHash are used
	k          vkey.Key
}

func (s *keyStore) Key(_ context.Context, id string) (vkey.Key, error) {
	if id != s.k.ID {
		return vkey.Key{}, errors.New("not found")
	}
	return s.k, nil
}

func (s *keyStore) KeyByHash(_ context.Context, h string) (vkey.Key, error) {
	if h != s.k.Hash {
		return vkey.Key{}, errors.New("not found")
	}
	return s.k, nil
}

func (s *keyStore) Principal(_ context.Context, id string) (org.Principal, error) {
	return org.Principal{ID: id}, nil
}

// TestSuspendedKeysTokensRefusedAtOnce is the attack "keep calling with a
// token exchanged (or DPoP-bound) for the key after it tripped": tokens find
// their key by id (KeyByID, cached for the TTL). From the moment of the
// suspension, before its store write, the cached copy and a fresh read of
// the store that still says active both read as suspended; a reinstatement
// (a newer stored version) lifts it.
func TestSuspendedKeysTokensRefusedAtOnce(t *testing.T) {
	ctx := context.Background()
	h, _ := vkey.NewHasher([]byte(strings.Repeat("s", 32)))
	st := &keyStore{k: vkey.Key{ID: "key_1", PrincipalID: "prn_1", Kind: vkey.KindVirtual, Hash: "h1", Version: 3}}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	v := vkey.NewVerifier(st, h, vkey.VerifierOptions{TTL: time.Minute, Now: func() time.Time { return now }})
	a := New(v, st, time.Minute)
	a.now = func() time.Time { return now }
	k, err := a.KeyByID(ctx, "key_1")
	if err != nil || k.State(now) != nil {
		t.Fatalf("before the trip: %v %v", err, k.State(now))
	}
	// As the server's suspendKey does: the version tokens run with, the mark.
	v.Suspend("key_1", k.Version, "too fast", now)
	if k, _ := a.KeyByID(ctx, "key_1"); !errors.Is(k.State(now), vkey.ErrSuspended) {
		t.Fatalf("cached copy after the trip: %v, want suspended", k.State(now))
	}
	a.ForgetKey("key_1")
	if k, _ := a.KeyByID(ctx, "key_1"); !errors.Is(k.State(now), vkey.ErrSuspended) {
		t.Fatalf("store read after the trip, its write pending: %v, want suspended", k.State(now))
	}
	v.Written("key_1") // the write failed
	now = now.Add(2 * time.Minute)
	if k, _ := a.KeyByID(ctx, "key_1"); !errors.Is(k.State(now), vkey.ErrSuspended) {
		t.Fatalf("after the TTL, the store still active: %v, want suspended", k.State(now))
	}
	st.k.Version = 4 // reinstated by an admin
	a.ForgetKey("key_1")
	if k, _ := a.KeyByID(ctx, "key_1"); k.State(now) != nil {
		t.Fatalf("after reinstatement: %v", k.State(now))
	}
}

// countingStore counts the reads of principals and keys by id; a read of an
// id starting with "bad" fails.
type countingStore struct{ principals, keys map[string]int }

func (s *countingStore) Principal(_ context.Context, id string) (org.Principal, error) {
	s.principals[id]++
	if strings.HasPrefix(id, "bad") {
		return org.Principal{}, errors.New("store down")
	}
	return org.Principal{ID: id}, nil
}

func (s *countingStore) Key(_ context.Context, id string) (vkey.Key, error) {
	s.keys[id]++
	if strings.HasPrefix(id, "bad") {
		return vkey.Key{}, errors.New("store down")
	}
	return vkey.Key{ID: id}, nil
}

// TestCachedForTheTTL: principals and keys by id are read from the store
// once per TTL; a failed read is not cached; Forget and ForgetKey drop an
// entry at once; a cache past 100,000 entries starts over.
func TestCachedForTheTTL(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		get    func(*Authenticator, string) (string, error)
		forget func(*Authenticator, string)
		reads  func(*countingStore) map[string]int
	}{
		{"principal", func(a *Authenticator, id string) (string, error) { p, err := a.Principal(ctx, id); return p.ID, err },
			(*Authenticator).Forget, func(s *countingStore) map[string]int { return s.principals }},
		{"key by id", func(a *Authenticator, id string) (string, error) { k, err := a.KeyByID(ctx, id); return k.ID, err },
			(*Authenticator).ForgetKey, func(s *countingStore) map[string]int { return s.keys }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &countingStore{principals: map[string]int{}, keys: map[string]int{}}
			now := time.Unix(1_000_000, 0)
			a := New(vkey.NewVerifier(nil, nil, vkey.VerifierOptions{}), st, 2*time.Second)
			a.now = func() time.Time { return now }
			get := func(id string, wantReads int) {
				t.Helper()
				got, err := tc.get(a, id)
				if strings.HasPrefix(id, "bad") {
					if err == nil {
						t.Fatalf("%s: no error from a failed read", id)
					}
				} else if err != nil || got != id {
					t.Fatalf("%s: got %q, %v", id, got, err)
				}
				if n := tc.reads(st)[id]; n != wantReads {
					t.Fatalf("%s: %d store reads, want %d", id, n, wantReads)
				}
			}
			get("x", 1)
			get("x", 1) // cached
			now = now.Add(1999 * time.Millisecond)
			get("x", 1) // still within the TTL
			now = now.Add(time.Millisecond)
			get("x", 2) // the TTL is over
			get("x", 2)
			tc.forget(a, "x")
			get("x", 3)
			get("bad", 1)
			get("bad", 2) // a failure is not cached
			for i := range 100_000 {
				tc.get(a, fmt.Sprint("id", i))
			}
			get("x", 3) // 100,001 entries: still cached
			get("y", 1) // past 100,000: the cache starts over
			get("x", 4)
		})
	}
}

// TestKeyByIDPastItsMaxAge: the key a token was exchanged for reads as
// expired by id exactly when Verify refuses its secret as expired: past the
// organisation's maximum age, or its team's when stricter.
func TestKeyByIDPastItsMaxAge(t *testing.T) {
	ctx := context.Background()
	h, _ := vkey.NewHasher([]byte(strings.Repeat("s", 32)))
	born := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name          string
		org, team     time.Duration
		stillWorksFor time.Duration
	}{
		{"organisation", time.Hour, 0, time.Hour},
		{"team", 24 * time.Hour, time.Minute, time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &keyStore{k: vkey.Key{ID: "key_1", PrincipalID: "prn_1", TeamID: "team_1", Kind: vkey.KindVirtual, Hash: "h1", CreatedAt: born}}
			now := born
			v := vkey.NewVerifier(st, h, vkey.VerifierOptions{TTL: time.Nanosecond, Now: func() time.Time { return now }, MaxAge: tc.org,
				TeamMaxAge: func(string) time.Duration { return tc.team }})
			a := New(v, st, time.Nanosecond)
			a.now = func() time.Time { return now }
			for _, at := range []struct {
				d       time.Duration
				expired bool
			}{{tc.stillWorksFor - time.Second, false}, {tc.stillWorksFor, true}} {
				now = born.Add(at.d)
				k, err := a.KeyByID(ctx, "key_1")
				if err != nil {
					t.Fatal(err)
				}
				_, verr := v.VerifyHash(ctx, "h1")
				if got := errors.Is(k.State(now), vkey.ErrExpired); got != at.expired || errors.Is(verr, vkey.ErrExpired) != at.expired {
					t.Errorf("at +%v: by id expired %v (%v), by secret %v; want %v", at.d, got, k.State(now), verr, at.expired)
				}
			}
		})
	}
}
