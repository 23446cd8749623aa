package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/sso"
	"github.com/gatehouse-gw/gatehouse/internal/sso/ssotest"
)

// TestConsoleFindingsInBrowser drives the findings and access-review pages in
// headless chromium against a real gateway: run the rules from the page,
// open a finding, acknowledge it with a reason and see its state and history
// change (in the page and in the admin API); then start an access review and
// revoke a key from it, which the data plane then refuses.
func TestConsoleFindingsInBrowser(t *testing.T) {
	ctx := browser(t)
	port := freePort(t)
	origin := "http://localhost:" + port
	f := newFixture(t, gwOptions{mutate: func(c *config.Config) {
		c.AdminListen = "127.0.0.1:" + port
		c.Audit.Interval = -1 // on demand only: the page runs the rules
	}})
	secret := enrolConsoleUser(t, f, "alice")
	dir := artifacts(t)
	bg := context.Background()

	run(t, ctx, "sign in", chromedp.Navigate(origin+"/console/findings"), chromedp.WaitVisible(css("#login-form")),
		chromedp.SendKeys(css("#user"), "alice"), chromedp.SendKeys(css("#password"), "correct horse battery staple"),
		chromedp.SendKeys(css("#code"), code(t, secret, time.Now())), chromedp.Click(css("#sign-in")),
		chromedp.WaitVisible(css("#run-findings")))
	if n := get(t, ctx, "findings before a run", chromedp.Evaluate[int](`document.querySelectorAll("#findings tr[data-finding]").length`)); n != 0 {
		t.Fatalf("%d findings before the rules ever ran", n)
	}
	if e := get(t, ctx, "empty state", chromedp.Text(css("p.empty"))); !strings.Contains(e, "Run the rules now") {
		t.Fatalf("the empty state does not say what to do: %q", e)
	}
	shot(t, ctx, dir, "20-findings-empty")

	run(t, ctx, "run the rules", chromedp.Click(css("#run-findings button")), chromedp.WaitVisible(css("#findings")))
	open, err := f.admin.ListFindings(bg, client.FindingFilter{State: "open"})
	if err != nil || len(open) == 0 {
		t.Fatalf("open findings after the run: %d (%v)", len(open), err)
	}
	if n := get(t, ctx, "rows", chromedp.Evaluate[int](`document.querySelectorAll("#findings tr[data-finding]").length`)); n != len(open) {
		t.Fatalf("the page lists %d findings, the API %d open", n, len(open))
	}
	shot(t, ctx, dir, "21-findings")

	// Filter by severity: only that severity's rows remain.
	sev := open[0].Severity
	run(t, ctx, "filter", chromedp.SetValue(css(`select[name="severity"]`), sev), chromedp.Submit(css(`form[aria-label="Filter findings"]`)),
		chromedp.WaitVisible(css("#findings")))
	if other := get(t, ctx, "other severities", chromedp.Evaluate[int](fmt.Sprintf(`[...document.querySelectorAll("#findings .sev")].filter(e => e.textContent !== %q).length`, sev))); other != 0 {
		t.Fatalf("filtering by %s still shows %d other rows", sev, other)
	}

	// Open one, acknowledge it with a reason.
	target := open[0]
	run(t, ctx, "open the finding", chromedp.Click(css(fmt.Sprintf(`tr[data-finding=%q] a`, target.ID))), chromedp.WaitVisible(css("#evidence")))
	if ev := get(t, ctx, "evidence", chromedp.Text(css("#evidence"))); !strings.Contains(ev, target.Evidence.Summary) {
		t.Fatalf("evidence %q lacks %q", ev, target.Evidence.Summary)
	}
	shot(t, ctx, dir, "22-finding")
	const reason = "seen in the browser test; owner asked to fix by Friday"
	run(t, ctx, "acknowledge", chromedp.SendKeys(css("#f-reason"), reason), chromedp.Click(css("#f-ack")),
		chromedp.WaitVisible(css(`#finding[data-state="acknowledged"]`)))
	if st := get(t, ctx, "state", chromedp.Text(css("#finding-state"))); st != "acknowledged" {
		t.Fatalf("state after acknowledging: %q", st)
	}
	if h := get(t, ctx, "history", chromedp.Text(css("#history"))); !strings.Contains(h, reason) {
		t.Fatalf("history %q lacks the reason", h)
	}
	got, err := f.admin.Finding(bg, target.ID)
	if err != nil || got.State != "acknowledged" || got.StateReason != reason || got.StateBy == "" {
		t.Fatalf("the API after the page acknowledged: %+v (%v)", got, err)
	}
	shot(t, ctx, dir, "23-finding-acknowledged")

	// Access review: start one for the organisation, revoke the fixture's key.
	run(t, ctx, "start a review", chromedp.Navigate(origin+"/console/findings"), chromedp.WaitVisible(css("#start-review")),
		chromedp.Submit(css("#start-review")), chromedp.WaitVisible(css("#campaign")))
	loc := get(t, ctx, "review url", chromedp.Evaluate[string](`location.pathname`))
	campaign := strings.TrimPrefix(loc, "/console/reviews/")
	rv, err := f.admin.Review(bg, campaign)
	if err != nil {
		t.Fatalf("review %q: %v", campaign, err)
	}
	var item string
	for _, it := range rv.Items {
		if it.Kind == "key" && it.Subject == f.keyID {
			item = it.ID
		}
	}
	if item == "" {
		t.Fatalf("the review has no item for the fixture's key %s: %+v", f.keyID, rv.Items)
	}
	shot(t, ctx, dir, "24-review")
	row := fmt.Sprintf(`tr[data-item=%q]`, item)
	run(t, ctx, "revoke from the review", chromedp.SetValue(css(row+` select[name="decision"]`), "revoke"),
		chromedp.SendKeys(css(row+` input[name="reason"]`), "nobody owns this agent any more"), chromedp.Click(css(row+` button`)),
		chromedp.WaitVisible(css(row+` .decision`)))
	if d := get(t, ctx, "decision", chromedp.Text(css(row+` .decision`))); d != "revoke" {
		t.Fatalf("decision shown: %q", d)
	}
	if s, c := chatWith(t, f.dataURL, "Bearer "+f.key, ""); s != 401 || c != "key_revoked" {
		t.Fatalf("a key revoked in a review: %d %q", s, c)
	}
	shot(t, ctx, dir, "25-review-decided")
}

