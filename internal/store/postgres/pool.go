package postgres

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// codeTooManyConnections is SQLSTATE 53300: the server (or the role) is at its
// connection limit ("sorry, too many clients already", "remaining connection
// slots are reserved …").
const codeTooManyConnections = "53300"

// IsTooManyConnections reports whether err is PostgreSQL refusing a new
// connection because it is at its connection limit.
func IsTooManyConnections(err error) bool { return pgCode(err) == codeTooManyConnections }

// PoolHealth reports how a replica's pool fares against the server's
// connection limit, for metrics and /readyz. Its zero value is ready; it is
// safe for concurrent use.
type PoolHealth struct {
	refused atomic.Int64 // connection attempts the server refused with 53300
	last    atomic.Int64 // when the last was refused (Unix nanoseconds)
	capped  atomic.Bool  // the pool is held below max_open_conns after a refusal
	trips   atomic.Int64 // round trips to the server (options.go, deadlineConn)
}

// RoundTrips is the number of times the pool's connections waited for the
// server's answer to what they sent: on PostgreSQL each costs the network's
// latency and, inside a transaction, holds its locks that long.
func (h *PoolHealth) RoundTrips() int64 { return h.trips.Load() }

// RefusedSince reports whether the server refused a connection at or after t.
func (h *PoolHealth) RefusedSince(t time.Time) bool { return h.last.Load() >= t.UnixNano() }

// Refused is the number of new connections the server refused (53300).
func (h *PoolHealth) Refused() int64 { return h.refused.Load() }

// Capped reports whether the pool is, for now, kept at the connections it
// has because the server refused more.
func (h *PoolHealth) Capped() bool { return h.capped.Load() }

// Restoring a capped pool to its configured size: first after capMin, then
// twice as long after each refusal in a row, at most capMax.
const (
	capMin = 250 * time.Millisecond
	capMax = 5 * time.Second
)

// connector opens the pool's connections and copes with a full server. When
// PostgreSQL refuses a new connection (53300) while the pool already holds
// some, it caps the pool at what it holds and answers driver.ErrBadConn:
// database/sql then retries the caller's request on one of the held
// connections (waiting, within the caller's deadline, for one to be free)
// instead of failing it. The cap is lifted after a backoff, so the pool grows
// again once the server has room. With no connection held, it retries the
// connect itself with backoff until the caller's deadline (or the connect
// timeout when the caller gave none). Every refusal is counted; the first of a
// run, and then one every logEvery, is logged.
type connector struct {
	driver.Connector
	o      Options
	health *PoolHealth
	log    *slog.Logger
	db     atomic.Pointer[sql.DB]

	lastRefusal  atomic.Pointer[error]
	establishing atomic.Bool // at start: retry refusals, never cap (establish holds every connection)

	mu       sync.Mutex
	restore  *time.Timer   // pending lift of the cap
	backoff  time.Duration // next cap duration
	lastLog  time.Time
	unlogged int64
}

const logEvery = 10 * time.Second

func newConnector(inner driver.Connector, o Options) *connector {
	h := o.Health
	if h == nil {
		h = &PoolHealth{}
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &connector{Connector: inner, o: o, health: h, log: log, backoff: capMin}
}

// refusedError is a refused connect that database/sql should retry on
// another connection (it wraps driver.ErrBadConn) while keeping the server's
// error for whoever reads it.
type refusedError struct{ err error }

func (e refusedError) Error() string   { return e.err.Error() }
func (e refusedError) Unwrap() []error { return []error{e.err, driver.ErrBadConn} }

func (c *connector) Connect(ctx context.Context) (driver.Conn, error) {
	var stop <-chan time.Time
	if _, ok := ctx.Deadline(); !ok {
		// database/sql's background opener has no deadline.
		t := time.NewTimer(c.o.ConnectTimeout)
		defer t.Stop()
		stop = t.C
	}
	wait := 20 * time.Millisecond
	for {
		conn, err := c.Connector.Connect(ctx)
		if err == nil {
			c.mu.Lock()
			if c.restore == nil {
				c.backoff = capMin // a connection after the cap was lifted: the server has room again
			}
			c.mu.Unlock()
			return conn, nil
		}
		if !IsTooManyConnections(err) {
			return nil, err
		}
		db := c.db.Load()
		// OpenConnections counts this attempt too: hold the pool at the
		// others (held, or being opened), so that no connection it holds is
		// closed for being over the cap and no slot is left to retry into.
		held := 0
		if db != nil && !c.establishing.Load() {
			held = db.Stats().OpenConnections - 1
		}
		c.lastRefusal.Store(&err)
		c.refused(held)
		if held > 0 {
			c.capAt(db, held)
			return nil, refusedError{err}
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-stop:
			return nil, err
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// capAt holds the pool at n connections and schedules lifting the cap.
func (c *connector) capAt(db *sql.DB, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	db.SetMaxOpenConns(n)
	c.health.capped.Store(true)
	if c.restore != nil {
		return
	}
	d := c.backoff
	c.backoff = min(2*c.backoff, capMax)
	c.restore = time.AfterFunc(d, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.restore = nil
		db.SetMaxOpenConns(c.o.MaxOpenConns)
		db.SetMaxIdleConns(c.o.MaxIdleConns)
		c.health.capped.Store(false)
	})
}

// refused counts a refusal and logs it; held is the cap it set (0: none).
func (c *connector) refused(held int) {
	c.health.refused.Add(1)
	c.health.last.Store(time.Now().UnixNano())
	c.mu.Lock()
	defer c.mu.Unlock()
	c.unlogged++
	now := time.Now()
	if now.Sub(c.lastLog) < logEvery {
		return
	}
	c.log.Warn("postgres: the server refuses new connections (too many clients, SQLSTATE 53300); "+
		"this replica carries on with the connections it holds, and requests wait for them within store.timeout; "+
		"lower store.max_open_conns × replicas or raise max_connections (docs/operations.md, Connections and deadlines)",
		"refused", c.unlogged, "pool_capped_at", held, "max_open_conns", c.o.MaxOpenConns)
	c.lastLog, c.unlogged = now, 0
}

// Close cancels a pending lift of the cap; sql.DB.Close calls it.
func (c *connector) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.restore != nil {
		c.restore.Stop()
		c.restore = nil
	}
	return nil
}

// establish opens n connections at once and returns them to the pool, so a
// replica starts with the minimum it needs to keep serving when the server
// later has no slot to spare. It fails when fewer than n can be opened within
// ctx.
func (c *connector) establish(ctx context.Context, db *sql.DB, n int) error {
	c.establishing.Store(true)
	defer c.establishing.Store(false)
	conns := make([]*sql.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var errs []error
	for range n {
		c, err := db.Conn(ctx)
		if err != nil {
			errs = append(errs, err)
			break
		}
		if err := c.PingContext(ctx); err != nil {
			c.Close()
			errs = append(errs, err)
			break
		}
		conns = append(conns, c)
	}
	if len(conns) < n {
		if e := c.lastRefusal.Load(); e != nil && !IsTooManyConnections(errors.Join(errs...)) {
			errs = append(errs, *e)
		}
		return &minimumError{held: len(conns), want: n, err: errors.Join(errs...)}
	}
	return nil
}

type minimumError struct {
	held, want int
	err        error
}

func (e *minimumError) Error() string {
	return fmt.Sprintf("opened %d of the %d connections of store.min_open_conns: %v", e.held, e.want, e.err)
}
func (e *minimumError) Unwrap() error { return e.err }
