package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
)

// TestExportCursorPastEndReset: the log's tables come back from an older
// backup while the export's cursor does not (a partial restore, a log cut by
// hand), so the file target's cursor is past the log's end. The gateway
// stalls that target and says so on /metrics
// (gatehouse_ledger_export_cursor_past_end), also once the log grew past the
// cursor; `gatehouse ledger export-reset` (gateway stopped) sets where it
// resumes and records it; the next start exports from there, every record's
// own bytes.
func TestExportCursorPastEndReset(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	export := filepath.Join(t.TempDir(), "siem.jsonl")
	withExport := func(c *config.Config) { c.Ledger.ExportFile, c.Ledger.ExportFromStart = export, true }
	ctx := context.Background()
	size := func() int64 {
		t.Helper()
		db, err := sqlite.Open(ctx, filepath.Join(dir, sqlite.FileName))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		n, err := db.LedgerSize(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	exported := func() [][]byte {
		b, _ := os.ReadFile(export)
		if len(b) == 0 {
			return nil
		}
		return bytes.SplitAfter(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
	}

	g1 := startGateway(t, gwOptions{dataDir: dir, mutate: withExport})
	adminKey := g1.adminKey
	for i := range 3 {
		if _, err := g1.admin.CreateTeam(ctx, fmt.Sprint("team-", i)); err != nil {
			t.Fatal(err)
		}
	}
	g1.stop()
	restored := size()
	if n := int64(len(exported())); n != restored {
		t.Fatalf("%d lines exported of %d records", n, restored)
	}
	// The export had gone 40 records further than the log kept.
	db, err := sqlite.Open(ctx, filepath.Join(dir, sqlite.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExportReset(ctx, "file", restored+40); err != nil {
		t.Fatal(err)
	}
	db.Close()

	g2 := startGateway(t, gwOptions{dataDir: dir, mutate: withExport})
	pastEnd := func(g *gateway) float64 {
		fams, _, _ := scrape(t, g, "")
		v, _ := series(fams, "gatehouse_ledger_export_cursor_past_end", map[string]string{"target": "file"})
		return v
	}
	waitUntil(t, "the stall on /metrics", func() bool { return pastEnd(g2) == 1 })
	adm := client.New("http://"+g2.srv.AdminAddr(), adminKey)
	for i := range 50 { // past the old cursor
		if _, err := adm.CreateTeam(ctx, fmt.Sprint("after-restore-", i)); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "the log past the old cursor", func() bool {
		return strings.Contains(g2.logs.String(), "past the log") && pastEnd(g2) == 1
	})
	g2.stop()
	if n := int64(len(exported())); n != restored {
		t.Fatalf("%d lines exported by a stalled target, want the %d from before", n, restored)
	}
	if s := size(); s <= restored+40 {
		t.Fatalf("log of %d records did not grow past the old cursor %d", s, restored+40)
	}

	code, out, errs := runCLIAt(t, "", "", "ledger", "export-reset", "--data-dir", dir, "--target", "file", "--to", strconv.FormatInt(restored, 10))
	if code != 0 || !strings.Contains(out, fmt.Sprintf("%d → %d", restored+40, restored)) {
		t.Fatalf("export-reset: exit %d\n%s%s", code, out, errs)
	}
	if code, _, errs := runCLIAt(t, "", "", "ledger", "export-reset", "--data-dir", dir, "--target", "siem"); code == 0 {
		t.Fatalf("export-reset of an unknown target succeeded: %s", errs)
	}

	g3 := startGateway(t, gwOptions{dataDir: dir, mutate: withExport})
	final := size()
	waitUntil(t, "the rest exported", func() bool { return int64(len(exported())) >= final })
	if pastEnd(g3) != 0 {
		t.Fatal("still stalled after the reset")
	}
	g3.stop()
	final = size()
	db, err = sqlite.Open(ctx, filepath.Join(dir, sqlite.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	recs, err := db.LedgerEntries(ctx, 0, final)
	if err != nil {
		t.Fatal(err)
	}
	lines := exported()
	if int64(len(lines)) != final {
		t.Fatalf("%d lines for %d records", len(lines), final)
	}
	resetRecorded := false
	for i, line := range lines {
		prefix := fmt.Appendf(nil, `{"log_index":%d,`, i)
		rec := append([]byte("{"), bytes.TrimPrefix(bytes.TrimSuffix(line, []byte("\n")), prefix)...)
		if !bytes.HasPrefix(line, prefix) || tlog.RecordHash(rec) != tlog.RecordHash(recs[i]) {
			t.Fatalf("line %d is not record %d: %.200q", i, i, line)
		}
		var r struct{ Action, Target string }
		json.Unmarshal(rec, &r)
		resetRecorded = resetRecorded || (r.Action == "ledger export-reset" && r.Target == "file")
	}
	if !resetRecorded {
		t.Fatal("the reset is not in the log")
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
