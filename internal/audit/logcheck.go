package audit

import (
	"context"
	"encoding/base64"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/store"
)

// LogVerifier verifies the gateway's own log on a schedule, as an outside
// auditor would (every leaf, the root against the signed checkpoint, and that
// the tree verified last time is still its prefix), and keeps the outcome for
// the config.log_unverified rule, the report and the metrics (Verified). It is
// the gateway's one self-verification of its log (audit.log_verify_interval).
type LogVerifier struct {
	Source ledger.Source
	// Key returns the checkpoint verifier key to check against.
	Key   func() string
	Store FindingStore
	Now   func() time.Time

	mu       sync.Mutex    // checks take turns (the schedule and CheckLog)
	prev     *ledger.State // the last verified tree: a later one must contain it; under mu
	failures atomic.Int64  // checks in this process that found the log did not verify
}

// Check verifies the log once and stores the outcome. Concurrent checks (the
// schedule's and an on-demand one) take turns.
func (v *LogVerifier) Check(ctx context.Context) (LogCheck, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	last, err := v.Store.LogCheck(ctx)
	if err != nil {
		return LogCheck{}, err
	}
	c := LogCheck{At: now().UTC()}
	if last != nil {
		c.LastGood, c.GoodSize, c.GoodRoot, c.GoodOrigin = last.LastGood, last.GoodSize, last.GoodRoot, last.GoodOrigin
		if v.prev == nil {
			v.prev = goodTree(last) // after a restart: the tree verified before it
		}
	}
	rep, st, verr := ledger.Verify(ctx, v.Source, v.Key(), v.prev, nil)
	if errors.Is(verr, store.ErrNotFound) {
		return c, ErrNoCheckpoint // a new log: nothing signed to verify yet
	}
	if verr != nil {
		c.Error = verr.Error()
		c.Size = rep.Size
		if ctx.Err() != nil {
			return c, ctx.Err()
		}
		v.failures.Add(1)
	} else {
		c.OK, c.Size, c.Root, c.LastGood = true, rep.Size, base64.StdEncoding.EncodeToString(rep.Root[:]), c.At
		c.GoodSize, c.GoodRoot, c.GoodOrigin = c.Size, c.Root, rep.Origin
		v.prev = st
	}
	return c, v.Store.SaveLogCheck(ctx, c)
}

// goodTree is the tree of c's last passing check, or nil when it has none.
func goodTree(c *LogCheck) *ledger.State {
	root, err := base64.StdEncoding.DecodeString(c.GoodRoot)
	if c.GoodSize <= 0 || c.GoodOrigin == "" || err != nil || len(root) != len(tlog.Hash{}) {
		return nil
	}
	st := &ledger.State{Origin: c.GoodOrigin, Size: c.GoodSize, VerifiedAt: c.LastGood}
	copy(st.Hash[:], root)
	return st
}

// Verified reports when the stored log last passed verification (zero: never
// yet; with several replicas, by any of them) and how many checks in this
// process found that it did not verify.
func (v *LogVerifier) Verified(ctx context.Context) (lastGood time.Time, failures int64, err error) {
	c, err := v.Store.LogCheck(ctx)
	if err != nil {
		return time.Time{}, 0, err
	}
	if c != nil {
		lastGood = c.LastGood
	}
	return lastGood, v.failures.Load(), nil
}

// ErrNoCheckpoint: the log has no signed checkpoint yet (a new gateway).
var ErrNoCheckpoint = errors.New("audit: the log has no checkpoint yet")

// Run checks the log at every tick until ctx ends; a log without a
// checkpoint yet is checked again a minute later.
func (v *LogVerifier) Run(ctx context.Context, tick <-chan time.Time, onError func(error)) error {
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
		case <-retry:
		}
		retry = nil
		c, err := v.Check(ctx)
		if errors.Is(err, ErrNoCheckpoint) {
			retry = time.After(5 * time.Second) // a new log signs its first checkpoint within a second or so
			continue
		}
		if err == nil && !c.OK {
			err = errString(c.Error)
		}
		if err != nil && ctx.Err() == nil && onError != nil {
			onError(err)
		}
	}
}

type errString string

func (e errString) Error() string { return string(e) }
