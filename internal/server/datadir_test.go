package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
)

func dataDirConfig(t *testing.T, dir string) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.Listen, cfg.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir = dir
	cfg.ShutdownTimeout = config.Duration(5 * time.Second)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestSecondGatewayOnOneDataDirRefused: a second gateway on the data
// directory of a running one fails at start, naming the directory and the
// process that holds it; offline tools that write refuse too, and say what
// to do; the read-only store of audit verify opens alongside; once the
// first gateway closes, the directory is free.
func TestSecondGatewayOnOneDataDirRefused(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	cfg := dataDirConfig(t, dir)
	first, err := Open(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer first.closeAll()
	pid := fmt.Sprint("pid ", os.Getpid())

	_, err = Open(ctx, cfg, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), pid) || !strings.Contains(err.Error(), "--data-dir") {
		t.Fatalf("second gateway on %s: %v, want a refusal naming the directory, the %s and what to do", dir, err, pid)
	}
	if _, err := sqlite.LockDir(dir); err == nil {
		t.Fatal("the refused gateway released the first one's lock")
	}

	_, _, _, err = RotateKEK(ctx, cfg, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), pid) || !strings.Contains(err.Error(), "stop the gateway first") {
		t.Fatalf("kek rotate next to a running gateway: %v, want a refusal that says to stop it", err)
	}

	ro, closeRO, err := OpenStore(ctx, cfg)
	if err != nil {
		t.Fatalf("read-only store next to a running gateway: %v", err)
	}
	if _, err := ro.LedgerSize(ctx); err != nil {
		t.Fatalf("read-only store: %v", err)
	}
	if _, err := ro.PutSecretIfAbsent(ctx, "x", []byte("y")); err == nil {
		t.Fatal("the read-only store wrote")
	}
	closeRO()

	first.closeAll()
	again, err := Open(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("after the first gateway closed: %v", err)
	}
	again.closeAll()
}
