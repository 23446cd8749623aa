package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// Options tune the connection pool and its deadlines. Zero values take the
// defaults; docs/operations.md has the arithmetic for N replicas.
type Options struct {
	MaxOpenConns int // per replica; default 10
	// MinOpenConns are opened at start (OpenWith fails without them) and
	// kept idle, so that a replica keeps serving when the server later has
	// no connection to spare; default min(2, MaxOpenConns).
	MinOpenConns int
	// MaxIdleConns stay open while idle (no idle timeout); default
	// MaxOpenConns/2, at least MinOpenConns.
	MaxIdleConns    int
	ConnMaxLifetime time.Duration // default 30 m
	ConnectTimeout  time.Duration // TCP and startup; default 5 s
	// StatementTimeout is PostgreSQL's statement_timeout (and
	// idle_in_transaction_session_timeout, so a replica frozen inside a
	// transaction cannot hold row locks longer); default 5 s.
	StatementTimeout time.Duration
	// IOTimeout is the longest the client waits for any byte from the server
	// while it expects one: a black-holed connection fails after it even
	// when the caller gave no deadline. Default StatementTimeout + 2 s.
	IOTimeout time.Duration
	// StatementCache is the per-connection prepared statement cache size
	// (default 512); -1 turns it off (for PgBouncer in transaction mode).
	StatementCache int

	// Log receives the pool's warnings (the server refusing connections);
	// Health, when set, is updated with what the pool meets, its round
	// trips to the server included (PoolHealth.RoundTrips).
	Log    *slog.Logger
	Health *PoolHealth
}

func (o Options) withDefaults() Options {
	if o.MaxOpenConns <= 0 {
		o.MaxOpenConns = 10
	}
	if o.MinOpenConns <= 0 {
		o.MinOpenConns = min(2, o.MaxOpenConns)
	}
	o.MinOpenConns = min(o.MinOpenConns, o.MaxOpenConns)
	if o.MaxIdleConns <= 0 {
		o.MaxIdleConns = max(o.MaxOpenConns/2, 1)
	}
	o.MaxIdleConns = min(max(o.MaxIdleConns, o.MinOpenConns), o.MaxOpenConns)
	if o.ConnMaxLifetime <= 0 {
		o.ConnMaxLifetime = 30 * time.Minute
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 5 * time.Second
	}
	if o.StatementTimeout <= 0 {
		o.StatementTimeout = 5 * time.Second
	}
	if o.IOTimeout <= 0 {
		o.IOTimeout = o.StatementTimeout + 2*time.Second
	}
	if o.StatementCache == 0 {
		o.StatementCache = 512
	}
	if o.Health == nil {
		o.Health = &PoolHealth{}
	}
	return o
}

// connConfig parses dsn and applies o.
func connConfig(dsn string, o Options) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", redactDSNError(err, dsn))
	}
	cfg.ConnectTimeout = o.ConnectTimeout
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	ms := fmt.Sprint(o.StatementTimeout.Milliseconds())
	cfg.RuntimeParams["statement_timeout"] = ms
	cfg.RuntimeParams["idle_in_transaction_session_timeout"] = ms
	if o.StatementCache < 0 {
		cfg.StatementCacheCapacity, cfg.DescriptionCacheCapacity = 0, 0
		cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	} else {
		cfg.StatementCacheCapacity = o.StatementCache
	}
	dial := (&net.Dialer{KeepAlive: 15 * time.Second}).DialContext
	io := o.IOTimeout
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &deadlineConn{Conn: c, io: io, trips: &o.Health.trips}, nil
	}
	return cfg, nil
}

// deadlineConn bounds every read and write: each waits at most io, or less
// when pgx set an earlier deadline itself (it does so to cancel a query).
type deadlineConn struct {
	net.Conn
	io time.Duration

	mu        sync.Mutex
	userRead  time.Time
	userWrite time.Time

	// A round trip is a read after writes: the client waits for the
	// server's answer to what it sent.
	trips *atomic.Int64 // PoolHealth.trips
	wrote atomic.Bool   // written to since the last read
}

func (c *deadlineConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	d := earliest(c.userRead, time.Now().Add(c.io))
	c.mu.Unlock()
	c.Conn.SetReadDeadline(d)
	if c.wrote.Load() && c.wrote.Swap(false) {
		c.trips.Add(1)
	}
	return c.Conn.Read(b)
}

func (c *deadlineConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	d := earliest(c.userWrite, time.Now().Add(c.io))
	c.mu.Unlock()
	c.Conn.SetWriteDeadline(d)
	if !c.wrote.Load() {
		c.wrote.Store(true)
	}
	return c.Conn.Write(b)
}

func (c *deadlineConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.userRead, c.userWrite = t, t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.userRead = t
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.userWrite = t
	c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

func earliest(user, bound time.Time) time.Time {
	if !user.IsZero() && user.Before(bound) {
		return user
	}
	return bound
}
