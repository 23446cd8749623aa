package bench

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

// BenchmarkPagesPerCall counts the pages (WAL frames, 4 KB each) that the
// sequencer's batches write per call on the embedded store: a deterministic
// measure of the write work, where CPU and req/s on a shared machine are not.
// Each round commits one batch of start entries (record, hold at key, team
// and organisation) for new calls and one batch of end entries (record,
// settlement, usage row) for the calls started the round before, as the
// lagging end does under load. The tables are first filled with warm calls,
// so that their B-trees have the depth of a gateway that has run a while;
// then automatic checkpoints are turned off and the WAL's growth over the
// measured calls is counted, per B-tree (from each frame's page number and
// the dbstat table). Request ids: "random" is the old format ("req_" + 24
// random hex digits), "httpx" whatever httpx.NewRequestID makes now.
//
//	go test -run XXX -bench PagesPerCall -benchtime 1x ./internal/bench/
func BenchmarkPagesPerCall(b *testing.B) {
	const warm, measured = 20_000, 4_000
	for _, ids := range []string{"random", "httpx"} {
		for _, batch := range []int{1, 8, 32} {
			b.Run(fmt.Sprintf("ids=%s/batch=%d", ids, batch), func(b *testing.B) {
				newID := httpx.NewRequestID
				if ids == "random" {
					newID = func() string {
						var r [12]byte
						rand.Read(r[:])
						return fmt.Sprintf("req_%x", r)
					}
				}
				for range b.N {
					frames, per := pagesPerCall(b, newID, batch, warm, measured)
					b.ReportMetric(float64(frames)/measured, "frames/call")
					if b.N == 1 {
						b.Logf("frames per call by B-tree: %s", per)
					}
				}
			})
		}
	}
}

