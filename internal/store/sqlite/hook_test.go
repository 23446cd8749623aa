package sqlite

import (
	"context"
	"database/sql/driver"
	"sync/atomic"
)

// hookConnector wraps the driver's connector so that a test runs a function
// before and after every driver call (begin, prepare, exec, query, each row,
// rows close, statement close, commit, rollback): the test cancels a context
// at exactly the n-th call. It forwards every optional interface modernc's
// connection implements that changes how database/sql treats a connection
// (SessionResetter and Validator keep a connection after a rollback), so the
// pool behaves as without the wrapper.
type hookConnector struct {
	driver.Connector
	hook *atomic.Pointer[func(op string)]
}

func (h *hookConnector) at(op string) {
	if f := h.hook.Load(); f != nil {
		(*f)(op)
	}
}

func (h *hookConnector) Connect(ctx context.Context) (driver.Conn, error) {
	c, err := h.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &hookConn{c, h}, nil
}

type hookConn struct {
	c driver.Conn
	h *hookConnector
}

func (c *hookConn) Prepare(q string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), q)
}

func (c *hookConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	c.h.at("prepare")
	st, err := c.c.(driver.ConnPrepareContext).PrepareContext(ctx, q)
	c.h.at("prepared")
	if err != nil {
		return nil, err
	}
	return &hookStmt{st, c.h}, nil
}

func (c *hookConn) Close() error { return c.c.Close() }

func (c *hookConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *hookConn) BeginTx(ctx context.Context, o driver.TxOptions) (driver.Tx, error) {
	c.h.at("begin")
	tx, err := c.c.(driver.ConnBeginTx).BeginTx(ctx, o)
	c.h.at("begun")
	if err != nil {
		return nil, err
	}
	return &hookTx{tx, c.h}, nil
}

func (c *hookConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	c.h.at("exec")
	r, err := c.c.(driver.ExecerContext).ExecContext(ctx, q, args)
	c.h.at("executed")
	return r, err
}

func (c *hookConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	c.h.at("query")
	r, err := c.c.(driver.QueryerContext).QueryContext(ctx, q, args)
	c.h.at("queried")
	if err != nil {
		return nil, err
	}
	return &hookRows{r, c.h}, nil
}

func (c *hookConn) Ping(ctx context.Context) error { return c.c.(driver.Pinger).Ping(ctx) }

func (c *hookConn) ResetSession(ctx context.Context) error {
	return c.c.(driver.SessionResetter).ResetSession(ctx)
}

func (c *hookConn) IsValid() bool { return c.c.(driver.Validator).IsValid() }

func (c *hookConn) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := c.c.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

type hookTx struct {
	tx driver.Tx
	h  *hookConnector
}

func (t *hookTx) Commit() error {
	t.h.at("commit")
	err := t.tx.Commit()
	t.h.at("committed")
	return err
}

func (t *hookTx) Rollback() error {
	t.h.at("rollback")
	err := t.tx.Rollback()
	t.h.at("rolledback")
	return err
}

type hookStmt struct {
	st driver.Stmt
	h  *hookConnector
}

func (s *hookStmt) Close() error  { return s.st.Close() }
func (s *hookStmt) NumInput() int { return s.st.NumInput() }

func (s *hookStmt) Exec(args []driver.Value) (driver.Result, error) {
	panic("database/sql calls ExecContext")
}

func (s *hookStmt) Query(args []driver.Value) (driver.Rows, error) {
	panic("database/sql calls QueryContext")
}

func (s *hookStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	s.h.at("stmt.exec")
	r, err := s.st.(driver.StmtExecContext).ExecContext(ctx, args)
	s.h.at("stmt.executed")
	return r, err
}

func (s *hookStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	s.h.at("stmt.query")
	r, err := s.st.(driver.StmtQueryContext).QueryContext(ctx, args)
	s.h.at("stmt.queried")
	if err != nil {
		return nil, err
	}
	return &hookRows{r, s.h}, nil
}

func (s *hookStmt) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := s.st.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

type hookRows struct {
	r driver.Rows
	h *hookConnector
}

func (r *hookRows) Columns() []string { return r.r.Columns() }

func (r *hookRows) Close() error {
	r.h.at("rows.close")
	err := r.r.Close()
	r.h.at("rows.closed")
	return err
}

func (r *hookRows) Next(dest []driver.Value) error {
	r.h.at("rows.next")
	err := r.r.Next(dest)
	r.h.at("rows.nexted")
	return err
}
