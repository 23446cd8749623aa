package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/config"
)

// chat makes one chat completion with key and returns the status.
func chat(t *testing.T, dataURL, key, model string) int { return chatFrom(t, dataURL, key, model, "") }

// chatFrom is chat from source address xff (X-Forwarded-For; "" for none).
func chatFrom(t *testing.T, dataURL, key, model, xff string) int {
	t.Helper()
	body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}],"max_tokens":16}`, model)
	req, _ := http.NewRequest("POST", dataURL+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// findingOf runs the rules until a finding of rule about subject is open
// (ledger end records are written after responses), or fails.
func findingOf(t *testing.T, c *client.Client, rule, subject string) client.Finding {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := c.RunFindings(ctx); err != nil {
			t.Fatal(err)
		}
		fs, err := c.ListFindings(ctx, client.FindingFilter{Rule: rule, Subject: subject, State: "open"})
		if err != nil {
			t.Fatal(err)
		}
		if len(fs) == 1 {
			return fs[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no open %s finding about %s (%d)", rule, subject, len(fs))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func partnerKey(t *testing.T) (*ecdsa.PrivateKey, string) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	return priv, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func TestAuditEndToEnd(t *testing.T) {
	for name, dsn := range backends(t) {
		t.Run(name, func(t *testing.T) {
			if name == "postgres" && os.Getenv("GATEHOUSE_TEST_POSTGRES_URL") == "" {
				t.Skip("GATEHOUSE_TEST_POSTGRES_URL not set")
			}
			testAuditEndToEnd(t, dsn(t))
		})
	}
}

func testAuditEndToEnd(t *testing.T, dsn string) {
	ctx := context.Background()
	priv, pub := partnerKey(t)
	hook := newWebhook(t)
	t.Setenv("GATEHOUSE_ALERT_WEBHOOK_SECRET", "whsec-test")
	f := newFixture(t, gwOptions{database: dsn, mutate: func(c *config.Config) {
		c.AlertWebhookURL = hook.url
		c.Audit.Interval = -1 // on demand only: the test decides when rules run
		// And when the log is verified: the schedule checks at start and
		// retries 5 s later while the log has no checkpoint; a check made
		// while the test's clock is 200 days ahead dates the log's last
		// verification then, and config.log_unverified never opens.
		c.Audit.LogVerifyInterval = -1
		c.Audit.MinBaseline, c.Audit.DenialSpike, c.Audit.RateLimitStorm = 5, 5, 5
		c.Audit.MinSpikeRequests, c.Audit.MinSpikeMicros = 5, 1
		c.TrustProxyHeaders = true // config.proxy_headers_untrusted; and it lets the test choose source addresses
		c.Audit.SecretScanning.PublicKeys = []audit.PublicKey{{ID: "gh-1", PEM: pub}}
	}})
	admin := f.admin

	// Every audit route is in the OpenAPI document with an operationId (the console builds on them).
	doc, err := getURL("http://" + f.srv.AdminAddr() + "/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var api struct {
		Paths map[string]map[string]struct {
			OperationID string `json:"operationId"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(doc, &api); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"GET /v1/findings", "POST /v1/findings/run", "GET /v1/findings/{id}", "POST /v1/findings/{id}/ack", "POST /v1/findings/{id}/resolve",
		"POST /v1/findings/{id}/dismiss", "POST /v1/keys/leaked", "POST /v1/reports", "GET /v1/reports", "GET /v1/reports/{id}", "GET /v1/audit/evidence",
		"POST /v1/reviews", "GET /v1/reviews", "GET /v1/reviews/{id}", "POST /v1/reviews/{id}/close", "POST /v1/reviews/items/{id}/decide"} {
		method, path, _ := strings.Cut(r, " ")
		if api.Paths[path][strings.ToLower(method)].OperationID == "" {
			t.Errorf("OpenAPI: %s has no operationId", r)
		}
	}

	// Configuration, key and principal rules on a fresh gateway.
	uncapped := findingOf(t, admin, "keys.no_hard_budget", f.keyID)
	if uncapped.Severity != "high" || uncapped.Subject.Kind != "key" {
		t.Errorf("uncapped key finding %+v", uncapped)
	}
	findingOf(t, admin, "keys.unscoped", f.keyID)
	findingOf(t, admin, "keys.no_expiry", f.keyID)
	findingOf(t, admin, "config.step_up_off", "step_up_max_age")
	adminP, _, err := admin.Principal(ctx, "admin")
	if err != nil {
		t.Fatal(err)
	}
	findingOf(t, admin, "principals.admin_no_mfa", adminP.ID)
	findingOf(t, admin, "keys.admin_owner_no_mfa", f.srv.Bootstrap.AdminKeyID)
	findingOf(t, admin, "config.proxy_headers_untrusted", "trust_proxy_headers")
	findingOf(t, admin, "principals.service_no_pop", f.principal)
	bobName, userKind, bobTeams := "bob", "user", []string{"research"}
	bob, err := admin.CreatePrincipal(ctx, client.PrincipalInput{Name: &bobName, Kind: &userKind, Teams: &bobTeams})
	if err != nil {
		t.Fatal(err)
	}
	findingOf(t, admin, "principals.user_no_mfa", bob.ID)
	goneName := "gone"
	gone, err := admin.CreatePrincipal(ctx, client.PrincipalInput{Name: &goneName, Teams: &bobTeams})
	if err != nil {
		t.Fatal(err)
	}
	goneKey, err := admin.CreateKey(ctx, client.KeyInput{Principal: "gone", Name: "gone key"})
	if err != nil {
		t.Fatal(err)
	}
	disabled := true
	if _, err := admin.UpdatePrincipal(ctx, gone.ID, client.PrincipalInput{Disabled: &disabled}, ""); err != nil {
		t.Fatal(err)
	}
	findingOf(t, admin, "keys.owner_disabled", goneKey.ID)
	pv, err := admin.Policies(ctx)
	if err != nil {
		t.Fatal(err)
	}
	applied, err := admin.ApplyPolicies(ctx, pv.Files, "audit e2e")
	if err != nil {
		t.Fatal(err)
	}
	pc := findingOf(t, admin, "config.policy_changed", fmt.Sprintf("v%d", applied.Version))
	if pc.Evidence.Summary != "audit e2e" {
		t.Errorf("policy change evidence %+v", pc.Evidence)
	}

	// Acknowledge through the CLI: who and why, in the history and the ledger.
	code, out, errs := runCLI(t, f.gateway, "findings", "ack", uncapped.ID, "--reason", "budget coming", "--json")
	if code != 0 {
		t.Fatalf("findings ack: %d %s %s", code, out, errs)
	}
	acked, err := admin.Finding(ctx, uncapped.ID)
	if err != nil {
		t.Fatal(err)
	}
	last := acked.History[len(acked.History)-1]
	if acked.State != "acknowledged" || last.By != adminP.ID || last.Reason != "budget coming" || last.LedgerIndex < 0 {
		t.Fatalf("acknowledged finding %+v", acked)
	}
	var rec struct {
		Record string `json:"record"`
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := getURL("http://" + f.srv.AdminAddr() + fmt.Sprintf("/log/proof/%d", last.LedgerIndex))
		if json.Unmarshal(b, &rec) == nil && rec.Record != "" || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(rec.Record, `"action":"finding.acknowledged"`) || !strings.Contains(rec.Record, "budget coming") || !strings.Contains(rec.Record, adminP.ID) {
		t.Errorf("ledger record of the acknowledgement: %s", rec.Record)
	}
	if code, _, errs := runCLI(t, f.gateway, "findings", "resolve", uncapped.ID); code != 2 || !strings.Contains(errs, "--reason") {
		t.Errorf("resolve without a reason: %d %s", code, errs)
	}

	// Usage anomalies against the key's own baseline: five calls to gpt-4o
	// from 10.0.0.1; then, with the audit clock one anomaly window (1h) after
	// them, five to a model it never used, from a network it never used.
	for range 5 {
		if s := chatFrom(t, f.dataURL, f.key, "gpt-4o", "10.0.0.1"); s != 200 {
			t.Fatalf("baseline call: %d", s)
		}
	}
	// Usage records are queued after the end records are durable: once all
	// five are visible, every baseline end record is older than t1.
	if n := len(f.usageOf(t, f.keyID, 5)); n != 5 {
		t.Fatalf("%d baseline usage records", n)
	}
	t1 := time.Now()
	f.srv.SetClock(func() time.Time { return t1.Add(time.Hour) })
	for range 5 {
		if s := chatFrom(t, f.dataURL, f.key, "gpt-4o-mini", "203.0.113.7"); s != 200 {
			t.Fatalf("anomalous call: %d", s)
		}
	}
	f.usageOf(t, f.keyID, 10) // end records are durable before usage records are queued
	nm := findingOf(t, admin, "usage.new_model", f.keyID)
	if !slices.Contains(nm.Evidence.Items, "gpt-4o-mini") || len(nm.Evidence.RequestIDs) != 5 || len(nm.Evidence.LedgerIndexes) != 5 {
		t.Errorf("new model evidence %+v", nm.Evidence)
	}
	if ns := findingOf(t, admin, "usage.new_source", f.keyID); !slices.Equal(ns.Evidence.Items, []string{"203.0.113.0/24"}) {
		t.Errorf("new source evidence %+v", ns.Evidence)
	}
	findingOf(t, admin, "usage.rate_spike", f.keyID)
	findingOf(t, admin, "usage.spend_spike", f.keyID)
	// The data plane stamps calls with the server's clock (SetClock): the five
	// calls happened at t1+1h, an hour of the day the key never worked before.
	uh := findingOf(t, admin, "usage.unusual_hours", f.keyID)
	if want := strconv.Itoa(t1.Add(time.Hour).UTC().Hour()) + "h UTC"; !slices.Equal(uh.Evidence.Items, []string{want}) || len(uh.Evidence.LedgerIndexes) != 5 {
		t.Errorf("unusual hours evidence %+v, want the hour %s of five calls", uh.Evidence, want)
	}
	for _, u := range f.usageOf(t, f.keyID, 10) {
		if d := u.Time.Sub(t1.Add(time.Hour)); u.Model == "gpt-4o-mini" && (d > time.Second || d < -time.Second) {
			t.Errorf("usage record of a call under the moved clock stamped %s, want %s", u.Time, t1.Add(time.Hour).UTC())
		}
	}
	// A soft budget on the key, past 90% after one call.
	bs, bid, bp, lim, hard := "key", f.keyID, "month", int64(10), false
	soft, err := admin.CreateBudget(ctx, client.BudgetInput{Scope: &bs, ScopeID: &bid, Period: &bp, LimitMicros: &lim, Hard: &hard})
	if err != nil {
		t.Fatal(err)
	}
	if s := chat(t, f.dataURL, f.key, "gpt-4o"); s != 200 {
		t.Fatalf("call under a soft budget: %d", s)
	}
	findingOf(t, admin, "budgets.near_exhaustion", soft.ID)
	// A rate-limit storm: one request a minute allowed, seven sent.
	stormy, err := admin.CreateKey(ctx, client.KeyInput{Principal: "agent", Name: "stormy"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SetLimit(ctx, client.Limit{Scope: "key", ScopeID: stormy.ID, RPM: 1}); err != nil {
		t.Fatal(err)
	}
	limited := 0
	for range 7 {
		if chat(t, f.dataURL, stormy.Secret, "gpt-4o") == 429 {
			limited++
		}
	}
	if limited < 5 {
		t.Fatalf("%d of 7 calls rate limited", limited)
	}
	findingOf(t, admin, "usage.rate_limited", stormy.ID)
	narrow, err := admin.CreateKey(ctx, client.KeyInput{Principal: "agent", Name: "narrow", Scope: client.Scope{Models: []string{"gpt-4o"}}})
	if err != nil {
		t.Fatal(err)
	}
	for range 6 {
		if s := chat(t, f.dataURL, narrow.Secret, "o3-mini"); s != 403 {
			t.Fatalf("out-of-scope call: %d", s)
		}
	}
	f.usageOf(t, narrow.ID, 6)
	den := findingOf(t, admin, "usage.denials", narrow.ID)
	if den.Evidence.Values["count"] != 6 {
		t.Errorf("denials evidence %+v", den.Evidence)
	}

	// The log verified now, on the clock of the calls above: 200 days later
	// it is overdue (config.log_unverified below).
	if err := f.srv.Ledger().SignCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if c, err := f.srv.CheckLog(ctx); err != nil || !c.OK {
		t.Fatalf("verifying the log: %+v, %v", c, err)
	}

	// Time-based rules, with the gateway's audit clock 100 days ahead.
	idle, err := admin.CreateKey(ctx, client.KeyInput{Principal: "agent", Name: "idle"})
	if err != nil {
		t.Fatal(err)
	}
	f.srv.SetClock(func() time.Time { return time.Now().Add(100 * 24 * time.Hour) })
	_, err = admin.RotateKey(ctx, idle.ID, "1h")
	if err != nil {
		t.Fatal(err)
	}
	findingOf(t, admin, "keys.unused", idle.ID)
	findingOf(t, admin, "principals.inactive", adminP.ID)
	findingOf(t, admin, "keys.grace_expired", idle.ID)
	f.srv.SetClock(func() time.Time { return time.Now().Add(200 * 24 * time.Hour) })
	findingOf(t, admin, "keys.too_old", f.keyID)
	lu := findingOf(t, admin, "config.log_unverified", "ledger")
	if lu.Severity != "high" || !strings.Contains(lu.Title, "last verified") {
		t.Errorf("log unverified: %+v, want overdue since the check above", lu)
	}
	f.srv.SetClock(time.Now)
	if _, err := f.srv.CheckLog(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RunFindings(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := admin.Finding(ctx, lu.ID); got.State != "resolved" {
		t.Errorf("log verified again, finding %s", got.State)
	}

	// The secret-scanning partner endpoint: a signed report of a live key
	// revokes it at once; an unsigned one changes nothing.
	leaked, err := admin.CreateKey(ctx, client.KeyInput{Principal: "agent", Name: "leaked"})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal([]audit.PartnerMatch{{Token: leaked.Secret, Type: "gatehouse_key", URL: "https://github.com/acme/app/blob/1/a.py", Source: "content"}})
	post := func(sig string) (int, string) {
		req, _ := http.NewRequest("POST", f.dataURL+audit.PartnerPath, bytes.NewReader(body))
		req.Header.Set(audit.HeaderKeyID, "gh-1")
		req.Header.Set(audit.HeaderSignature, sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if s, _ := post(base64.StdEncoding.EncodeToString([]byte("forged"))); s != 401 {
		t.Fatalf("forged signature: %d", s)
	}
	if s := chat(t, f.dataURL, leaked.Secret, "gpt-4o"); s != 200 {
		t.Fatalf("the key before the report: %d", s)
	}
	sum := sha256.Sum256(body)
	sig, _ := ecdsa.SignASN1(rand.Reader, priv, sum[:])
	s, answer := post(base64.StdEncoding.EncodeToString(sig))
	if s != 200 || !strings.Contains(answer, "true_positive") || strings.Contains(answer, leaked.Secret) {
		t.Fatalf("signed report: %d %s", s, answer)
	}
	if s := chat(t, f.dataURL, leaked.Secret, "gpt-4o"); s != 401 {
		t.Fatalf("the leaked key after the report: %d", s)
	}
	findingOf(t, admin, audit.LeakRule, leaked.ID)

	// An access review: the admin revokes the idle key; it stops at once.
	rev, err := admin.StartReview(ctx, client.ReviewInput{Scope: "team:research", Due: "7d"})
	if err != nil {
		t.Fatal(err)
	}
	var item client.ReviewItem
	for _, it := range rev.Items {
		if it.Kind == "key" && it.Subject == narrow.ID {
			item = it
		}
	}
	if item.ID == "" {
		t.Fatalf("no review item for the narrow key in %+v", rev.Items)
	}
	code, out, errs = runCLI(t, f.gateway, "reviews", "decide", item.ID, "--revoke", "--reason", "probing from this key")
	if code != 0 {
		t.Fatalf("reviews decide: %d %s %s", code, out, errs)
	}
	if s := chat(t, f.dataURL, narrow.Secret, "gpt-4o"); s != 401 {
		t.Errorf("a key revoked in review still works: %d", s)
	}
	if code, out, _ := runCLI(t, f.gateway, "reviews", "close", rev.Campaign.ID, "--json"); code != 0 || !strings.Contains(out, `"state": "closed"`) {
		t.Errorf("reviews close: %d %s", code, out)
	}

	// The report, as one HTML file, and the evidence bundle, verified offline.
	dir := t.TempDir()
	html := filepath.Join(dir, "r.html")
	if code, out, errs := runCLI(t, f.gateway, "audit", "report", "--since", "1d", "--format", "html", "-o", html); code != 0 {
		t.Fatalf("audit report: %d %s %s", code, out, errs)
	}
	hb, _ := os.ReadFile(html)
	if !strings.Contains(string(hb), "<svg") || !strings.Contains(string(hb), "keys.leaked") {
		t.Errorf("the HTML report lacks its charts or the leak")
	}
	if code, out, _ := runCLI(t, f.gateway, "audit", "reports", "--json"); code != 0 || !strings.Contains(out, `"name": "on demand"`) {
		t.Errorf("audit reports: %d %s", code, out)
	}
	zipPath := filepath.Join(dir, "evidence.zip")
	if code, out, errs := runCLI(t, f.gateway, "audit", "evidence", "--since", "1d", "-o", zipPath); code != 0 {
		t.Fatalf("audit evidence: %d %s %s", code, out, errs)
	}
	// New high findings reached the webhook, signed (newWebhook checks the
	// signature); lower ones did not; no alert carries a key.
	unscoped, err := admin.ListFindings(ctx, client.FindingFilter{Rule: "keys.unscoped", Subject: f.keyID})
	if err != nil || len(unscoped) != 1 {
		t.Fatalf("unscoped finding: %v %v", unscoped, err)
	}
	alerted := func(id string) bool {
		for _, a := range hook.all() {
			if d, _ := a["details"].(map[string]any); a["kind"] == "finding" && d["finding_id"] == id {
				return true
			}
		}
		return false
	}
	leakFinding, _ := admin.ListFindings(ctx, client.FindingFilter{Rule: audit.LeakRule, Subject: leaked.ID})
	for deadline := time.Now().Add(10 * time.Second); !(alerted(uncapped.ID) && len(leakFinding) == 1 && alerted(leakFinding[0].ID)) && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if !alerted(uncapped.ID) || len(leakFinding) != 1 || !alerted(leakFinding[0].ID) {
		t.Errorf("high findings not alerted: %d alerts", len(hook.all()))
	}
	if alerted(unscoped[0].ID) {
		t.Error("a medium finding was alerted")
	}
	for _, a := range hook.all() {
		if b, _ := json.Marshal(a); strings.Contains(string(b), leaked.Secret) {
			t.Fatal("an alert carries a key")
		}
	}

	vk, err := getURL("http://" + f.srv.AdminAddr() + "/log/key")
	if err != nil {
		t.Fatal(err)
	}
	f.stop() // offline: the gateway is gone
	code, out, errs = runCLI(t, f.gateway, "audit", "verify", "--bundle", zipPath, "--key", strings.TrimSpace(string(vk)), "--state", filepath.Join(dir, "st"))
	if code != 0 || !strings.HasPrefix(out, "OK:") {
		t.Fatalf("audit verify --bundle: %d %s %s", code, out, errs)
	}
	if strings.Contains(f.logs.String(), leaked.Secret) || strings.Contains(f.logs.String(), narrow.Secret) {
		t.Fatal("a key reached the logs")
	}
}

func getURL(u string) ([]byte, error) {
	resp, err := http.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// The audit routes are policy actions of their own: an auditor reads findings,
// reports and evidence but changes nothing; a team lead granted reviews.decide
// decides review items and nothing else.
func TestAuditPermissions(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, gwOptions{mutate: func(c *config.Config) { c.Audit.Interval = -1 }})
	admin := f.admin
	as := func(name string, roles []string) *client.Client {
		t.Helper()
		user, research := "user", []string{"research"}
		if _, err := admin.CreatePrincipal(ctx, client.PrincipalInput{Name: &name, Kind: &user, Roles: &roles, Teams: &research}); err != nil {
			t.Fatal(err)
		}
		k, err := admin.CreateKey(ctx, client.KeyInput{Principal: name, Kind: "admin"})
		if err != nil {
			t.Fatal(err)
		}
		return client.New("http://"+f.srv.AdminAddr(), k.Secret)
	}
	denied := func(what string, err error) {
		t.Helper()
		var e *client.Error
		if !errors.As(err, &e) || e.Status != 403 {
			t.Errorf("%s: %v, want 403", what, err)
		}
	}
	pv, err := admin.Policies(ctx)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for n, b := range pv.Files {
		files[n] = b
	}
	files["leads.cedar"] = `@id("leads-review")
permit (principal in Role::"teamlead", action in [Action::"reviews.read", Action::"reviews.decide"], resource);`
	if _, err := admin.ApplyPolicies(ctx, files, "team leads review"); err != nil {
		t.Fatal(err)
	}
	auditor, lead := as("aud", []string{"auditor"}), as("lead", []string{"teamlead"})
	if _, err := admin.RunFindings(ctx); err != nil {
		t.Fatal(err)
	}

	if fs, err := auditor.ListFindings(ctx, client.FindingFilter{}); err != nil || len(fs) == 0 {
		t.Errorf("auditor lists findings: %d, %v", len(fs), err)
	}
	if b, err := auditor.Evidence(ctx, "1d"); err != nil || len(b) == 0 {
		t.Errorf("auditor exports evidence: %v", err)
	}
	_, err = auditor.RunFindings(ctx)
	denied("auditor runs findings", err)
	fs, _ := admin.ListFindings(ctx, client.FindingFilter{})
	_, err = auditor.SetFindingState(ctx, fs[0].ID, "dismiss", "not mine to judge")
	denied("auditor dismisses a finding", err)
	_, err = auditor.ReportLeaked(ctx, []string{f.key}, nil, true)
	denied("auditor revokes a leaked key", err)
	// Asking without revoking is the same action: whoever may not revoke keys
	// does not learn which key a secret is or whether it is live, and the
	// refusal says nothing about the secret.
	res, err := auditor.ReportLeaked(ctx, []string{f.key}, nil, false)
	denied("auditor asks whether a key is live", err)
	var ce *client.Error
	if errors.As(err, &ce) && (strings.Contains(ce.Message, f.keyID) || strings.Contains(ce.Message, f.key) || len(res) != 0) {
		t.Errorf("the refusal tells about the key: %+v %v", ce, res)
	}
	member := as("mem", []string{"member"})
	_, err = member.ReportLeaked(ctx, []string{f.key}, nil, false)
	denied("member asks whether a key is live", err)
	// Bounded input, for those who may call it.
	many := make([]string, 1001)
	for i := range many {
		many[i] = "gk_x"
	}
	if _, err := admin.ReportLeaked(ctx, many, nil, false); !errors.As(err, &ce) || ce.Status != 400 {
		t.Errorf("1001 secrets: %v, want 400", err)
	}
	if _, err := admin.ReportLeaked(ctx, []string{strings.Repeat("a", 2<<20)}, nil, false); !errors.As(err, &ce) || ce.Status != 400 || strings.Contains(ce.Message, "aaaa") {
		t.Errorf("a 2 MiB body: %v, want 400 without echo", err)
	}
	if k, err := admin.Key(ctx, f.keyID); err != nil || k.RevokedAt != nil {
		t.Fatalf("refused reports touched the key: %+v %v", k, err)
	}

	rev, err := admin.StartReview(ctx, client.ReviewInput{Scope: "team:research", Reviewer: "lead"})
	if err != nil {
		t.Fatal(err)
	}
	var keyItem, own client.ReviewItem
	for _, it := range rev.Items {
		if it.Kind == "key" && it.Subject == f.keyID {
			keyItem = it
		}
	}
	leadP, _, _ := admin.Principal(ctx, "lead")
	for _, it := range rev.Items {
		if it.Principal == leadP.ID && it.Kind == "membership" {
			own = it
		}
	}
	if !slices.Equal(keyItem.Reviewers, []string{leadP.ID}) || own.ID == "" || slices.Contains(own.Reviewers, leadP.ID) {
		t.Fatalf("reviewers: the key's %v, lead's own membership's %v", keyItem.Reviewers, own.Reviewers)
	}
	if _, err := lead.DecideReview(ctx, keyItem.ID, client.Decision{Decision: "keep", Reason: "the agent needs it"}); err != nil {
		t.Errorf("lead decides an item: %v", err)
	}
	_, err = lead.DecideReview(ctx, own.ID, client.Decision{Decision: "keep", Reason: "I need it"})
	denied("lead decides their own membership", err)
	_, err = lead.CloseReview(ctx, rev.Campaign.ID)
	denied("lead closes the campaign", err)
	_, err = lead.ListFindings(ctx, client.FindingFilter{})
	denied("lead lists findings", err)
}
