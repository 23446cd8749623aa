package sqlite

import (
	"context"
	"database/sql"
	"log/slog"
	"os"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// Checkpoints. SQLite's automatic checkpoint (wal_autocheckpoint, 1000
// pages) runs inside the commit that crosses the threshold: that one caller
// copies the WAL's pages into the database file and, at synchronous=FULL,
// waits for its fsync. The pooled connections turn it off
// (wal_autocheckpoint(0)); one goroutine of the store checkpoints instead, on
// its own connection:
//
//   - every CheckpointEvery, a PASSIVE checkpoint: it copies what it can
//     without waiting for readers or writers, so no call waits on it;
//   - when the WAL file has grown past WALLimit (a long reader, or writes
//     that never pause long enough for the WAL to restart), a TRUNCATE
//     checkpoint inside this process's write turn, so it does not race the
//     store's own transactions; its busy timeout is short, and when a reader
//     keeps it from finishing it backs off (doubling, up to a few seconds) and
//     tries again, logged, never fatal.
//
// Durability is SQLite's: a commit is durable in the WAL when it returns;
// a checkpoint only copies committed pages, so a crash at any point of one
// loses nothing (the next open replays the WAL).
type checkpointer struct {
	db    *sql.DB // its own connection, not one of the pool's
	store *sqlstore.DB
	wal   string
	every time.Duration
	limit int64
	log   *slog.Logger

	cancel context.CancelFunc
	done   chan struct{}
}

// startCheckpointer opens the checkpointer's connection with dsn and starts
// its goroutine; the store's Close stops it.
func startCheckpointer(store *sqlstore.DB, dsn, path string, every time.Duration, limit int64, log *slog.Logger) error {
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	if err := db.Ping(); err != nil {
		db.Close()
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &checkpointer{db: db, store: store, wal: path + "-wal", every: every, limit: limit, log: log, cancel: cancel, done: make(chan struct{})}
	go c.run(ctx)
	store.OnClose(c.stop)
	return nil
}

// stop ends the goroutine, waits for it, and closes its connection.
func (c *checkpointer) stop() {
	c.cancel()
	<-c.done
	c.db.Close()
}

func (c *checkpointer) run(ctx context.Context) {
	defer close(c.done)
	t := time.NewTicker(c.every)
	defer t.Stop()
	backoff, next := time.Duration(0), time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := c.checkpoint(ctx, "PASSIVE"); err != nil {
			if ctx.Err() == nil {
				c.log.Warn("sqlite: checkpoint failed; retrying", "mode", "PASSIVE", "err", err)
			}
			continue
		}
		if fi, err := os.Stat(c.wal); err != nil || fi.Size() <= c.limit || time.Now().Before(next) {
			continue
		}
		busy, err := c.truncate(ctx)
		switch {
		case err == nil && !busy:
			backoff, next = 0, time.Time{}
			continue
		case ctx.Err() != nil:
			return
		}
		backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
		next = time.Now().Add(backoff)
		c.log.Info("sqlite: WAL past its limit and a checkpoint could not truncate it (a reader holds it); retrying",
			"retry_in", backoff, "busy", busy, "err", err)
	}
}

// checkpoint runs PRAGMA wal_checkpoint(mode); busy reports that it could
// not finish (a reader or writer was in the way).
func (c *checkpointer) checkpoint(ctx context.Context, mode string) (busy bool, err error) {
	var b, frames, copied int
	if err := c.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint("+mode+")").Scan(&b, &frames, &copied); err != nil {
		return false, err
	}
	return b != 0, nil
}

// truncate checkpoints the whole WAL and truncates its file, in this
// process's write turn.
func (c *checkpointer) truncate(ctx context.Context) (bool, error) {
	release, err := c.store.Turn(ctx)
	if err != nil {
		return false, err
	}
	defer release()
	return c.checkpoint(ctx, "TRUNCATE")
}
