package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/config"
)

// TestEnrolmentHijackRefused replays issue #10's sequence: a session past its
// step-up window is refused an admin key, then tries to replace the user's
// TOTP with a secret of its own to get a fresh MFA time. Every path to
// changing a factor without the existing factor is refused, no refusal or
// change refreshes the session's MFA time, the user's real authenticator keeps
// working, and a legitimate change (with a proof) ends the other sessions and
// alerts.
func TestEnrolmentHijackRefused(t *testing.T) {
	hook := newWebhook(t)
	t.Setenv("GATEHOUSE_ALERT_WEBHOOK_SECRET", "whsec-test")
	// The user is set up before step_up_max_age is on (with it on, an admin
	// key cannot set a password).
	g := startGateway(t, gwOptions{})
	ctx := context.Background()
	if _, err := g.admin.CreateTeam(ctx, "research"); err != nil {
		t.Fatal(err)
	}
	first, secret, recovery := enrolWithRecovery(t, g, "erin@example.com", []string{"admin"})
	g = restartWith(t, g, func(c *configT) {
		c.StepUpMaxAge = config.Duration(time.Second)
		c.AlertWebhookURL = hook.url
	})
	anon := client.New("http://"+g.srv.AdminAddr(), "")
	var out struct {
		Session string `json:"session"`
	}
	if _, err := anon.DoJSON(ctx, "POST", "/v1/auth/login", map[string]string{"user": "erin@example.com", "password": "correct horse battery staple", "recovery_code": recovery[0]}, &out); err != nil {
		t.Fatal(err)
	}
	s := client.New("http://"+g.srv.AdminAddr(), out.Session) // the hijacked session
	time.Sleep(2500 * time.Millisecond)                       // its MFA is now older than step_up_max_age

	var ce *client.Error
	if _, err := s.CreateKey(ctx, client.KeyInput{Principal: "erin@example.com", Kind: "admin"}); !asClientErr(err, &ce) || ce.Code != "step_up_required" {
		t.Fatalf("admin key from a stale session: %v", err)
	}
	refusals := []struct {
		what string
		call func() error
		code string
	}{
		{"enrol TOTP without a proof", func() error { _, _, err := s.EnrollTOTP(ctx); return err }, "factor_proof_required"},
		{"enrol TOTP with a wrong code", func() error {
			_, _, err := s.EnrollTOTPWithProof(ctx, client.FactorProof{Code: wrongCode(t, secret)})
			return err
		}, "invalid_code"},
		{"enrol TOTP with the password", func() error {
			_, _, err := s.EnrollTOTPWithProof(ctx, client.FactorProof{Password: "correct horse battery staple"})
			return err
		}, "factor_proof_required"},
		{"confirm with nothing pending", func() error { _, err := s.ConfirmTOTP(ctx, code(t, secret, time.Now())); return err }, "invalid_value"},
		{"new recovery codes without a proof", func() error { _, err := s.RegenerateRecoveryCodes(ctx, client.FactorProof{}); return err }, "factor_proof_required"},
		{"change the password with the password only", func() error {
			return s.ChangePassword(ctx, "a brand new password 1", client.FactorProof{Password: "correct horse battery staple"})
		}, "factor_proof_required"},
		{"set its own password through the admin route", func() error { return s.SetPassword(ctx, "erin@example.com", "a brand new password 2") }, "step_up_required"},
		{"reset its own factors through the admin route", func() error { return s.ResetFactors(ctx, "erin@example.com") }, "step_up_required"},
	}
	for _, r := range refusals {
		if err := r.call(); !asClientErr(err, &ce) || ce.Code != r.code {
			t.Errorf("%s: want %s, got %v", r.what, r.code, err)
		}
	}
	if _, err := s.CreateKey(ctx, client.KeyInput{Principal: "erin@example.com", Kind: "admin"}); !asClientErr(err, &ce) || ce.Code != "step_up_required" {
		t.Fatalf("admin key after the attempts (the MFA time must not have moved): %v", err)
	}

	// A legitimate change with a proof (a recovery code) works, ends the other
	// sessions, alerts, and still does not refresh the session's MFA time.
	codes, err := s.RegenerateRecoveryCodes(ctx, client.FactorProof{RecoveryCode: recovery[1]})
	if err != nil || len(codes) != 10 {
		t.Fatalf("new recovery codes with a proof: %v", err)
	}
	if _, err := client.New("http://"+g.srv.AdminAddr(), first).ListTeams(ctx); !isStatus(err, 401) {
		t.Errorf("the user's other session after a factor change: %v", err)
	}
	if _, err := s.ListTeams(ctx); err != nil {
		t.Errorf("the changing session itself: %v", err)
	}
	if _, err := s.CreateKey(ctx, client.KeyInput{Principal: "erin@example.com", Kind: "admin"}); !asClientErr(err, &ce) || ce.Code != "step_up_required" {
		t.Fatalf("admin key after a factor change: %v", err)
	}
	var alerted map[string]any
	for _, a := range hook.wait(t, 1) {
		if a["kind"] == "factor_changed" {
			alerted = a
		}
	}
	d, _ := alerted["details"].(map[string]any)
	if alerted == nil || d["notify"] != "erin@example.com" || !strings.Contains(alerted["message"].(string), "recovery codes regenerated") {
		t.Fatalf("factor_changed alert: %v (all: %v)", alerted, hook.all())
	}
	// The real authenticator still works: step up with it, then the admin key.
	if err := s.StepUp(ctx, code(t, secret, time.Now().Add(30*time.Second))); err != nil {
		t.Fatalf("step-up with the real authenticator: %v", err)
	}
	if _, err := s.CreateKey(ctx, client.KeyInput{Principal: "erin@example.com", Kind: "admin"}); err != nil {
		t.Fatalf("admin key after a real step-up: %v", err)
	}
}
