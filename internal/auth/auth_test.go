package auth

import (
	"context"
	"errors"
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
