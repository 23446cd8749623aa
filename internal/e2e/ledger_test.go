package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/provider/sim"
)

// sqlFor opens a second connection to the gateway's store, to break it.
func sqlFor(t *testing.T, dataDir, dsn string) *sql.DB {
	t.Helper()
	driver, src := "sqlite", "file:"+filepath.Join(dataDir, "gatehouse.db")+"?_pragma=busy_timeout(5000)"
	if dsn != "" {
		driver, src = "pgx", dsn
	}
	db, err := sql.Open(driver, src)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestLedgerFailsClosed is proof 3 of issue #4: with the ledger unwritable,
// calls get 503 and the upstream is never called.
func TestLedgerFailsClosed(t *testing.T) {
	for name, dsn := range backends(t) {
		t.Run(name, func(t *testing.T) {
			db := dsn(t)
			dir := filepath.Join(t.TempDir(), "data")
			f := newFixture(t, gwOptions{dataDir: dir, database: db})
			oc := f.openai(f.key)
			ctx := context.Background()
			if _, err := oc.Chat.Completions.New(ctx, chatParams("gpt-4o", 3)); err != nil {
				t.Fatal(err)
			}
			raw := sqlFor(t, dir, db)
			if _, err := raw.Exec(`ALTER TABLE ledger_entries RENAME TO ledger_entries_gone`); err != nil {
				t.Fatal(err)
			}
			calls := f.up.Calls.Load()
			for range 5 {
				_, err := oc.Chat.Completions.New(ctx, chatParams("gpt-4o", 3))
				if s, c := openAIStatus(t, err); s != 503 || c != "ledger_unavailable" {
					t.Fatalf("with the ledger unwritable: %d %q", s, c)
				}
			}
			if got := f.up.Calls.Load(); got != calls {
				t.Fatalf("the upstream was called %d times while the ledger could not record", got-calls)
			}
			if _, err := raw.Exec(`ALTER TABLE ledger_entries_gone RENAME TO ledger_entries`); err != nil {
				t.Fatal(err)
			}
			if _, err := oc.Chat.Completions.New(ctx, chatParams("gpt-4o", 3)); err != nil {
				t.Fatalf("after the ledger came back: %v", err)
			}
		})
	}
}

// TestLedgerRecordsAndAudit: calls and admin changes are recorded, start and
// end, and `gatehouse audit verify|show` check them over HTTP and from the
// data directory.
func TestLedgerRecordsAndAudit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	f := newFixture(t, gwOptions{dataDir: dir})
	ctx := context.Background()
	oc := f.openai(f.key)
	resp, err := oc.Chat.Completions.New(ctx, chatParams("gpt-4o", 3))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp
	st := oc.Chat.Completions.NewStreaming(ctx, chatParams("gpt-4o", 3))
	for st.Next() {
	}
	bad, _ := f.admin.CreateKey(ctx, client.KeyInput{Principal: "agent", Scope: client.Scope{Models: []string{"o3*"}}})
	bc := f.openai(bad.Secret)
	bc.Chat.Completions.New(ctx, chatParams("gpt-4o", 3)) // refused: a single deny record
	recs := f.usageOf(t, f.keyID, 2)
	time.Sleep(1500 * time.Millisecond) // a checkpoint covers them

	code, keyOut, errs := runCLI(t, f.gateway, "audit", "key")
	if code != 0 || !strings.HasPrefix(keyOut, "gatehouse.local/log+") {
		t.Fatalf("audit key: %d %q %s", code, keyOut, errs)
	}
	vkey := strings.TrimSpace(keyOut)
	state := filepath.Join(t.TempDir(), "audit.state")
	code, out, errs := runCLI(t, f.gateway, "audit", "verify", "--url", "http://"+f.srv.AdminAddr()+"/log", "--key", vkey, "--state", state, "--json")
	var v struct {
		OK     bool          `json:"ok"`
		Report ledger.Report `json:"report"`
	}
	json.Unmarshal([]byte(out), &v)
	if code != 0 || !v.OK || v.Report.Kinds[ledger.KindCallStart] != 2 || v.Report.Kinds[ledger.KindCallEnd] != 3 || v.Report.Kinds[ledger.KindAdmin] < 6 {
		t.Fatalf("audit verify: %d %s %s", code, out, errs)
	}
	// Again from the data directory, pinned by the state file; consistent.
	if code, out, errs := runCLI(t, f.gateway, "audit", "verify", "--data-dir", dir, "--state", state); code != 0 || !strings.Contains(out, "consistent with") {
		t.Fatalf("audit verify --data-dir: %d %s %s", code, out, errs)
	}
	code, out, errs = runCLI(t, f.gateway, "audit", "show", recs[0].RequestID, "--json")
	var shown []map[string]any
	json.Unmarshal([]byte(out), &shown)
	if code != 0 || len(shown) != 2 || shown[0]["verified"] != true {
		t.Fatalf("audit show: %d %s %s", code, out, errs)
	}
	start, end := shown[0]["record"].(map[string]any), shown[1]["record"].(map[string]any)
	if start["kind"] != "call.start" || end["kind"] != "call.end" || start["body_sha256"] == "" || end["status"] != float64(200) || end["key_id"] != f.keyID {
		t.Fatalf("records: %v / %v", start, end)
	}
	// A wrong pinned key fails verification, with exit status 1.
	other, _ := ledger.GenerateKey("gatehouse.local/log")
	otherV, _ := ledger.VerifierKey(other)
	if code, _, errs := runCLI(t, f.gateway, "audit", "verify", "--url", "http://"+f.srv.AdminAddr()+"/log", "--key", otherV, "--state", filepath.Join(t.TempDir(), "s")); code != 1 || !strings.Contains(errs, "FAILED") {
		t.Fatalf("wrong key: %d %s", code, errs)
	}
}

