package e2e

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/cli"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// TestDevAdminKey: `serve --dev --dev-admin-key K` either makes K a working
// admin key (a valid gka_ key, or any string that does not look like a
// Gatehouse key), or refuses to start with a clear error that does not repeat
// K (a string starting like a key but failing its checksum, or a gk_ key):
// never "accepted" at start and 401 on every call.
func TestDevAdminKey(t *testing.T) {
	ctx := context.Background()
	for name, key := range map[string]string{
		"a valid admin key": string(vkey.Generate(vkey.KindAdmin)),
		"free form":         "dev-admin-key-for-tests",
	} {
		c := startChild(t, nil, "--dev", "--dev-admin-key", key)
		if c.adminKey != key {
			t.Fatalf("%s: the banner printed %q", name, c.adminKey)
		}
		if _, err := client.New(c.adminURL, key).CreateTeam(ctx, "t-"+strings.ReplaceAll(name, " ", "-")); err != nil {
			t.Errorf("%s: an admin call with the printed key: %v", name, err)
		}
		if _, err := client.New(c.adminURL, string(vkey.Generate(vkey.KindAdmin))).CreateTeam(ctx, "nope"); err == nil {
			t.Errorf("%s: another admin key was accepted", name)
		}
	}

	valid := string(vkey.Generate(vkey.KindAdmin))
	last := "a"
	if strings.HasSuffix(valid, "a") {
		last = "b"
	}
	for name, key := range map[string]string{
		"gka_ with a wrong checksum": valid[:len(valid)-1] + last,
		"gka_ of a made-up body":     "gka_devdevdevdevdevdev",
		"a data-plane key":           string(vkey.Generate(vkey.KindVirtual)),
	} {
		var out, errb bytes.Buffer
		code := cli.Run(ctx, []string{"serve", "--dev", "--dev-admin-key", key, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"},
			&cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }})
		msg := errb.String()
		if code == 0 || !strings.Contains(msg, "--dev-admin-key starts like a Gatehouse key but is not a valid admin key") {
			t.Errorf("%s: exit %d, stderr %q", name, code, msg)
		}
		if strings.Contains(msg+out.String(), key) {
			t.Errorf("%s: the refused key is repeated in the output", name)
		}
		if strings.Contains(out.String(), "Gatehouse is running") {
			t.Errorf("%s: the gateway started", name)
		}
	}
}
