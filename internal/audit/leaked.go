package audit

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/store"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// Leak is one secret reported as leaked.
type Leak struct {
	Secret string `json:"-"` // never echoed, logged or stored
	Source string `json:"source,omitempty"`
}

// LeakResult says what a reported secret was. It never holds the secret.
type LeakResult struct {
	Hint      string `json:"hint"`             // prefix and four characters, or "" when not a Gatehouse key
	Valid     bool   `json:"valid_format"`     // prefix and checksum are right
	KeyID     string `json:"key_id,omitempty"` // the key it belongs to
	Live      bool   `json:"live"`             // the key worked until now
	Revoked   bool   `json:"revoked"`          // revoked by this report
	FindingID string `json:"finding_id,omitempty"`
}

// LeakRule is the rule name of leaked-key findings.
const LeakRule = "keys.leaked"

// Leaked looks up reported secrets by hash and, with revoke, revokes the live
// ones at once. Each revocation is a ledger record, a high finding and an
// alert; a secret that matches no key is answered as such and nothing else.
func (e *Engine) Leaked(ctx context.Context, leaks []Leak, revoke bool, by string) ([]LeakResult, error) {
	if e.d.Hasher == nil {
		return nil, errors.New("audit: leaked keys: no hasher")
	}
	out := make([]LeakResult, 0, len(leaks))
	for _, l := range leaks {
		var res LeakResult
		_, secret, err := vkey.Parse(l.Secret)
		if err != nil {
			out = append(out, res)
			continue
		}
		res.Valid, res.Hint = true, secret.Hint()
		k, err := e.d.Store.KeyByHash(ctx, e.d.Hasher.Hash(secret))
		if errors.Is(err, store.ErrNotFound) {
			out = append(out, res)
			continue
		}
		if err != nil {
			return nil, err
		}
		now := e.d.Now().UTC()
		res.KeyID, res.Live = k.ID, k.State(now) == nil
		deadPrev := k.PrevHash == e.d.Hasher.Hash(secret) && k.PrevValidUntil != nil && !now.Before(*k.PrevValidUntil)
		if deadPrev {
			res.Live = false // a rotated-out secret past its grace: it opens nothing, the key's current secret did not leak
		}
		if !revoke || deadPrev {
			out = append(out, res)
			continue
		}
		// Revoke against the version read, so that of reports racing on one
		// key (a replay sent with the original) exactly one revokes and
		// records; a loser re-reads and finds the key revoked.
		revokedHere := false
		for attempt := 0; k.RevokedAt == nil && !revokedHere; attempt++ {
			_, err := e.d.Store.RevokeKey(ctx, k.ID, now, k.Version)
			switch {
			case err == nil:
				revokedHere = true
			case !errors.Is(err, store.ErrConflict) || attempt == 4:
				return nil, err
			default:
				if k, err = e.d.Store.Key(ctx, k.ID); err != nil {
					return nil, err
				}
			}
		}
		if revokedHere {
			e.d.ForgetKey(k.ID)
			res.Revoked = true
			e.record(ctx, ledger.Record{Kind: ledger.KindAdmin, Time: now, RequestID: "leaked-" + k.ID, PrincipalID: actor(by), KeyID: k.ID,
				Action: "keys.revoke_leaked", Target: k.ID, Detail: "leaked: " + truncate(l.Source, 500), Status: http.StatusOK})
			e.d.Log.Warn("leaked key revoked", "key_id", k.ID, "source", truncate(l.Source, 500), "by", by)
		}
		f, _, err := e.Report(ctx, Candidate{Rule: LeakRule, Severity: High, Subject: keySubject(k),
			Title: fmt.Sprintf("key %s was found leaked and revoked", k.Name),
			Evidence: Evidence{Summary: "reported leaked (" + truncate(l.Source, 500) + "); was live: " + fmt.Sprint(res.Live),
				Items: []string{truncate(l.Source, 500)}}})
		if err != nil {
			return nil, err
		}
		res.FindingID = f.ID // a new finding is high, so it alerted
		out = append(out, res)
	}
	return out, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
