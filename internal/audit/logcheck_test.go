package audit_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
)

// The gateway verifies its own log as an auditor would: a new log has nothing
// to verify; a good one records its size and root; a record changed in the
// store is caught, and the last good verification is kept.
func TestLogVerifier(t *testing.T) {
	ctx := context.Background()
	db := openStore(t)
	skey, _ := ledger.GenerateKey("check.example/log")
	lg, err := ledger.New(db, "t", skey, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	v := &audit.LogVerifier{Source: ledger.StoreSource{Store: db}, Key: lg.Key, Store: db, Now: clk.Now}
	if _, err := v.Check(ctx); !errors.Is(err, audit.ErrNoCheckpoint) {
		t.Fatalf("a new log: %v", err)
	}
	if c, _ := db.LogCheck(ctx); c != nil {
		t.Fatalf("a new log left a check: %+v", c)
	}
	for i := range 3 {
		r := ledger.Record{Kind: ledger.KindAdmin, Time: clk.Now(), RequestID: "r" + string(rune('0'+i)), Action: "test"}
		if _, err := lg.Append(ctx, ledger.Entry{Data: r.Marshal(), RequestID: r.RequestID}); err != nil {
			t.Fatal(err)
		}
	}
	if err := lg.SignCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	good, err := v.Check(ctx)
	if err != nil || !good.OK || good.Size != 3 || good.Root == "" || !good.LastGood.Equal(clk.Now()) {
		t.Fatalf("good log: %+v %v", good, err)
	}
	// Someone edits a record in the database.
	if _, err := db.SQL().ExecContext(ctx, `UPDATE ledger_entries SET data = REPLACE(data, '"test"', '"tEst"') WHERE idx = 1`); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Hour)
	bad, err := v.Check(ctx)
	if err != nil || bad.OK || !strings.Contains(bad.Error, "TAMPERED") || !bad.LastGood.Equal(good.LastGood) {
		t.Fatalf("tampered log: %+v %v", bad, err)
	}
	e := audit.New(audit.Deps{Store: db, Now: clk.Now})
	if _, err := e.Run(ctx, audit.SystemActor); err != nil {
		t.Fatal(err)
	}
	fs, _ := e.List(ctx, audit.Filter{Rule: "config.log_unverified"})
	if len(fs) != 1 || fs[0].Title != "the log failed verification" || fs[0].Severity != audit.High {
		t.Fatalf("findings %+v", fs)
	}
}
