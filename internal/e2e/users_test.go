package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/client"
)

// userPassword is the password of every test user passwordUser makes.
const userPassword = "correct horse battery staple"

// passwordUser makes a user of team research (newFixture's) with roles and
// userPassword, logs it in and returns its session.
func passwordUser(t *testing.T, g *gateway, name string, roles []string) string {
	t.Helper()
	ctx := context.Background()
	kind, teams := "user", []string{"research"}
	if _, err := g.admin.CreatePrincipal(ctx, client.PrincipalInput{Name: &name, Kind: &kind, Teams: &teams, Roles: &roles}); err != nil {
		t.Fatal(err)
	}
	if err := g.admin.SetPassword(ctx, name, userPassword); err != nil {
		t.Fatal(err)
	}
	session, _, err := client.New("http://"+g.srv.AdminAddr(), "").Login(ctx, name, userPassword, "")
	if err != nil {
		t.Fatalf("login of %s before TOTP: %v", name, err)
	}
	return session
}

// enrolTOTP enrols TOTP for the session's user and confirms it with the code
// of the step at; it returns the secret and the recovery codes.
func enrolTOTP(t *testing.T, g *gateway, session string, at time.Time) (secret string, recovery []string) {
	t.Helper()
	ctx := context.Background()
	sc := client.New("http://"+g.srv.AdminAddr(), session)
	secret, _, err := sc.EnrollTOTP(ctx)
	if err != nil {
		t.Fatal(err)
	}
	recovery, err = sc.ConfirmTOTP(ctx, code(t, secret, at))
	if err != nil {
		t.Fatalf("confirm: %v", err)
	}
	return secret, recovery
}
