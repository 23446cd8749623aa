package config

import (
	"strings"
	"testing"
)

func TestParseMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{"32MiB", 32 << 20, false},
		{"1GiB", 1 << 30, false},
		{" 64 MiB ", 64 << 20, false},
		{"20000000", 20000000, false},
		{"20000000B", 20000000, false},
		{"16384KiB", 16 << 20, false},
		{"off", 0, false},
		{"OFF", 0, false},
		{"", 0, true},
		{"15MiB", 0, true}, // below the floor
		{"0", 0, true},     // "off" says it; 0 would be a typo's limit
		{"-1MiB", 0, true},
		{"32MB", 0, true}, // GOMEMLIMIT's suffixes only
		{"32mib", 0, true},
		{"1.5GiB", 0, true},
		{"9999999TiB", 0, true}, // overflows
		{"lots", 0, true},
	} {
		got, err := ParseMemoryLimit(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("ParseMemoryLimit(%q) = %d, %v; want %d, bad=%v", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func TestMemoryLimitConfig(t *testing.T) {
	c := Default()
	if c.MemoryLimit != DefaultMemoryLimit {
		t.Fatalf("default memory_limit %q", c.MemoryLimit)
	}
	if err := c.Parse([]byte("memory_limit: 128MiB\n")); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil || c.MemoryLimit != "128MiB" {
		t.Fatalf("memory_limit: 128MiB: %q, %v", c.MemoryLimit, err)
	}
	c = Default()
	if err := c.LoadEnv(func(k string) string {
		if k == "GATEHOUSE_MEMORY_LIMIT" {
			return "off"
		}
		return ""
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil || c.MemoryLimit != "off" {
		t.Fatalf("GATEHOUSE_MEMORY_LIMIT=off: %q, %v", c.MemoryLimit, err)
	}
	c = Default()
	c.MemoryLimit = "4MiB"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "memory_limit") {
		t.Fatalf("memory_limit 4MiB: %v", err)
	}
	c = Default()
	c.MemoryLimit = "" // a Config built without Default: the default applies
	if err := c.Validate(); err != nil || c.MemoryLimit != DefaultMemoryLimit {
		t.Fatalf("empty memory_limit: %q, %v", c.MemoryLimit, err)
	}
}
