package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/config"
)

func openForPprof(t *testing.T, admin string) (*Server, error) {
	t.Helper()
	cfg := config.Default()
	cfg.Listen, cfg.AdminListen = "127.0.0.1:0", admin
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.ShutdownTimeout = config.Duration(5 * time.Second)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err == nil {
		t.Cleanup(func() { s.closeAll() })
	}
	return s, err
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestPprofOnlyWhenAskedAndOnLoopback runs the real server: the profiler is
// absent by default, present on a loopback admin listener when asked for,
// and the server refuses to start when it would be reachable from elsewhere.
func TestPprofOnlyWhenAskedAndOnLoopback(t *testing.T) {
	t.Run("off by default", func(t *testing.T) {
		t.Setenv(EnvPprof, "")
		s, err := openForPprof(t, "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go s.admin.Serve(s.adminLn)
		if code, body := get(t, "http://"+s.AdminAddr()+"/debug/pprof/"); code == http.StatusOK || strings.Contains(body, "goroutine") {
			t.Fatalf("profiler served without %s: %d %.100q", EnvPprof, code, body)
		}
	})
	t.Run("on loopback when asked", func(t *testing.T) {
		t.Setenv(EnvPprof, "1")
		s, err := openForPprof(t, "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go s.admin.Serve(s.adminLn)
		if code, body := get(t, "http://"+s.AdminAddr()+"/debug/pprof/"); code != http.StatusOK || !strings.Contains(body, "goroutine") {
			t.Fatalf("profiler not served: %d %.100q", code, body)
		}
		if code, _ := get(t, "http://"+s.AdminAddr()+"/healthz"); code != http.StatusOK {
			t.Fatalf("admin /healthz: %d", code)
		}
	})
	t.Run("refused on a wildcard listener", func(t *testing.T) {
		t.Setenv(EnvPprof, "1")
		if _, err := openForPprof(t, "0.0.0.0:0"); err == nil || !strings.Contains(err.Error(), EnvPprof) {
			t.Fatalf("Open with %s=1 on 0.0.0.0: %v, want a refusal naming it", EnvPprof, err)
		}
	})
}
