package auth

import (
	"context"
	"sync"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// slowStore answers the principal as stored when the read started, but only
// once the test lets the read finish: a read in flight across a write.
type slowStore struct {
	mu       sync.Mutex
	disabled bool
	started  chan struct{}
	release  chan struct{}
}

func (s *slowStore) Principal(_ context.Context, id string) (org.Principal, error) {
	s.mu.Lock()
	p := org.Principal{ID: id, Disabled: s.disabled}
	s.mu.Unlock()
	if s.started != nil {
		close(s.started)
		<-s.release
		s.started = nil
	}
	return p, nil
}

func (s *slowStore) Key(_ context.Context, id string) (vkey.Key, error) {
	return vkey.Key{ID: id}, nil
}

// TestForgetDuringReadInFlight: a read that started before a change (and a
// Forget) and finishes after it must not cache what it read; the next request
// sees the change at once, not a TTL later.
func TestForgetDuringReadInFlight(t *testing.T) {
	s := &slowStore{started: make(chan struct{}), release: make(chan struct{})}
	a := New(nil, s, 1<<40)
	done := make(chan org.Principal)
	go func() {
		p, _ := a.Principal(context.Background(), "p1")
		done <- p
	}()
	<-s.started
	s.mu.Lock()
	s.disabled = true // the store's write...
	s.mu.Unlock()
	a.Forget("p1") // ...then this process forgets, as the admin API does
	close(s.release)
	if p := <-done; p.Disabled {
		t.Fatal("the read in flight saw the change; the test does not race")
	}
	p, err := a.Principal(context.Background(), "p1")
	if err != nil {
		t.Fatal(err)
	}
	if !p.Disabled {
		t.Fatal("a read in flight across Forget re-cached the stale principal: the disabled principal is still admitted")
	}
}
