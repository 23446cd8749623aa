package e2e

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/client"
)

// TestTokenDiesWithItsKeysMaxAge is the attack "exchange a key for a token
// before it reaches its maximum age, and keep calling with the token": a
// token dies with its key (docs/identity.md), and a key past its team's
// maximum age is expired, so its tokens are refused from the same moment
// as the key itself, not when the token expires (15 minutes here).
func TestTokenDiesWithItsKeysMaxAge(t *testing.T) {
	f := newFixture(t, gwOptions{})
	ctx := context.Background()
	status, tr := postToken(t, f.dataURL, url.Values{"grant_type": {"client_credentials"}, "client_secret": {f.key}}, nil)
	if status != 200 {
		t.Fatalf("token: %d %+v", status, tr)
	}
	if s, c := chatWith(t, f.dataURL, "Bearer "+tr.AccessToken, ""); s != 200 {
		t.Fatalf("the token before: %d %q", s, c)
	}
	second := "1s"
	if _, err := f.admin.UpdateTeam(ctx, "research", client.TeamInput{MaxKeyAge: &second}, ""); err != nil {
		t.Fatal(err)
	}
	if !waitFor(5*time.Second, func() bool {
		s, c := chatWith(t, f.dataURL, "Bearer "+f.key, "")
		return s == 401 && c == "key_expired"
	}) {
		t.Fatal("the key itself is not refused past its team's maximum age")
	}
	if s, c := chatWith(t, f.dataURL, "Bearer "+tr.AccessToken, ""); s != 401 || c != "key_revoked" {
		t.Fatalf("a token of a key past its maximum age: %d %q, want 401 key_revoked (the key is expired)", s, c)
	}
}
