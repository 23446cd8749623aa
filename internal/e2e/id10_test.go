package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/cli"
	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/denylog"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
)

// TestUnlockBobLeavesBobColonXLocked: `gatehouse users unlock bob` clears
// bob's counters and those of the login name "bob", and not the counter of
// the login name "bob:x" (which an attacker locked too), although
// "name:bob:" is a prefix of it.
func TestUnlockBobLeavesBobColonXLocked(t *testing.T) {
	t.Setenv("GATEHOUSE_KEK", "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=")
	g := startGateway(t, gwOptions{mutate: func(c *configT) { c.TrustProxyHeaders = true }})
	ctx := context.Background()
	if _, err := g.admin.CreateTeam(ctx, "research"); err != nil {
		t.Fatal(err)
	}
	name, kind, teams := "bob", "user", []string{"research"}
	if _, err := g.admin.CreatePrincipal(ctx, client.PrincipalInput{Name: &name, Kind: &kind, Teams: &teams}); err != nil {
		t.Fatal(err)
	}
	pw := "correct horse battery staple"
	if err := g.admin.SetPassword(ctx, name, pw); err != nil {
		t.Fatal(err)
	}
	atk := &attacker{t: t}
	login := func(user, password string) (int, string) {
		s, _, body := atk.json(g, "/v1/auth/login", "", map[string]string{"user": user, "password": password})
		return s, body
	}
	for _, user := range []string{"bob", "bob:x", "bob:"} {
		for range 6 {
			login(user, "wrong password guess")
		}
		if s, body := login(user, pw); s != 429 {
			t.Fatalf("%q not locked: %d %s", user, s, body)
		}
	}
	if code, out, errs := runCLI(t, g, "users", "unlock", "bob"); code != 0 || !strings.Contains(out, "Unlocked bob") {
		t.Fatalf("users unlock bob: %d %s %s", code, out, errs)
	}
	if s, body := login("bob", pw); s != 200 {
		t.Fatalf("bob after unlock: %d %s", s, body)
	}
	for _, user := range []string{"bob:x", "bob:"} {
		if s, body := login(user, pw); s != 429 {
			t.Fatalf("unlocking bob unlocked %q: %d %s", user, s, body)
		}
	}
	// A prefix given as a subject is refused, not read as a prefix.
	if code, out, errs := runCLI(t, g, "users", "unlock", "--subject", "name:bob:"); code == 0 || !strings.Contains(errs, "exact subject") {
		t.Fatalf("unlock --subject name:bob: %d %s %s", code, out, errs)
	}
	if s, body := login("bob:x", pw); s != 429 {
		t.Fatalf("unlock --subject name:bob: unlocked bob:x: %d %s", s, body)
	}
}

// ledgerRecords reads every record of a SQLite gateway's log.
func ledgerRecords(t *testing.T, g *gateway) []ledger.Record {
	t.Helper()
	return logRecords(t, g.srv.DataDir(), "")
}