// TestConsoleOIDCInBrowser signs in to the console in chromium through the
// organisation's identity provider (authorization code + PKCE): the provider
// (on another site) redirects back to the console, which continues into the
// page asked for, signed in as the provider's user with the teams and roles
// its groups map to.
func TestConsoleOIDCInBrowser(t *testing.T) {
	ctx := browser(t)
	idp := ssotest.New(t)
	port := freePort(t)
	origin := "http://localhost:" + port
	f := newFixture(t, gwOptions{mutate: func(c *config.Config) {
		c.AdminListen = "127.0.0.1:" + port
		c.OIDCLogin = sso.Config{Issuer: idp.URL, ClientID: idp.ClientID, Groups: []sso.Group{{Group: "platform", Teams: []string{"research"}, Roles: []string{"admin"}}}}
	}})
	idp.SetUser(map[string]any{"sub": "u-ada", "email": "ada@example.com", "groups": []string{"platform"}, "amr": []string{"pwd", "hwk"}})
	dir := artifacts(t)

	run(t, ctx, "sign-in page", chromedp.Navigate(origin+"/console/budgets"), chromedp.WaitVisible(css("#oidc-login")))
	shot(t, ctx, dir, "30-login-with-sso")
	run(t, ctx, "single sign-on", chromedp.Click(css("#oidc-login")), chromedp.WaitVisible(css(`nav[aria-label="Console"]`)))
	if title := get(t, ctx, "title", chromedp.Text(css("h1"))); title != "Budgets" {
		t.Fatalf("after single sign-on the page is %q, want the budgets page asked for", title)
	}
	if who := get(t, ctx, "who", chromedp.Text(css(".who a"))); who != "ada@example.com" {
		t.Fatalf("signed in as %q", who)
	}
	shot(t, ctx, dir, "31-signed-in-with-sso")
	p, _, err := f.admin.Principal(context.Background(), "ada@example.com")
	if err != nil || !slices.Contains(p.Roles, "admin") {
		t.Fatalf("the principal single sign-on created: %+v (%v)", p, err)
	}
	// The session is the admin API's: an admin action works from the page.
	run(t, ctx, "keys", chromedp.Navigate(origin+"/console/keys"), chromedp.WaitVisible(css("#create-key")))
}
