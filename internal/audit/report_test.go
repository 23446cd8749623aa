package audit_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

func TestReportRenders(t *testing.T) {
	ctx := context.Background()
	db := openStore(t)
	clk := &clock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	_, k := seed(t, db, clk.Now().Add(-20*24*time.Hour))
	for i := range 10 {
		at := clk.Now().Add(-time.Duration(i) * 24 * time.Hour)
		if err := db.InsertUsage(ctx, usage.Record{ID: "req_" + string(rune('a'+i)), Time: at, KeyID: k.ID, PrincipalID: k.PrincipalID, TeamID: k.TeamID,
			Endpoint: "chat", Model: "gpt-4o", Status: 200, CostMicros: int64(i+1) * 100_000, Priced: true}); err != nil {
			t.Fatal(err)
		}
	}
	e := audit.New(audit.Deps{Store: db, Now: clk.Now})
	if _, err := e.Run(ctx, audit.SystemActor); err != nil {
		t.Fatal(err)
	}
	r, err := e.Generate(ctx, "weekly", clk.Now().Add(-7*24*time.Hour), clk.Now(), true)
	if err != nil {
		t.Fatal(err)
	}
	// The period is [now-7d, now): days 1-7 ago, $0.20+…+$0.80 = $3.50; the
	// previous one holds days 8 and 9 ago: $1.90.
	if r.Spend.CostMicros != 3_500_000 || r.Spend.PrevCostMicros != 1_900_000 || r.Spend.Calls != 7 {
		t.Fatalf("spend %+v", r.Spend)
	}
	if len(r.Spend.ByKey) != 1 || r.Spend.ByKey[0].Name != "agent key" || r.Spend.ByKey[0].PrevCostMicros != 1_900_000 {
		t.Errorf("by key %+v", r.Spend.ByKey)
	}
	if len(r.Keys) != 1 || r.Keys[0].Scope.Models != nil || len(r.Findings.Open) == 0 || r.Findings.BySeverity["high"] == 0 {
		t.Errorf("inventory %+v, findings %+v", r.Keys, r.Findings.BySeverity)
	}
	stored, err := e.StoredReport(ctx, r.ID)
	if err != nil || stored.Spend.CostMicros != r.Spend.CostMicros {
		t.Fatalf("stored report: %v", err)
	}
	md := string(audit.Markdown(r))
	for _, want := range []string{"$3.50 in 7 calls", "+84%", "keys.no_hard_budget", "agent key (key_a)", "## Log integrity"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
	html := string(audit.HTML(r))
	if strings.Count(html, "<svg") != 3 {
		t.Errorf("want 3 inline charts, got %d", strings.Count(html, "<svg"))
	}
	// Self-contained: nothing loads from elsewhere.
	if m := regexp.MustCompile(`(?i)(src|href)\s*=|@import|url\(`).FindString(html); m != "" {
		t.Errorf("the HTML report references an external asset: %q", m)
	}
	csv := string(audit.CSV(r))
	if !strings.HasPrefix(csv, "dimension,group,name,cost_micros") || !strings.Contains(csv, "key,key_a,agent key,3500000,7,1900000,2") {
		t.Errorf("csv:\n%s", csv)
	}
}

// A key name is user input: it must not become markup in the HTML report or
// a formula in the CSV.
func TestReportEscapesNames(t *testing.T) {
	r := audit.Report{ReportInfo: audit.ReportInfo{Name: "x"}}
	r.Spend.ByKey = []audit.SpendLine{{Group: "key_1", Name: `<script>alert(1)</script>`, CostMicros: 5}, {Group: "=HYPERLINK(\"http://evil\")", CostMicros: 1}}
	r.Keys = []audit.KeyEntry{{ID: "key_1", Name: `<img onerror=x>`}}
	html := string(audit.HTML(r))
	if strings.Contains(html, "<script>alert") || strings.Contains(html, "<img onerror") {
		t.Fatal("a name became markup")
	}
	if strings.Contains(string(audit.CSV(r)), "\n=HYPERLINK") || strings.Contains(string(audit.CSV(r)), ",=HYPERLINK") {
		t.Fatal("a CSV cell starts with a formula")
	}
}

func TestReviews(t *testing.T) {
	ctx := context.Background()
	db := openStore(t)
	clk := &clock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	_, key := seed(t, db, clk.Now())
	for _, p := range []org.Principal{
		{ID: "prn_lead", Name: "lead", Kind: org.KindUser, Teams: []string{"team_a"}, Roles: []string{"admin"}, CreatedAt: clk.Now(), Version: 1},
		{ID: "prn_lead2", Name: "lead2", Kind: org.KindUser, Teams: []string{"team_a"}, Roles: []string{"admin"}, CreatedAt: clk.Now(), Version: 1},
	} {
		if err := db.CreatePrincipal(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	led, alerts := &recLedger{}, &recAlerts{}
	e := audit.New(audit.Deps{Store: db, Ledger: led, Alerts: alerts, Now: clk.Now})
	c, items, err := e.StartReview(ctx, "team:a", "", "", "prn_lead", 7*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// One key, three memberships, two admin roles.
	if c.Counts.Total != 6 || len(items) != 6 || c.OnOverdue != "escalate" || !c.Due.Equal(clk.Now().Add(7*24*time.Hour)) {
		t.Fatalf("campaign %+v with %d items", c, len(items))
	}
	find := func(kind, principal string) audit.Item {
		for _, it := range items {
			if it.Kind == kind && it.Principal == principal {
				return it
			}
		}
		t.Fatalf("no %s item of %s", kind, principal)
		return audit.Item{}
	}
	own := find("role", "prn_lead")
	if slices.Contains(own.Reviewers, "prn_lead") || !slices.Equal(own.Reviewers, []string{"prn_lead2"}) {
		t.Errorf("reviewers of lead's own role: %v", own.Reviewers)
	}
	if _, err := e.Decide(ctx, own.ID, "keep", "fine", "prn_lead", true, nil); !errors.Is(err, audit.ErrSelfReview) {
		t.Fatalf("self-review: %v", err)
	}
	keyItem := find("key", "prn_a")
	if _, err := e.Decide(ctx, keyItem.ID, "keep", "mine", "prn_a", false, nil); !errors.Is(err, audit.ErrSelfReview) {
		t.Fatalf("the key's owner reviewing it: %v", err)
	}
	if _, err := e.Decide(ctx, find("membership", "prn_lead").ID, "keep", "x", "prn_a", false, nil); !errors.Is(err, audit.ErrNotReviewer) {
		t.Fatalf("a non-reviewer deciding: %v", err)
	}
	if _, err := e.Decide(ctx, keyItem.ID, "revoke", "", "prn_lead", true, nil); !errors.Is(err, audit.ErrNeedReason) {
		t.Fatalf("no reason: %v", err)
	}
	// Reduce takes effect at once.
	exp := clk.Now().Add(30 * 24 * time.Hour)
	it, err := e.Decide(ctx, keyItem.ID, "reduce", "only chat on gpt-4o", "prn_lead", true, &audit.Reduction{Models: []string{"gpt-4o"}, Endpoints: []string{"chat"}, ExpiresAt: &exp})
	if err != nil {
		t.Fatal(err)
	}
	k, _ := db.Key(ctx, key.ID)
	if !slices.Equal(k.Scope.Models, []string{"gpt-4o"}) || k.ExpiresAt == nil || !k.ExpiresAt.Equal(exp) || it.DecidedBy != "prn_lead" {
		t.Fatalf("reduced key %+v", k)
	}
	if _, err := e.Decide(ctx, keyItem.ID, "revoke", "again", "prn_lead", true, nil); !errors.Is(err, audit.ErrDecided) {
		t.Fatalf("deciding twice: %v", err)
	}
	// Revoking a membership removes the principal from the team at once.
	if _, err := e.Decide(ctx, find("membership", "prn_lead2").ID, "revoke", "left the team", "prn_lead", true, nil); err != nil {
		t.Fatal(err)
	}
	if p, _ := db.Principal(ctx, "prn_lead2"); slices.Contains(p.Teams, "team_a") {
		t.Fatal("membership still there")
	}
	if got := led.actions(keyItem.ID); !slices.Equal(got, []string{"review.reduce"}) {
		t.Errorf("ledger of the key item: %v", got)
	}
	// Overdue items are escalated once, with an alert.
	clk.Add(8 * 24 * time.Hour)
	n, err := e.SweepReviews(ctx)
	if err != nil || n != 4 || alerts.n() != 4 {
		t.Fatalf("sweep escalated %d (%v), %d alerts", n, err, alerts.n())
	}
	if n, _ := e.SweepReviews(ctx); n != 0 {
		t.Errorf("a second sweep escalated %d again", n)
	}
	closed, _, err := e.CloseReview(ctx, c.ID, "prn_lead")
	if err != nil {
		t.Fatal(err)
	}
	if closed.State != "closed" || closed.Counts.Decided != 2 || closed.Counts.Escalated != 4 || closed.Counts.Reduced != 1 || closed.Counts.Revoked != 1 {
		t.Errorf("closed campaign %+v", closed.Counts)
	}
	if _, err := e.Decide(ctx, own.ID, "keep", "late", "prn_lead2", true, nil); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("deciding in a closed campaign: %v", err)
	}

	// A campaign that revokes what nobody confirmed.
	c2, _, err := e.StartReview(ctx, "org", "prn_lead", "revoke", "prn_lead", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(2 * time.Hour)
	if _, err := e.SweepReviews(ctx); err != nil {
		t.Fatal(err)
	}
	if k, _ := db.Key(ctx, key.ID); k.RevokedAt == nil {
		t.Error("an unreviewed key survived an on_overdue=revoke campaign")
	}
	_, items2, _ := e.ReviewState(ctx, c2.ID)
	for _, it := range items2 {
		if it.Principal == "prn_lead" {
			// lead cannot review themself: their items went to the other admins.
			if slices.Contains(it.Reviewers, "prn_lead") {
				t.Errorf("lead reviews own item %s", it.Title)
			}
		}
	}
}

func TestEvidenceBundle(t *testing.T) {
	ctx := context.Background()
	db := openStore(t)
	clk := &clock{t: time.Now().UTC()}
	seed(t, db, clk.Now().Add(-time.Hour))
	skey, _ := ledger.GenerateKey("test.example/log")
	lg, err := ledger.New(db, "t", skey, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	vk := lg.Key()
	e := audit.New(audit.Deps{Store: db, Ledger: lg, Now: clk.Now, Checkpoint: lg.SignCheckpoint})
	if _, err := e.Run(ctx, "prn_admin"); err != nil {
		t.Fatal(err)
	}
	fs, _ := e.List(ctx, audit.Filter{})
	if _, err := e.Transition(ctx, fs[0].ID, audit.Acknowledged, "prn_admin", "known", 0); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := e.Evidence(ctx, clk.Now().Add(-24*time.Hour), clk.Now().Add(time.Minute), "prn_admin", &buf); err != nil {
		t.Fatal(err)
	}
	rep, err := audit.VerifyBundle(buf.Bytes(), vk)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Findings != len(fs) || rep.Records < len(fs)+2 {
		t.Errorf("bundle report %+v for %d findings", rep, len(fs))
	}
	other, _ := ledger.GenerateKey("test.example/log")
	otherVK, _ := ledger.VerifierKey(other)
	if _, err := audit.VerifyBundle(buf.Bytes(), otherVK); err == nil {
		t.Error("verified with another log's key")
	}
	tamper := func(name string, fn func([]byte) []byte) []byte {
		zr, _ := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
		var out bytes.Buffer
		zw := zip.NewWriter(&out)
		for _, f := range zr.File {
			rc, _ := f.Open()
			b, _ := io.ReadAll(rc)
			rc.Close()
			if f.Name == name {
				b = fn(b)
			}
			w, _ := zw.Create(f.Name)
			w.Write(b)
		}
		zw.Close()
		return out.Bytes()
	}
	for name, tc := range map[string]struct {
		file string
		fn   func([]byte) []byte
		want string
	}{
		"report edited":   {"report.md", func(b []byte) []byte { return bytes.Replace(b, []byte("high"), []byte("low"), 1) }, "CHANGED"},
		"finding edited":  {"findings.json", func(b []byte) []byte { return bytes.Replace(b, []byte(`"acknowledged"`), []byte(`"resolved"`), 1) }, "CHANGED"},
		"manifest edited": {"manifest.txt", func(b []byte) []byte { return append(b, "0000  extra\n"...) }, "manifest.txt CHANGED"},
		"record edited": {"proofs.json", func(b []byte) []byte {
			var p audit.Proofs
			json.Unmarshal(b, &p)
			p.Records[0].Record = strings.Replace(p.Records[0].Record, `"finding.open"`, `"finding.dismissed"`, 1)
			out, _ := json.Marshal(p)
			return out
		}, "NOT IN THE LOG"},
	} {
		_, err := audit.VerifyBundle(tamper(tc.file, tc.fn), vk)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}

}
