package e2e

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/console"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
)

// chromium returns Debian's chromium. Without it the browser tests skip, with
// a message, unless CI is set: in CI they fail.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if ci := os.Getenv("CI"); ci != "" && ci != "false" && ci != "0" {
		t.Fatal("the console's browser tests need chromium, and CI is set: install it (apt-get install -y chromium)")
	}
	t.Skip("SKIPPED, not passed: chromium is not installed, so the console's browser tests cannot run (apt-get install -y chromium)")
	return ""
}

// browser starts headless chromium with a fresh profile.
func browser(t *testing.T) context.Context {
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium(t)), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelT(); cancelC(); cancelA() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// artifacts is where screenshots go: $GATEHOUSE_ARTIFACTS (kept) or a
// temporary directory.
func artifacts(t *testing.T) string {
	if d := os.Getenv("GATEHOUSE_ARTIFACTS"); d != "" {
		dir := filepath.Join(d, t.Name())
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	return t.TempDir()
}

func shot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

type css = chromedp.CSS

// run runs browser steps; on failure it shows the page.
func run(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		html, _ := chromedp.Run(ctx, chromedp.OuterHTML(css("body")))
		t.Fatalf("%s: %v\npage: %.3000s", what, err, html)
	}
}

// get runs one browser action that returns a value.
func get[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		html, _ := chromedp.Run(ctx, chromedp.OuterHTML(css("body")))
		t.Fatalf("%s: %v\npage: %.3000s", what, err, html)
	}
	return v
}

func awaitPromise(p *runtime.EvaluateParams) { p.AwaitPromise = new(true) }

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// enrolConsoleUser makes an admin user with a password and TOTP whose
// confirming code is the previous step's, so the current step is left for
// the browser's sign-in and the next for its step-up.
func enrolConsoleUser(t *testing.T, f *fixture, name string) string {
	secret, _ := enrolConsoleUserRecovery(t, f, name)
	return secret
}

// enrolConsoleUserRecovery is enrolConsoleUser that also returns the user's
// recovery codes.
func enrolConsoleUserRecovery(t *testing.T, f *fixture, name string) (string, []string) {
	t.Helper()
	session := passwordUser(t, f.gateway, name, []string{"admin"})
	return enrolTOTP(t, f.gateway, session, time.Now().Add(-30*time.Second))
}

// chatRequestID makes a call with key and returns its status and request id.
func chatRequestID(t *testing.T, base, key string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("x-request-id")
}

