package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/client"
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
