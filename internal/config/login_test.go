package config

import (
	"strings"
	"testing"
)

// TestPasswordHashCPUPercent: the duty cycle of a hashing slot is read from
// the login block, defaults to 50, and must be 1 to 100.
func TestPasswordHashCPUPercent(t *testing.T) {
	if p := Default().Login.PasswordHashCPUPercent; p != 50 {
		t.Fatalf("default %d, want 50", p)
	}
	c := Default()
	if err := c.Parse([]byte("login:\n  password_hash_cpu_percent: 25\n")); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil || c.Login.PasswordHashCPUPercent != 25 {
		t.Fatalf("parsed %d, %v", c.Login.PasswordHashCPUPercent, err)
	}
	for _, p := range []int{0, -1, 101} {
		c := Default()
		c.Parse(nil)
		c.Login.PasswordHashCPUPercent = p
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "password_hash_cpu_percent") {
			t.Errorf("%d%%: %v", p, err)
		}
	}
}
