package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/client"
)

// attacker sends raw requests with a chosen source address (the gateways
// trust X-Forwarded-For in these tests), as a botnet would.
type attacker struct {
	t *testing.T
	n atomic.Int64
}

func (a *attacker) do(method, target, authz, contentType, body string) (int, http.Header, string) {
	a.t.Helper()
	n := a.n.Add(1)
	req, _ := http.NewRequest(method, target, strings.NewReader(body))
	req.Header.Set("X-Forwarded-For", fmt.Sprintf("198.51.100.%d", n%250+1))
	req.Header.Set("User-Agent", "brute/1.0")
	req.Header.Set("Content-Type", contentType)
	if authz != "" {
		req.Header.Set("Authorization", "Bearer "+authz)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func (a *attacker) json(g *gateway, path, authz string, in any) (int, http.Header, string) {
	b, _ := json.Marshal(in)
	return a.do("POST", "http://"+g.srv.AdminAddr()+path, authz, "application/json", string(b))
}

// wrongCode is a six-digit code that is none of the three a gateway accepts now.
func wrongCode(t *testing.T, secret string) string {
	now := time.Now()
	good := []string{code(t, secret, now.Add(-30*time.Second)), code(t, secret, now), code(t, secret, now.Add(30*time.Second)), code(t, secret, now.Add(60*time.Second))}
	for i := 0; ; i++ {
		c := fmt.Sprintf("%06d", (i*7919)%1000000)
		if !slices.Contains(good, c) {
			return c
		}
	}
}

// enrolWithRecovery is enrolUser that also returns the session token and the
// recovery codes.
func enrolWithRecovery(t *testing.T, g *gateway, name string, roles []string) (session, secret string, recovery []string) {
	t.Helper()
	session = passwordUser(t, g, name, roles)
	secret, recovery = enrolTOTP(t, g, session, time.Now())
	return session, secret, recovery
}

// refusedLocked checks a 429 with a Retry-After of at least a minute.
func refusedLocked(t *testing.T, what string, status int, h http.Header, body string) {
	t.Helper()
	ra, _ := strconv.Atoi(h.Get("Retry-After"))
	if status != http.StatusTooManyRequests || ra < 60 || !strings.Contains(body, "too_many_attempts") {
		t.Fatalf("%s: want 429 too_many_attempts with Retry-After, got %d (Retry-After %q) %s", what, status, h.Get("Retry-After"), body)
	}
}

// TestBruteForceEveryFactorTwoReplicas is issue #10's proof of attempt limits:
// two gateways share one PostgreSQL; for each guessable secret (password,
// TOTP at login, TOTP at step-up, TOTP at the token exchange, recovery codes)
// five wrong guesses from ever-changing source addresses, alternating between
// the replicas, are answered 401, and the next guess is refused with 429 and
// Retry-After although it is right. An administrator's unlock clears it.
func TestBruteForceEveryFactorTwoReplicas(t *testing.T) {
	t.Parallel() // one core of argon2 work; its own replicas and schema
	dsn := backends(t)["postgres"](t)
	kek := filepath.Join(t.TempDir(), "kek.key") // one KEK for both replicas (a file: t.Setenv would forbid t.Parallel)
	trust := func(c *configT) { c.TrustProxyHeaders = true; c.KEKFile = kek }
	a := newFixture(t, gwOptions{database: dsn, mutate: trust})
	b := startGateway(t, gwOptions{database: dsn, mutate: trust})
	replicas := []*gateway{a.gateway, b}
	ctx := context.Background()
	session, secret, recovery := enrolWithRecovery(t, a.gateway, "carol", []string{"member"})
	mk, err := a.admin.CreateKey(ctx, client.KeyInput{Principal: "carol", MFARequired: true})
	if err != nil {
		t.Fatal(err)
	}
	atk := &attacker{t: t}
	unlock := func() {
		t.Helper()
		if code, out, errs := runCLI(t, a.gateway, "users", "unlock", "carol"); code != 0 || !strings.Contains(out, "Unlocked carol") {
			t.Fatalf("users unlock: %d %s %s", code, out, errs)
		}
	}
	pw := "correct horse battery staple"
	bruteForce := func(name string, guess func(g *gateway, right bool) (int, http.Header, string), wrongStatus int) {
		t.Helper()
		for i := range 5 {
			if s, _, body := guess(replicas[i%2], false); s != wrongStatus {
				t.Fatalf("%s: wrong guess %d: %d %s", name, i+1, s, body)
			}
		}
		s, h, body := guess(replicas[1], true)
		refusedLocked(t, name+": the right guess after five wrong ones", s, h, body)
		s, h, body = guess(replicas[0], true)
		refusedLocked(t, name+": the right guess on the other replica", s, h, body)
	}

	// Password.
	bruteForce("password", func(g *gateway, right bool) (int, http.Header, string) {
		p := "wrong password guess"
		if right {
			p = pw
		}
		return atk.json(g, "/v1/auth/login", "", map[string]string{"user": "carol", "password": p, "code": wrongCode(t, secret)})
	}, 401)
	unlock()

	// TOTP at login (the password is right every time).
	bruteForce("totp at login", func(g *gateway, right bool) (int, http.Header, string) {
		c := wrongCode(t, secret)
		if right {
			c = code(t, secret, time.Now().Add(30*time.Second))
		}
		return atk.json(g, "/v1/auth/login", "", map[string]string{"user": "carol", "password": pw, "code": c})
	}, 401)
	if code, out, _ := runCLI(t, a.gateway, "users", "lockouts", "--json"); code != 0 || !strings.Contains(out, `"subject": "user:`) || !strings.Contains(out, `"locked": true`) {
		t.Fatalf("users lockouts: %d %s", code, out)
	}
	unlock()

	// TOTP at step-up, from a session.
	bruteForce("totp at step-up", func(g *gateway, right bool) (int, http.Header, string) {
		c := wrongCode(t, secret)
		if right {
			c = code(t, secret, time.Now().Add(30*time.Second))
		}
		return atk.json(g, "/v1/auth/step-up", session, map[string]string{"code": c})
	}, 401)
	unlock()

	// TOTP at the token exchange of an mfa_required key, on the data planes.
	bruteForce("totp at token exchange", func(g *gateway, right bool) (int, http.Header, string) {
		c := wrongCode(t, secret)
		if right {
			c = code(t, secret, time.Now().Add(30*time.Second))
		}
		form := url.Values{"grant_type": {"client_credentials"}, "client_secret": {mk.Secret}, "totp": {c}}
		return atk.do("POST", g.dataURL+"/v1/auth/token", "", "application/x-www-form-urlencoded", form.Encode())
	}, 401)
	unlock()

	// Recovery codes at login: the refused right code is not spent.
	bruteForce("recovery code", func(g *gateway, right bool) (int, http.Header, string) {
		rc := "0000dead-beef0000"
		if right {
			rc = recovery[0]
		}
		return atk.json(g, "/v1/auth/login", "", map[string]string{"user": "carol", "password": pw, "recovery_code": rc})
	}, 401)
	unlock()
	if s, _, body := atk.json(b, "/v1/auth/login", "", map[string]string{"user": "carol", "password": pw, "recovery_code": recovery[0]}); s != 200 {
		t.Fatalf("the refused recovery code after unlock: %d %s", s, body)
	}
	// The refused TOTP code was right: after unlock the same exchange works.
	form := url.Values{"grant_type": {"client_credentials"}, "client_secret": {mk.Secret}, "totp": {code(t, secret, time.Now().Add(30*time.Second))}}
	if s, _, body := atk.do("POST", b.dataURL+"/v1/auth/token", "", "application/x-www-form-urlencoded", form.Encode()); s != 200 {
		t.Fatalf("exchange after unlock: %d %s", s, body)
	}

	// Every failure and every lockout is in the (shared) ledger, with the
	// source address and user agent, and no guess.
	db := sqlFor(t, "", dsn)
	rows, err := db.Query(`SELECT data FROM ledger_entries ORDER BY idx`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	kinds := map[string]int{}
	for rows.Next() {
		var data []byte
		rows.Scan(&data)
		var rec struct {
			Kind      string `json:"kind"`
			SourceIP  string `json:"source_ip"`
			UserAgent string `json:"user_agent"`
		}
		json.Unmarshal(data, &rec)
		if rec.Kind != "auth.failure" && rec.Kind != "auth.lockout" {
			continue
		}
		kinds[rec.Kind]++
		if !strings.HasPrefix(rec.SourceIP, "198.51.100.") || rec.UserAgent != "brute/1.0" {
			t.Errorf("%s record without the caller's address or agent: %s", rec.Kind, data)
		}
		if strings.Contains(string(data), pw) || strings.Contains(string(data), recovery[0]) {
			t.Errorf("a secret in the ledger: %s", data)
		}
	}
	if kinds["auth.failure"] != 25 || kinds["auth.lockout"] != 5 {
		t.Fatalf("ledger: %v, want 25 failures and 5 lockouts", kinds)
	}
}

// TestSourceAddressLockout: one address guessing many users' passwords is
// locked as an address (login names that exist and names that do not alike),
// and unlock --subject clears it.
func TestSourceAddressLockout(t *testing.T) {
	t.Parallel() // independent (own gateway, store and upstream); mostly one core of work
	g := startGateway(t, gwOptions{mutate: func(c *configT) { c.Login.SourceMaxFailures = 4 }})
	anon := client.New("http://"+g.srv.AdminAddr(), "")
	ctx := context.Background()
	for i := range 4 {
		if _, _, err := anon.Login(ctx, fmt.Sprintf("nobody-%d", i), "wrong password guess", ""); !isStatus(err, 401) {
			t.Fatalf("guess %d: %v", i+1, err)
		}
	}
	// The fifth failure locks the address; its answer was already a 401.
	if _, _, err := anon.Login(ctx, "nobody-99", "wrong password guess", ""); !isStatus(err, 401) {
		t.Fatalf("fifth failure from one address: %v", err)
	}
	var ce *client.Error
	_, _, err := anon.Login(ctx, "nobody-100", "wrong password guess", "")
	if !asClientErr(err, &ce) || ce.Status != 429 || ce.Code != "too_many_attempts" {
		t.Fatalf("after the lock: %v", err)
	}
	if code, out, errs := runCLI(t, g, "users", "unlock", "--subject", "source:127.0.0.1"); code != 0 || !strings.Contains(out, "1 counters cleared") {
		t.Fatalf("unlock --subject: %d %s %s", code, out, errs)
	}
	if _, _, err := anon.Login(ctx, "nobody-101", "wrong password guess", ""); !isStatus(err, 401) {
		t.Fatalf("after unlock: %v", err)
	}
}

// TestAuthThrottle: unauthenticated auth routes (logins, the token endpoint)
// take from one per-address bucket, right or wrong; over it they answer 429
// with Retry-After and do no work.
func TestAuthThrottle(t *testing.T) {
	g := startGateway(t, gwOptions{mutate: func(c *configT) { c.Login.SourceRequestsPerMinute = 3 }})
	anon := client.New("http://"+g.srv.AdminAddr(), "")
	ctx := context.Background()
	for i := range 3 {
		if _, _, err := anon.Login(ctx, "nobody", "a wrong password guess", ""); !isStatus(err, 401) {
			t.Fatalf("login %d: %v", i+1, err)
		}
	}
	var ce *client.Error
	if _, _, err := anon.Login(ctx, "nobody", "a wrong password guess", ""); !asClientErr(err, &ce) || ce.Status != 429 || ce.Code != "rate_limited" {
		t.Fatalf("fourth login in a minute: %v", err)
	}
	req, _ := http.NewRequest("POST", g.dataURL+"/v1/auth/token", strings.NewReader("grant_type=client_credentials&client_secret=gk_nothing"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ra, _ := strconv.Atoi(resp.Header.Get("Retry-After")); resp.StatusCode != 429 || ra < 1 {
		t.Fatalf("token endpoint from the same address: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

// TestConcurrentGuessesTwoReplicas: 40 wrong step-up codes sent at once, half
// to each replica of one PostgreSQL, from 40 addresses: exactly five are
// checked (401), the other 35 refused (429); no race lets a sixth through.
func TestConcurrentGuessesTwoReplicas(t *testing.T) {
	dsn := backends(t)["postgres"](t)
	t.Setenv("GATEHOUSE_KEK", "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=")
	trust := func(c *configT) { c.TrustProxyHeaders = true }
	a := startGateway(t, gwOptions{database: dsn, mutate: trust})
	b := startGateway(t, gwOptions{database: dsn, mutate: trust})
	if _, err := a.admin.CreateTeam(context.Background(), "research"); err != nil {
		t.Fatal(err)
	}
	session, secret, _ := enrolWithRecovery(t, a, "dave", []string{"member"})
	atk := &attacker{t: t}
	var mu sync.Mutex
	got := map[int]int{}
	var wg sync.WaitGroup
	for i := range 40 {
		g := []*gateway{a, b}[i%2]
		wg.Go(func() {
			s, _, _ := atk.json(g, "/v1/auth/step-up", session, map[string]string{"code": wrongCode(t, secret)})
			mu.Lock()
			got[s]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if got[401] != 5 || got[429] != 35 {
		t.Fatalf("40 concurrent wrong codes on two replicas: %v, want 5×401 and 35×429", got)
	}
}

// TestAdminResetFactors: an administrator resets a user's second factors (a
// lost phone) with the CLI: the user's sessions end, its lockouts clear, the
// password alone logs in again, and an alert goes out.
func TestAdminResetFactors(t *testing.T) {
	hook := newWebhook(t)
	t.Setenv("GATEHOUSE_ALERT_WEBHOOK_SECRET", "whsec-test")
	g := startGateway(t, gwOptions{mutate: func(c *configT) { c.AlertWebhookURL = hook.url }})
	ctx := context.Background()
	if _, err := g.admin.CreateTeam(ctx, "research"); err != nil {
		t.Fatal(err)
	}
	session, secret, _ := enrolWithRecovery(t, g, "frank", []string{"member"})
	anon := client.New("http://"+g.srv.AdminAddr(), "")
	if _, _, err := anon.Login(ctx, "frank", "correct horse battery staple", ""); !isStatus(err, 401) {
		t.Fatalf("password only while TOTP is on: %v", err)
	}
	for range 6 {
		anon.Login(ctx, "frank", "a wrong password guess", wrongCode(t, secret))
	}
	if _, _, err := anon.Login(ctx, "frank", "correct horse battery staple", code(t, secret, time.Now().Add(30*time.Second))); !isStatus(err, 429) {
		t.Fatalf("right password and code while locked: %v", err)
	}
	if code, out, errs := runCLI(t, g, "users", "reset-factors", "frank"); code != 0 || !strings.Contains(out, "removed") {
		t.Fatalf("users reset-factors: %d %s %s", code, out, errs)
	}
	if _, err := client.New("http://"+g.srv.AdminAddr(), session).ListTeams(ctx); !isStatus(err, 401) {
		t.Errorf("a session after reset-factors: %v", err)
	}
	if _, _, err := anon.Login(ctx, "frank", "correct horse battery staple", ""); err != nil {
		t.Fatalf("password login after reset-factors: %v", err)
	}
	found := false
	for _, a := range hook.wait(t, 1) {
		found = found || (a["kind"] == "factor_changed" && strings.Contains(fmt.Sprint(a["message"]), "reset by an administrator"))
	}
	if !found {
		t.Errorf("no factor_changed alert: %v", hook.all())
	}
}
