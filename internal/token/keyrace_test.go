package token

import (
	"errors"
	"testing"
	"time"
)

// TestRetiredKeyDuringVerifyInFlight is the attack "hammer the gateway with a
// token signed by a leaked signing key while the operator rotates it out":
// a verification that read the key set before the rotation and finishes
// after it may answer with the old set (it was in flight), but must not
// cache the token: verified tokens are cached until their exp, which a
// forger chooses, and the cache is only emptied by the next key change.
func TestRetiredKeyDuringVerifyInFlight(t *testing.T) {
	leaked, next := NewKey(), NewKey()
	i, err := New(leaked, "gatehouse", "gatehouse")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	i.SetClock(func() time.Time { return now })
	forged, _, err := i.Issue(Claims{Team: "team_a"})
	if err != nil {
		t.Fatal(err)
	}
	// The rotation that retires the leaked key lands while the next
	// verification is in flight: after it read the key set, before it cached.
	rotated := false
	i.SetClock(func() time.Time {
		if !rotated {
			rotated = true
			if err := i.SetKeys([][]byte{next}); err != nil {
				t.Error(err)
			}
		}
		return now
	})
	if _, err := i.Verify(forged); err != nil {
		t.Fatalf("the verification in flight: %v; the test does not race", err)
	}
	if !rotated {
		t.Fatal("the clock was not read during the verification; the test does not race")
	}
	if _, err := i.Verify(forged); !errors.Is(err, ErrInvalid) {
		t.Fatalf("after the rotation: %v, want ErrInvalid (a verification in flight cached a token of the retired key)", err)
	}
}
