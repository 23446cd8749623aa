package e2e

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// TestSuspensionWithoutRecordIsRecorded is the fault "the replica stops
// between a breaker suspension's write and its ledger record": the key is
// suspended in the store and the log does not say so. The next gateway to
// start records it, and a running gateway's sweep records one written while
// it runs (by a replica that died at once); each suspension gets one record,
// at its own instant (breaker-<key>-<micros>), however many sweeps and
// restarts pass, and its alert is sent once. Before the fix only a reinstatement
// recorded it, and no alert was sent.
func TestSuspensionWithoutRecordIsRecorded(t *testing.T) {
	for name, dsn := range backends(t) {
		t.Run(name, func(t *testing.T) {
			dbURL := dsn(t)
			hook := newWebhook(t)
			t.Setenv("GATEHOUSE_ALERT_WEBHOOK_SECRET", "whsec-test")
			fast := func(c *config.Config) {
				c.InstanceTimeout = config.Duration(2 * time.Second) // a sweep every 500 ms
				c.AlertWebhookURL = hook.url
			}
			f := newFixture(t, gwOptions{database: dbURL, mutate: fast})
			ctx := context.Background()
			var db *sqlstore.DB
			var err error
			if dbURL == "" {
				db, err = sqlite.Open(ctx, filepath.Join(f.srv.DataDir(), sqlite.FileName))
			} else {
				db, err = postgres.OpenWith(ctx, dbURL, testStoreOptions)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			records := func() []ledger.Record {
				t.Helper()
				n, err := db.LedgerSize(ctx)
				if err != nil {
					t.Fatal(err)
				}
				data, err := db.LedgerEntries(ctx, 0, n)
				if err != nil {
					t.Fatal(err)
				}
				var out []ledger.Record
				for _, d := range data {
					r, err := ledger.ParseRecord(d)
					if err != nil {
						t.Fatal(err)
					}
					if r.Kind == ledger.KindBreaker && r.KeyID == f.keyID {
						out = append(out, r)
					}
				}
				return out
			}
			dir := f.srv.DataDir()
			f.stop()
			// The dead replica's last act: the suspension's write, no record.
			first := time.Now().UTC().Truncate(time.Microsecond)
			if ok, err := db.SuspendKeyFirst(ctx, f.keyID, "spent $9.00 in 5m0s", first, 0); !ok || err != nil {
				t.Fatalf("the suspension's write: %v %v", ok, err)
			}
			if n := len(records()); n != 0 {
				t.Fatalf("%d breaker records before any gateway ran; want 0", n)
			}
			g := startGateway(t, gwOptions{dataDir: dir, database: dbURL, mutate: fast})
			if !waitFor(20*time.Second, func() bool { return len(records()) >= 1 }) {
				t.Fatal("the suspension is still not recorded 20 s after a gateway started")
			}
			want := "breaker-" + f.keyID + "-" + strconv.FormatInt(first.UnixMicro(), 10)
			if r := records(); len(r) != 1 || r[0].RequestID != want || !r[0].Time.Equal(first) || r[0].Action != "suspend" {
				t.Fatalf("breaker records %+v; want one suspension %s at %v", r, want, first)
			}
			if a := hook.wait(t, 1); len(a) != 1 || a[0]["kind"] != "breaker_tripped" {
				t.Fatalf("alerts %v; want the trip's alert, which the stopped replica never sent", a)
			}

			// While the gateway runs: reinstated by an admin (recorded by the
			// admin API in life; here the store only), suspended again by a
			// replica that dies before recording. The sweep records it.
			if _, err := db.ReinstateKey(ctx, f.keyID, 0); err != nil {
				t.Fatal(err)
			}
			second := first.Add(time.Second)
			if ok, err := db.SuspendKeyFirst(ctx, f.keyID, "spent $12.00 in 5m0s", second, 0); !ok || err != nil {
				t.Fatalf("the second suspension's write: %v %v", ok, err)
			}
			if !waitFor(20*time.Second, func() bool { return len(records()) >= 2 }) {
				t.Fatal("the second suspension is not recorded 20 s after its write, with the gateway running")
			}
			if a := hook.wait(t, 2); len(a) != 2 {
				t.Fatalf("%d alerts after two suspensions; want 2: %v", len(a), a)
			}
			// More sweeps and a restart add nothing.
			g.stop()
			g = startGateway(t, gwOptions{dataDir: dir, database: dbURL, mutate: fast})
			if !waitFor(20*time.Second, func() bool { return strings.Count(g.logs.String(), "suspended keys checked") >= 2 }) {
				t.Fatal("the restarted gateway's sweep did not run twice in 20 s")
			}
			g.stop()
			if a := hook.all(); len(a) != 2 {
				t.Errorf("%d alerts after two suspensions, sweeps and a restart; want 2: %v", len(a), a)
			}
			r := records()
			if len(r) != 2 || !r[1].Time.Equal(second) || r[1].Detail != "spent $12.00 in 5m0s" {
				t.Fatalf("breaker records after more sweeps and a restart: %+v; want the two suspensions once each", r)
			}
		})
	}
}
