package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/cli"
	"github.com/gatehouse-gw/gatehouse/internal/config"
)

// Red-team tests of issue #10's identity defences (rt10): each is an attack
// that either failed before its fix or stays as a regression test because
// the defence held.

// postFrom posts JSON to the admin listener as if from src (the gateway
// trusts X-Forwarded-For in these tests) and returns status, Retry-After and
// the error code of the body.
func postFrom(t *testing.T, g *gateway, path, src string, in any) (int, string, string) {
	t.Helper()
	b, _ := json.Marshal(in)
	req, _ := http.NewRequest("POST", "http://"+g.srv.AdminAddr()+path, strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "rt10/1.0")
	if src != "" {
		req.Header.Set("X-Forwarded-For", src)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	json.Unmarshal(body, &e)
	code := e.Error.Code
	if code == "" {
		code = string(body)
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), code
}

// TestIPv6RotationWithinA64IsOneSource: an attacker with one IPv6 /64 (what
// one host or customer is routinely given) sends every guess from a fresh
// address of it. The per-address failure limit and the per-address request
// throttle must count the /64 as one source; another /64 stays unaffected.
func TestIPv6RotationWithinA64IsOneSource(t *testing.T) {
	t.Parallel() // independent (own gateway, store and upstream); mostly one core of work
	g := startGateway(t, gwOptions{mutate: func(c *configT) {
		c.TrustProxyHeaders = true
		c.Login.SourceMaxFailures = 4
	}})
	for i := range 5 { // four failures, and the fifth that locks
		st, _, code := postFrom(t, g, "/v1/auth/login", fmt.Sprintf("2001:db8:1:2::%x", i+1), map[string]string{"user": fmt.Sprintf("nobody-%d", i), "password": "wrong password guess"})
		if st != 401 {
			t.Fatalf("guess %d: %d %s", i+1, st, code)
		}
	}
	st, ra, code := postFrom(t, g, "/v1/auth/login", "2001:db8:1:2:dead:beef:1:1", map[string]string{"user": "nobody-x", "password": "wrong password guess"})
	if st != 429 || code != "too_many_attempts" || ra == "" {
		t.Fatalf("a sixth address of the same /64 after the lock: %d %q %s", st, ra, code)
	}
	if st, _, code := postFrom(t, g, "/v1/auth/login", "2001:db8:1:3::1", map[string]string{"user": "nobody-y", "password": "wrong password guess"}); st != 401 {
		t.Fatalf("another /64: %d %s", st, code)
	}
	if code, out, errs := runCLI(t, g, "users", "unlock", "--subject", "source:2001:db8:1:2::/64"); code != 0 || !strings.Contains(out, "1 counters cleared") {
		t.Fatalf("unlock --subject of the /64: %d %s %s", code, out, errs)
	}
	if st, _, code := postFrom(t, g, "/v1/auth/login", "2001:db8:1:2::99", map[string]string{"user": "nobody-z", "password": "wrong password guess"}); st != 401 {
		t.Fatalf("after unlock: %d %s", st, code)
	}

	// The request throttle counts the /64 too.
	th := startGateway(t, gwOptions{mutate: func(c *configT) {
		c.TrustProxyHeaders = true
		c.Login.SourceRequestsPerMinute = 3
	}})
	for i := range 3 {
		if st, _, code := postFrom(t, th, "/v1/auth/login", fmt.Sprintf("2001:db8:9:9::%x", i+1), map[string]string{"user": "nobody", "password": "wrong password guess"}); st != 401 {
			t.Fatalf("throttled login %d: %d %s", i+1, st, code)
		}
	}
	if st, ra, code := postFrom(t, th, "/v1/auth/login", "2001:db8:9:9:ffff::1", map[string]string{"user": "nobody", "password": "wrong password guess"}); st != 429 || code != "rate_limited" || ra == "" {
		t.Fatalf("a fourth request from a new address of the same /64: %d %q %s", st, ra, code)
	}
}

// TestLockoutDoesNotRevealWhichNamesExist: an attacker locks a login name
// with five wrong passwords, then tries another spelling of it (upper case).
// The answer must not depend on whether the name belongs to a user: before
// the fix, unknown names shared one counter across spellings (lower-cased)
// while real users' counters did not, so "locked under another spelling"
// meant "no such user".
func TestLockoutDoesNotRevealWhichNamesExist(t *testing.T) {
	t.Parallel() // independent (own gateway, store and upstream); mostly one core of work
	g := startGateway(t, gwOptions{mutate: func(c *configT) { c.TrustProxyHeaders = true }})
	ctx := context.Background()
	if _, err := g.admin.CreateTeam(ctx, "research"); err != nil {
		t.Fatal(err)
	}
	name, kind, teams := "erin", "user", []string{"research"}
	if _, err := g.admin.CreatePrincipal(ctx, client.PrincipalInput{Name: &name, Kind: &kind, Teams: &teams}); err != nil {
		t.Fatal(err)
	}
	if err := g.admin.SetPassword(ctx, name, "correct horse battery staple"); err != nil {
		t.Fatal(err)
	}
	n := 0
	src := func() string { n++; return fmt.Sprintf("198.51.100.%d", n) }
	answers := map[string]string{}
	for _, user := range []string{"erin", "frank"} { // a user and a name that matches nobody
		for i := range 5 {
			if st, _, code := postFrom(t, g, "/v1/auth/login", src(), map[string]string{"user": user, "password": "wrong password guess"}); st != 401 {
				t.Fatalf("%s guess %d: %d %s", user, i+1, st, code)
			}
		}
		if st, _, code := postFrom(t, g, "/v1/auth/login", src(), map[string]string{"user": user, "password": "wrong password guess"}); st != 429 {
			t.Fatalf("%s after five: %d %s", user, st, code)
		}
		st, _, code := postFrom(t, g, "/v1/auth/login", src(), map[string]string{"user": strings.ToUpper(user), "password": "wrong password guess"})
		answers[user] = fmt.Sprintf("%d %s", st, code)
	}
	if answers["erin"] != answers["frank"] {
		t.Fatalf("another spelling of a locked name answers %q for a user and %q for no user: existence leaks", answers["erin"], answers["frank"])
	}
}

// TestPasskeyLoginDoesNotRevealUsers: an attacker asks to begin a passkey
// login for a user with a passkey, a user without one, a disabled user and a
// name that matches nobody. Every answer must look alike (200, a ceremony, one
// allowed credential, the same for the same name every time), and finishing
// with an authenticator the attacker holds fails alike (before the fix, names
// without passkeys were answered 401 at once, and the finish told go-webauthn's
// reason).
func TestPasskeyLoginDoesNotRevealUsers(t *testing.T) {
	t.Parallel() // independent (own gateway, store and upstream); mostly one core of work
	const origin = "https://gatehouse.example.com"
	f := newFixture(t, gwOptions{mutate: func(c *configT) {
		c.WebAuthn.RPID, c.WebAuthn.Origins = "gatehouse.example.com", []string{origin}
	}})
	ctx := context.Background()
	kind, teams := "user", []string{"research"}
	var aliceID string
	for _, name := range []string{"alice", "bob", "dora"} {
		p, err := f.admin.CreatePrincipal(ctx, client.PrincipalInput{Name: &name, Kind: &kind, Teams: &teams})
		if err != nil {
			t.Fatal(err)
		}
		if name == "alice" {
			aliceID = p.ID
		}
		if err := f.admin.SetPassword(ctx, name, "correct horse battery staple"); err != nil {
			t.Fatal(err)
		}
	}
	session, _, err := client.New("http://"+f.srv.AdminAddr(), "").Login(ctx, "alice", "correct horse battery staple", "")
	if err != nil {
		t.Fatal(err)
	}
	a := newAuthenticator(t, "gatehouse.example.com", origin)
	call := func(path, key string, body []byte) (int, []byte) {
		t.Helper()
		resp, b := adminDo(t, f.gateway, "POST", path, key, string(body), nil)
		return resp.StatusCode, b
	}
	s, b := call("/v1/auth/passkeys/register", session, []byte(`{}`))
	var reg ceremony
	if s != 200 || json.Unmarshal(b, &reg) != nil {
		t.Fatalf("begin registration: %d %s", s, b)
	}
	if s, b := call("/v1/auth/passkeys/register/"+reg.ID, session, a.create(t, reg.Options)); s != 201 {
		t.Fatalf("finish registration: %d %s", s, b)
	}
	disabled := true
	if _, err := f.admin.UpdatePrincipal(ctx, "dora", client.PrincipalInput{Disabled: &disabled}, ""); err != nil {
		t.Fatal(err)
	}

	type opts struct {
		Challenge        string `json:"challenge"`
		RPID             string `json:"rpId"`
		UserVerification string `json:"userVerification"`
		AllowCredentials []struct {
			Type string `json:"type"`
			ID   string `json:"id"`
		} `json:"allowCredentials"`
	}
	begin := func(user string) (ceremony, opts) {
		t.Helper()
		s, b := call("/v1/auth/passkeys/login", "", []byte(`{"user":"`+user+`"}`))
		var c ceremony
		var o opts
		if s != 200 || json.Unmarshal(b, &c) != nil || json.Unmarshal(c.Options, &o) != nil || c.ID == "" {
			t.Fatalf("begin passkey login for %s: %d %s", user, s, b)
		}
		if len(o.AllowCredentials) != 1 || o.AllowCredentials[0].Type != "public-key" || o.AllowCredentials[0].ID == "" || o.RPID != "gatehouse.example.com" || o.UserVerification != "required" {
			t.Fatalf("begin passkey login for %s: options %s", user, c.Options)
		}
		return c, o
	}
	stranger := newAuthenticator(t, "gatehouse.example.com", origin)
	var refusals []string
	for _, user := range []string{"alice", "bob", "dora", "nobody"} {
		c1, o1 := begin(user)
		_, o2 := begin(user)
		if o1.AllowCredentials[0].ID != o2.AllowCredentials[0].ID {
			t.Errorf("%s: the allowed credential changes between begins (%s, %s): a decoy shows", user, o1.AllowCredentials[0].ID, o2.AllowCredentials[0].ID)
		}
		s, b := call("/v1/auth/passkeys/login/"+c1.ID, "", stranger.get(t, c1.Options, "prn_x"))
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		json.Unmarshal(b, &e)
		msg, _, _ := strings.Cut(e.Error.Message, " (request id")
		refusals = append(refusals, fmt.Sprintf("%d %s %s", s, e.Error.Code, msg))
	}
	for _, r := range refusals {
		if !strings.HasPrefix(r, "401 invalid_login ") || r != refusals[0] {
			t.Fatalf("finishing with a stranger's authenticator answers differently per user: %q", refusals)
		}
	}
	// The real user still logs in with the real passkey.
	c, _ := begin("alice")
	if s, b := call("/v1/auth/passkeys/login/"+c.ID, "", a.get(t, c.Options, aliceID)); s != 200 {
		t.Fatalf("the real passkey: %d %s", s, b)
	}
}

// TestDPoPReplayToAnotherReplica: an attacker captures one DPoP-bound call
// (token and proof) and replays it at once to the other replica behind the
// same name (the Host header the client used). With Redis the replicas share
// the replay set and the replay is refused; before, each replica kept its
// own and the replay was served.
func TestDPoPReplayToAnotherReplica(t *testing.T) {
	redisURL := os.Getenv("GATEHOUSE_TEST_REDIS_URL")
	if redisURL == "" {
		t.Skip("GATEHOUSE_TEST_REDIS_URL not set; skipping the shared replay test")
	}
	dpopReplayToAnotherReplica(t, func(c *configT) { c.RedisURL = redisURL })
}

// TestDPoPReplayToAnotherReplicaWithoutRedis: the same attack on replicas
// that share only PostgreSQL: the store keeps the replay set, and the replay
// is refused (before, without Redis, each replica accepted the proof once).
func TestDPoPReplayToAnotherReplicaWithoutRedis(t *testing.T) {
	dpopReplayToAnotherReplica(t, nil)
}

func dpopReplayToAnotherReplica(t *testing.T, mutate func(c *configT)) {
	dsn := backends(t)["postgres"](t)
	t.Setenv("GATEHOUSE_KEK", "BgYGBgYGBgYGBgYGBgYGBgYGBgYGBgYGBgYGBgYGBgY=")
	a := newFixture(t, gwOptions{database: dsn, mutate: mutate})
	b := startGateway(t, gwOptions{database: dsn, mutate: mutate})
	if err := b.srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	k := newDPoPKey(t)
	now := time.Now()
	status, tr := postToken(t, a.dataURL, url.Values{"grant_type": {"client_credentials"}, "client_secret": {a.key}},
		map[string]string{"DPoP": k.proof(t, "POST", a.dataURL+"/v1/auth/token", "", "rt10-token-"+now.Format(time.RFC3339Nano), now)})
	if status != 200 || tr.TokenType != "DPoP" {
		t.Fatalf("DPoP token: %d %+v", status, tr)
	}
	host := strings.TrimPrefix(a.dataURL, "http://")
	proof := k.proof(t, "POST", a.dataURL+"/v1/chat/completions", tr.AccessToken, "rt10-"+now.Format(time.RFC3339Nano), now)
	send := func(base string) (int, string) {
		req, _ := http.NewRequest("POST", base+"/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}`))
		req.Host = host // the name the client used, as a load balancer keeps it
		req.Header.Set("Authorization", "DPoP "+tr.AccessToken)
		req.Header.Set("DPoP", proof)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if s, body := send(a.dataURL); s != 200 {
		t.Fatalf("the honest call on replica A: %d %s", s, body)
	}
	if s, body := send(b.dataURL); s != 401 || !strings.Contains(body, "invalid_dpop_proof") || !strings.Contains(body, "replay") {
		t.Fatalf("the same proof replayed to replica B: %d %s, want 401 invalid_dpop_proof (replay)", s, body)
	}
}

// TestTOTPGuessesAcrossRoutesShareOneCounter: an attacker holding the
// password, a stolen session and a leaked mfa_required key spreads wrong TOTP
// codes over every route that checks one (login, step-up, the token
// endpoint, the proofs of enrolment and of new recovery codes), each from a
// new address. They all count on the one TOTP counter: after five, the right
// code on yet another route (the proof of a password change) is refused.
func TestTOTPGuessesAcrossRoutesShareOneCounter(t *testing.T) {
	t.Setenv("GATEHOUSE_KEK", "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=")
	f := newFixture(t, gwOptions{mutate: func(c *configT) { c.TrustProxyHeaders = true }})
	g := f.gateway
	ctx := context.Background()
	session, secret, _ := enrolWithRecovery(t, g, "gina", []string{"member"})
	mk, err := f.admin.CreateKey(ctx, client.KeyInput{Principal: "gina", MFARequired: true})
	if err != nil {
		t.Fatal(err)
	}
	atk := &attacker{t: t}
	pw := "correct horse battery staple"
	wrong := func() string { return wrongCode(t, secret) }
	guesses := []struct {
		route string
		try   func() (int, http.Header, string)
	}{
		{"login", func() (int, http.Header, string) {
			return atk.json(g, "/v1/auth/login", "", map[string]string{"user": "gina", "password": pw, "code": wrong()})
		}},
		{"step-up", func() (int, http.Header, string) {
			return atk.json(g, "/v1/auth/step-up", session, map[string]string{"code": wrong()})
		}},
		{"token endpoint", func() (int, http.Header, string) {
			form := url.Values{"grant_type": {"client_credentials"}, "client_secret": {mk.Secret}, "totp": {wrong()}}
			return atk.do("POST", g.dataURL+"/v1/auth/token", "", "application/x-www-form-urlencoded", form.Encode())
		}},
		{"enrolment proof", func() (int, http.Header, string) {
			return atk.json(g, "/v1/auth/totp/enroll", session, map[string]string{"code": wrong()})
		}},
		{"recovery codes proof", func() (int, http.Header, string) {
			return atk.json(g, "/v1/auth/recovery-codes", session, map[string]string{"code": wrong()})
		}},
	}
	for _, gu := range guesses {
		if s, _, body := gu.try(); s != 401 {
			t.Fatalf("a wrong code at %s: %d %s", gu.route, s, body)
		}
	}
	s, h, body := atk.json(g, "/v1/auth/password", session, map[string]string{"new_password": "another long password", "code": code(t, secret, time.Now().Add(30*time.Second))})
	refusedLocked(t, "the right code at the password change after five wrong ones elsewhere", s, h, body)
}

// TestPasswordGuessesByNameAndIDShareOneCounter: guesses of a user's
// password by its name and by its principal id are guesses of one password:
// three by name and two by id, then the right password by name is refused.
// Other spellings (upper case, a trailing space, a full-width letter) match
// no user, so they cannot guess its password at all: the right password
// under them is a 401 like any wrong one.
func TestPasswordGuessesByNameAndIDShareOneCounter(t *testing.T) {
	t.Parallel() // independent (own gateway, store and upstream); mostly one core of work
	g := startGateway(t, gwOptions{mutate: func(c *configT) { c.TrustProxyHeaders = true }})
	ctx := context.Background()
	if _, err := g.admin.CreateTeam(ctx, "research"); err != nil {
		t.Fatal(err)
	}
	name, kind, teams := "hank", "user", []string{"research"}
	p, err := g.admin.CreatePrincipal(ctx, client.PrincipalInput{Name: &name, Kind: &kind, Teams: &teams})
	if err != nil {
		t.Fatal(err)
	}
	pw := "correct horse battery staple"
	if err := g.admin.SetPassword(ctx, name, pw); err != nil {
		t.Fatal(err)
	}
	atk := &attacker{t: t}
	for _, spelling := range []string{"HANK", "hank ", "ｈank"} {
		if s, _, body := atk.json(g, "/v1/auth/login", "", map[string]string{"user": spelling, "password": pw}); s != 401 {
			t.Fatalf("the right password under %q: %d %s", spelling, s, body)
		}
	}
	for i, user := range []string{"hank", p.ID, "hank", p.ID, "hank"} {
		if s, _, body := atk.json(g, "/v1/auth/login", "", map[string]string{"user": user, "password": "wrong password guess"}); s != 401 {
			t.Fatalf("wrong guess %d as %s: %d %s", i+1, user, s, body)
		}
	}
	s, h, body := atk.json(g, "/v1/auth/login", "", map[string]string{"user": "hank", "password": pw})
	refusedLocked(t, "the right password after five wrong by name and id", s, h, body)
}

// TestStolenSessionWithoutSecondFactorNeedsThePassword: the session of a
// user without a second factor, older than the step-up window (stolen from a
// browser), cannot enrol TOTP (the attacker would own the user's second
// factor); the owner can, from the same session, with the password
// (`gatehouse users totp-enroll --password-stdin`).
func TestStolenSessionWithoutSecondFactorNeedsThePassword(t *testing.T) {
	t.Setenv("GATEHOUSE_KEK", "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=")
	g := startGateway(t, gwOptions{}) // set up before step_up_max_age is on: then an admin key cannot set a password
	ctx := context.Background()
	if _, err := g.admin.CreateTeam(ctx, "research"); err != nil {
		t.Fatal(err)
	}
	name, kind, teams := "ivan", "user", []string{"research"}
	if _, err := g.admin.CreatePrincipal(ctx, client.PrincipalInput{Name: &name, Kind: &kind, Teams: &teams}); err != nil {
		t.Fatal(err)
	}
	pw := "correct horse battery staple"
	if err := g.admin.SetPassword(ctx, name, pw); err != nil {
		t.Fatal(err)
	}
	g = restartWith(t, g, func(c *configT) { c.StepUpMaxAge = config.Duration(time.Second) })
	session, _, err := client.New("http://"+g.srv.AdminAddr(), "").Login(ctx, name, pw, "")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the session outlives the 1s window (no time is asserted)
	enrol := func(stdin string, args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		env := map[string]string{"GATEHOUSE_ADDR": "http://" + g.srv.AdminAddr(), "GATEHOUSE_ADMIN_KEY": session}
		code := cli.Run(ctx, append([]string{"users", "totp-enroll"}, args...), &cli.Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }})
		return code, out.String(), errb.String()
	}
	if code, out, errs := enrol(""); code == 0 || !strings.Contains(errs, "factor_proof_required") {
		t.Fatalf("enrolment from an old session without a proof: %d %s %s", code, out, errs)
	}
	if code, out, errs := enrol("a wrong password guess\n", "--password-stdin"); code == 0 || !strings.Contains(errs, "invalid_password") {
		t.Fatalf("enrolment with a wrong password: %d %s %s", code, out, errs)
	}
	if code, out, errs := enrol(pw+"\n", "--password-stdin"); code != 0 || !strings.Contains(out, "otpauth://") {
		t.Fatalf("enrolment with the password: %d %s %s", code, out, errs)
	}
}
