package config

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Store tunes the connection pool and the deadlines of every store call
// (docs/operations.md: the arithmetic for N replicas).
type Store struct {
	// MaxOpenConns is the pool size per replica: default 10 on PostgreSQL
	// (N replicas use N × this of the server's max_connections), 8 on SQLite.
	MaxOpenConns int `yaml:"max_open_conns"`
	// MinOpenConns (PostgreSQL) are opened at start, or the replica does not
	// start, and kept open, so that an established replica keeps serving
	// when the server later refuses new connections; default 2.
	MinOpenConns int `yaml:"min_open_conns"`
	// MaxIdleConns is how many stay open while idle (no idle timeout);
	// default half the pool, at least min_open_conns.
	MaxIdleConns int `yaml:"max_idle_conns"`
	// ConnMaxLifetime recycles connections (default 30m).
	ConnMaxLifetime Duration `yaml:"conn_max_lifetime"`
	// ConnectTimeout bounds opening a connection (default 5s).
	ConnectTimeout Duration `yaml:"connect_timeout"`
	// StatementTimeout bounds one statement on the server (PostgreSQL's
	// statement_timeout and idle_in_transaction_session_timeout; SQLite's
	// busy timeout); default 5s.
	StatementTimeout Duration `yaml:"statement_timeout"`
	// Timeout is the longest a request waits on the store (reserve, the
	// start record, commits) before it fails closed with 503; default 5s.
	Timeout Duration `yaml:"timeout"`
	// StatementCache is PostgreSQL's per-connection prepared statement cache
	// size (default 512); -1 turns it off (PgBouncer in transaction mode).
	StatementCache int `yaml:"statement_cache"`
	// SQLiteSynchronous is the embedded store's sync on commit: "full"
	// (default: a commit is on disk before the call goes on, so a power cut
	// loses no start record of a call that was answered) or "normal" (faster;
	// a power cut may lose the last commits; docs/operations.md, Durability).
	SQLiteSynchronous string `yaml:"sqlite_synchronous"`
}

// DefaultStore is the store section's defaults (pool size depends on the backend).
var DefaultStore = Store{ConnMaxLifetime: Duration(30 * time.Minute), ConnectTimeout: Duration(5 * time.Second),
	StatementTimeout: Duration(5 * time.Second), Timeout: Duration(5 * time.Second)}

func (s Store) validate() error {
	var errs []error
	if s.MaxOpenConns < 0 || s.MaxIdleConns < 0 || s.MinOpenConns < 0 {
		errs = append(errs, errors.New("store: max_open_conns, min_open_conns and max_idle_conns must not be negative"))
	}
	if s.MaxOpenConns > 0 && s.MaxIdleConns > s.MaxOpenConns {
		errs = append(errs, errors.New("store: max_idle_conns must not exceed max_open_conns"))
	}
	if s.MaxOpenConns > 0 && s.MinOpenConns > s.MaxOpenConns {
		errs = append(errs, errors.New("store: min_open_conns must not exceed max_open_conns"))
	}
	if s.MaxIdleConns > 0 && s.MinOpenConns > s.MaxIdleConns {
		errs = append(errs, errors.New("store: min_open_conns must not exceed max_idle_conns (the minimum is kept idle)"))
	}
	for name, d := range map[string]Duration{"conn_max_lifetime": s.ConnMaxLifetime, "connect_timeout": s.ConnectTimeout,
		"statement_timeout": s.StatementTimeout, "timeout": s.Timeout} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("store.%s must be positive", name))
		}
	}
	switch strings.ToLower(s.SQLiteSynchronous) {
	case "", "full", "normal":
	default:
		errs = append(errs, fmt.Errorf("store.sqlite_synchronous: %q is neither full nor normal", s.SQLiteSynchronous))
	}
	if s.StatementCache < -1 {
		errs = append(errs, errors.New("store.statement_cache: -1 (off), 0 (default) or a size"))
	}
	return errors.Join(errs...)
}

// devDatabase refuses --dev with a database: dev mode runs on a temporary
// embedded store, and silently ignoring the database would mislead.
func (c *Config) devDatabase() error {
	if c.Dev && c.Database != "" {
		return errors.New("--dev runs on a temporary embedded store and cannot use database (--database or GATEHOUSE_DATABASE): drop one of them")
	}
	return nil
}
