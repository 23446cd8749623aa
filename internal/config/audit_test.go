package config

import (
	"strings"
	"testing"
	"time"
)

func TestAuditSection(t *testing.T) {
	c := Default()
	if c.Audit.Interval != time.Hour || c.Audit.UnusedKeyAfter != 90*24*time.Hour {
		t.Fatalf("defaults: %+v", c.Audit)
	}
	err := c.Parse([]byte(`
audit:
  interval: 30m
  unused_key_after: 720h
  denial_spike: 5
  reports:
    - {name: weekly, every: weekly, at: "07:00", time_zone: Europe/Berlin}
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Audit.Interval != 30*time.Minute || c.Audit.UnusedKeyAfter != 720*time.Hour || c.Audit.DenialSpike != 5 || c.Audit.KeyMaxAge != 180*24*time.Hour {
		t.Fatalf("parsed: %+v", c.Audit)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		"audit:\n  interval: soon\n",
		"audit:\n  reports:\n    - {name: x, every: hourly}\n",
		"audit:\n  anomaly_window: 400h\n",
		"audit:\n  secret_scanning:\n    public_keys:\n      - {key_identifier: k, key: nope}\n",
		"audit:\n  unknown_threshold: 3\n",
	} {
		c := Default()
		err := c.Parse([]byte(bad))
		if err == nil {
			err = c.Validate()
		}
		if err == nil {
			t.Errorf("accepted:\n%s", bad)
		} else if strings.Contains(err.Error(), "panic") {
			t.Errorf("%s: %v", bad, err)
		}
	}
}
