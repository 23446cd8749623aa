package token

import (
	"errors"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
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

// TestIssueNoLaterThanItsCredential: a token is not issued for longer than
// the credential it is exchanged for works (Claims.Expiry set by the
// endpoint); a later Expiry does not lengthen it past TTL.
func TestIssueNoLaterThanItsCredential(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	i := issuer(t, &clock{t: now})
	for _, tc := range []struct {
		cred, want time.Duration
	}{{3 * time.Second, 3 * time.Second}, {time.Hour, 15 * time.Minute}} {
		raw, ttl, err := i.Issue(Claims{Claims: jwt.Claims{Expiry: jwt.NewNumericDate(now.Add(tc.cred))}})
		if err != nil {
			t.Fatal(err)
		}
		c, err := i.Verify(raw)
		if err != nil || ttl != tc.want || !c.Expiry.Time().Equal(now.Add(tc.want)) {
			t.Errorf("credential for %v: ttl %v, exp %v (%v); want %v", tc.cred, ttl, c.Expiry.Time(), err, tc.want)
		}
	}
}