// logRecords reads every record of the log in a gateway's store: SQLite in
// dataDir, or PostgreSQL at dsn when it is not "".
func logRecords(t *testing.T, dataDir, dsn string) []ledger.Record {
	t.Helper()
	db := sqlFor(t, dataDir, dsn)
	rows, err := db.Query(`SELECT data FROM ledger_entries ORDER BY idx`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []ledger.Record
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			t.Fatal(err)
		}
		r, err := ledger.ParseRecord(data)
		if err != nil {
			t.Fatalf("a record that does not parse: %v", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// requireMFAUser starts a gateway with require_mfa and a user with a
// password and no second factor.
func requireMFAUser(t *testing.T, name string) (*gateway, string) {
	t.Helper()
	t.Setenv("GATEHOUSE_KEK", "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=")
	g := startGateway(t, gwOptions{mutate: func(c *configT) { c.RequireMFA, c.TrustProxyHeaders = true, true }})
	ctx := context.Background()
	if _, err := g.admin.CreateTeam(ctx, "research"); err != nil {
		t.Fatal(err)
	}
	kind, teams, roles := "user", []string{"research"}, []string{"admin"}
	if _, err := g.admin.CreatePrincipal(ctx, client.PrincipalInput{Name: &name, Kind: &kind, Teams: &teams, Roles: &roles}); err != nil {
		t.Fatal(err)
	}
	pw := "correct horse battery staple"
	if err := g.admin.SetPassword(ctx, name, pw); err != nil {
		t.Fatal(err)
	}
	return g, pw
}

// TestFirstEnrolmentUnderRequireMFA: with require_mfa, a user without a
// second factor who gives the right password gets an enrolment session that
// lives the step-up window and may only enrol; enrolling takes the password
// again; confirming does not make the session an MFA session (the user logs
// in again with the code, and then can act). The login is a ledger record.
func TestFirstEnrolmentUnderRequireMFA(t *testing.T) {
	g, pw := requireMFAUser(t, "dave")
	atk := &attacker{t: t}
	start := time.Now()
	s, _, body := atk.json(g, "/v1/auth/login", "", map[string]string{"user": "dave", "password": pw})
	var login struct {
		Session        string    `json:"session"`
		ExpiresAt      time.Time `json:"expires_at"`
		MFA            bool      `json:"mfa"`
		EnrollmentOnly bool      `json:"enrollment_only"`
	}
	if err := json.Unmarshal([]byte(body), &login); s != 200 || err != nil || !login.EnrollmentOnly || login.MFA || login.Session == "" {
		t.Fatalf("login without a second factor under require_mfa: %d %s", s, body)
	}
	if login.ExpiresAt.After(start.Add(5*time.Minute + time.Minute)) {
		t.Fatalf("the enrolment session lives until %s: longer than the 5-minute window", login.ExpiresAt)
	}
	// Nothing but enrolment.
	adminURL := "http://" + g.srv.AdminAddr()
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/v1/keys", ""}, {"GET", "/v1/auth/passkeys", ""}, {"POST", "/v1/keys", `{"principal":"dave","admin":true}`},
		{"POST", "/v1/auth/step-up", `{"code":"123456"}`}, {"POST", "/v1/auth/recovery-codes", `{"password":"` + pw + `"}`},
		{"POST", "/v1/auth/password", `{"new_password":"another long password","current_password":"` + pw + `"}`},
	} {
		if s, _, body := atk.do(c.method, adminURL+c.path, login.Session, "application/json", c.body); s != 403 || !strings.Contains(body, "mfa_enrollment_required") {
			t.Fatalf("%s %s from an enrolment session: %d %s", c.method, c.path, s, body)
		}
	}
	var enrol struct {
		Secret string `json:"secret"`
	}
	s, _, body = atk.json(g, "/v1/auth/totp/enroll", login.Session, map[string]string{"password": pw})
	if err := json.Unmarshal([]byte(body), &enrol); s != 200 || err != nil || enrol.Secret == "" {
		t.Fatalf("enrol with the password: %d %s", s, body)
	}
	if s, _, body := atk.json(g, "/v1/auth/totp/confirm", login.Session, map[string]string{"code": code(t, enrol.Secret, time.Now())}); s != 200 || !strings.Contains(body, "recovery_codes") {
		t.Fatalf("confirm: %d %s", s, body)
	}
	// Confirming proved the authenticator, not the person: still enrolment only.
	if s, _, body := atk.do("GET", adminURL+"/v1/keys", login.Session, "", ""); s != 403 || !strings.Contains(body, "mfa_enrollment_required") {
		t.Fatalf("the enrolment session after confirming: %d %s", s, body)
	}
	// Without the code the password alone no longer logs in; with it, a full session.
	if s, _, body := atk.json(g, "/v1/auth/login", "", map[string]string{"user": "dave", "password": pw}); s != 401 || !strings.Contains(body, "mfa_required") {
		t.Fatalf("password only after enrolment: %d %s", s, body)
	}
	s, _, body = atk.json(g, "/v1/auth/login", "", map[string]string{"user": "dave", "password": pw, "code": code(t, enrol.Secret, time.Now().Add(30*time.Second))})
	login.EnrollmentOnly, login.MFA = false, false
	if err := json.Unmarshal([]byte(body), &login); s != 200 || err != nil || !login.MFA || login.EnrollmentOnly {
		t.Fatalf("login with the new code: %d %s", s, body)
	}
	if s, _, body := atk.do("GET", adminURL+"/v1/keys", login.Session, "", ""); s != 200 {
		t.Fatalf("the MFA session: %d %s", s, body)
	}
	var enrolLogin, enrolled bool
	for _, r := range ledgerRecords(t, g) {
		enrolLogin = enrolLogin || strings.Contains(r.Detail, "enrolment only") && r.Action == "POST /v1/auth/login"
		enrolled = enrolled || strings.HasSuffix(r.Action, "/v1/auth/totp/confirm") && r.Status == 200 && r.Kind == ledger.KindAdmin
	}
	if !enrolLogin || !enrolled {
		t.Fatalf("ledger: enrolment login recorded %v, confirmation recorded %v", enrolLogin, enrolled)
	}
}

// TestStolenEnrolmentSessionCannotEnrolWithoutThePassword: a thief holding
// an enrolment session (require_mfa, no factor yet) but not the password
// cannot enrol its own authenticator, neither TOTP nor a replacement of the
// owner's pending secret, cannot confirm the owner's pending secret by
// guessing past the attempt limit, and cannot do anything else.
func TestStolenEnrolmentSessionCannotEnrolWithoutThePassword(t *testing.T) {
	g, pw := requireMFAUser(t, "erin")
	atk := &attacker{t: t}
	s, _, body := atk.json(g, "/v1/auth/login", "", map[string]string{"user": "erin", "password": pw})
	var login struct {
		Session string `json:"session"`
	}
	if err := json.Unmarshal([]byte(body), &login); s != 200 || err != nil {
		t.Fatalf("login: %d %s", s, body)
	}
	stolen := login.Session
	if s, _, body := atk.json(g, "/v1/auth/totp/enroll", stolen, map[string]string{}); s != 403 || !strings.Contains(body, "factor_proof_required") {
		t.Fatalf("enrol without a proof from a fresh enrolment session: %d %s", s, body)
	}
	if s, _, body := atk.json(g, "/v1/auth/totp/enroll", stolen, map[string]string{"password": "a wrong password guess"}); s != 401 || !strings.Contains(body, "invalid_password") {
		t.Fatalf("enrol with a wrong password: %d %s", s, body)
	}
	if s, _, body := atk.json(g, "/v1/auth/passkeys/register", stolen, map[string]string{}); s == 200 {
		t.Fatalf("passkey registration without a proof: %d %s", s, body)
	}
	// The owner enrols (pending); the thief guesses the pending secret's code.
	var enrol struct {
		Secret string `json:"secret"`
	}
	s, _, body = atk.json(g, "/v1/auth/totp/enroll", stolen, map[string]string{"password": pw})
	if err := json.Unmarshal([]byte(body), &enrol); s != 200 || err != nil {
		t.Fatalf("owner's enrolment: %d %s", s, body)
	}
	for i := range 5 {
		if s, _, body := atk.json(g, "/v1/auth/totp/confirm", stolen, map[string]string{"code": wrongCode(t, enrol.Secret)}); s != 401 {
			t.Fatalf("wrong confirmation %d: %d %s", i+1, s, body)
		}
	}
	s, h, body := atk.json(g, "/v1/auth/totp/confirm", stolen, map[string]string{"code": code(t, enrol.Secret, time.Now())})
	refusedLocked(t, "the right confirmation code after five wrong ones", s, h, body)
	if s, _, body := atk.do("GET", "http://"+g.srv.AdminAddr()+"/v1/principals", stolen, "", ""); s != 403 {
		t.Fatalf("listing principals from an enrolment session: %d %s", s, body)
	}
}

// TestTokenAudienceConfusionAcrossPlanes: each credential works only where
// it was issued for. A data-plane access token is no admin credential; an
// admin session and an admin key are no data-plane credential; an access
// token cannot be exchanged for a fresh one (laundering its lifetime or its
// DPoP binding away) as an ID token, a JWT or an access token.
func TestTokenAudienceConfusionAcrossPlanes(t *testing.T) {
	t.Setenv("GATEHOUSE_KEK", "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=")
	f := newFixture(t, gwOptions{})
	status, tr := postToken(t, f.dataURL, url.Values{"grant_type": {"client_credentials"}, "client_secret": {f.key}}, nil)
	if status != 200 || tr.AccessToken == "" {
		t.Fatalf("token: %d %+v", status, tr)
	}
	atk := &attacker{t: t}
	adminURL := "http://" + f.srv.AdminAddr()
	if s, _, body := atk.do("GET", adminURL+"/v1/keys", tr.AccessToken, "", ""); s != 401 {
		t.Fatalf("an access token at the admin API: %d %s", s, body)
	}
	chat := `{"model":"gpt-4o","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}`
	if s, _, body := atk.do("POST", f.dataURL+"/v1/chat/completions", tr.AccessToken, "application/json", chat); s != 200 {
		t.Fatalf("the access token on the data plane: %d %s", s, body)
	}
	for name, cred := range map[string]string{"admin key": f.adminKey, "admin session": adminSession(t, f.gateway)} {
		if s, _, body := atk.do("POST", f.dataURL+"/v1/chat/completions", cred, "application/json", chat); s != 401 {
			t.Fatalf("%s on the data plane: %d %s", name, s, body)
		}
	}
	for _, typ := range []string{"urn:ietf:params:oauth:token-type:id_token", "urn:ietf:params:oauth:token-type:jwt", "urn:ietf:params:oauth:token-type:access_token"} {
		s, out := postToken(t, f.dataURL, url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"},
			"subject_token": {tr.AccessToken}, "subject_token_type": {typ}}, nil)
		if s == 200 || out.AccessToken != "" {
			t.Fatalf("exchanging an access token as %s: %d %+v", typ, s, out)
		}
	}
}

// adminSession logs a fresh user of team research (newFixture's) with a
// password in and returns its session.
func adminSession(t *testing.T, g *gateway) string {
	t.Helper()
	return passwordUser(t, g, "confused", []string{"admin"})
}

// TestRequireMFATurnedOnMakesOldSessionsEnrolmentOnly: a session of a user
// without a second factor, made before require_mfa was turned on (stolen from
// a browser, say), can do nothing but enrol once require_mfa is on, and
// enrolling from it needs the password.
func TestRequireMFATurnedOnMakesOldSessionsEnrolmentOnly(t *testing.T) {
	t.Setenv("GATEHOUSE_KEK", "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=")
	dir := t.TempDir() + "/data"
	g := startGateway(t, gwOptions{dataDir: dir})
	ctx := context.Background()
	if _, err := g.admin.CreateTeam(ctx, "research"); err != nil {
		t.Fatal(err)
	}
	name, kind, teams, roles := "fred", "user", []string{"research"}, []string{"admin"}
	if _, err := g.admin.CreatePrincipal(ctx, client.PrincipalInput{Name: &name, Kind: &kind, Teams: &teams, Roles: &roles}); err != nil {
		t.Fatal(err)
	}
	pw := "correct horse battery staple"
	if err := g.admin.SetPassword(ctx, name, pw); err != nil {
		t.Fatal(err)
	}
	old, _, err := client.New("http://"+g.srv.AdminAddr(), "").Login(ctx, name, pw, "")
	if err != nil {
		t.Fatal(err)
	}
	atk := &attacker{t: t}
	if s, _, body := atk.do("GET", "http://"+g.srv.AdminAddr()+"/v1/keys", old, "", ""); s != 200 {
		t.Fatalf("the session before require_mfa: %d %s", s, body)
	}
	g.stop()
	g = startGateway(t, gwOptions{dataDir: dir, mutate: func(c *configT) { c.RequireMFA = true }})
	if s, _, body := atk.do("GET", "http://"+g.srv.AdminAddr()+"/v1/keys", old, "", ""); s != 403 || !strings.Contains(body, "mfa_enrollment_required") {
		t.Fatalf("the old session under require_mfa: %d %s", s, body)
	}
	if s, _, body := atk.json(g, "/v1/auth/totp/enroll", old, map[string]string{}); s != 403 || !strings.Contains(body, "factor_proof_required") {
		t.Fatalf("enrolment from the old session without the password: %d %s", s, body)
	}
	if s, _, body := atk.json(g, "/v1/auth/totp/enroll", old, map[string]string{"password": pw}); s != 200 || !strings.Contains(body, "otpauth://") {
		t.Fatalf("enrolment from the old session with the password: %d %s", s, body)
	}
}

// TestFloodOfDistinctRevokedKeysIsCappedEndToEnd: with
// login.denied_records_per_second 3, twenty distinct revoked keys refused
// five times each leave at most cap+1 records per second, among them an
// aggregated "suppressed" record, and the counts (by reason, the aggregate's
// detail included) add up to the 100 refused calls.
func TestFloodOfDistinctRevokedKeysIsCappedEndToEnd(t *testing.T) {
	t.Setenv("GATEHOUSE_KEK", "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=")
	f := newFixture(t, gwOptions{mutate: func(c *configT) { c.Login.DeniedRecordsPerSecond = 3 }})
	ctx := context.Background()
	var secrets []string
	for range 20 {
		k, err := f.admin.CreateKey(ctx, client.KeyInput{Principal: "agent"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.admin.RevokeKey(ctx, k.ID, ""); err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, k.Secret)
	}
	start := time.Now()
	var wg sync.WaitGroup
	var refused atomic.Int64
	for _, s := range secrets {
		wg.Go(func() {
			for range 5 {
				if deniedCall(t, f.dataURL, s) == 401 {
					refused.Add(1)
				}
			}
		})
	}
	wg.Wait()
	seconds := int(time.Since(start)/time.Second) + 2
	if refused.Load() != 100 {
		t.Fatalf("%d of 100 calls refused", refused.Load())
	}
	f.stop() // flushes the last counts
	recs := deniedRecords(t, f, "")
	var total, revoked int64
	aggregated := 0
	for _, r := range recs {
		total += r.Count
		if r.ErrorCode != denylog.SuppressedReason {
			if r.ErrorCode == "key_revoked" {
				revoked += r.Count
			}
			continue
		}
		aggregated++
		_, tail, _ := strings.Cut(r.Detail, "suppressed:")
		for _, kv := range strings.Fields(tail) {
			if k, v, _ := strings.Cut(kv, "="); k == "key_revoked" {
				n, _ := strconv.ParseInt(v, 10, 64)
				revoked += n
			}
		}
	}
	if total != 100 || revoked != 100 || aggregated == 0 {
		t.Fatalf("%d records: counts %d (key_revoked %d), %d aggregated; want 100, 100, some", len(recs), total, revoked, aggregated)
	}
	if len(recs) > (3+1)*(seconds+1) {
		t.Fatalf("%d records in about %d s with a cap of 3 a second", len(recs), seconds)
	}
}

// restartWith stops g and starts a gateway on its data directory configured
// by mutate, keeping g's admin key (the bootstrap key is printed only at the
// first start).
func restartWith(t *testing.T, g *gateway, mutate func(*configT)) *gateway {
	t.Helper()
	dir := g.srv.DataDir()
	g.stop()
	n := startGateway(t, gwOptions{dataDir: dir, mutate: mutate})
	n.adminKey = g.adminKey
	n.admin = client.New("http://"+n.srv.AdminAddr(), g.adminKey)
	return n
}

// TestAdminKeyCannotMintItselfAStepUpSession: with step_up_max_age on, a
// leaked admin key tries to get what step-up protects by way of a user it
// controls: create a user with the admin role, set its password, log in,
// enrol TOTP, step up, create an admin key. Setting the password is itself
// sensitive, so the chain stops at its second step, for a new user and for
// an existing user without a second factor alike.
func TestAdminKeyCannotMintItselfAStepUpSession(t *testing.T) {
	t.Setenv("GATEHOUSE_KEK", "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=")
	g0 := startGateway(t, gwOptions{})
	ctx := context.Background()
	if _, err := g0.admin.CreateTeam(ctx, "research"); err != nil {
		t.Fatal(err)
	}
	kind, teams, roles := "user", []string{"research"}, []string{"admin"}
	existing := "dormant"
	if _, err := g0.admin.CreatePrincipal(ctx, client.PrincipalInput{Name: &existing, Kind: &kind, Teams: &teams, Roles: &roles}); err != nil {
		t.Fatal(err)
	}
	g := restartWith(t, g0, func(c *configT) { c.StepUpMaxAge = config.Duration(5 * time.Minute) })
	mallory := "mallory"
	if _, err := g.admin.CreatePrincipal(ctx, client.PrincipalInput{Name: &mallory, Kind: &kind, Teams: &teams, Roles: &roles}); err != nil {
		t.Fatalf("creating a user is not sensitive: %v", err)
	}
	var ce *client.Error
	for _, u := range []string{mallory, existing} {
		if err := g.admin.SetPassword(ctx, u, "correct horse battery staple"); !asClientErr(err, &ce) || ce.Code != "step_up_required" || !strings.Contains(ce.Message, "principals.set_password") {
			t.Fatalf("an admin key setting %s's password: %v", u, err)
		}
		if _, _, err := client.New("http://"+g.srv.AdminAddr(), "").Login(ctx, u, "correct horse battery staple", ""); !isStatus(err, 401) {
			t.Fatalf("logging in as %s after the refused password set: %v", u, err)
		}
	}
}

// TestAdminKeyCannotUnlockToKeepGuessing: with step_up_max_age on, a leaked
// admin key holding a user's password cannot guess the user's TOTP five codes
// at a time by clearing the lockout after each five: unlocking is sensitive.
func TestAdminKeyCannotUnlockToKeepGuessing(t *testing.T) {
	t.Setenv("GATEHOUSE_KEK", "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=")
	g := startGateway(t, gwOptions{})
	ctx := context.Background()
	if _, err := g.admin.CreateTeam(ctx, "research"); err != nil {
		t.Fatal(err)
	}
	_, secret, _ := enrolWithRecovery(t, g, "gina", []string{"admin"})
	g = restartWith(t, g, func(c *configT) { c.StepUpMaxAge = config.Duration(5 * time.Minute); c.TrustProxyHeaders = true })
	atk := &attacker{t: t}
	for range 6 {
		atk.json(g, "/v1/auth/login", "", map[string]string{"user": "gina", "password": "correct horse battery staple", "code": wrongCode(t, secret)})
	}
	s, h, body := atk.json(g, "/v1/auth/login", "", map[string]string{"user": "gina", "password": "correct horse battery staple", "code": code(t, secret, time.Now())})
	refusedLocked(t, "the right code after the guesses", s, h, body)
	if code, out, errs := runCLI(t, g, "users", "unlock", "gina"); code == 0 || !strings.Contains(errs, "step_up_required") {
		t.Fatalf("an admin key unlocking under step_up_max_age: %d %s %s", code, out, errs)
	}
	if code, out, errs := runCLI(t, g, "users", "unlock", "--subject", "source:127.0.0.1"); code == 0 || !strings.Contains(errs, "step_up_required") {
		t.Fatalf("an admin key clearing a subject under step_up_max_age: %d %s %s", code, out, errs)
	}
	s, h, body = atk.json(g, "/v1/auth/login", "", map[string]string{"user": "gina", "password": "correct horse battery staple", "code": code(t, secret, time.Now())})
	refusedLocked(t, "the right code after the refused unlock", s, h, body)
}

// TestCLILoginSaysWhenTheSessionMayOnlyEnrol: `gatehouse login` for a user
// without a second factor under require_mfa says the session may only enrol
// one and how, instead of "Logged in until …" for a session every other
// command would refuse.
func TestCLILoginSaysWhenTheSessionMayOnlyEnrol(t *testing.T) {
	g, pw := requireMFAUser(t, "erin")
	var out, errb bytes.Buffer
	env := map[string]string{"GATEHOUSE_ADDR": "http://" + g.srv.AdminAddr()}
	code := cli.Run(context.Background(), []string{"login", "--user", "erin", "--password-stdin"},
		&cli.Env{Stdin: strings.NewReader(pw + "\n"), Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }})
	if code != 0 || strings.Contains(out.String(), "Logged in until") || !strings.Contains(out.String(), "totp-enroll --password-stdin") ||
		!strings.Contains(out.String(), "export GATEHOUSE_ADMIN_KEY=gks_") {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errb.String())
	}
}
