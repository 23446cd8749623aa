package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMetricsToken(t *testing.T) {
	dir := t.TempDir()
	good, short := filepath.Join(dir, "good"), filepath.Join(dir, "short")
	os.WriteFile(good, []byte("  scrape-token-0123456789\n"), 0o600)
	os.WriteFile(short, []byte("short\n"), 0o600)
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	for _, c := range []struct {
		file string
		env  map[string]string
		want string
		err  bool
	}{
		{"", nil, "", false}, // open by default
		{good, nil, "scrape-token-0123456789", false},
		{good, map[string]string{"GATEHOUSE_METRICS_TOKEN": "from-the-environment"}, "from-the-environment", false},
		{short, nil, "", true},
		{filepath.Join(dir, "missing"), nil, "", true},
	} {
		got, err := Metrics{TokenFile: c.file}.Token(env(c.env))
		if got != c.want || (err != nil) != c.err {
			t.Errorf("file %q env %v: %q, %v", c.file, c.env, got, err)
		}
	}
}

func TestObservabilityYAML(t *testing.T) {
	c := Default()
	if err := c.Parse([]byte("metrics: {per_key_labels: true, token_file: /x}\ntelemetry: {traces: true}\n")); err != nil {
		t.Fatal(err)
	}
	if !c.Metrics.PerKeyLabels || c.Metrics.TokenFile != "/x" || !c.Telemetry.Traces {
		t.Fatalf("%+v %+v", c.Metrics, c.Telemetry)
	}
}

// TestOldLedgerVerifyIntervalMapped: the gateway verifies its log once
// (audit.log_verify_interval); the old ledger.verify_interval is moved there
// or refused with a message that names the new key — never ignored.
func TestOldLedgerVerifyIntervalMapped(t *testing.T) {
	for _, c := range []struct {
		yaml string
		want time.Duration // audit.log_verify_interval after Validate
		err  string        // a refusal must say this
	}{
		{"", time.Hour, ""},
		{"audit: {log_verify_interval: 20m}", 20 * time.Minute, ""},
		{"audit: {log_verify_interval: -1s}", -time.Second, ""},
		{"ledger: {verify_interval: 10m}", 10 * time.Minute, ""},
		{"ledger: {verify_interval: 10m}\naudit: {log_verify_interval: 10m}", 10 * time.Minute, ""},
		{"ledger: {verify_interval: 10m}\naudit: {log_verify_interval: 20m}", 0, "disagree"},
		{"ledger: {verify_interval: 10m}\naudit: {log_verify_interval: -1s}", 0, "disagree"},
		{"ledger: {verify_interval: 0s}", 0, "audit.log_verify_interval"},
		{"ledger: {verify_interval: -5m}", 0, "audit.log_verify_interval"},
	} {
		cfg := Default()
		cfg.DataDir = t.TempDir()
		if err := cfg.Parse([]byte(c.yaml)); err != nil {
			t.Fatalf("%q: %v", c.yaml, err)
		}
		err := cfg.Validate()
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: want a refusal saying %q, got %v", c.yaml, c.err, err)
		case c.err == "" && err != nil:
			t.Errorf("%q: %v", c.yaml, err)
		case c.err == "" && cfg.Audit.WithDefaults().LogVerifyInterval != c.want:
			t.Errorf("%q: audit.log_verify_interval %s, want %s", c.yaml, cfg.Audit.WithDefaults().LogVerifyInterval, c.want)
		}
		if c.err == "" { // Validate runs again on reload: the mapping holds
			if err := cfg.Validate(); err != nil {
				t.Errorf("%q: second Validate: %v", c.yaml, err)
			}
		}
	}
}
