package audit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"
)

// Config holds the rules' thresholds and the schedules (the "audit" section of
// the configuration). Zero values take the defaults of DefaultConfig through
// WithDefaults.
type Config struct {
	// Interval is how often every rule runs in the server; negative: only on
	// demand (gatehouse findings run).
	Interval time.Duration `yaml:"interval"`

	UnusedKeyAfter   time.Duration `yaml:"unused_key_after"`   // keys.unused: no call for this long
	KeyMaxAge        time.Duration `yaml:"key_max_age"`        // keys.too_old: created or rotated longer ago
	UserInactiveFor  time.Duration `yaml:"user_inactive_for"`  // principals.inactive
	AnomalyWindow    time.Duration `yaml:"anomaly_window"`     // the recent window usage rules look at
	BaselineWindow   time.Duration `yaml:"baseline_window"`    // the trailing window a key's baseline comes from
	SpikeMultiple    int64         `yaml:"spike_multiple"`     // usage.spend_spike, usage.rate_spike
	MinSpikeRequests int64         `yaml:"min_spike_requests"` // below this many calls in the window, no rate spike
	MinSpikeMicros   int64         `yaml:"min_spike_micros"`   // below this spend in the window, no spend spike
	MinBaseline      int64         `yaml:"min_baseline"`       // calls a key needs in its baseline before novelty rules apply
	DenialSpike      int64         `yaml:"denial_spike"`       // usage.denials: 401/403 answers in the window
	RateLimitStorm   int64         `yaml:"rate_limit_storm"`   // usage.rate_limited: 429 answers in the window
	BudgetNearPct    int64         `yaml:"budget_near_percent"`
	MaxLedgerRecords int           `yaml:"max_ledger_records"` // most records one run reads from the log's tail

	LogVerifyInterval  time.Duration `yaml:"log_verify_interval"`  // the gateway verifies its own log this often
	LogUnverifiedAfter time.Duration `yaml:"log_unverified_after"` // config.log_unverified

	// SecretScanning is the partner endpoint code hosts report leaked keys to.
	SecretScanning SecretScanning `yaml:"secret_scanning"`
	// Reports are produced on a schedule, stored, and sent to the alert webhook.
	Reports []Schedule `yaml:"reports"`
}

// SecretScanning configures the secret-scanning partner endpoint on the data
// plane (POST /secret-scanning/github). It is off while no key is configured.
type SecretScanning struct {
	PublicKeys []PublicKey `yaml:"public_keys"`
	// RequestsPerMinutePerSource bounds requests from one address (an IPv6
	// /64), counted before the body is read; default 60.
	RequestsPerMinutePerSource int64 `yaml:"requests_per_minute_per_source"`
	// RequestsPerMinutePerKey bounds verified reports signed with one public
	// key; default 600.
	RequestsPerMinutePerKey int64 `yaml:"requests_per_minute_per_key"`
}

// Default partner endpoint limits.
const (
	DefaultPartnerPerSource = 60
	DefaultPartnerPerKey    = 600
)

// Limits returns the configured limits per minute, defaults filled in.
func (s SecretScanning) Limits() (perSource, perKey int64) {
	perSource, perKey = s.RequestsPerMinutePerSource, s.RequestsPerMinutePerKey
	if perSource == 0 {
		perSource = DefaultPartnerPerSource
	}
	if perKey == 0 {
		perKey = DefaultPartnerPerKey
	}
	return perSource, perKey
}

// PublicKey is a code host's signing key (GitHub publishes them at
// https://api.github.com/meta/public_keys/secret_scanning).
type PublicKey struct {
	ID  string `yaml:"key_identifier"`
	PEM string `yaml:"key"`
}

// Schedule is a recurring report.
type Schedule struct {
	Name     string `yaml:"name"`
	Every    string `yaml:"every"` // daily, weekly, monthly
	At       string `yaml:"at"`    // HH:MM in TimeZone; default 06:00
	TimeZone string `yaml:"time_zone"`
}

