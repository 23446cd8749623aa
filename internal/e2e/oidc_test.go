package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/cli"
	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/sso"
	"github.com/gatehouse-gw/gatehouse/internal/sso/ssotest"
)

// TestOIDCLogin: 'gatehouse login --oidc' runs the device flow against an
// in-test identity provider; the ID token becomes a session whose user was
// created from the token, with teams and roles from its groups, updated at
// every login. Unmapped groups, foreign audiences and expired tokens are refused.
func TestOIDCLogin(t *testing.T) {
	idp := ssotest.New(t)
	f := newFixture(t, gwOptions{mutate: func(c *config.Config) {
		c.OIDCLogin = sso.Config{Issuer: idp.URL, ClientID: idp.ClientID, Groups: []sso.Group{
			{Group: "ml", Teams: []string{"research"}, Roles: []string{"member"}},
			{Group: "platform", Roles: []string{"admin"}},
		}}
	}})
	ctx := context.Background()
	addr := "http://" + f.srv.AdminAddr()
	login := func() (string, string) {
		t.Helper()
		code, out, errs := runCLIAt(t, addr, "", "login", "--oidc")
		if code != 0 {
			t.Fatalf("login --oidc: exit %d\n%s%s", code, out, errs)
		}
		m := regexp.MustCompile(`GATEHOUSE_ADMIN_KEY=(gks_\S+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no session in %q", out)
		}
		return m[1], errs
	}

	// A platform engineer: admin; the IdP reports a second factor.
	idp.SetUser(map[string]any{"sub": "u-ada", "email": "ada@example.com", "groups": []string{"platform", "ml"}, "amr": []string{"pwd", "hwk"}})
	session, prompt := login()
	if !strings.Contains(prompt, idp.URL+"/activate") || !strings.Contains(prompt, "WDJB-MJHT") || idp.Polls() != 1 {
		t.Fatalf("device flow prompt %q, polls %d", prompt, idp.Polls())
	}
	admin := client.New(addr, session)
	if _, err := admin.CreateTeam(ctx, "made-by-sso"); err != nil {
		t.Fatalf("an admin by group creates a team: %v", err)
	}
	p, _, err := f.admin.Principal(ctx, "ada@example.com")
	if err != nil || p.Kind != "user" || !slices.Equal(p.Roles, []string{"admin", "member"}) || len(p.Teams) != 1 {
		t.Fatalf("provisioned user: %+v %v", p, err)
	}

	// The same user loses the platform group: the next login makes it a member.
	idp.SetUser(map[string]any{"sub": "u-ada", "email": "ada@example.com", "groups": []string{"ml"}})
	session, _ = login()
	if _, err := client.New(addr, session).CreateTeam(ctx, "not-allowed"); !isStatus(err, 403) {
		t.Fatalf("a member creates a team: %v, want 403", err)
	}
	if p, _, _ = f.admin.Principal(ctx, "ada@example.com"); !slices.Equal(p.Roles, []string{"member"}) {
		t.Fatalf("roles after the group was removed: %v", p.Roles)
	}

	// Refusals, straight at the API.
	var mfa bool
	post := func(idToken string) (int, string) {
		body, _ := json.Marshal(map[string]string{"id_token": idToken})
		resp, b := adminDo(t, f.gateway, "POST", "/v1/auth/oidc", "", string(body), nil)
		var e struct {
			Error struct{ Code string } `json:"error"`
			MFA   bool                  `json:"mfa"`
		}
		json.Unmarshal(b, &e)
		mfa = e.MFA
		return resp.StatusCode, e.Error.Code
	}
	user := map[string]any{"sub": "u-bo", "email": "bo@example.com", "groups": []string{"ml"}}
	if s, _ := post(idp.Mint(t, idp.ClientID, user, time.Minute)); s != 200 || mfa {
		t.Fatalf("a valid token without amr: %d, mfa %v", s, mfa)
	}
	withOTP := map[string]any{"sub": "u-bo", "email": "bo@example.com", "groups": []string{"ml"}, "amr": []string{"otp"}}
	if s, _ := post(idp.Mint(t, idp.ClientID, withOTP, time.Minute)); s != 200 || !mfa {
		t.Fatalf("a valid token with amr otp: %d, mfa %v", s, mfa)
	}
	for name, c := range map[string]struct {
		token  string
		status int
		code   string
	}{
		"unmapped group":   {idp.Mint(t, idp.ClientID, map[string]any{"sub": "u-cy", "email": "cy@example.com", "groups": []string{"sales"}}, time.Minute), 403, "no_access"},
		"foreign audience": {idp.Mint(t, "another-app", user, time.Minute), 401, "invalid_login"},
		"expired":          {idp.Mint(t, idp.ClientID, user, -time.Minute), 401, "invalid_login"},
		"another issuer":   {ssotest.New(t).Mint(t, idp.ClientID, user, time.Minute), 401, "invalid_login"},
		"empty":            {"", 400, "invalid_value"},
	} {
		if s, code := post(c.token); s != c.status || (c.code != "" && code != c.code) {
			t.Errorf("%s: %d %q, want %d %q", name, s, code, c.status, c.code)
		}
	}
	if _, _, err := f.admin.Principal(ctx, "cy@example.com"); !isStatus(err, 404) {
		t.Errorf("a refused login created a principal: %v", err)
	}
}

// TestOIDCNotConfigured: without oidc_login the CLI says so.
func TestOIDCNotConfigured(t *testing.T) {
	g := startGateway(t, gwOptions{})
	code, _, errs := runCLIAt(t, "http://"+g.srv.AdminAddr(), "", "login", "--oidc")
	if code == 0 || !strings.Contains(errs, "OIDC login is not configured") {
		t.Fatalf("exit %d, %q", code, errs)
	}
}

// TestOIDCRequireMFA: with require_mfa, a login whose ID token reports no
// second factor (amr) is refused.
func TestOIDCRequireMFA(t *testing.T) {
	idp := ssotest.New(t)
	g := startGateway(t, gwOptions{mutate: func(c *config.Config) {
		c.RequireMFA = true
		c.OIDCLogin = sso.Config{Issuer: idp.URL, ClientID: idp.ClientID, Groups: []sso.Group{{Group: "platform", Teams: []string{"ops"}, Roles: []string{"admin"}}}}
	}})
	if _, err := g.admin.CreateTeam(context.Background(), "ops"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		amr    []string
		status int
	}{{nil, 403}, {[]string{"pwd"}, 403}, {[]string{"pwd", "mfa"}, 200}} {
		user := map[string]any{"sub": "u-ada", "email": "ada@example.com", "groups": []string{"platform"}}
		if c.amr != nil {
			user["amr"] = c.amr
		}
		body, _ := json.Marshal(map[string]string{"id_token": idp.Mint(t, idp.ClientID, user, time.Minute)})
		if resp, b := adminDo(t, g, "POST", "/v1/auth/oidc", "", string(body), nil); resp.StatusCode != c.status {
			t.Errorf("amr %v: %d %s, want %d", c.amr, resp.StatusCode, b, c.status)
		}
	}
}

// TestOIDCLoginBrowser: 'gatehouse login --oidc --browser' runs the
// authorization code flow with PKCE and a loopback redirect; the "browser"
// follows the provider's redirect to the CLI's listener. A callback with
// another state is refused.
func TestOIDCLoginBrowser(t *testing.T) {
	idp := ssotest.New(t)
	f := newFixture(t, gwOptions{mutate: func(c *config.Config) {
		c.OIDCLogin = sso.Config{Issuer: idp.URL, ClientID: idp.ClientID, Groups: []sso.Group{{Group: "platform", Teams: []string{"research"}, Roles: []string{"admin"}}}}
	}})
	idp.SetUser(map[string]any{"sub": "u-eve", "email": "eve@example.com", "groups": []string{"platform"}})
	run := func(browser func(string) error) (int, string, string) {
		var out, errb bytes.Buffer
		env := map[string]string{"GATEHOUSE_ADDR": "http://" + f.srv.AdminAddr()}
		code := cli.Run(context.Background(), []string{"login", "--oidc", "--browser"}, &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb,
			Getenv: func(k string) string { return env[k] }, OpenBrowser: browser})
		return code, out.String(), errb.String()
	}
	follow := func(u string) error { // a browser: the provider redirects to the CLI
		resp, err := http.Get(u)
		if err != nil {
			return err
		}
		return resp.Body.Close()
	}
	code, out, errs := run(follow)
	m := regexp.MustCompile(`GATEHOUSE_ADMIN_KEY=(gks_\S+)`).FindStringSubmatch(out)
	if code != 0 || m == nil || !strings.Contains(errs, idp.URL+"/authorize?") || !strings.Contains(errs, "code_challenge_method=S256") {
		t.Fatalf("login --oidc --browser: exit %d\n%s%s", code, out, errs)
	}
	if _, err := client.New("http://"+f.srv.AdminAddr(), m[1]).ListTeams(context.Background()); err != nil {
		t.Fatalf("the browser-flow session: %v", err)
	}

	forged := func(u string) error { // the callback arrives with another state
		noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := noFollow.Get(u)
		if err != nil {
			return err
		}
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		q := loc.Query()
		q.Set("state", "attacker")
		loc.RawQuery = q.Encode()
		return follow(loc.String())
	}
	if code, out, errs := run(forged); code == 0 || !strings.Contains(errs, "state does not match") {
		t.Fatalf("a callback with another state: exit %d\n%s%s", code, out, errs)
	}
}
