package e2e

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/client"
)

// TestResetFactorsEndsTheTokensOfTheLostFactor is the attack "phish the
// owner's key and TOTP code, exchange them for a token, and keep calling
// after the owner reported the phone lost": an administrator's factor reset
// ends the user's sessions, and must end the tokens the lost factor was
// used for too (the token's gh_mfa vouches for a factor declared lost), not
// leave them working until they expire.
func TestResetFactorsEndsTheTokensOfTheLostFactor(t *testing.T) {
	f := newFixture(t, gwOptions{})
	ctx := context.Background()
	_, secret := enrolUser(t, f, "bob", []string{"member"})
	k, err := f.admin.CreateKey(ctx, client.KeyInput{Principal: "bob", MFARequired: true})
	if err != nil {
		t.Fatal(err)
	}
	s, tr := postToken(t, f.dataURL, url.Values{"grant_type": {"client_credentials"}, "client_secret": {k.Secret}, "totp": {code(t, secret, time.Now().Add(30*time.Second))}}, nil)
	if s != 200 {
		t.Fatalf("exchange with a code: %d %+v", s, tr)
	}
	if s, c := chatWith(t, f.dataURL, "Bearer "+tr.AccessToken, ""); s != 200 {
		t.Fatalf("the MFA token before the reset: %d %q", s, c)
	}
	if err := f.admin.ResetFactors(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if s, c := chatWith(t, f.dataURL, "Bearer "+tr.AccessToken, ""); s != 401 || c != "token_revoked" {
		t.Fatalf("the MFA token after the owner's factors were reset: %d %q, want 401 token_revoked", s, c)
	}
}
