package sqlite

import (
	"context"
	"database/sql"
	"log/slog"
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
//   - when the WAL holds more than WALLimit bytes of frames (a long reader,
//     or writes that never pause long enough for it to restart), a RESTART
//     checkpoint inside this process's write turn, so that it does not race
//     the store's own transactions and the next commit writes the WAL from
//     its start; its busy timeout is short, and when a reader keeps it from
//     finishing it backs off (doubling, up to 5 s), logs, and tries again,
//     never fatal. journal_size_limit (= WALLimit) cuts a WAL file that grew
//     past the limit back to it when it restarts; below it the file is
//     reused, not truncated, so commits do not pay for growing it again.
//
// Durability is SQLite's: a commit is durable in the WAL when it returns;
// a checkpoint only copies committed pages, so a crash at any point of one
// loses nothing (the next open replays the WAL).
type checkpointer struct {
	db       *sql.DB // its own connection, not one of the pool's
	store    *sqlstore.DB
	pageSize int64
	every    time.Duration
	limit    int64
	log      *slog.Logger

	cancel context.CancelFunc
	done   chan struct{}
}

// startCheckpointer opens the checkpointer's connection with dsn and starts
// its goroutine; the store's Close stops it.
func startCheckpointer(store *sqlstore.DB, dsn string, every time.Duration, limit int64, log *slog.Logger) error {
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
	var pageSize int64
	if err := db.QueryRow("PRAGMA page_size").Scan(&pageSize); err != nil {
		db.Close()
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &checkpointer{db: db, store: store, pageSize: pageSize, every: every, limit: limit, log: log, cancel: cancel, done: make(chan struct{})}
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
		_, frames, copied, err := c.checkpoint(ctx, "PASSIVE")
		if err != nil {
			if ctx.Err() == nil {
				c.log.Warn("sqlite: checkpoint failed; retrying", "mode", "PASSIVE", "err", err)
			}
			continue
		}
		// All copied: the next commit restarts the WAL by itself.
		if copied == frames || int64(frames)*c.pageSize <= c.limit || time.Now().Before(next) {
			continue
		}
		busy, err := c.restart(ctx)
		switch {
		case err == nil && !busy:
			backoff, next = 0, time.Time{}
			continue
		case ctx.Err() != nil:
			return
		}
		backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
		next = time.Now().Add(backoff)
		c.log.Info("sqlite: WAL past its limit and a checkpoint could not restart it (a reader holds it); retrying",
			"retry_in", backoff, "busy", busy, "err", err)
	}
}

// checkpoint runs PRAGMA wal_checkpoint(mode); busy reports that it could
// not finish (a reader or writer was in the way).
// frames is the WAL's length in frames (pages) when it ran, copied how many
// of them are in the database file.
func (c *checkpointer) checkpoint(ctx context.Context, mode string) (busy bool, frames, copied int, err error) {
	var b int
	if err := c.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint("+mode+")").Scan(&b, &frames, &copied); err != nil {
		return false, 0, 0, err
	}
	return b != 0, frames, copied, nil
}

// restart checkpoints the whole WAL, in this process's write turn, so that
// the next commit writes the WAL from its start again.
func (c *checkpointer) restart(ctx context.Context) (bool, error) {
	release, err := c.store.Turn(ctx)
	if err != nil {
		return false, err
	}
	defer release()
	busy, _, _, err := c.checkpoint(ctx, "RESTART")
	return busy, err
}
