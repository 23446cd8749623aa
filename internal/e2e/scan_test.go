package e2e

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestScanNeverPrintsTheSecret: gatehouse scan, as text and --json, with and
// without the gateway, and when asking the gateway fails: the live key is
// found (plain and base64-encoded) and reported LIVE by hint, and no output or
// error carries the key, in any form.
func TestScanNeverPrintsTheSecret(t *testing.T) {
	f := newFixture(t, gwOptions{})
	dir := t.TempDir()
	b64 := base64.StdEncoding.EncodeToString([]byte(f.key))
	os.WriteFile(filepath.Join(dir, "app.env"), []byte("OPENAI_API_KEY="+f.key+"\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "secret.yaml"), []byte("data:\n  token: "+b64+"\n"), 0o644)
	leaks := func(what, s string) {
		t.Helper()
		if strings.Contains(s, f.key) || strings.Contains(s, b64) || strings.Contains(s, f.key[3:]) {
			t.Errorf("%s prints the key:\n%s", what, s)
		}
	}
	code, out, errs := runCLI(t, f.gateway, "scan", "--json", dir)
	leaks("scan --json", out+errs)
	var found []struct {
		File     string `json:"file"`
		Hint     string `json:"hint"`
		KeyID    string `json:"key_id"`
		Live     *bool  `json:"live"`
		Encoding string `json:"encoding"`
	}
	if err := json.Unmarshal([]byte(out), &found); err != nil {
		t.Fatalf("scan --json: exit %d: %v\n%s%s", code, err, out, errs)
	}
	if code != 1 || len(found) != 2 {
		t.Fatalf("scan --json: exit %d, %d found\n%s", code, len(found), out)
	}
	encodings := map[string]bool{}
	for _, m := range found {
		encodings[m.Encoding] = true
		if m.KeyID != f.keyID || m.Live == nil || !*m.Live || m.Hint == "" {
			t.Errorf("match %+v: want key %s, live, with a hint", m, f.keyID)
		}
	}
	if !encodings[""] || !encodings["base64"] {
		t.Errorf("encodings %v: want the plain and the base64 key", encodings)
	}
	code, out, errs = runCLI(t, f.gateway, "scan", dir)
	leaks("scan", out+errs)
	if code != 1 || strings.Count(out, "LIVE") != 2 {
		t.Errorf("scan: exit %d\n%s", code, out)
	}
	// The gateway unreachable: what was found is still shown, by hint only.
	code, out, errs = runCLIAt(t, "http://127.0.0.1:1", "gka_notreallyakey", "scan", dir)
	leaks("scan with the gateway down", out+errs)
	if code == 0 || !strings.Contains(out, "app.env:1") {
		t.Errorf("scan with the gateway down: exit %d\n%s%s", code, out, errs)
	}
}
