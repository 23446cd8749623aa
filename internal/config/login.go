package config

import (
	"errors"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/lockout"
)

// Login configures attempt limits on guessable secrets (package lockout) and
// the cost of logins (docs/security.md, "Limits").
type Login struct {
	// MaxFailures wrong guesses of one factor of one user (password, TOTP,
	// recovery codes) fit in FailureWindow; the attempt after them is refused,
	// right or wrong, for Lockout, doubling per lock up to MaxLockout.
	MaxFailures   int      `yaml:"max_failures"`
	FailureWindow Duration `yaml:"failure_window"`
	Lockout       Duration `yaml:"lockout"`
	MaxLockout    Duration `yaml:"max_lockout"`
	// SourceMaxFailures failures of any secret from one source address lock
	// the address the same way (login names, codes, client secrets).
	SourceMaxFailures int `yaml:"source_max_failures"`
	// SourceRequestsPerMinute bounds unauthenticated auth requests (logins,
	// the token endpoint) from one address, right or wrong; 0: off.
	SourceRequestsPerMinute int64 `yaml:"source_requests_per_minute"`
	// PasswordHashMemoryMiB is the memory argon2id may use at once: 64 MiB
	// per password check, so 256 allows 4 at a time (and at most one per CPU
	// beyond the first, package mfa). Others wait up to
	// PasswordHashWait, then get 503 with Retry-After.
	PasswordHashMemoryMiB int64    `yaml:"password_hash_memory_mib"`
	PasswordHashWait      Duration `yaml:"password_hash_wait"`
	// PasswordHashCPUPercent is the share of its time a hashing slot may
	// hash while logins wait for it (1-100): a run of d is followed by a
	// pause of d × (100 − p) / p before the next waiter starts, so a flood
	// leaves the data plane more of the CPU; 100: no pause.
	PasswordHashCPUPercent int `yaml:"password_hash_cpu_percent"`
	// DeniedRecordsPerSecond caps the credential.denied records a replica
	// writes per second (package denylog); refusals over it share one
	// aggregated record per second.
	DeniedRecordsPerSecond int `yaml:"denied_records_per_second"`
}

// DefaultLogin is 5 failures per factor and 20 per address in 15 minutes,
// 15 minutes locked doubling to a day, 60 auth requests a minute per address,
// 256 MiB of argon2id hashing at most half the time under contention, 100
// refused-credential records a second.
func DefaultLogin() Login {
	return Login{MaxFailures: 5, FailureWindow: Duration(15 * time.Minute), Lockout: Duration(15 * time.Minute), MaxLockout: Duration(24 * time.Hour),
		SourceMaxFailures: 20, SourceRequestsPerMinute: 60, PasswordHashMemoryMiB: 256, PasswordHashWait: Duration(2 * time.Second), PasswordHashCPUPercent: 50,
		DeniedRecordsPerSecond: 100}
}

// Credential is the per-factor policy.
func (l Login) Credential() lockout.Policy {
	return lockout.Policy{MaxFailures: l.MaxFailures, Window: l.FailureWindow.D(), Backoff: l.Lockout.D(), MaxBackoff: l.MaxLockout.D()}
}

// Source is the per-address policy.
func (l Login) Source() lockout.Policy {
	p := l.Credential()
	p.MaxFailures = l.SourceMaxFailures
	return p
}

// Validate checks l.
func (l Login) Validate() error {
	var errs []error
	if err := l.Credential().Validate(); err != nil {
		errs = append(errs, errors.New("login: max_failures at least 1, failure_window and lockout positive, max_lockout at least lockout"))
	}
	if l.SourceMaxFailures < 1 {
		errs = append(errs, errors.New("login.source_max_failures must be at least 1"))
	}
	if l.DeniedRecordsPerSecond < 1 {
		errs = append(errs, errors.New("login.denied_records_per_second must be at least 1"))
	}
	if l.SourceRequestsPerMinute < 0 || l.PasswordHashMemoryMiB < 64 || l.PasswordHashWait < 0 {
		errs = append(errs, errors.New("login: source_requests_per_minute not negative, password_hash_memory_mib at least 64, password_hash_wait not negative"))
	}
	if l.PasswordHashCPUPercent < 1 || l.PasswordHashCPUPercent > 100 {
		errs = append(errs, errors.New("login.password_hash_cpu_percent must be 1 to 100"))
	}
	return errors.Join(errs...)
}
