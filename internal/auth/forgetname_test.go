package auth

import (
	"context"
	"sync"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// namedStore finds one principal by id or by name, as the store does.
type namedStore struct {
	mu sync.Mutex
	p  org.Principal
}

func (s *namedStore) Principal(_ context.Context, idOrName string) (org.Principal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if idOrName != s.p.ID && idOrName != s.p.Name {
		return org.Principal{}, vkey.ErrUnknown
	}
	return s.p, nil
}

func (s *namedStore) Key(_ context.Context, id string) (vkey.Key, error) {
	return vkey.Key{ID: id}, nil
}

// TestForgetReachesAPrincipalCachedByName is the attack "keep calling with a
// client certificate after its principal was disabled": mTLS maps a
// certificate to a principal by name, so the cache holds it under its name,
// while the admin API and the change notifications forget principals by id.
// Forget must drop every cached copy of the principal, however it was asked
// for, so that disabling takes effect on the next request, not a TTL later.
func TestForgetReachesAPrincipalCachedByName(t *testing.T) {
	ctx := context.Background()
	s := &namedStore{p: org.Principal{ID: "prn_1", Name: "summariser"}}
	a := New(nil, s, 1<<40)
	if p, err := a.Principal(ctx, "summariser"); err != nil || p.Disabled {
		t.Fatalf("before: %+v %v", p, err)
	}
	s.mu.Lock()
	s.p.Disabled = true // the store's write...
	s.mu.Unlock()
	a.Forget("prn_1") // ...then the admin API (or a notification) forgets it by id
	for _, asked := range []string{"summariser", "prn_1"} {
		p, err := a.Principal(ctx, asked)
		if err != nil {
			t.Fatal(err)
		}
		if !p.Disabled {
			t.Errorf("Principal(%q) after Forget(id): still the enabled copy cached under the name", asked)
		}
	}
}
