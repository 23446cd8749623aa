package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/client"
)

// TestKeysShowEffectiveState: a key expired by its team's maximum age shows
// as expired in the admin API, `keys show` and `keys list`, exactly when the
// data plane refuses it, and active again when the limit is lifted.
func TestKeysShowEffectiveState(t *testing.T) {
	f := newFixture(t, gwOptions{})
	ctx := context.Background()
	k, err := f.admin.Key(ctx, f.keyID)
	if err != nil || k.State != "active" || k.EffectiveExpiresAt != nil {
		t.Fatalf("a fresh key without limits: state %q expiry %v (%v)", k.State, k.EffectiveExpiresAt, err)
	}
	second, zero := "1s", "0s"
	if _, err := f.admin.UpdateTeam(ctx, "research", client.TeamInput{MaxKeyAge: &second}, ""); err != nil {
		t.Fatal(err)
	}
	// Wait until the data plane refuses the key (it is older than 1s), then
	// the admin API must agree.
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, c := chatWith(t, f.dataURL, "Bearer "+f.key, "")
		if s == 401 && c == "key_expired" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the data plane still answers %d %q", s, c)
		}
		time.Sleep(100 * time.Millisecond)
	}
	k, err = f.admin.Key(ctx, f.keyID)
	if err != nil || k.State != "expired" || k.ExpiresAt != nil || k.EffectiveExpiresAt == nil || !k.EffectiveExpiresAt.Equal(k.CreatedAt.Add(time.Second)) {
		t.Fatalf("admin API for a key past its team's max age: state %q expires_at %v effective %v (%v)", k.State, k.ExpiresAt, k.EffectiveExpiresAt, err)
	}
	keys, err := f.admin.ListKeys(ctx, client.KeyFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range keys {
		if l.ID == f.keyID && l.State != "expired" {
			t.Fatalf("keys list: state %q", l.State)
		}
	}
	code, out, errOut := runCLI(t, f.gateway, "keys", "show", f.keyID)
	if code != 0 || !strings.Contains(out, "State:       expired") || strings.Contains(out, "Expires:     -") {
		t.Fatalf("keys show (%d): %s %s", code, out, errOut)
	}
	code, out, _ = runCLI(t, f.gateway, "keys", "show", f.keyID, "--json")
	var js map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &js) != nil || js["state"] != "expired" || js["effective_expires_at"] == nil {
		t.Fatalf("keys show --json (%d): %s", code, out)
	}
	code, out, _ = runCLI(t, f.gateway, "keys", "list")
	if code != 0 || !strings.Contains(out, "expired") {
		t.Fatalf("keys list (%d): %s", code, out)
	}
	if _, err := f.admin.UpdateTeam(ctx, "research", client.TeamInput{MaxKeyAge: &zero}, ""); err != nil {
		t.Fatal(err)
	}
	if k, err = f.admin.Key(ctx, f.keyID); err != nil || k.State != "active" {
		t.Fatalf("after the team's limit was lifted: %q %v", k.State, err)
	}
	if s, c := chatWith(t, f.dataURL, "Bearer "+f.key, ""); s != 200 {
		t.Fatalf("the data plane after the limit was lifted: %d %q", s, c)
	}
}
