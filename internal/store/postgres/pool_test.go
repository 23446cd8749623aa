package postgres_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/store/postgres"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
)

// A full server is played by a role with a connection limit: PostgreSQL
// refuses the role's connection beyond it with the same SQLSTATE 53300 as
// when max_connections is reached ("too many connections for role"), without
// taking the shared test server's connections from anyone else.

type squeezed struct {
	dsn   string // the role's DSN, on a fresh schema
	admin string // the superuser's DSN
	role  string
}

func squeezedRole(t *testing.T, limit int) *squeezed {
	t.Helper()
	dsn := pgtest.DSN(t)
	b := make([]byte, 6)
	rand.Read(b)
	role := "gh_squeeze_" + hex.EncodeToString(b)
	u, _ := url.Parse(dsn)
	schema := u.Query().Get("search_path")
	if err := pgtest.Exec(dsn, `CREATE ROLE `+role+` LOGIN CONNECTION LIMIT `+strconv.Itoa(limit),
		`GRANT USAGE, CREATE ON SCHEMA `+schema+` TO `+role); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pgtest.DropRole(dsn, role); err != nil {
			t.Errorf("drop role %s: %v", role, err)
		}
	})
	ru := *u
	ru.User = url.User(role)
	return &squeezed{dsn: ru.String(), admin: dsn, role: role}
}

func (s *squeezed) setLimit(t *testing.T, n int) {
	t.Helper()
	if err := pgtest.Exec(s.admin, `ALTER ROLE `+s.role+` CONNECTION LIMIT `+strconv.Itoa(n)); err != nil {
		t.Fatal(err)
	}
}

// hold opens n connections of the role outside any pool; release closes them.
func (s *squeezed) hold(t *testing.T, n int) (release func()) {
	t.Helper()
	db, err := sql.Open("pgx", s.dsn)
	if err != nil {
		t.Fatal(err)
	}
	var conns []*sql.Conn
	deadline := time.Now().Add(10 * time.Second) // terminated backends take a moment to go
	for len(conns) < n {
		c, err := db.Conn(context.Background())
		if err == nil {
			if err = c.PingContext(context.Background()); err != nil {
				c.Close()
			}
		}
		if postgres.IsTooManyConnections(err) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if err != nil {
			db.Close()
			t.Fatalf("holding %d connections: %v", n, err)
		}
		conns = append(conns, c)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			for _, c := range conns {
				c.Close()
			}
			db.Close()
		})
	}
	t.Cleanup(release)
	return release
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestFullServerCallsWaitForHeldConnections: a replica whose pool (6) is
// larger than what the server lets it have (2) serves a burst of concurrent
// calls on the connections it holds, within their deadline, instead of
// failing the calls that wanted a new connection; it logs why and counts
// the refusals; once the server has room again, the pool grows back.
func TestFullServerCallsWaitForHeldConnections(t *testing.T) {
	s := squeezedRole(t, 2)
	logs := &syncBuffer{}
	var health postgres.PoolHealth
	ctx := context.Background()
	db, err := postgres.OpenWith(ctx, s.dsn, postgres.Options{MaxOpenConns: 6, MinOpenConns: 2,
		Log: slog.New(slog.NewTextHandler(logs, nil)), Health: &health})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for range 40 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			_, err := db.SQL().ExecContext(ctx, `SELECT pg_sleep(0.02)`)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a call failed while the pool held connections it could wait for: %v", err)
		}
	}
	if health.Refused() == 0 {
		t.Fatal("the server never refused a connection: the test did not squeeze the pool")
	}
	if !strings.Contains(logs.String(), "refuses new connections") || !strings.Contains(logs.String(), "53300") {
		t.Fatalf("no log line says why: %s", logs.String())
	}
	if n := db.SQL().Stats().OpenConnections; n > 2 {
		t.Fatalf("the pool holds %d connections; the server allows 2", n)
	}
	t.Logf("%d refusals; %s", health.Refused(), strings.TrimSpace(logs.String()))

	// Room again: the cap is lifted and the pool grows past 2.
	s.setLimit(t, 10)
	grew := waitUntil(30*time.Second, func() bool {
		var wg sync.WaitGroup
		for range 6 {
			wg.Go(func() { db.SQL().ExecContext(ctx, `SELECT pg_sleep(0.05)`) })
		}
		wg.Wait()
		return !health.Capped() && db.SQL().Stats().OpenConnections > 2
	})
	if !grew {
		t.Fatalf("the pool did not grow back: %d open, max %d, capped %v", db.SQL().Stats().OpenConnections,
			db.SQL().Stats().MaxOpenConnections, health.Capped())
	}
}

// TestFullServerWithNoConnectionHeldRetriesWithinDeadline: a pool that holds
// no connection when the server is full retries the connect until the call's
// deadline: a slot that frees meanwhile serves the call. When none frees,
// the call fails with the server's reason, not a hang.
func TestFullServerWithNoConnectionHeldRetriesWithinDeadline(t *testing.T) {
	s := squeezedRole(t, 2)
	ctx := context.Background()
	db, err := postgres.OpenWith(ctx, s.dsn, postgres.Options{MaxOpenConns: 4, MinOpenConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Lose the pool's connections (as after a server restart) while someone
	// else takes every slot.
	pgtest.Exec(s.admin, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '`+s.role+`'`)
	release := s.hold(t, 2)
	db.SQL().SetMaxIdleConns(0) // drop the dead idle connection …
	db.SQL().SetMaxIdleConns(1) // … so the next call has to connect

	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = db.SQL().ExecContext(cctx, `SELECT 1`)
	cancel()
	if err == nil || !postgres.IsTooManyConnections(err) {
		t.Fatalf("with every slot taken for the whole deadline: %v, want the server's 53300", err)
	}

	done := make(chan error, 1)
	go func() {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		_, err := db.SQL().ExecContext(cctx, `SELECT 1`)
		done <- err
	}()
	time.Sleep(300 * time.Millisecond) // the call is refused at least once meanwhile
	release()
	if err := <-done; err != nil {
		t.Fatalf("a slot freed within the call's deadline, but the call failed: %v", err)
	}
}

// TestOpenFailsWithoutItsMinimum: a replica that cannot open
// store.min_open_conns connections at start refuses to start, naming the
// server's reason, rather than starting with a pool that cannot serve.
func TestOpenFailsWithoutItsMinimum(t *testing.T) {
	s := squeezedRole(t, 2)
	_, err := postgres.OpenWith(context.Background(), s.dsn, postgres.Options{MaxOpenConns: 4, MinOpenConns: 3,
		ConnectTimeout: time.Second, StatementTimeout: time.Second, IOTimeout: time.Second})
	if err == nil {
		t.Fatal("opened with 2 of a minimum of 3 connections")
	}
	if !postgres.IsTooManyConnections(err) || !strings.Contains(err.Error(), "min_open_conns") {
		t.Fatalf("error does not say why: %v", err)
	}
	var pgErr interface{ SQLState() string }
	if !errors.As(err, &pgErr) {
		t.Fatalf("no SQLSTATE in %v", err)
	}
	t.Logf("%v", err)
}

func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}
