package e2e

import (
	"context"
	"net/url"
	"testing"
	"time"
)

// TestOldSecretsTokensEndWithItsGrace is the attack "the key leaked, the
// owner rotated it with a grace period; during the grace, trade the old
// secret for tokens and keep calling after it": the old secret works until
// its grace ends (docs/identity.md), and so must whatever it is exchanged
// for. A token exchanged with the previous secret expires when its grace
// does, not a token lifetime later; one exchanged with the new secret
// keeps the full lifetime.
func TestOldSecretsTokensEndWithItsGrace(t *testing.T) {
	f := newFixture(t, gwOptions{})
	ctx := context.Background()
	rotated, err := f.admin.RotateKey(ctx, f.keyID, "5s")
	if err != nil {
		t.Fatal(err)
	}
	graceEnds := time.Now().Add(5 * time.Second)
	s, old := postToken(t, f.dataURL, url.Values{"grant_type": {"client_credentials"}, "client_secret": {f.key}}, nil)
	if s != 200 {
		t.Fatalf("exchange of the old secret during its grace: %d %+v", s, old)
	}
	if old.ExpiresIn > 5 {
		t.Errorf("a token of the old secret: expires_in %d, beyond the secret's 5 s grace", old.ExpiresIn)
	}
	s, fresh := postToken(t, f.dataURL, url.Values{"grant_type": {"client_credentials"}, "client_secret": {rotated.Secret}}, nil)
	if s != 200 || fresh.ExpiresIn != int((15*time.Minute).Seconds()) {
		t.Fatalf("exchange of the new secret: %d %+v", s, fresh)
	}
	if s, c := chatWith(t, f.dataURL, "Bearer "+old.AccessToken, ""); s != 200 {
		t.Fatalf("the old secret's token during the grace: %d %q", s, c)
	}
	time.Sleep(time.Until(graceEnds) + 1100*time.Millisecond) // exp is in whole seconds
	if s, c := chatWith(t, f.dataURL, "Bearer "+f.key, ""); s != 401 || c != "key_rotated" {
		t.Fatalf("the old secret after its grace: %d %q", s, c)
	}
	if s, c := chatWith(t, f.dataURL, "Bearer "+old.AccessToken, ""); s != 401 || c != "token_expired" {
		t.Errorf("the old secret's token after its grace: %d %q, want 401 token_expired", s, c)
	}
	if s, c := chatWith(t, f.dataURL, "Bearer "+fresh.AccessToken, ""); s != 200 {
		t.Errorf("the new secret's token: %d %q", s, c)
	}
}
