package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// Listener delivers the store's change notifications to this replica: the
// triggers of migration 0016 announce, on the channel gatehouse_<schema>,
// "config" (providers, prices, budgets, limits, policies, token revocations:
// everything that bumps the config generation), "key:<id>" (a key revoked,
// suspended, rotated, changed) and "principal:<id>". It keeps one dedicated
// connection (outside the pool), checks it with a ping whenever it has been
// quiet for a while, and reconnects with backoff; after every (re)connect it
// calls OnConnect, since notifications sent while it was away are lost (the
// caller reloads). Polling stays the fallback.
type Listener struct {
	DSN       string
	Log       *slog.Logger
	OnNotify  func(payload string)
	OnConnect func()
	// Quiet is how long a silent connection waits before it is pinged
	// (default 5 s); ConnectTimeout bounds a (re)connect (default 5 s).
	Quiet, ConnectTimeout time.Duration
}

// Run listens until ctx ends.
func (l *Listener) Run(ctx context.Context) error {
	if l.Quiet <= 0 {
		l.Quiet = 5 * time.Second
	}
	if l.ConnectTimeout <= 0 {
		l.ConnectTimeout = 5 * time.Second
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := l.listen(ctx, func() { backoff = 100 * time.Millisecond })
		if ctx.Err() != nil {
			return nil
		}
		l.Log.Warn("postgres: change listener disconnected; reconnecting (polling covers the gap)", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
	return nil
}

func (l *Listener) listen(ctx context.Context, connected func()) error {
	cfg, err := pgx.ParseConfig(l.DSN)
	if err != nil {
		return fmt.Errorf("postgres: %w", redactDSNError(err, l.DSN))
	}
	cfg.ConnectTimeout = l.ConnectTimeout
	cctx, cancel := context.WithTimeout(ctx, 2*l.ConnectTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return redactDSNError(err, l.DSN)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var schema string
	if err := conn.QueryRow(cctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return err
	}
	if _, err := conn.Exec(cctx, `LISTEN `+pgx.Identifier{Channel(schema)}.Sanitize()); err != nil {
		return err
	}
	connected()
	if l.OnConnect != nil {
		l.OnConnect()
	}
	for {
		wctx, cancel := context.WithTimeout(ctx, l.Quiet)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			l.OnNotify(n.Payload)
		case ctx.Err() != nil:
			return nil
		case wctx.Err() != nil && !conn.IsClosed():
			// Quiet: make sure the connection is still there.
			pctx, cancel := context.WithTimeout(ctx, l.ConnectTimeout)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return fmt.Errorf("ping: %w", err)
			}
		default:
			return err
		}
	}
}

// Channel is the notification channel of a schema.
func Channel(schema string) string { return "gatehouse_" + schema }
