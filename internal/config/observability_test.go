package config

import (
	"os"
	"path/filepath"
	"testing"
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
	if err := c.Parse([]byte("metrics: {per_key_labels: true, token_file: /x}\ntelemetry: {traces: true}\nledger: {verify_interval: 10m}\n")); err != nil {
		t.Fatal(err)
	}
	if !c.Metrics.PerKeyLabels || c.Metrics.TokenFile != "/x" || !c.Telemetry.Traces || c.Ledger.VerifyInterval.D().Minutes() != 10 {
		t.Fatalf("%+v %+v %+v", c.Metrics, c.Telemetry, c.Ledger)
	}
	c.Ledger.VerifyInterval = -1
	if err := c.Validate(); err == nil {
		t.Fatal("a negative verify_interval was accepted")
	}
}
