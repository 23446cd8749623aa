package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/gatehouse-gw/gatehouse/internal/ledger/ledgertest"
	"github.com/gatehouse-gw/gatehouse/internal/provider/sim"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
)

// TestExportSurvivesKill: kill -9 the gateway under load while it exports
// the log to a file; after a restart, and a clean stop, the file holds every
// record of the log (duplicates only of what the killed process delivered
// without saving its cursor, recognisable by log_index), each line the
// record's own bytes. The old exporter lost the records still in its
// in-memory queue at the kill.
func TestExportSurvivesKill(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	export := filepath.Join(t.TempDir(), "siem.jsonl")
	conf := filepath.Join(t.TempDir(), "export.yaml")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "ledger:\n  export_file: %s\n  export_from_start: true\n", export), 0o600); err != nil {
		t.Fatal(err)
	}
	up := newUpstream(t)
	first := startChild(t, nil, "--data-dir", dir, "--config", conf)
	_, k := first.agentKey(t, up)
	ctx := context.Background()
	up.SetFault(sim.Fault{Latency: 5 * time.Millisecond})
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for !stop.Load() {
				req, _ := http.NewRequest("POST", first.dataURL+"/v1/chat/completions", strings.NewReader(attackBody))
				req.Header.Set("Authorization", "Bearer "+k.Secret)
				if resp, err := http.DefaultClient.Do(req); err == nil {
					resp.Body.Close()
				}
			}
		})
	}
	time.Sleep(700 * time.Millisecond)
	first.cmd.Process.Signal(os.Kill)
	first.cmd.Wait()
	stop.Store(true)
	wg.Wait()

	second := startChild(t, nil, "--data-dir", dir, "--config", conf)
	time.Sleep(500 * time.Millisecond) // recovery's records
	second.cmd.Process.Signal(os.Interrupt)
	if err := second.cmd.Wait(); err != nil {
		t.Fatalf("the second gateway did not stop cleanly: %v", err)
	}

	db, err := sqlite.Open(ctx, filepath.Join(dir, sqlite.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	recs := ledgertest.Entries(t, db)
	size := int64(len(recs))
	f, err := os.Open(export)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := make([]int, size)
	lines, last := 0, int64(-1)
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var v struct {
			Index *int64 `json:"log_index"`
		}
		if err := json.Unmarshal(line, &v); err != nil || v.Index == nil || *v.Index < 0 || *v.Index >= size {
			t.Fatalf("line %d: %v, not a record of the log (size %d): %.200q", lines, err, size, line)
		}
		i := *v.Index
		// Log order; after a crash the unsaved range starts again.
		if i != last+1 && seen[i] == 0 {
			t.Fatalf("line %d has log_index %d after %d: a gap", lines, i, last)
		}
		prefix := fmt.Appendf(nil, `{"log_index":%d,`, i)
		rec := append([]byte("{"), bytes.TrimPrefix(line, prefix)...)
		if !bytes.HasPrefix(line, prefix) || tlog.RecordHash(rec) != tlog.RecordHash(recs[i]) {
			t.Fatalf("line %d is not record %d", lines, i)
		}
		seen[i]++
		last = i
		lines++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for i, n := range seen {
		if n == 0 {
			t.Fatalf("record %d of %d is not in the export", i, size)
		}
	}
	if size < 50 {
		t.Fatalf("only %d records: the load did not run", size)
	}
	t.Logf("%d records, %d lines exported (%d delivered twice across the kill)", size, lines, int64(lines)-size)
}