// DefaultConfig returns sensible thresholds.
func DefaultConfig() Config {
	return Config{
		Interval:           time.Hour,
		UnusedKeyAfter:     90 * 24 * time.Hour,
		KeyMaxAge:          180 * 24 * time.Hour,
		UserInactiveFor:    90 * 24 * time.Hour,
		AnomalyWindow:      time.Hour,
		BaselineWindow:     14 * 24 * time.Hour,
		SpikeMultiple:      10,
		MinSpikeRequests:   50,
		MinSpikeMicros:     1_000_000,
		MinBaseline:        20,
		DenialSpike:        20,
		RateLimitStorm:     50,
		BudgetNearPct:      90,
		MaxLedgerRecords:   200_000,
		LogVerifyInterval:  time.Hour,
		LogUnverifiedAfter: 24 * time.Hour,
	}
}

// WithDefaults fills zero fields from DefaultConfig.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	set(&c.Interval, d.Interval)
	set(&c.UnusedKeyAfter, d.UnusedKeyAfter)
	set(&c.KeyMaxAge, d.KeyMaxAge)
	set(&c.UserInactiveFor, d.UserInactiveFor)
	set(&c.AnomalyWindow, d.AnomalyWindow)
	set(&c.BaselineWindow, d.BaselineWindow)
	set(&c.LogVerifyInterval, d.LogVerifyInterval)
	set(&c.LogUnverifiedAfter, d.LogUnverifiedAfter)
	set(&c.SpikeMultiple, d.SpikeMultiple)
	set(&c.MinSpikeRequests, d.MinSpikeRequests)
	set(&c.MinSpikeMicros, d.MinSpikeMicros)
	set(&c.MinBaseline, d.MinBaseline)
	set(&c.DenialSpike, d.DenialSpike)
	set(&c.RateLimitStorm, d.RateLimitStorm)
	set(&c.BudgetNearPct, d.BudgetNearPct)
	set(&c.MaxLedgerRecords, d.MaxLedgerRecords)
	return c
}

// Validate checks c.
func (c Config) Validate() error {
	c = c.WithDefaults()
	if c.BaselineWindow <= c.AnomalyWindow {
		return errors.New("audit: baseline_window must be longer than anomaly_window")
	}
	if c.BudgetNearPct < 1 || c.BudgetNearPct > 100 {
		return errors.New("audit: budget_near_percent must be 1-100")
	}
	if _, err := c.SecretScanning.Keys(); err != nil {
		return err
	}
	if c.SecretScanning.RequestsPerMinutePerSource < 0 || c.SecretScanning.RequestsPerMinutePerKey < 0 {
		return errors.New("audit: secret_scanning requests_per_minute_per_source and requests_per_minute_per_key must not be negative")
	}
	for _, s := range c.Reports {
		if _, err := s.parse(); err != nil {
			return err
		}
	}
	return nil
}

// Keys parses the configured public keys (ECDSA P-256, PEM).
func (s SecretScanning) Keys() (map[string]*ecdsa.PublicKey, error) {
	out := map[string]*ecdsa.PublicKey{}
	for _, k := range s.PublicKeys {
		if k.ID == "" {
			return nil, errors.New("audit: secret_scanning key without key_identifier")
		}
		b, _ := pem.Decode([]byte(k.PEM))
		if b == nil {
			return nil, fmt.Errorf("audit: secret_scanning key %s: not PEM", k.ID)
		}
		pub, err := x509.ParsePKIXPublicKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("audit: secret_scanning key %s: %w", k.ID, err)
		}
		ek, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("audit: secret_scanning key %s: not an ECDSA key", k.ID)
		}
		if ek.Curve != elliptic.P256() { // the partner format is ECDSA P-256 with SHA-256; nothing else is accepted
			return nil, fmt.Errorf("audit: secret_scanning key %s: not a P-256 key", k.ID)
		}
		out[k.ID] = ek
	}
	return out, nil
}

// set gives *v the default def when it is zero.
func set[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}
