package admin

import (
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

func TestKeyViewIsTheEffectiveState(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { t := now.Add(d); return &t }
	born := now.Add(-48 * time.Hour)
	for _, c := range []struct {
		name    string
		k       vkey.Key
		maxAge  time.Duration
		state   string
		expires *time.Time
	}{
		{"no expiry, no age limit", vkey.Key{CreatedAt: born}, 0, KeyActive, nil},
		{"own expiry ahead", vkey.Key{CreatedAt: born, ExpiresAt: at(time.Hour)}, 0, KeyActive, at(time.Hour)},
		{"own expiry passed", vkey.Key{CreatedAt: born, ExpiresAt: at(-time.Second)}, 0, KeyExpired, at(-time.Second)},
		{"team max age passed, no own expiry", vkey.Key{CreatedAt: born}, 24 * time.Hour, KeyExpired, at(-24 * time.Hour)},
		{"team max age passed before own expiry", vkey.Key{CreatedAt: born, ExpiresAt: at(30 * 24 * time.Hour)}, 24 * time.Hour, KeyExpired, at(-24 * time.Hour)},
		{"team max age not yet passed", vkey.Key{CreatedAt: born}, 72 * time.Hour, KeyActive, at(24 * time.Hour)},
		{"rotation restarts the age", vkey.Key{CreatedAt: born, RotatedAt: at(-time.Hour)}, 24 * time.Hour, KeyActive, at(23 * time.Hour)},
		{"expiry exactly now", vkey.Key{CreatedAt: born, ExpiresAt: at(0)}, 0, KeyExpired, at(0)},
		{"revoked wins over expired", vkey.Key{CreatedAt: born, RevokedAt: at(-time.Minute)}, time.Hour, KeyRevoked, at(-47 * time.Hour)},
		{"revocation in the future", vkey.Key{CreatedAt: born, RevokedAt: at(time.Minute)}, 0, KeyActive, nil},
		{"suspended", vkey.Key{CreatedAt: born, SuspendedAt: at(-time.Minute)}, 0, KeySuspended, nil},
		{"expired wins over suspended", vkey.Key{CreatedAt: born, SuspendedAt: at(-time.Minute)}, time.Hour, KeyExpired, at(-47 * time.Hour)},
	} {
		v := keyView(c.k, c.maxAge, now)
		if v.State != c.state {
			t.Errorf("%s: state %q, want %q", c.name, v.State, c.state)
		}
		if (v.EffectiveExpiresAt == nil) != (c.expires == nil) || (c.expires != nil && !v.EffectiveExpiresAt.Equal(*c.expires)) {
			t.Errorf("%s: effective expiry %v, want %v", c.name, v.EffectiveExpiresAt, c.expires)
		}
		if v.ExpiresAt != c.k.ExpiresAt {
			t.Errorf("%s: the stored expires_at was changed", c.name)
		}
	}
}