// TestLedgerCrash is proof 2 of issue #4: kill -9 the gateway under load;
// after a restart the log verifies, every call a client saw succeed has its
// start and end records, and calls that were in flight are closed as incomplete.
func TestLedgerCrash(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	up := newUpstream(t)
	first := startChild(t, nil, "--data-dir", dir)
	_, k := first.agentKey(t, up)
	up.SetFault(sim.Fault{Latency: 20 * time.Millisecond})

	var succeeded sync.Map
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for !stop.Load() {
				req, _ := http.NewRequest("POST", first.dataURL+"/v1/chat/completions", strings.NewReader(attackBody))
				req.Header.Set("Authorization", "Bearer "+k.Secret)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					continue
				}
				var body map[string]any
				json.NewDecoder(resp.Body).Decode(&body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					succeeded.Store(resp.Header.Get("x-request-id"), true)
				}
			}
		})
	}
	time.Sleep(700 * time.Millisecond)
	first.cmd.Process.Signal(os.Kill)
	first.cmd.Wait()
	stop.Store(true)
	wg.Wait()

	second := startChild(t, nil, "--data-dir", dir)
	time.Sleep(1500 * time.Millisecond) // recovery records, then a checkpoint
	code, out, errs := runCLIAt(t, second.adminURL, first.adminKey, "audit", "verify", "--data-dir", dir, "--key", mustKey(t, second.adminURL), "--state", filepath.Join(t.TempDir(), "s"), "--json")
	var v struct {
		OK     bool          `json:"ok"`
		Report ledger.Report `json:"report"`
	}
	json.Unmarshal([]byte(out), &v)
	if code != 0 || !v.OK {
		t.Fatalf("after kill -9 the log does not verify: %d %s %s", code, out, errs)
	}
	n := 0
	succeeded.Range(func(id, _ any) bool {
		n++
		code, out, errs := runCLIAt(t, second.adminURL, first.adminKey, "audit", "show", id.(string), "--json")
		var shown []map[string]any
		json.Unmarshal([]byte(out), &shown)
		if code != 0 || len(shown) != 2 {
			t.Errorf("request %s succeeded but has %d records: %s %s", id, len(shown), out, errs)
		}
		return true
	})
	if n == 0 {
		t.Fatal("no call succeeded before the crash: the test proves nothing")
	}
	t.Logf("%d calls succeeded before kill -9; log of %d records verifies; kinds %v", n, v.Report.Size, v.Report.Kinds)
	if v.Report.OpenCalls != 0 || v.Report.Kinds[ledger.KindCallStart] != v.Report.Kinds[ledger.KindCallEnd] {
		t.Fatalf("calls left open after recovery: %d open, kinds %v", v.Report.OpenCalls, v.Report.Kinds)
	}
}

func mustKey(t *testing.T, adminURL string) string {
	t.Helper()
	resp, err := http.Get(adminURL + "/log/key")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	n, _ := resp.Body.Read(buf)
	b.Write(buf[:n])
	return strings.TrimSpace(b.String())
}

// TestLedgerKeyRotation: after a rotation checkpoints are co-signed, so an
// auditor's pinned key still verifies and the new key is accepted on re-pin;
// a key two rotations old no longer verifies.
func TestLedgerKeyRotation(t *testing.T) {
	f := newFixture(t, gwOptions{})
	logURL := "http://" + f.srv.AdminAddr() + "/log"
	state := filepath.Join(t.TempDir(), "audit.state")
	_, first, _ := runCLI(t, f.gateway, "audit", "key")
	first = strings.TrimSpace(first)
	time.Sleep(1200 * time.Millisecond)
	if code, out, errs := runCLI(t, f.gateway, "audit", "verify", "--url", logURL, "--key", first, "--state", state); code != 0 {
		t.Fatalf("first verify: %s %s", out, errs)
	}
	if code, out, errs := runCLI(t, f.gateway, "audit", "rotate-key"); code != 0 {
		t.Fatalf("rotate-key: %s %s", out, errs)
	}
	_, second, _ := runCLI(t, f.gateway, "audit", "key")
	second = strings.TrimSpace(second)
	if second == first {
		t.Fatal("the key did not change")
	}
	if code, out, errs := runCLI(t, f.gateway, "audit", "verify", "--url", logURL, "--state", state); code != 0 {
		t.Fatalf("the pinned (previous) key after rotation: %s %s", out, errs)
	}
	if code, out, errs := runCLI(t, f.gateway, "audit", "verify", "--url", logURL, "--key", second, "--state", state); code != 0 || !strings.Contains(errs, "accepting the new key") {
		t.Fatalf("re-pinning the new key: %d %s %s", code, out, errs)
	}
	runCLI(t, f.gateway, "audit", "rotate-key")
	if code, _, errs := runCLI(t, f.gateway, "audit", "verify", "--url", logURL, "--key", first, "--state", filepath.Join(t.TempDir(), "s")); code != 1 || !strings.Contains(errs, "FAILED") {
		t.Fatalf("a key two rotations old: %d %s", code, errs)
	}
}
