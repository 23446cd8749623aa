package e2e

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/cli"
	"github.com/gatehouse-gw/gatehouse/internal/config"
)

func code(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	c, err := totp.GenerateCode(secret, at)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// enrolUser makes a user with a password and confirmed TOTP; it returns a
// session client and the TOTP secret. The confirming code used the current step.
func enrolUser(t *testing.T, f *fixture, name string, roles []string) (*client.Client, string) {
	t.Helper()
	session := passwordUser(t, f.gateway, name, roles)
	secret, _ := enrolTOTP(t, f.gateway, session, time.Now())
	return client.New("http://"+f.srv.AdminAddr(), session), secret
}

// TestLoginTOTPAndStepUp: password + TOTP login, replay refused, recovery
// codes, and a policy that demands a recent second factor for admin writes.
func TestLoginTOTPAndStepUp(t *testing.T) {
	t.Parallel() // independent (own gateway, store and upstream); mostly one core of work
	f := newFixture(t, gwOptions{})
	ctx := context.Background()
	anon := client.New("http://"+f.srv.AdminAddr(), "")
	// Password through the CLI, from stdin.
	kind, teams, roles, name := "user", []string{"research"}, []string{"admin"}, "alice"
	f.admin.CreatePrincipal(ctx, client.PrincipalInput{Name: &name, Kind: &kind, Teams: &teams, Roles: &roles})
	var out, errb bytes.Buffer
	env := map[string]string{"GATEHOUSE_ADDR": "http://" + f.srv.AdminAddr(), "GATEHOUSE_ADMIN_KEY": f.adminKey}
	if code := cli.Run(ctx, []string{"users", "password", "alice", "--password-stdin"}, &cli.Env{Stdin: strings.NewReader("correct horse battery staple\n"),
		Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }}); code != 0 {
		t.Fatalf("users password: %s", errb.String())
	}
	if _, _, err := anon.Login(ctx, "alice", "wrong password here", ""); !isStatus(err, 401) {
		t.Fatalf("wrong password: %v", err)
	}
	session, _, err := anon.Login(ctx, "alice", "correct horse battery staple", "")
	if err != nil {
		t.Fatal(err)
	}
	sc := client.New("http://"+f.srv.AdminAddr(), session)
	if _, err := sc.ListTeams(ctx); err != nil {
		t.Fatalf("a session works as an admin credential: %v", err)
	}
	secret, _, _ := sc.EnrollTOTP(ctx)
	now := time.Now()
	if _, err := sc.ConfirmTOTP(ctx, "000000"); !isStatus(err, 401) {
		t.Fatalf("confirm with a wrong code: %v", err)
	}
	recovery, err := sc.ConfirmTOTP(ctx, code(t, secret, now))
	if err != nil || len(recovery) != 10 {
		t.Fatalf("confirm: %v %d", err, len(recovery))
	}
	// With TOTP on, a password alone is not enough; the confirming code is spent.
	if _, _, err := anon.Login(ctx, "alice", "correct horse battery staple", ""); !isStatus(err, 401) {
		t.Fatalf("password only: %v", err)
	}
	if _, _, err := anon.Login(ctx, "alice", "correct horse battery staple", code(t, secret, now)); !isStatus(err, 401) {
		t.Fatalf("replayed code: %v", err)
	}
	s2, _, err := anon.Login(ctx, "alice", "correct horse battery staple", code(t, secret, now.Add(30*time.Second)))
	if err != nil {
		t.Fatalf("next code: %v", err)
	}
	// Recovery codes work once.
	rc := client.New("http://"+f.srv.AdminAddr(), "")
	if _, err := loginRecovery(ctx, rc, recovery[0]); err != nil {
		t.Fatalf("recovery code: %v", err)
	}
	if _, err := loginRecovery(ctx, rc, recovery[0]); !isStatus(err, 401) {
		t.Fatalf("recovery code twice: %v", err)
	}

	// Step-up by policy: admin writes need a second factor younger than 5 minutes.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "p.cedar"), []byte(string(mustRead(t, "../policy/defaults.cedar"))+`
@id("step-up-for-writes")
forbid (principal, action in Action::"admin.write", resource)
when { context.mfa_age_seconds < 0 || context.mfa_age_seconds > 300 };
`), 0o644)
	files := map[string]string{"p.cedar": string(mustRead(t, filepath.Join(dir, "p.cedar")))}
	fresh := client.New("http://"+f.srv.AdminAddr(), s2)
	if _, err := fresh.ApplyPolicies(ctx, files, "step-up"); err != nil {
		t.Fatalf("apply with a fresh second factor: %v", err)
	}
	_, err = f.admin.CreateTeam(ctx, "no-mfa")
	var ce *client.Error
	if !isStatus(err, 403) || !asClientErr(err, &ce) || !strings.Contains(ce.Message, "step-up-for-writes") || !strings.Contains(ce.Message, "step up") {
		t.Fatalf("an admin key without MFA writing: %v", err)
	}
	if _, err := f.admin.ListTeams(ctx); err != nil {
		t.Fatalf("reads still work: %v", err)
	}
	if _, err := fresh.CreateTeam(ctx, "with-mfa"); err != nil {
		t.Fatalf("a session with fresh MFA writing: %v", err)
	}
	// Each TOTP step is good once, and only ±1 step of skew is accepted, so this
	// test's third second factor is a recovery code.
	if err := sc.StepUp(ctx, code(t, secret, now.Add(30*time.Second))); !isStatus(err, 401) {
		t.Fatalf("step-up with a spent code: %v", err)
	}
	if _, err := sc.DoJSON(ctx, "POST", "/v1/auth/step-up", map[string]string{"recovery_code": recovery[1]}, nil); err != nil {
		t.Fatalf("step-up: %v", err)
	}
	if _, err := sc.CreateTeam(ctx, "after-step-up"); err != nil {
		t.Fatalf("after step-up: %v", err)
	}
}

func loginRecovery(ctx context.Context, c *client.Client, rc string) (string, error) {
	var out struct {
		Session string `json:"session"`
	}
	_, err := c.DoJSON(ctx, "POST", "/v1/auth/login", map[string]string{"user": "alice", "password": "correct horse battery staple", "recovery_code": rc}, &out)
	return out.Session, err
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func asClientErr(err error, ce **client.Error) bool {
	e, ok := err.(*client.Error)
	*ce = e
	return ok
}

// TestMFAProtectedKey: a key marked mfa_required cannot call the data plane
// itself; its owner exchanges it with a TOTP code for a short-lived token.
func TestMFAProtectedKey(t *testing.T) {
	f := newFixture(t, gwOptions{})
	ctx := context.Background()
	_, secret := enrolUser(t, f, "bob", []string{"member"})
	k, err := f.admin.CreateKey(ctx, client.KeyInput{Principal: "bob", MFARequired: true})
	if err != nil {
		t.Fatal(err)
	}
	if s, c := chatWith(t, f.dataURL, "Bearer "+k.Secret, ""); s != 403 || c != "mfa_required" {
		t.Fatalf("mfa key used directly: %d %q", s, c)
	}
	if s, r := postToken(t, f.dataURL, url.Values{"grant_type": {"client_credentials"}, "client_secret": {k.Secret}}, nil); s != 401 || !strings.Contains(r.Description, "TOTP") {
		t.Fatalf("exchange without a code: %d %+v", s, r)
	}
	next := code(t, secret, time.Now().Add(30*time.Second))
	s, tr := postToken(t, f.dataURL, url.Values{"grant_type": {"client_credentials"}, "client_secret": {k.Secret}, "totp": {next}}, nil)
	if s != 200 {
		t.Fatalf("exchange with a code: %d %+v", s, tr)
	}
	if s, c := chatWith(t, f.dataURL, "Bearer "+tr.AccessToken, ""); s != 200 {
		t.Fatalf("the MFA token: %d %q", s, c)
	}
	if s, _ := postToken(t, f.dataURL, url.Values{"grant_type": {"client_credentials"}, "client_secret": {k.Secret}, "totp": {next}}, nil); s != 401 {
		t.Fatalf("the same code again: %d", s)
	}
	// Service accounts cannot hold MFA keys (they have no second factor).
	if _, err := f.admin.CreateKey(ctx, client.KeyInput{Principal: "agent", MFARequired: true}); !isStatus(err, 400) {
		t.Fatalf("mfa key for a service account: %v", err)
	}
}

// TestStepUpMaxAge: with step_up_max_age, sensitive admin actions need a
// recent second factor (the built-in policy), other actions do not; admin keys
// cannot step up, a user's fresh TOTP session can.
func TestStepUpMaxAge(t *testing.T) {
	// Users get their passwords before step_up_max_age is on (the documented
	// bootstrap): with it on, an admin key cannot set one.
	g0 := startGateway(t, gwOptions{})
	ctx := context.Background()
	name, teams := "agent", []string{"research"}
	if _, err := g0.admin.CreateTeam(ctx, "research"); err != nil {
		t.Fatal(err)
	}
	if _, err := g0.admin.CreatePrincipal(ctx, client.PrincipalInput{Name: &name, Teams: &teams}); err != nil {
		t.Fatal(err)
	}
	kind, roles := "user", []string{"admin"}
	for _, u := range []string{"plain-user", "root"} {
		if _, err := g0.admin.CreatePrincipal(ctx, client.PrincipalInput{Name: &u, Kind: &kind, Teams: &teams, Roles: &roles}); err != nil {
			t.Fatal(err)
		}
		if err := g0.admin.SetPassword(ctx, u, "correct horse battery staple"); err != nil {
			t.Fatal(err)
		}
	}
	g := restartWith(t, g0, func(c *configT) { c.StepUpMaxAge = config.Duration(5 * time.Minute) })
	f := &fixture{gateway: g}
	if _, err := f.admin.CreateProvider(ctx, client.ProviderInput{Name: "p", Type: "openai", BaseURL: "http://127.0.0.1:1/v1", Models: []string{"gpt-*"}, Keys: []string{"sk-x"}}); !isStatus(err, 403) {
		t.Fatalf("an admin key adding a provider: %v", err)
	}
	limit, scope, period := int64(1_000_000), "org", "day"
	budget := client.BudgetInput{Scope: &scope, Period: &period, LimitMicros: &limit}
	var ce *client.Error
	if _, err := f.admin.CreateBudget(ctx, budget); !asClientErr(err, &ce) || ce.Code != "step_up_required" || !strings.Contains(ce.Message, "budgets.create") || !strings.Contains(ce.Message, "5m0s") {
		t.Fatalf("an admin key creating a budget: %v", err)
	}
	if _, err := f.admin.CreateKey(ctx, client.KeyInput{Principal: "agent", Kind: "admin"}); !isStatus(err, 403) {
		t.Fatalf("an admin key creating an admin key: %v", err)
	}
	if err := f.admin.SetPassword(ctx, "plain-user", "another long password"); !asClientErr(err, &ce) || ce.Code != "step_up_required" {
		t.Fatalf("an admin key setting a password: %v", err)
	}
	if _, err := f.admin.CreateKey(ctx, client.KeyInput{Principal: "agent", Name: "plain"}); err != nil {
		t.Fatalf("a virtual key is not sensitive: %v", err)
	}
	if _, err := f.admin.CreateTeam(ctx, "ordinary"); err != nil {
		t.Fatalf("a team is not sensitive: %v", err)
	}
	// A user session without a second factor is refused like an admin key.
	ps, _, err := client.New("http://"+f.srv.AdminAddr(), "").Login(ctx, "plain-user", "correct horse battery staple", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.New("http://"+f.srv.AdminAddr(), ps).CreateBudget(ctx, budget); !asClientErr(err, &ce) || ce.Code != "step_up_required" {
		t.Fatalf("a session without a second factor: %v", err)
	}
	// A session whose user just passed TOTP (confirming enrolment, then a step-up) may.
	rs, _, err := client.New("http://"+f.srv.AdminAddr(), "").Login(ctx, "root", "correct horse battery staple", "")
	if err != nil {
		t.Fatal(err)
	}
	sc := client.New("http://"+f.srv.AdminAddr(), rs)
	secret, _, err := sc.EnrollTOTP(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.ConfirmTOTP(ctx, code(t, secret, time.Now())); err != nil {
		t.Fatal(err)
	}
	if err := sc.StepUp(ctx, code(t, secret, time.Now().Add(30*time.Second))); err != nil {
		t.Fatalf("step up: %v", err)
	}
	if _, err := sc.CreateBudget(ctx, budget); err != nil {
		t.Fatalf("after stepping up: %v", err)
	}
	if _, err := sc.CreateKey(ctx, client.KeyInput{Principal: "root", Kind: "admin"}); err != nil {
		t.Fatalf("an admin key after stepping up: %v", err)
	}
}
