package e2e

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/client"
)

// TestTOTPReplayAndLockoutSurviveRestart is the attack "restart the gateway
// (or wait for a deploy) to forget what it knew": a TOTP code used at the
// token endpoint stays used after a restart, and a user locked out by wrong
// codes stays locked after another, even for the right code: both live in
// the store, not in the process.
func TestTOTPReplayAndLockoutSurviveRestart(t *testing.T) {
	f := newFixture(t, gwOptions{})
	ctx := context.Background()
	_, secret := enrolUser(t, f, "bob", []string{"member"})
	mk, err := f.admin.CreateKey(ctx, client.KeyInput{Principal: "bob", MFARequired: true})
	if err != nil {
		t.Fatal(err)
	}
	exchange := func(g *gateway, code string) (int, tokenResp) {
		return postToken(t, g.dataURL, url.Values{"grant_type": {"client_credentials"}, "client_secret": {mk.Secret}, "totp": {code}}, nil)
	}
	used := code(t, secret, time.Now().Add(30*time.Second))
	if s, r := exchange(f.gateway, used); s != 200 {
		t.Fatalf("the right code: %d %+v", s, r)
	}
	g := restartWith(t, f.gateway, nil)
	if s, r := exchange(g, used); s != 401 {
		t.Fatalf("the same code after a restart: %d %+v, want 401", s, r)
	}
	for i := range 4 { // the replay was the first failure
		if s, r := exchange(g, wrongCode(t, secret)); s != 401 {
			t.Fatalf("wrong code %d: %d %+v", i+2, s, r)
		}
	}
	g = restartWith(t, g, nil)
	right := code(t, secret, time.Now())
	if s, r := exchange(g, right); s != 429 || r.Error != "too_many_attempts" {
		t.Fatalf("a code after five failures and a restart: %d %+v, want 429 too_many_attempts", s, r)
	}
}
