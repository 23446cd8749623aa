package sqlite

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// lockedBuffer is a log sink safe for the checkpointer's goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

const walLimit = 256 << 10

func openCheckpointed(t *testing.T, path string, log *slog.Logger) *sqlstore.DB {
	t.Helper()
	db, err := OpenWith(context.Background(), path, Options{CheckpointEvery: 2 * time.Millisecond, WALLimit: walLimit, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.SQL().Exec(`CREATE TABLE IF NOT EXISTS ckpt_rows (id INTEGER PRIMARY KEY, v BLOB)`); err != nil {
		t.Fatal(err)
	}
	return db
}

// commit writes n rows, one transaction each (about two pages apiece).
func commit(t *testing.T, db *sqlstore.DB, n int) {
	t.Helper()
	v := bytes.Repeat([]byte{'x'}, 3000)
	for range n {
		tx, err := db.SQL().Begin()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(`INSERT INTO ckpt_rows (v) VALUES (?)`, v); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

// walShrinks waits (up to 10 s) until the WAL file is at most limit bytes.
func walShrinks(t *testing.T, path string, limit int64) {
	t.Helper()
	var size int64
	for range 1000 {
		fi, err := os.Stat(path + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		if size = fi.Size(); size <= limit {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("WAL is %d bytes, want at most %d", size, limit)
}

func rows(t *testing.T, db *sqlstore.DB) int {
	t.Helper()
	var n int
	if err := db.SQL().QueryRow(`SELECT count(*) FROM ckpt_rows`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// The commits do not checkpoint (wal_autocheckpoint is 0 on the pool), yet
// the WAL stays bounded: the checkpointer copies and truncates it.
func TestCheckpointerBoundsWAL(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	db := openCheckpointed(t, path, nil)
	var auto int
	if err := db.SQL().QueryRow(`PRAGMA wal_autocheckpoint`).Scan(&auto); err != nil || auto != 0 {
		t.Fatalf("pool connection: wal_autocheckpoint %d, %v; want 0", auto, err)
	}
	commit(t, db, 3000) // ~24 MB of WAL frames without checkpoints
	walShrinks(t, path, walLimit)
	if got := rows(t, db); got != 3000 {
		t.Fatalf("%d rows, want 3000", got)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openCheckpointed(t, path, nil)
	defer db.Close()
	if got := rows(t, db); got != 3000 {
		t.Fatalf("after reopen: %d rows, want 3000", got)
	}
}

// A long reader keeps the WAL from being truncated: the checkpointer says so
// in the log and keeps trying, writes go on, and once the reader ends the
// WAL is truncated.
func TestCheckpointerRetriesPastLongReader(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName)
	var logs lockedBuffer
	db := openCheckpointed(t, path, slog.New(slog.NewTextHandler(&logs, nil)))
	defer db.Close()
	commit(t, db, 10)

	ro, err := OpenReadOnly(ctx, path) // an offline reader, as audit verify is
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	conn, err := ro.SQL().Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `BEGIN`); err != nil {
		t.Fatal(err)
	}
	var before int
	if err := conn.QueryRowContext(ctx, `SELECT count(*) FROM ckpt_rows`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	commit(t, db, 1000)
	fi, err := os.Stat(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() <= walLimit {
		t.Fatalf("WAL %d bytes with a reader holding an old snapshot; want it past %d", fi.Size(), walLimit)
	}
	for i := 0; !strings.Contains(logs.String(), "could not truncate"); i++ {
		if i == 1000 {
			t.Fatalf("no retry logged; log: %s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	var still int
	if err := conn.QueryRowContext(ctx, `SELECT count(*) FROM ckpt_rows`).Scan(&still); err != nil || still != before {
		t.Fatalf("reader's snapshot: %d rows, %v; want %d", still, err, before)
	}
	if _, err := conn.ExecContext(ctx, `COMMIT`); err != nil {
		t.Fatal(err)
	}
	walShrinks(t, path, walLimit)
	if got := rows(t, db); got != 1010 {
		t.Fatalf("%d rows, want 1010", got)
	}
}

// A process killed while it commits and checkpoints loses no committed
// transaction: the child prints each row's id after its commit returns and
// is killed mid-run; every printed id is in the reopened database.
func TestCheckpointerCrashLosesNoCommit(t *testing.T) {
	if path := os.Getenv("GATEHOUSE_CKPT_CHILD"); path != "" {
		db, err := OpenWith(context.Background(), path, Options{CheckpointEvery: time.Millisecond, WALLimit: 64 << 10})
		if err != nil {
			fmt.Println("open:", err)
			os.Exit(2)
		}
		v := bytes.Repeat([]byte{'x'}, 3000)
		for {
			res, err := db.SQL().Exec(`INSERT INTO ckpt_rows (v) VALUES (?)`, v)
			if err != nil {
				fmt.Println("insert:", err)
				os.Exit(2)
			}
			id, _ := res.LastInsertId()
			fmt.Println(id)
		}
	}
	path := filepath.Join(t.TempDir(), FileName)
	db := openCheckpointed(t, path, nil)
	db.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCheckpointerCrashLosesNoCommit$")
	cmd.Env = append(os.Environ(), "GATEHOUSE_CKPT_CHILD="+path)
	var out lockedBuffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; strings.Count(out.String(), "\n") < 500; i++ {
		if i == 3000 {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("child wrote too little: %q", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Kill() // SIGKILL: no Close, no final checkpoint
	cmd.Wait()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	last, err := strconv.Atoi(lines[len(lines)-2]) // the last line may be cut
	if err != nil {
		t.Fatalf("child output: %v", err)
	}
	db = openCheckpointed(t, path, nil)
	defer db.Close()
	var missing int
	if err := db.SQL().QueryRow(`SELECT ? - count(*) FROM ckpt_rows WHERE id <= ?`, last, last).Scan(&missing); err != nil {
		t.Fatal(err)
	}
	if missing != 0 {
		t.Fatalf("%d of the %d committed rows lost", missing, last)
	}
}
