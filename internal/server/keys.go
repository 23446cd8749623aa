package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/alert"
	"github.com/gatehouse-gw/gatehouse/internal/breaker"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/proxy"
	"github.com/gatehouse-gw/gatehouse/internal/store"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// keyHasher loads the server secret used to hash keys, creating it on first
// start. It is stored sealed under the KEK, so replicas sharing a database and
// a KEK agree on it.
func (s *Server) keyHasher(ctx context.Context) (*vkey.Hasher, error) {
	const name = "key_hmac"
	aad := secretAAD(name)
	fresh := make([]byte, 32)
	rand.Read(fresh)
	sealed, err := s.keyring.Seal(fresh, aad)
	if err != nil {
		return nil, err
	}
	stored, err := s.db.PutSecretIfAbsent(ctx, name, sealed)
	if err != nil {
		return nil, fmt.Errorf("server secret: %w", err)
	}
	secret, err := s.keyring.Open(stored, aad)
	if err != nil {
		return nil, fmt.Errorf("server secret: %w (is this the key-encryption key the store was created with?)", err)
	}
	return vkey.NewHasher(secret)
}

// suspendKey stores a breaker's suspension and drops the key from the cache,
// so the very next request is refused.
// The suspension holds in this process from the moment it is decided: the
// calls admitted while its write waits for the store would otherwise spend
// past the trip (and if the write fails, the key stays suspended here).
// A trip (sp.At zero) returns the instant it wrote and the key's version it
// marked (the trip's write itself takes no version: it is decided now); a
// retry passes them back, marks nothing anew (a mark lifted meanwhile was
// lifted by a change of the key, which wins), writes only while the key is
// still at that version (breaker.ErrChanged otherwise) and
// finds out whether the trip's own write committed after all (then it
// records and alerts, as the trip would have).
func (s *Server) suspendKey(ctx context.Context, keyID string, sp breaker.Suspension) (bool, breaker.Suspension, error) {
	if proxy.Keyless(keyID) { // nothing stored to suspend: the breaker alerts once instead
		return false, sp, breaker.ErrNoKey
	}
	reason, trip := sp.Reason, sp.At.IsZero()
	if trip {
		sp.At = time.Now().UTC().Truncate(time.Microsecond) // as stored
	}
	at := sp.At
	if trip {
		// At once, at the version cached for the key's secrets; then at the
		// version its tokens run with, which may take a store read (a key used
		// only by its secret is not cached by id).
		sp.Version = s.verifier.Suspend(keyID, 0, reason, at)
		if k, err := s.auth.KeyByID(ctx, keyID); err == nil {
			sp.Version = max(sp.Version, s.verifier.Suspend(keyID, k.Version, reason, at))
		}
		s.auth.ForgetKey(keyID)
	}
	// The trip itself is decided now, on spend made now: it is written
	// whatever the key's version (an edit this replica has not heard of yet,
	// such as a rotation, is no reinstatement since the trip). Only a retry
	// is bound to the version of its trip.
	cond := sp.Version
	if trip {
		cond = 0
	}
	first, err := s.db.SuspendKeyFirst(ctx, keyID, reason, at, cond)
	if trip {
		s.verifier.Written(keyID)
	}
	if errors.Is(err, store.ErrConflict) {
		// A retry whose key changed since its trip (an admin reinstated
		// it): the trip happened all the same (the key was refused here from
		// at, and the trip's own write may have committed unanswered), and
		// no record of it was appended yet. Recorded once: a reinstatement
		// that lifted it appended the same record before its own.
		s.recordTrip(ctx, keyID, reason, at)
		return false, sp, fmt.Errorf("%w: %v", breaker.ErrChanged, err)
	}
	if err != nil {
		return false, sp, err
	}
	s.verifier.Forget(keyID)
	s.auth.ForgetKey(keyID)
	if !first { // another replica tripped it first and recorded it
		return false, sp, nil
	}
	s.recordTrip(ctx, keyID, reason, at)
	s.log.Warn("key suspended by the spend-velocity breaker", "key_id", keyID, "reason", reason)
	return true, sp, nil
}

// recordTrip appends the record of a breaker's suspension of keyID at at,
// once per suspension (ledger.BreakerTrip).
func (s *Server) recordTrip(ctx context.Context, keyID, reason string, at time.Time) {
	_, err := s.ledger.Append(ctx, ledger.BreakerTrip(keyID, reason, at))
	if err != nil && !errors.Is(err, ledger.ErrAlreadyClosed) && !errors.Is(err, ledger.ErrDeferred) {
		s.log.Error("ledger: a key suspension was not recorded", "key_id", keyID, "err", err)
	}
}

