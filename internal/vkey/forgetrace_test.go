package vkey

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// slowHashStore answers a key as stored when the read started, once the test
// lets the read finish: a lookup in flight across a revocation.
type slowHashStore struct {
	Store   // only KeyByHash is used
	mu      sync.Mutex
	revoked *time.Time
	started chan struct{}
	release chan struct{}
}

func (s *slowHashStore) KeyByHash(_ context.Context, h string) (Key, error) {
	s.mu.Lock()
	k := Key{ID: "key_1", Hash: h, RevokedAt: s.revoked}
	s.mu.Unlock()
	if s.started != nil {
		close(s.started)
		<-s.release
		s.started = nil
	}
	return k, nil
}

// TestForgetDuringLookupInFlight: a lookup that read the key before its
// revocation (and Forget) and finishes after must not cache it as active.
func TestForgetDuringLookupInFlight(t *testing.T) {
	t.Run("Forget", func(t *testing.T) { forgetDuringLookup(t, func(v *Verifier) { v.Forget("key_1") }) })
	// ForgetAll: a change listener that reconnected (notifications lost).
	t.Run("ForgetAll", func(t *testing.T) { forgetDuringLookup(t, (*Verifier).ForgetAll) })
}

func forgetDuringLookup(t *testing.T, forget func(*Verifier)) {
	h, _ := NewHasher([]byte(strings.Repeat("s", 32)))
	s := &slowHashStore{started: make(chan struct{}), release: make(chan struct{})}
	v := NewVerifier(s, h, VerifierOptions{TTL: time.Hour})
	done := make(chan error)
	go func() {
		_, err := v.VerifyHash(context.Background(), "hash_1")
		done <- err
	}()
	<-s.started
	now := time.Now()
	s.mu.Lock()
	s.revoked = &now
	s.mu.Unlock()
	forget(v)
	close(s.release)
	if err := <-done; err != nil {
		t.Fatalf("the lookup in flight: %v; the test does not race", err)
	}
	if _, err := v.VerifyHash(context.Background(), "hash_1"); !errors.Is(err, ErrRevoked) {
		t.Fatalf("after revocation and forgetting: %v, want ErrRevoked (the lookup in flight re-cached the key as active)", err)
	}
}
