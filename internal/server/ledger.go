package server

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
)

// openLedger loads the log's signing key (sealed under the KEK; created on
// first start) and the export sinks.
func (s *Server) openLedger(ctx context.Context) (*ledger.Log, error) {
	skey, err := ledger.GenerateKey(s.cfg.Ledger.Origin)
	if err != nil {
		return nil, err
	}
	sealed, err := s.sealKeys(ledgerKeysSecret, []string{skey})
	if err != nil {
		return nil, err
	}
	if _, err := s.db.PutSecretIfAbsent(ctx, ledgerKeysSecret, sealed); err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	skeys, err := s.ledgerKeys(ctx)
	if err != nil {
		return nil, err
	}
	l, err := ledger.New(s.db, s.inst.ID(), skeys[0], s.log)
	if err != nil {
		return nil, err
	}
	l.SetInstance(s.inst.ID)
	if s.cfg.Database != "" {
		l.Gate = s.inst.Live
	}
	l.CommitTimeout = s.cfg.Store.Timeout.D()
	if err := l.SetKeys(skeys); err != nil {
		return nil, err
	}
	if l.Origin() != s.cfg.Ledger.Origin {
		s.log.Warn("ledger: the log keeps the origin it was created with; ledger.origin is ignored", "origin", l.Origin(), "configured", s.cfg.Ledger.Origin)
	}
	l.Interval = s.cfg.Ledger.CheckpointInterval.D()
	// The exporter tails the log in the store from a durable cursor; the
	// log only tells it, without waiting, that something was committed.
	if s.export, err = ledger.NewExporter(s.db, ledger.ExportOptions{File: s.cfg.Ledger.ExportFile, Webhook: s.cfg.Ledger.ExportWebhook,
		Secret: []byte(os.Getenv(EnvAlertSecret)), FromStart: s.cfg.Ledger.ExportFromStart, Instance: s.inst.ID(),
		Sole: s.cfg.Database == ""}, s.log); err != nil { // Sole: the embedded store's data directory is locked to this process
		return nil, err
	}
	if s.export.Enabled() {
		// Where a new target starts is fixed now, before this process
		// commits anything (its bootstrap and recovery records included).
		if err := s.export.Start(ctx); err != nil {
			return nil, err
		}
		l.Committed = s.export.Notify
	}
	return l, nil
}

// The ledger's checkpoint signing keys: a sealed JSON list of note signer
// keys, current first; all of them sign each checkpoint.
const ledgerKeysSecret = "ledger_signing_keys"

func (s *Server) ledgerKeys(ctx context.Context) ([]string, error) {
	return signingKeys[string](ctx, s, ledgerKeysSecret, "ledger", "ledger signing keys")
}

// RotateLedgerKey makes a new checkpoint signing key current. Checkpoints are
// signed by the new and the previous key until the next rotation, so auditors
// who pinned the previous key verify the new one's checkpoints and can re-pin
// (gatehouse audit verify --key NEW accepts a key that co-signs with the pinned one).
func (s *Server) RotateLedgerKey(ctx context.Context) (string, error) {
	keys, err := s.ledgerKeys(ctx)
	if err != nil {
		return "", err
	}
	fresh, err := ledger.GenerateKey(s.ledger.Origin())
	if err != nil {
		return "", err
	}
	sealed, err := s.sealKeys(ledgerKeysSecret, []string{fresh, keys[0]})
	if err != nil {
		return "", err
	}
	if err := s.db.SetSecret(ctx, ledgerKeysSecret, sealed); err != nil {
		return "", err
	}
	if err := s.Reload(ctx); err != nil {
		return "", err
	}
	if err := s.ledger.Resign(ctx); err != nil {
		s.log.Warn("ledger: checkpoint after key rotation", "err", err)
	}
	return s.ledger.Key(), nil
}

// Ledger returns the log.
func (s *Server) Ledger() *ledger.Log { return s.ledger }

// recoverLedger closes, on a shared database, the calls left open by replicas
// that stopped (no heartbeat for instance_timeout). Heartbeats carry the
// store's clock, and so does the cutoff: a replica whose own clock runs
// ahead does not take the others for dead.
func (s *Server) recoverLedger(ctx context.Context) {
	t := time.NewTicker(s.cfg.InstanceTimeout.D() / 4)
	defer t.Stop()
	for {
		if now, _, err := s.inst.StoreNow(); err != nil {
			if ctx.Err() == nil {
				s.log.Warn("ledger: recovery sweep skipped: the store's clock is not known", "err", err)
			}
		} else if _, err := s.ledger.Recover(ctx, false, now.Add(-s.cfg.InstanceTimeout.D())); err != nil && ctx.Err() == nil {
			s.log.Warn("ledger: recovery sweep failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