// recordSuspensions records the breaker suspensions the log lacks: a
// replica that stopped between a suspension's write (SuspendKeyFirst) and
// its record (recordTrip) left the key suspended with no record of why. At
// start and then every instance_timeout/4, every suspended key's suspension
// is appended (ledger.BreakerTrip: one record per suspension, whoever
// appends it first, so a live trip racing this sweep is recorded once).
// Suspensions known recorded are not appended again. The append that writes
// the record also sends the trip's alert, which the stopped replica had not.
func (s *Server) recordSuspensions(ctx context.Context) {
	t := time.NewTicker(s.cfg.InstanceTimeout.D() / 4)
	defer t.Stop()
	recorded := map[string]time.Time{} // key id → the suspension recorded
	for {
		s.recordSuspensionsOnce(ctx, recorded)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Server) recordSuspensionsOnce(ctx context.Context, recorded map[string]time.Time) {
	sctx, cancel := context.WithTimeout(ctx, s.cfg.Store.Timeout.D())
	keys, err := s.db.SuspendedKeys(sctx)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("breaker: listing suspended keys failed", "err", err)
		}
		return
	}
	live := make(map[string]bool, len(keys))
	for _, k := range keys {
		live[k.ID] = true
		if at, ok := recorded[k.ID]; ok && at.Equal(*k.SuspendedAt) {
			continue
		}
		_, err := s.ledger.Append(ctx, ledger.BreakerTrip(k.ID, k.SuspendReason, *k.SuspendedAt))
		switch {
		case err == nil:
			// This append wrote the record, so the replica that suspended
			// the key stopped before its record, and before its alert too.
			s.log.Warn("ledger: recorded a key suspension its replica had not", "key_id", k.ID, "suspended_at", k.SuspendedAt.UTC())
			s.alerts.Send(alert.Alert{Kind: "breaker_tripped", Message: "key " + k.ID + " suspended: " + k.SuspendReason + " (recorded late: the replica that suspended it stopped first)",
				Details: map[string]any{"key_id": k.ID, "reason": k.SuspendReason, "suspended_at": k.SuspendedAt.UTC(), "recorded_late": true}})
		case errors.Is(err, ledger.ErrAlreadyClosed), errors.Is(err, ledger.ErrDeferred): // recorded, or will be by the log's retry
		default:
			if ctx.Err() == nil {
				s.log.Warn("ledger: recording a key suspension failed; retrying on the next sweep", "key_id", k.ID, "err", err)
			}
			continue
		}
		recorded[k.ID] = *k.SuspendedAt
	}
	for id := range recorded {
		if !live[id] {
			delete(recorded, id)
		}
	}
	s.log.Debug("breaker: suspended keys checked", "suspended", len(keys))
}

// warnExpiringKeys alerts (webhook and log) once per key and expiry time when
// a key will expire within keys.expiry_warning, so its owner can rotate it.
func (s *Server) warnExpiringKeys(ctx context.Context) {
	if s.cfg.Keys.ExpiryWarning <= 0 {
		return
	}
	t := time.NewTicker(s.cfg.Keys.CheckInterval.D())
	defer t.Stop()
	for {
		keys, err := s.db.ListKeys(ctx, vkey.Filter{})
		if err != nil && ctx.Err() == nil {
			s.log.Warn("key expiry check failed", "err", err)
		}
		now := time.Now()
		for _, k := range keys {
			exp := k.Expiry(s.keyMaxAge(k.TeamID))
			if exp == nil || exp.Before(now) || exp.Sub(now) > s.cfg.Keys.ExpiryWarning.D() {
				continue
			}
			if first, err := s.db.MarkKeyWarned(ctx, k.ID, *exp); err != nil || !first {
				continue
			}
			s.alerts.Send(alert.Alert{Kind: "key_expiring",
				Message: fmt.Sprintf("key %s (%s) of principal %s expires at %s; rotate it (gatehouse keys rotate %s)", k.ID, k.Name, k.PrincipalID, exp.UTC().Format(time.RFC3339), k.ID),
				Details: map[string]any{"key_id": k.ID, "principal_id": k.PrincipalID, "team_id": k.TeamID, "expires_at": exp.UTC()}})
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