// TestConsoleInBrowser drives the console in headless chromium against a
// real gateway: password+TOTP sign-in, a key created and shown once, revoked
// and refused by the data plane, CSRF refusals (same-site without a token,
// and a forged cross-site form), the CSP, a log record's proof verified,
// passkey registration and sign-in through Chrome's virtual authenticator,
// and the step-up prompt on a sensitive action.
func TestConsoleInBrowser(t *testing.T) {
	ctx := browser(t)
	port := freePort(t)
	origin := "http://localhost:" + port // a secure context without TLS, and a valid WebAuthn RP ID
	f := newFixture(t, gwOptions{mutate: func(c *config.Config) {
		c.AdminListen = "127.0.0.1:" + port
		c.WebAuthn = config.WebAuthn{RPID: "localhost", Origins: []string{origin}}
	}})
	secret, recovery := enrolConsoleUserRecovery(t, f, "alice")
	scope, team, period, limit, hard := "team", "research", "month", int64(5_000_000), true
	if _, err := f.admin.CreateBudget(context.Background(), client.BudgetInput{Scope: &scope, ScopeID: &team, Period: &period, LimitMicros: &limit, Hard: &hard}); err != nil {
		t.Fatal(err)
	}
	// Sensitive admin actions need a second factor at most 1s old (the
	// built-in step_up_max_age policy, applied after the fixture's set-up).
	cur, err := f.admin.Policies(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	files := maps.Clone(cur.Files)
	files["step-up.cedar"] = policy.StepUpPolicy(time.Second)
	if _, err := f.admin.ApplyPolicies(context.Background(), files, "step-up for the console test"); err != nil {
		t.Fatal(err)
	}
	dir := artifacts(t)
	t.Logf("screenshots in %s", dir)

	// The CSP and the other headers, on every page.
	resp, err := http.Get(origin + "/console/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Content-Security-Policy"); got != console.CSP || !strings.Contains(got, "script-src 'self'") || strings.Contains(got, "unsafe-inline") {
		t.Fatalf("Content-Security-Policy %q", got)
	}
	if resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("headers %v", resp.Header)
	}
	run(t, ctx, "console without a session", chromedp.Navigate(origin+"/console/keys"), chromedp.WaitVisible(css("#login-form"))) // sent to sign in
	if !get(t, ctx, "no inline script or style", chromedp.Evaluate[bool](`document.querySelectorAll("script:not([src])").length === 0 && !document.documentElement.outerHTML.includes("style=")`)) {
		t.Fatal("a page has inline script or style")
	}
	// The browser enforces the CSP: an injected inline script does not run.
	if get(t, ctx, "CSP enforced", chromedp.Evaluate[bool](`(() => { const s = document.createElement("script"); s.textContent = "window.__ran = true"; document.body.appendChild(s); return window.__ran === true; })()`)) {
		t.Fatal("an inline script ran despite the CSP")
	}
	shot(t, ctx, dir, "01-login")

	// Sign in with password + TOTP; the session cookie is not readable by scripts.
	run(t, ctx, "sign in", chromedp.SendKeys(css("#user"), "alice"), chromedp.SendKeys(css("#password"), "correct horse battery staple"),
		chromedp.SendKeys(css("#code"), code(t, secret, time.Now())), chromedp.Click(css("#sign-in")),
		chromedp.WaitVisible(css(`nav[aria-label="Console"]`)))
	if title := get(t, ctx, "title", chromedp.Text(css("h1"))); title != "Keys" { // back where the redirect started
		t.Fatalf("after sign-in: %q", title)
	}
	if c := get(t, ctx, "cookie", chromedp.Evaluate[string](`document.cookie`)); c != "" {
		t.Fatalf("scripts can read cookies: %q", c)
	}
	run(t, ctx, "overview", chromedp.Navigate(origin+"/console/"), chromedp.WaitVisible(css(".tiles")))
	shot(t, ctx, dir, "02-overview")

	// Create a key: its secret is shown once, with a copy button.
	run(t, ctx, "create a key", chromedp.Navigate(origin+"/console/keys"), chromedp.WaitVisible(css("#create-key")),
		chromedp.SetValue(css("#k-principal"), "agent"), chromedp.SendKeys(css("#k-name"), "from-the-browser"), chromedp.SendKeys(css("#k-models"), "gpt-*"),
		chromedp.Click(css("#create-key-submit")), chromedp.WaitVisible(css("#secret")), chromedp.WaitVisible(css("#copy")))
	shown := get(t, ctx, "secret", chromedp.Value(css("#secret")))
	if !strings.HasPrefix(shown, "gk_") {
		t.Fatalf("the created key's secret: %q", shown)
	}
	shot(t, ctx, dir, "03-key-created")
	keys, err := f.admin.ListKeys(context.Background(), client.KeyFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var newID string
	for _, k := range keys {
		if k.Name == "from-the-browser" {
			newID = k.ID
		}
	}
	if newID == "" {
		t.Fatal("the key created in the browser is not in the admin API")
	}
	// The key's own rate limit is shown beside it (budgets are a sensitive
	// action under this fixture's step-up policy; the cell shows there is none).
	if _, err := f.admin.SetLimit(context.Background(), client.Limit{Scope: "key", ScopeID: newID, RPM: 60}); err != nil {
		t.Fatal(err)
	}
	run(t, ctx, "keys again", chromedp.Navigate(origin+"/console/keys"), chromedp.WaitVisible(css("#keys")))
	if page := get(t, ctx, "keys page", chromedp.OuterHTML(css("html"))); strings.Contains(page, shown) || !strings.Contains(page, newID) {
		t.Fatal("the key list shows the secret again, or not the key")
	}
	if cell := get(t, ctx, "key's budget and limits", chromedp.Text(css(fmt.Sprintf(`tr[data-key=%q] .key-limits`, newID)))); !strings.Contains(cell, "no budget of its own") || !strings.Contains(cell, "60 rpm") {
		t.Fatalf("the key's budget and limits cell: %q", cell)
	}
	status, reqID := chatRequestID(t, f.dataURL, shown)
	if status != 200 {
		t.Fatalf("the new key on the data plane: %d", status)
	}
	shot(t, ctx, dir, "04-keys")

	// CSRF: a same-site request without the token is refused, and so is a
	// forged form from another site; the fixture's key stays active.
	csrfStatus := get(t, ctx, "post without a CSRF token", chromedp.Evaluate[int](fmt.Sprintf(`fetch("/console/keys/%s/revoke", {method: "POST", credentials: "same-origin",
		headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: "csrf=forged"}).then(r => r.status)`, f.keyID), awaitPromise))
	if csrfStatus != http.StatusForbidden {
		t.Fatalf("a POST with a wrong CSRF token: %d", csrfStatus)
	}
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="%s/console/keys/%s/revoke"><input name="csrf" value="guess"><button id="go">win a prize</button></form>`, origin, f.keyID)
	}))
	defer evil.Close()
	run(t, ctx, "forged cross-site form", chromedp.Navigate(evil.URL), chromedp.Click(css("#go")), chromedp.WaitVisible(css("main")))
	if k, err := f.admin.Key(context.Background(), f.keyID); err != nil || k.State != "active" {
		t.Fatalf("after forged requests the key is %q (%v)", k.State, err)
	}
	shot(t, ctx, dir, "05-forged-post-refused")

	// Revoke the new key in the console; the data plane refuses it at once.
	run(t, ctx, "revoke", chromedp.Navigate(origin+"/console/keys"), chromedp.Click(css(fmt.Sprintf(`form[action="/console/keys/%s/revoke"] button`, newID))),
		chromedp.WaitVisible(css(fmt.Sprintf(`tr[data-key="%s"] .state.revoked`, newID))))
	if s, c := chatWith(t, f.dataURL, "Bearer "+shown, ""); s != 401 || c != "key_revoked" {
		t.Fatalf("a key revoked in the console: %d %q", s, c)
	}

	// The audit log: the call's records, each proof checked against the
	// latest signed checkpoint.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, b := adminDo(t, f.gateway, "GET", "/log/find/"+reqID, "", "", nil)
		if r.StatusCode == 200 && !strings.Contains(string(b), "[]") {
			if r2, _ := adminDo(t, f.gateway, "GET", "/log/proof/"+firstIndex(string(b)), "", "", nil); r2.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the call's records never reached a checkpoint")
		}
		time.Sleep(100 * time.Millisecond)
	}
	run(t, ctx, "log proof", chromedp.Navigate(origin+"/console/log?request="+reqID), chromedp.WaitVisible(css(".verified")))
	if v := get(t, ctx, "verified", chromedp.Text(css(".verified"))); !strings.Contains(v, "verified") {
		t.Fatalf("log page: %q", v)
	}
	if n := get(t, ctx, "failed proofs", chromedp.Evaluate[int](`document.querySelectorAll(".failed").length`)); n != 0 {
		t.Fatalf("%d records failed their proof", n)
	}
	shot(t, ctx, dir, "06-log-proof")

	// What-if: a candidate policy that forbids everything, replayed against
	// the recorded calls, would deny them; nothing is applied.
	run(t, ctx, "what if", chromedp.Navigate(origin+"/console/policies"), chromedp.WaitVisible(css("#policy-form")),
		chromedp.SetValue(css("#p-file"), "what-if.cedar"), chromedp.SetValue(css("#p-text"), `@id("deny-everything") forbid (principal, action, resource);`),
		chromedp.Click(css("#whatif")), chromedp.WaitVisible(css("#whatif-changes")))
	if row := get(t, ctx, "what-if row", chromedp.Text(css("#whatif-changes tbody tr"))); !strings.Contains(row, "deny") || !strings.Contains(row, "deny-everything") {
		t.Fatalf("what-if: %q", row)
	}
	shot(t, ctx, dir, "07-whatif")
	if s, _ := chatWith(t, f.dataURL, "Bearer "+f.key, ""); s != 200 {
		t.Fatalf("what-if applied the policy: %d", s)
	}

	for _, p := range []string{"people", "budgets", "usage", "policies", "findings", "providers"} {
		run(t, ctx, p, chromedp.Navigate(origin+"/console/"+p), chromedp.WaitVisible(css("h1")))
		if e := get(t, ctx, p+" errors", chromedp.Evaluate[int](`document.querySelectorAll(".error").length`)); e != 0 {
			t.Fatalf("the %s page shows an error", p)
		}
		shot(t, ctx, dir, "07-"+p)
	}

	// Passkeys: register one with Chrome's virtual authenticator, sign out,
	// sign in with it.
	run(t, ctx, "virtual authenticator", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		if _, err := chromedp.Call(ctx, webauthn.Enable, webauthn.EnableParams{}); err != nil {
			return err
		}
		_, err := chromedp.Call(ctx, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{Options: &webauthn.VirtualAuthenticatorOptions{
			Protocol: webauthn.AuthenticatorProtocolCtap2, Transport: webauthn.AuthenticatorTransportInternal, HasResidentKey: true,
			HasUserVerification: true, IsUserVerified: true, AutomaticPresenceSimulation: true}})
		return err
	}))
	// Adding a factor needs a fresh proof with one the user has: the
	// sign-in used this TOTP step and the step-up below needs the next, so a
	// recovery code.
	run(t, ctx, "register a passkey", chromedp.Navigate(origin+"/console/account"), chromedp.WaitVisible(css("#passkey-register")),
		chromedp.SendKeys(css("#passkey-code"), recovery[0]), chromedp.Click(css("#passkey-register")))
	get(t, ctx, "registration", chromedp.Poll[bool](`document.getElementById("passkey-status").textContent.length > 0`, chromedp.WithPollingTimeout(20*time.Second)))
	if st := get(t, ctx, "status", chromedp.Text(css("#passkey-status"))); st != "Passkey added." {
		t.Fatalf("passkey registration: %q", st)
	}
	run(t, ctx, "sign out", chromedp.Navigate(origin+"/console/account"), chromedp.WaitVisible(css(".who button")), chromedp.Click(css(".who button")), chromedp.WaitVisible(css("#login-form")))
	run(t, ctx, "sign in with the passkey", chromedp.SendKeys(css("#user"), "alice"), chromedp.Click(css("#passkey-login")), chromedp.WaitVisible(css(".tiles")))
	shot(t, ctx, dir, "08-passkey-signed-in")

	// Step-up: an admin key is a sensitive action; once the sign-in's second
	// factor is older than step_up_max_age the console asks for a code, then
	// completes the action.
	time.Sleep(2100 * time.Millisecond) // let the passkey's second factor age past 1s (ages count whole seconds)
	run(t, ctx, "sensitive action", chromedp.Navigate(origin+"/console/keys"), chromedp.WaitVisible(css("#create-key")),
		chromedp.SetValue(css("#k-principal"), "alice"), chromedp.SendKeys(css("#k-name"), "break-glass"), chromedp.Click(css("#k-admin")),
		chromedp.Click(css("#create-key-submit")), chromedp.WaitVisible(css("#step-up")))
	shot(t, ctx, dir, "09-step-up")
	run(t, ctx, "step up", chromedp.SendKeys(css("#step-up-code"), code(t, secret, time.Now().Add(30*time.Second))), chromedp.Submit(css("#step-up")),
		chromedp.WaitVisible(css("#secret")))
	if shown = get(t, ctx, "admin secret", chromedp.Value(css("#secret"))); !strings.HasPrefix(shown, "gka_") {
		t.Fatalf("after step-up: %q", shown)
	}
	shot(t, ctx, dir, "10-admin-key-after-step-up")
	for range 3 {
		chatRequestID(t, f.dataURL, f.key)
	}
	run(t, ctx, "overview after calls", chromedp.Navigate(origin+"/console/"), chromedp.WaitVisible(css(".bars")))
	shot(t, ctx, dir, "11-overview") // docs/img/console.png

	// Signing out ends the console session: pages ask to sign in again.
	run(t, ctx, "sign out", chromedp.Navigate(origin+"/console/"), chromedp.WaitVisible(css(".who button")), chromedp.Click(css(".who button")),
		chromedp.WaitVisible(css("#login-form")), chromedp.Navigate(origin+"/console/keys"), chromedp.WaitVisible(css("#login-form")))
}

func firstIndex(findJSON string) string {
	_, rest, _ := strings.Cut(findJSON, "[")
	n, _, _ := strings.Cut(rest, ",")
	n, _, _ = strings.Cut(n, "]")
	return strings.TrimSpace(n)
}
