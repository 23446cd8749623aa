package server

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/auth"
	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"

	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// openDB opens the store cfg names with its pool and deadlines. On the
// embedded store it first takes the data directory's lock (see lockDataDir),
// which the caller releases after closing the store.
func (s *Server) openDB(ctx context.Context, cfg config.Config) (*sqlstore.DB, *sqlite.DirLock, error) {
	if cfg.Database != "" {
		db, err := s.openStore(ctx, cfg)
		return db, nil, err
	}
	lock, err := lockDataDir(cfg.DataDir, "stop it first, or give this gateway a data directory of its own (--data-dir)")
	if err != nil {
		return nil, nil, err
	}
	db, err := s.openStore(ctx, cfg)
	if err != nil {
		lock.Close()
		return nil, nil, err
	}
	return db, lock, nil
}

// openStore is openDB without the data directory's lock.
func (s *Server) openStore(ctx context.Context, cfg config.Config) (*sqlstore.DB, error) {
	st := cfg.Store
	if cfg.Database != "" {
		return postgres.OpenWith(ctx, cfg.Database, postgres.Options{MaxOpenConns: st.MaxOpenConns, MinOpenConns: st.MinOpenConns,
			MaxIdleConns: st.MaxIdleConns, ConnMaxLifetime: st.ConnMaxLifetime.D(), ConnectTimeout: st.ConnectTimeout.D(),
			StatementTimeout: st.StatementTimeout.D(), StatementCache: st.StatementCache, Log: s.log, Health: &s.pool})
	}
	return sqlite.OpenWith(ctx, filepath.Join(cfg.DataDir, sqlite.FileName), sqlite.Options{BusyTimeout: st.StatementTimeout.D(),
		MaxOpenConns: st.MaxOpenConns, Wrap: cfg.WrapSQLite, Synchronous: st.SQLiteSynchronous})
}

// lockDataDir takes the exclusive lock on the data directory dir, held until
// the returned lock is closed (or the process ends): one process owns an
// embedded store, or budgets admitted in memory and the ledger's sequence
// would be wrong. If another process holds it, the error names the directory
// and the holder's PID, and says what to do (todo).
func lockDataDir(dir, todo string) (*sqlite.DirLock, error) {
	lock, err := sqlite.LockDir(dir)
	if errors.Is(err, sqlite.ErrLocked) {
		return nil, fmt.Errorf("%w; %s", err, todo)
	}
	return lock, err
}

// boundedAuth gives every store lookup of authentication a deadline: a
// request never waits on a stuck store longer than store.timeout to learn who
// its caller is (it fails closed with 503).
type boundedAuth struct {
	a       *auth.Authenticator
	timeout time.Duration
}

func (b boundedAuth) Authenticate(ctx context.Context, credential string) (auth.Caller, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	return b.a.Authenticate(ctx, credential)
}

func (b boundedAuth) Principal(ctx context.Context, id string) (org.Principal, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	return b.a.Principal(ctx, id)
}

func (b boundedAuth) KeyByID(ctx context.Context, id string) (vkey.Key, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	return b.a.KeyByID(ctx, id)
}
