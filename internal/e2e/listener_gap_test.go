package e2e

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/config"
)

// TestRevokedWhileTheListenerWasAway is the attack "keep using a leaked key
// on a replica that missed its revocation": a replica's change listener is
// cut off from PostgreSQL (its proxy killed) while another replica revokes a
// key the first one has cached, disables another key's principal and
// revokes a principal's tokens. Their notifications are lost. When the listener is back, the replica must not
// serve the cached copies until the key cache TTL (30 s here) ends: after a
// reconnect it forgets every cached key and principal, as it reloads its
// snapshot (docs/operations.md: "after a reconnect the replica reloads
// everything").
func TestRevokedWhileTheListenerWasAway(t *testing.T) {
	t.Parallel()
	c := startClusterWith(t, 2, func(c *config.Config) {
		c.KeyCacheTTL, c.ConfigPollInterval = config.Duration(30*time.Second), config.Duration(30*time.Second)
	})
	ctx := context.Background()
	far := c.gws[1].dataURL
	call := func(key string) int { return fire([]string{far}, key, 1)[0].status }

	leaked, err := c.fx.admin.CreateKey(ctx, client.KeyInput{Principal: "agent", Name: "leaked"})
	if err != nil {
		t.Fatal(err)
	}
	name, teams := "intern", []string{"research"}
	if _, err := c.fx.admin.CreatePrincipal(ctx, client.PrincipalInput{Name: &name, Teams: &teams}); err != nil {
		t.Fatal(err)
	}
	owned, err := c.fx.admin.CreateKey(ctx, client.KeyInput{Principal: "intern", Name: "owned"})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{leaked.Secret, owned.Secret} {
		if s := call(k); s != http.StatusOK { // cached on the far replica
			t.Fatalf("before: %d", s)
		}
	}

	// A token of the fixture's key, verified (and cached) on the far replica.
	s, tok := postToken(t, far, url.Values{"grant_type": {"client_credentials"}, "client_secret": {c.fx.key}}, nil)
	if s != http.StatusOK {
		t.Fatalf("token: %d %+v", s, tok)
	}
	if s, code := chatWith(t, far, "Bearer "+tok.AccessToken, ""); s != http.StatusOK {
		t.Fatalf("the token before: %d %q", s, code)
	}

	c.proxies[1].Kill() // the far replica's listener (and pool) lose the store
	if _, err := c.fx.admin.RevokeKey(ctx, leaked.ID, ""); err != nil {
		t.Fatal(err)
	}
	disabled := true
	if _, err := c.fx.admin.UpdatePrincipal(ctx, "intern", client.PrincipalInput{Disabled: &disabled}, ""); err != nil {
		t.Fatal(err)
	}
	if err := c.fx.admin.RevokeTokens(ctx, "", "agent"); err != nil {
		t.Fatal(err)
	}
	c.proxies[1].Restore()

	// Well under the 30 s TTL: only forgetting on reconnect explains a refusal.
	for name, k := range map[string]string{"revoked key": leaked.Secret, "disabled principal's key": owned.Secret} {
		if !waitFor(10*time.Second, func() bool { return call(k) == http.StatusUnauthorized }) {
			t.Errorf("%s: still served by the replica whose listener missed the change, 10 s after it reconnected (cached until the key cache TTL)", name)
		}
	}
	if !waitFor(10*time.Second, func() bool {
		s, code := chatWith(t, far, "Bearer "+tok.AccessToken, "")
		return s == http.StatusUnauthorized && code == "token_revoked"
	}) {
		t.Error("a token revoked while the listener was away still works on its replica 10 s after the reconnect (config poll: 30 s)")
	}
}
