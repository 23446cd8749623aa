package storetest

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/console/sessionstore"
	"github.com/gatehouse-gw/gatehouse/internal/store"
)

func testConsoleSessions(t *testing.T, b Backend) { ConsoleSessions(t, b) }

// ConsoleSessions is the conformance suite of a sessionstore.Store (every
// backend, and the console's in-memory store): timeouts decided in the
// touch, bounds exclusive, deletes and sweeps, a sign-in taken once.
func ConsoleSessions(t *testing.T, s sessionstore.Store) {
	ctx := context.Background()
	id := bytes.Repeat([]byte{1}, 32)
	created := now
	must(t, s.CreateConsoleSession(ctx, sessionstore.Session{IDHash: id, SealedToken: []byte{0, 1, 2, 0xff}, User: "ada", PrincipalID: "prn_1", Created: created, Seen: created}))
	wantErr(t, s.CreateConsoleSession(ctx, sessionstore.Session{IDHash: id, SealedToken: []byte{9}, Created: created, Seen: created}), store.ErrExists)
	idle, abs := 10*time.Minute, time.Hour
	touch := func(at time.Time) (sessionstore.Session, error) {
		return s.TouchConsoleSession(ctx, id, at, at.Add(-idle), at.Add(-abs))
	}
	got, err := touch(created.Add(9 * time.Minute))
	must(t, err)
	if !bytes.Equal(got.SealedToken, []byte{0, 1, 2, 0xff}) || got.User != "ada" || got.PrincipalID != "prn_1" || !got.Created.Equal(created) || !got.Seen.Equal(created.Add(9*time.Minute)) {
		t.Fatalf("touched session %+v", got)
	}
	// Exactly the idle timeout after the last touch: ended (the bound is exclusive).
	_, err = touch(created.Add(19 * time.Minute))
	wantErr(t, err, store.ErrNotFound)
	// The timeouts are judged by the caller's clock: a replica whose clock
	// lags still finds it live, and its touch never moves the last use back.
	_, err = touch(created.Add(12 * time.Minute))
	must(t, err)
	got, err = touch(created.Add(11 * time.Minute))
	must(t, err)
	if !got.Seen.Equal(created.Add(12 * time.Minute)) {
		t.Fatalf("a lagging touch moved the last use to %v", got.Seen)
	}
	_, err = s.TouchConsoleSession(ctx, []byte("nope"), now, now.Add(-idle), now.Add(-abs))
	wantErr(t, err, store.ErrNotFound)
	// Absolute timeout, whatever the activity.
	for m := 20; m < 60; m += 9 {
		_, err = touch(created.Add(time.Duration(m) * time.Minute))
		must(t, err)
	}
	_, err = touch(created.Add(time.Hour))
	wantErr(t, err, store.ErrNotFound)

	// Delete ends it; deleting again is no error.
	id2 := bytes.Repeat([]byte{2}, 32)
	must(t, s.CreateConsoleSession(ctx, sessionstore.Session{IDHash: id2, SealedToken: []byte{1}, Created: now, Seen: now}))
	must(t, s.DeleteConsoleSession(ctx, id2))
	must(t, s.DeleteConsoleSession(ctx, id2))
	_, err = s.TouchConsoleSession(ctx, id2, now, now.Add(-idle), now.Add(-abs))
	wantErr(t, err, store.ErrNotFound)

	// Sweep removes the ended and keeps the live.
	id3 := bytes.Repeat([]byte{3}, 32)
	later := now.Add(2 * time.Hour)
	must(t, s.CreateConsoleSession(ctx, sessionstore.Session{IDHash: id3, SealedToken: []byte{1}, Created: later, Seen: later}))
	n, err := s.SweepConsoleSessions(ctx, later.Add(-idle), later.Add(-abs))
	must(t, err)
	if n != 1 {
		t.Fatalf("swept %d sessions, want 1 (the ended one)", n)
	}
	_, err = s.TouchConsoleSession(ctx, id3, later, later.Add(-idle), later.Add(-abs))
	must(t, err)

	// OIDC sign-ins: bounded, taken once (also when raced), swept when old.
	since := now.Add(-10 * time.Minute)
	for i := range 3 {
		ok, err := s.CreateOIDCLogin(ctx, sessionstore.OIDCLogin{StateHash: []byte{byte(i)}, BindingHash: []byte{9}, SealedVerifier: []byte{8}, Next: "/console/", Started: now}, since, 3)
		must(t, err)
		if !ok {
			t.Fatalf("sign-in %d refused under the bound", i)
		}
	}
	if ok, err := s.CreateOIDCLogin(ctx, sessionstore.OIDCLogin{StateHash: []byte{7}, BindingHash: []byte{9}, SealedVerifier: []byte{8}, Started: now}, since, 3); err != nil || ok {
		t.Fatalf("a sign-in over the bound: %v %v", ok, err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	taken := 0
	for range 6 {
		wg.Go(func() {
			l, err := s.TakeOIDCLogin(ctx, []byte{0})
			if err == nil {
				mu.Lock()
				taken++
				mu.Unlock()
				if !bytes.Equal(l.BindingHash, []byte{9}) || !bytes.Equal(l.SealedVerifier, []byte{8}) || l.Next != "/console/" || !l.Started.Equal(now) {
					t.Errorf("taken sign-in %+v", l)
				}
			} else if err != store.ErrNotFound {
				t.Errorf("take: %v", err)
			}
		})
	}
	wg.Wait()
	if taken != 1 {
		t.Fatalf("one sign-in taken %d times", taken)
	}
	n, err = s.SweepOIDCLogins(ctx, now)
	must(t, err)
	if n != 2 {
		t.Fatalf("swept %d sign-ins, want 2", n)
	}
	_, err = s.TakeOIDCLogin(ctx, []byte{1})
	wantErr(t, err, store.ErrNotFound)
}
