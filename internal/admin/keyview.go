package admin

import (
	"errors"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// Key states as the admin API reports them.
const (
	KeyActive    = "active"
	KeyExpired   = "expired"
	KeyRevoked   = "revoked"
	KeySuspended = "suspended"
)

// KeyView is a key as the admin API shows it: the stored key plus its
// effective state, which is what the data plane enforces. A key whose
// organisation's or team's maximum age has passed is "expired" although its
// own expires_at may be later or unset.
type KeyView struct {
	vkey.Key
	State string `json:"state"` // active, expired, revoked or suspended
	// EffectiveExpiresAt is when the key stops working: the earlier of its
	// expires_at and its creation (or last rotation) plus the maximum key age
	// in force for its team; absent: never.
	EffectiveExpiresAt *time.Time `json:"effective_expires_at,omitempty"`
}

// view returns k with its effective state at the handler's now.
func (h *Handler) view(k vkey.Key) KeyView {
	var maxAge time.Duration
	if h.d.KeyMaxAge != nil {
		maxAge = h.d.KeyMaxAge(k.TeamID)
	}
	return keyView(k, maxAge, h.d.Now())
}

func keyView(k vkey.Key, maxAge time.Duration, now time.Time) KeyView {
	v := KeyView{Key: k, State: KeyActive, EffectiveExpiresAt: k.Expiry(maxAge)}
	eff := k
	eff.ExpiresAt = v.EffectiveExpiresAt
	switch err := eff.State(now); {
	case errors.Is(err, vkey.ErrRevoked):
		v.State = KeyRevoked
	case errors.Is(err, vkey.ErrExpired):
		v.State = KeyExpired
	case errors.Is(err, vkey.ErrSuspended):
		v.State = KeySuspended
	}
	return v
}

func (h *Handler) views(ks []vkey.Key) []KeyView {
	out := make([]KeyView, len(ks))
	for i, k := range ks {
		out[i] = h.view(k)
	}
	return out
}
