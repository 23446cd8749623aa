package faultnet

import (
	"context"
	"database/sql/driver"
	"errors"
	"strings"
	"sync/atomic"
)

// ErrDiskFull is what writes return while a Disk is full.
var ErrDiskFull = errors.New("faultnet: database or disk is full (injected)")

// Disk injects a full disk under a database/sql driver: while full, every
// statement that writes (INSERT, UPDATE, DELETE, …) and every commit fails with
// ErrDiskFull, and reads still work, as with SQLite on a full file system.
type Disk struct{ full atomic.Bool }

// Fill makes writes fail.
func (d *Disk) Fill() { d.full.Store(true) }

// Free makes writes succeed again.
func (d *Disk) Free() { d.full.Store(false) }

// Full reports whether writes fail.
func (d *Disk) Full() bool { return d.full.Load() }

// Connector wraps c so that its connections see d.
func (d *Disk) Connector(c driver.Connector) driver.Connector { return &connector{c, d} }

type connector struct {
	driver.Connector
	d *Disk
}

func (c *connector) Connect(ctx context.Context) (driver.Conn, error) {
	cn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &conn{cn, c.d}, nil
}

// conn implements only the interfaces database/sql needs for the prepare
// path, so every statement goes through stmt below.
type conn struct {
	c driver.Conn
	d *Disk
}

func (c *conn) Prepare(q string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), q)
}

func (c *conn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	var st driver.Stmt
	var err error
	if pc, ok := c.c.(driver.ConnPrepareContext); ok {
		st, err = pc.PrepareContext(ctx, q)
	} else {
		st, err = c.c.Prepare(q)
	}
	if err != nil {
		return nil, err
	}
	return &stmt{st, c.d, writes(q)}, nil
}

func (c *conn) Close() error { return c.c.Close() }

func (c *conn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *conn) BeginTx(ctx context.Context, o driver.TxOptions) (driver.Tx, error) {
	var tx driver.Tx
	var err error
	if bt, ok := c.c.(driver.ConnBeginTx); ok {
		tx, err = bt.BeginTx(ctx, o)
	} else {
		//lint:ignore SA1019 the fallback database/sql uses too
		tx, err = c.c.Begin()
	}
	if err != nil {
		return nil, err
	}
	return &txn{tx, c.d}, nil
}

func (c *conn) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := c.c.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

func (c *conn) ResetSession(ctx context.Context) error {
	if r, ok := c.c.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *conn) Ping(ctx context.Context) error {
	if p, ok := c.c.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

type txn struct {
	tx driver.Tx
	d  *Disk
}

func (t *txn) Commit() error {
	if t.d.Full() {
		t.tx.Rollback()
		return ErrDiskFull
	}
	return t.tx.Commit()
}

func (t *txn) Rollback() error { return t.tx.Rollback() }

type stmt struct {
	st    driver.Stmt
	d     *Disk
	write bool
}

func (s *stmt) Close() error  { return s.st.Close() }
func (s *stmt) NumInput() int { return s.st.NumInput() }

func (s *stmt) Exec(args []driver.Value) (driver.Result, error) {
	if s.write && s.d.Full() {
		return nil, ErrDiskFull
	}
	//lint:ignore SA1019 forwarding the legacy method
	return s.st.Exec(args)
}

func (s *stmt) Query(args []driver.Value) (driver.Rows, error) {
	if s.write && s.d.Full() {
		return nil, ErrDiskFull
	}
	//lint:ignore SA1019 forwarding the legacy method
	return s.st.Query(args)
}

func (s *stmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	if s.write && s.d.Full() {
		return nil, ErrDiskFull
	}
	if e, ok := s.st.(driver.StmtExecContext); ok {
		return e.ExecContext(ctx, args)
	}
	//lint:ignore SA1019 drivers without the context method
	return s.st.Exec(values(args))
}

func (s *stmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	if s.write && s.d.Full() {
		return nil, ErrDiskFull
	}
	if q, ok := s.st.(driver.StmtQueryContext); ok {
		return q.QueryContext(ctx, args)
	}
	//lint:ignore SA1019 drivers without the context method
	return s.st.Query(values(args))
}

func values(nv []driver.NamedValue) []driver.Value {
	out := make([]driver.Value, len(nv))
	for i, v := range nv {
		out[i] = v.Value
	}
	return out
}

func (s *stmt) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := s.st.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

// writes reports whether a statement changes the database.
func writes(q string) bool {
	q = strings.ToUpper(strings.TrimSpace(q))
	for _, w := range []string{"INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER"} {
		if strings.HasPrefix(q, w) {
			return true
		}
	}
	return false
}
