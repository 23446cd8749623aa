package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/keyring"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/store"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// OpenStore opens the store of cfg directly for offline tools that only read
// (audit verify). The embedded store opens read-only and without the data
// directory's lock, so it may run while the gateway that owns the directory
// does.
func OpenStore(ctx context.Context, cfg config.Config) (*sqlstore.DB, func() error, error) {
	var db *sqlstore.DB
	var err error
	if cfg.Database != "" {
		// Offline tools (verify a large log) may run long statements.
		db, err = postgres.OpenWith(ctx, cfg.Database, postgres.Options{MaxOpenConns: 4, StatementTimeout: time.Hour})
	} else {
		path := filepath.Join(cfg.DataDir, sqlite.FileName)
		if _, serr := os.Stat(path); serr != nil {
			return nil, nil, fmt.Errorf("no Gatehouse store at %s", path)
		}
		db, err = sqlite.OpenReadOnly(ctx, path)
	}
	if err != nil {
		return nil, nil, err
	}
	return db, db.Close, nil
}

// openExclusive opens the store of cfg for an offline tool that must be its
// only writer (kek rotate): on the embedded store it takes the data
// directory's lock, so it refuses to run while a gateway does, and says so.
func openExclusive(ctx context.Context, cfg config.Config, todo string) (*sqlstore.DB, func() error, error) {
	if cfg.Database != "" {
		// Re-wrapping every secret in one transaction may run long.
		db, err := postgres.OpenWith(ctx, cfg.Database, postgres.Options{MaxOpenConns: 4, StatementTimeout: time.Hour})
		if err != nil {
			return nil, nil, err
		}
		return db, db.Close, nil
	}
	path := filepath.Join(cfg.DataDir, sqlite.FileName)
	if _, err := os.Stat(path); err != nil {
		return nil, nil, fmt.Errorf("no Gatehouse store at %s", path)
	}
	lock, err := lockDataDir(cfg.DataDir, todo)
	if err != nil {
		return nil, nil, err
	}
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		lock.Close()
		return nil, nil, err
	}
	return db, func() error { err := db.Close(); lock.Close(); return err }, nil
}

// RotateKEK makes a new key-encryption key current and re-wraps every sealed
// secret in the store under it (upstream keys, signing keys, the key-hashing
// secret, TOTP secrets), in one transaction; then it drops the old key from the
// key file. Gateways must be stopped: a running one holds the old key only.
func RotateKEK(ctx context.Context, cfg config.Config, log *slog.Logger) (oldID, newID string, n int, err error) {
	if os.Getenv(keyring.EnvKEK) != "" {
		return "", "", 0, fmt.Errorf("%s is set: rotate the key in your secret manager instead (this command rotates the key file)", keyring.EnvKEK)
	}
	old, _, err := keyring.LoadKEKs(cfg.KEKFile, func(string) string { return "" })
	if err != nil {
		return "", "", 0, err
	}
	db, closeFn, err := openExclusive(ctx, cfg, "stop the gateway first: a running gateway holds the old key only")
	if err != nil {
		return "", "", 0, err
	}
	defer closeFn()
	fresh := keyring.NewKEK()
	// Write the new key first, with the old ones after: a crash from here on
	// leaves a file that opens every blob, whatever was re-wrapped.
	if err := keyring.WriteKEKs(cfg.KEKFile, append([][]byte{fresh}, old...)); err != nil {
		return "", "", 0, err
	}
	kr, err := keyring.New(append([][]byte{fresh}, old...)...)
	if err != nil {
		return "", "", 0, err
	}
	n, err = db.Rewrap(ctx, func(blob, aad []byte) ([]byte, error) {
		pt, err := kr.Open(blob, aad)
		if err != nil {
			return nil, err
		}
		return kr.Seal(pt, aad)
	})
	if err != nil {
		return "", "", 0, fmt.Errorf("re-wrapping (nothing changed; the key file holds both keys): %w", err)
	}
	if err := keyring.WriteKEKs(cfg.KEKFile, [][]byte{fresh}); err != nil {
		return "", "", 0, err
	}
	oldID, newID = keyring.KEKID(old[0]), keyring.KEKID(fresh)
	s := &Server{cfg: cfg, log: log, db: db, keyring: kr}
	rec := ledger.Record{Kind: ledger.KindAdmin, Time: time.Now(), RequestID: "kek-rotate-" + newID, Action: "kek rotate",
		Target: newID, Detail: fmt.Sprintf("%s → %s, %d secrets re-wrapped", oldID, newID, n), Status: http.StatusOK}
	if err := s.recordOffline(ctx, rec); err != nil {
		return "", "", 0, fmt.Errorf("the key was rotated, but recording it in the ledger failed: %w", err)
	}
	log.Warn("key-encryption key rotated", "old", oldID, "new", newID, "secrets", n)
	return keyring.KEKID(old[0]), keyring.KEKID(fresh), n, nil
}

