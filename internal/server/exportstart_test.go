package server

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
)

// TestExportStartsWhenTheServerOpens: a new export target starts at the
// log's end as the server opens, not whenever the exporter's goroutine first
// runs. A record the server commits before that (its listeners serve as Run
// starts, and a loaded machine runs the exporter's goroutine late; here it is
// appended before Run) must be exported: before the fix the cursor was
// created at the first pass, past that record, and it was never exported.
func TestExportStartsWhenTheServerOpens(t *testing.T) {
	cfg := config.Default()
	cfg.Listen, cfg.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.ShutdownTimeout = config.Duration(5 * time.Second)
	export := filepath.Join(t.TempDir(), "siem.jsonl")
	cfg.Ledger.ExportFile = export // export_from_start off: the target starts at the log's end
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := Open(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	r := ledger.Record{Kind: ledger.KindAdmin, Time: time.Now(), RequestID: "req_before_the_exporter_ran", Action: "POST /v1/keys"}
	if _, err := s.Ledger().Append(ctx, r.Entry()); err != nil {
		s.Close()
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { s.Run(runCtx); close(done) }()
	defer func() { stop(); <-done }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(export)
		if bytes.Contains(b, []byte(r.RequestID)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the record committed before the exporter's first pass is not exported; the export holds:\n%s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
