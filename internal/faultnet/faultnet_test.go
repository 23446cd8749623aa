package faultnet_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/faultnet"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
)

// echo serves line echo on loopback.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func dial(t *testing.T, p *faultnet.Proxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// roundTrip sends a line and reads it back within wait; the error says why not.
func roundTrip(c net.Conn, r *bufio.Reader, line string, wait time.Duration) error {
	c.SetDeadline(time.Now().Add(wait))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return err
	}
	got, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if got != line+"\n" {
		return errors.New("echo mismatch: " + got)
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestProxyFreezeHoldsBytesAndThawReleasesThem(t *testing.T) {
	p, err := faultnet.Listen(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, r := dial(t, p)
	if err := roundTrip(c, r, "before", 5*time.Second); err != nil {
		t.Fatalf("pass-through: %v", err)
	}
	p.Freeze()
	if err := roundTrip(c, r, "frozen", 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("frozen: want a timeout (no byte flows), got %v", err)
	}
	// A new connection is accepted but hangs too.
	c2, r2 := dial(t, p)
	if err := roundTrip(c2, r2, "new", 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("new connection while frozen: want a timeout, got %v", err)
	}
	p.Thaw()
	// The held line arrives after the thaw, on the same connection.
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if got, err := r.ReadString('\n'); err != nil || got != "frozen\n" {
		t.Fatalf("after thaw: got %q, %v", got, err)
	}
	c.SetDeadline(time.Time{})
	if err := roundTrip(c, r, "after", 5*time.Second); err != nil {
		t.Fatalf("after thaw: %v", err)
	}
}

func TestProxyResetClosesOpenConnectionsAndServesNewOnes(t *testing.T) {
	p, err := faultnet.Listen(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, r := dial(t, p)
	if err := roundTrip(c, r, "one", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Reset()
	if err := roundTrip(c, r, "two", 5*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("after reset: want the connection closed, got %v", err)
	}
	c2, r2 := dial(t, p)
	if err := roundTrip(c2, r2, "three", 5*time.Second); err != nil {
		t.Fatalf("new connection after reset: %v", err)
	}
}

func TestProxyKillRefusesUntilRestore(t *testing.T) {
	p, err := faultnet.Listen(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, r := dial(t, p)
	if err := roundTrip(c, r, "one", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Kill()
	if err := roundTrip(c, r, "two", 5*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("open connection after kill: want closed, got %v", err)
	}
	c2, r2 := dial(t, p)
	if err := roundTrip(c2, r2, "three", 5*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("new connection while killed: want closed, got %v", err)
	}
	p.Restore()
	c3, r3 := dial(t, p)
	if err := roundTrip(c3, r3, "four", 5*time.Second); err != nil {
		t.Fatalf("after restore: %v", err)
	}
}

func TestDiskFullFailsWritesNotReads(t *testing.T) {
	var disk faultnet.Disk
	ctx := context.Background()
	db, err := sqlite.OpenWith(ctx, filepath.Join(t.TempDir(), "g.db"), sqlite.Options{Wrap: disk.Connector})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Heartbeat(ctx, "gw_1", time.Now()); err != nil {
		t.Fatal(err)
	}
	disk.Fill()
	if _, err := db.Heartbeat(ctx, "gw_1", time.Now()); !errors.Is(err, faultnet.ErrDiskFull) {
		t.Fatalf("write on a full disk: want ErrDiskFull, got %v", err)
	}
	if _, err := db.ConfigVersion(ctx); err != nil {
		t.Fatalf("read on a full disk: %v", err)
	}
	disk.Free()
	if _, err := db.Heartbeat(ctx, "gw_1", time.Now()); err != nil {
		t.Fatalf("write after the disk was freed: %v", err)
	}
}