// pagesPerCall runs warm calls, then measured calls, and returns the WAL
// frames the measured calls wrote, with a breakdown by B-tree.
func pagesPerCall(b *testing.B, newID func() string, batch, warm, measured int) (int64, string) {
	ctx := context.Background()
	dir := b.TempDir()
	path := filepath.Join(dir, "gh.db")
	db, err := sqlite.OpenWith(ctx, path, sqlite.Options{MaxOpenConns: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	start := time.Now()
	period := start.Truncate(24 * time.Hour).UnixMicro()
	charges := []budget.Charge{
		{BudgetID: "bud_key_0123456789abcdefgh", PeriodStart: period, Limit: 1 << 50, Hard: true},
		{BudgetID: "bud_team_0123456789abcdefg", PeriodStart: period, Limit: 1 << 50, Hard: true},
		{BudgetID: "bud_org_0123456789abcdefgh", PeriodStart: period, Limit: 1 << 50, Hard: true},
	}
	var open []string // started, not ended yet
	round := func() {
		var starts, ends []ledger.Entry
		for range batch {
			id := newID()
			rec := ledger.Record{Kind: ledger.KindCallStart, Time: time.Now(), RequestID: id, PrincipalID: "prn_0123456789abcdefghij",
				KeyID: "key_0123456789abcdefghij", TeamID: "team_0123456789abcdefghij", SourceIP: "127.0.0.1", UserAgent: "httpbench",
				Endpoint: "chat", Model: "gpt-4o-mini", Provider: "mock", Decision: "allow", Reasons: []string{"default-allow"}}
			e := rec.Entry()
			e.Opens = true
			e.Hold = &ledger.Hold{Reservation: budget.Reservation{ID: id, Instance: "gw.1", Amount: 4_000, Charges: charges, CreatedAt: time.Now()}}
			starts = append(starts, e)
			open = append(open, id)
		}
		if len(open) > batch {
			for _, id := range open[:batch] {
				rec := ledger.Record{Kind: ledger.KindCallEnd, Time: time.Now(), RequestID: id, PrincipalID: "prn_0123456789abcdefghij",
					KeyID: "key_0123456789abcdefghij", TeamID: "team_0123456789abcdefghij", Endpoint: "chat", Model: "gpt-4o-mini",
					Provider: "mock", Status: 200, InputTokens: 12, OutputTokens: 16, CostMicros: 153, LatencyMillis: 1, UpstreamRequestID: "chatcmpl-0123456789"}
				e := rec.Entry()
				e.Closes = true
				e.Settle = &ledger.Settlement{ID: id, Actual: 153}
				e.Usage = &usage.Record{ID: id, Time: time.Now(), KeyID: rec.KeyID, PrincipalID: rec.PrincipalID, TeamID: rec.TeamID,
					Endpoint: "chat", Model: "gpt-4o-mini", Provider: "mock", Status: 200, Tokens: usage.Tokens{Input: 12, Output: 16},
					CostMicros: 153, Priced: true, LatencyMillis: 1, UpstreamRequestID: "chatcmpl-0123456789"}
				ends = append(ends, e)
			}
			open = open[batch:]
		}
		for _, es := range [][]ledger.Entry{starts, ends} {
			if len(es) == 0 {
				continue
			}
			idx, err := db.LedgerAppend(ctx, "gw.1", es, storedHashes)
			if err != nil {
				b.Fatal(err)
			}
			for _, x := range idx {
				if x < 0 {
					b.Fatal("an entry was refused")
				}
			}
		}
	}
	for n := 0; n < warm; n += batch {
		round()
	}
	conn := db.SQL()
	if _, err := conn.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		b.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, `PRAGMA wal_autocheckpoint = 0`); err != nil {
		b.Fatal(err)
	}
	for n := 0; n < measured; n += batch {
		round()
	}
	wal, err := os.ReadFile(path + "-wal")
	if err != nil {
		b.Fatal(err)
	}
	return int64(len(wal)-32) / (24 + 4096), byTree(b, db, wal, measured)
}

// storedHashes computes the Merkle hashes to store for the kept entries, as
// the ledger's sequencer does.
func storedHashes(size int64, kept []ledger.Entry, r tlog.HashReader) ([][]tlog.Hash, error) {
	computed := map[int64]tlog.Hash{}
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			h, ok := computed[x]
			if !ok {
				got, err := r.ReadHashes([]int64{x})
				if err != nil {
					return nil, err
				}
				h = got[0]
			}
			out[i] = h
		}
		return out, nil
	})
	out := make([][]tlog.Hash, len(kept))
	for i, e := range kept {
		n := size + int64(i)
		hs, err := tlog.StoredHashes(n, e.Data, reader)
		if err != nil {
			return nil, err
		}
		base := tlog.StoredHashIndex(0, n)
		for j, h := range hs {
			computed[base+int64(j)] = h
		}
		out[i] = hs
	}
	return out, nil
}

// byTree attributes the WAL's frames to B-trees by page number (dbstat).
func byTree(b *testing.B, db *sqlstore.DB, wal []byte, calls int) string {
	owner := map[uint32]string{}
	rows, err := db.SQL().Query(`SELECT name, pageno FROM dbstat`)
	if err != nil {
		return "(no dbstat: " + err.Error() + ")"
	}
	for rows.Next() {
		var name string
		var pg uint32
		if err := rows.Scan(&name, &pg); err != nil {
			b.Fatal(err)
		}
		owner[pg] = name
	}
	rows.Close()
	count := map[string]int{}
	for off := 32; off+24+4096 <= len(wal); off += 24 + 4096 {
		pg := binary.BigEndian.Uint32(wal[off:])
		name := owner[pg]
		if name == "" {
			name = "(free or new)"
		}
		count[name]++
	}
	names := make([]string, 0, len(count))
	for n := range count {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return count[names[i]] > count[names[j]] })
	var sb strings.Builder
	for _, n := range names {
		fmt.Fprintf(&sb, "%s %.2f; ", n, float64(count[n])/float64(calls))
	}
	return sb.String()
}