// RecoverAdminKey opens the store of cfg directly (no listeners) and creates a
// new admin key for the bootstrap principal "admin": the way back in for an
// operator who lost every admin key but holds the data directory (or database
// URL) and the key-encryption key.
func RecoverAdminKey(ctx context.Context, cfg config.Config, log *slog.Logger) (string, error) {
	if os.Getenv(keyring.EnvKEK) == "" {
		if _, err := os.Stat(cfg.KEKFile); err != nil {
			return "", fmt.Errorf("no key-encryption key at %s and %s is unset: this is not the data directory of an existing gateway", cfg.KEKFile, keyring.EnvKEK)
		}
	}
	s := &Server{cfg: cfg, log: log}
	defer s.closeAll()
	var err error
	// Without the data directory's lock: recovery works while the gateway
	// runs. It writes a new admin key and one ledger record, which the
	// ledger's transaction orders after the gateway's own appends.
	if s.db, err = s.openStore(ctx, cfg); err != nil {
		return "", err
	}
	keks, _, err := keyring.LoadKEKs(cfg.KEKFile, os.Getenv)
	if err != nil {
		return "", err
	}
	if s.keyring, err = keyring.New(keks...); err != nil {
		return "", err
	}
	hasher, err := s.keyHasher(ctx)
	if err != nil {
		return "", err
	}
	s.verifier = vkey.NewVerifier(s.db, hasher, vkey.VerifierOptions{})
	s.cfg.Dev, s.cfg.DevAdminKey = false, ""
	if err := s.createAdminKey(ctx, "recovered admin key"); err != nil {
		return "", err
	}
	rec := ledger.Record{Kind: ledger.KindAdmin, Time: time.Now(), RequestID: "recover-admin-key-" + s.Bootstrap.AdminKeyID, Action: "recover-admin-key",
		Target: s.Bootstrap.AdminKeyID, Detail: "admin key created offline with the data directory and the key-encryption key", Status: http.StatusCreated}
	if err := s.recordOffline(ctx, rec); err != nil {
		return "", fmt.Errorf("recording the recovery in the ledger: %w (the new key was not handed out)", err)
	}
	return s.Bootstrap.AdminKey, nil
}

// recordOffline appends an admin record to the ledger from a command that
// works on the store directly (no gateway running), and signs a checkpoint
// over it. A store whose ledger was never created has nothing to append to.
func (s *Server) recordOffline(ctx context.Context, rec ledger.Record) error {
	keys, err := s.ledgerKeys(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	l, err := ledger.New(s.db, vkey.NewID("offline"), keys[0], s.log)
	if err != nil {
		return err
	}
	if err := l.SetKeys(keys); err != nil {
		return err
	}
	if _, err := l.Append(ctx, ledger.Entry{Data: rec.Marshal(), RequestID: rec.RequestID}); err != nil {
		return err
	}
	return l.SignCheckpoint(ctx)
}

// ResetExport sets a ledger export target's cursor to to (negative: the
// log's end) and records it in the ledger: the way out of a cursor past the
// log's end, after a store was restored from an older backup (the exporter
// stalls such a target until its cursor changes; docs/ledger.md "Exports").
// On the embedded store the gateway must be stopped (it holds the data
// directory); on PostgreSQL the replicas' exporters take the new cursor
// within a poll. It returns the cursor it replaced and the new one.
func ResetExport(ctx context.Context, cfg config.Config, target string, to int64, log *slog.Logger) (was, now int64, err error) {
	if target != ledger.ExportTargetFile && target != ledger.ExportTargetWebhook {
		return 0, 0, fmt.Errorf("no export target %q (file or webhook)", target)
	}
	if os.Getenv(keyring.EnvKEK) == "" {
		if _, err := os.Stat(cfg.KEKFile); err != nil {
			return 0, 0, fmt.Errorf("no key-encryption key at %s and %s is unset: it signs the ledger record of the reset", cfg.KEKFile, keyring.EnvKEK)
		}
	}
	db, closeFn, err := openExclusive(ctx, cfg, "stop the gateway first: it exports from the cursor it holds")
	if err != nil {
		return 0, 0, err
	}
	defer closeFn()
	keks, _, err := keyring.LoadKEKs(cfg.KEKFile, os.Getenv)
	if err != nil {
		return 0, 0, err
	}
	kr, err := keyring.New(keks...)
	if err != nil {
		return 0, 0, err
	}
	size, err := db.LedgerSize(ctx)
	if err != nil {
		return 0, 0, err
	}
	if to < 0 {
		to = size
	}
	if to > size {
		return 0, 0, fmt.Errorf("--to %d is past the log's end (%d records)", to, size)
	}
	if was, err = db.ExportReset(ctx, target, to); err != nil {
		return 0, 0, err
	}
	if was < 0 {
		was = -was - 1 // stored as stalled (ledger.Exporter)
	}
	s := &Server{cfg: cfg, log: log, db: db, keyring: kr}
	rec := ledger.Record{Kind: ledger.KindAdmin, Time: time.Now(), RequestID: vkey.NewID("export-reset"), Action: "ledger export-reset",
		Target: target, Detail: fmt.Sprintf("export cursor %d → %d (the log holds %d records)", was, to, size), Status: http.StatusOK}
	if err := s.recordOffline(ctx, rec); err != nil {
		return was, to, fmt.Errorf("the cursor was reset, but recording it in the ledger failed: %w", err)
	}
	log.Warn("ledger export cursor reset", "target", target, "was", was, "now", to, "size", size)
	return was, to, nil
}
