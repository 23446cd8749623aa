package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/faultnet"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/ledger/ledgertest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
)

// TestFaultDiskFullRefusalFlood: the embedded store's disk is full (reads
// work, so keys still authenticate; no write commits) and a key holder
// floods calls its scope refuses, each ending with an end record. The
// records kept in memory stop growing at ledger.max_deferred_refusals (plus
// summaries); when the disk has room again every refused call is in the log,
// as its own end record or counted in a call.summary, and the log verifies.
func TestFaultDiskFullRefusalFlood(t *testing.T) {
	t.Parallel() // mostly waits on the outage
	const bound, flood = 20, 300
	var disk faultnet.Disk
	f := newFixture(t, gwOptions{mutate: func(c *config.Config) {
		faultConfig(c)
		c.WrapSQLite = disk.Connector
		c.Ledger.MaxDeferredRefusals = bound
	}})
	ctx := context.Background()
	scoped, err := f.admin.CreateKey(ctx, client.KeyInput{Principal: "agent", Scope: client.Scope{Models: []string{"gpt-4o-mini"}}})
	if err != nil {
		t.Fatal(err)
	}
	chat := `{"model":"gpt-4o","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}`
	if got, _, _ := rawCall(t, f.dataURL+"/v1/chat/completions", scoped.Secret, chat, nil); got != 403 {
		t.Fatalf("a call out of the key's scope: %d, want 403", got)
	}
	lg := f.srv.Ledger()
	if !waitFor(10*time.Second, func() bool { return lg.Deferred() == 0 }) {
		t.Fatal("the first refusal was not written")
	}
	disk.Fill()
	for range flood {
		if got, _, _ := rawCall(t, f.dataURL+"/v1/chat/completions", scoped.Secret, chat, nil); got != 403 {
			t.Fatalf("a refused call during the outage: %d, want 403", got)
		}
	}
	if !waitFor(10*time.Second, func() bool { return lg.Aggregated() >= flood-bound }) {
		t.Fatalf("%d refused calls counted into summaries, want at least %d", lg.Aggregated(), flood-bound)
	}
	// One key, one error code: at most two summaries (the flood may span a minute's turn).
	if d := lg.Deferred(); d > bound+2 {
		t.Fatalf("%d records wait in memory after %d refused calls; want at most %d", d, flood, bound+2)
	}
	t.Logf("%d refused calls while the disk was full: %d records waiting, %d counted into summaries", flood, lg.Deferred(), lg.Aggregated())
	disk.Free()
	if !waitFor(20*time.Second, func() bool { return lg.Deferred() == 0 }) {
		t.Fatalf("%d records still wait 20 s after the disk was freed", lg.Deferred())
	}

	db, err := sqlite.Open(ctx, filepath.Join(f.srv.DataDir(), sqlite.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	entries := ledgertest.Entries(t, db)
	var calls, summaries int64
	for _, b := range entries {
		if strings.Contains(string(b), scoped.Secret) {
			t.Fatalf("a record holds the key's secret: %s", b)
		}
		r, err := ledger.ParseRecord(b)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case r.KeyID != scoped.ID:
		case r.Kind == ledger.KindCallEnd:
			calls++
		case r.Kind == ledger.KindCallSummary:
			calls += r.Count
			summaries++
		}
	}
	if calls != flood+1 || summaries == 0 {
		t.Fatalf("the log accounts for %d refused calls of the key (%d summaries), want %d", calls, summaries, flood+1)
	}
	if err := lg.SignCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	vkey := strings.TrimSpace(mustCLI(t, f.gateway, "audit", "key"))
	if code, out, errs := runCLI(t, f.gateway, "audit", "verify", "--url", "http://"+f.srv.AdminAddr()+"/log", "--key", vkey,
		"--state", filepath.Join(t.TempDir(), "s")); code != 0 {
		t.Fatalf("audit verify: %d\n%s\n%s", code, out, errs)
	}
}
