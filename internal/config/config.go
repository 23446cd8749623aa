// Package config is Gatehouse's typed configuration: defaults, a YAML file,
// GATEHOUSE_* environment variables and command-line flags, applied in that
// order (later wins), then validated as a whole.
package config

import (
	"bytes"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/breaker"
	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/pricing"
	"github.com/gatehouse-gw/gatehouse/internal/sso"
	"github.com/gatehouse-gw/gatehouse/internal/token"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// Config is the whole configuration.
type Config struct {
	Listen      string `yaml:"listen"`       // data plane
	AdminListen string `yaml:"admin_listen"` // admin API
	DataDir     string `yaml:"data_dir"`     // SQLite database and key-encryption key
	Database    string `yaml:"database"`     // "" (SQLite in DataDir) or postgres://…
	KEKFile     string `yaml:"kek_file"`     // default DataDir/kek.key

	Dev         bool   `yaml:"-"` // in-memory dev mode (flag only)
	DevAdminKey string `yaml:"-"`
	// WrapSQLite wraps the embedded store's driver connector: fault
	// injection in tests (package faultnet); never set from a file.
	WrapSQLite func(driver.Connector) driver.Connector `yaml:"-"`

	MaxBodyBytes       int64    `yaml:"max_body_bytes"`
	UpstreamTimeout    Duration `yaml:"upstream_timeout"`
	StreamIdleTimeout  Duration `yaml:"stream_idle_timeout"`
	KeyCacheTTL        Duration `yaml:"key_cache_ttl"`
	ConfigPollInterval Duration `yaml:"config_poll_interval"`
	ShutdownTimeout    Duration `yaml:"shutdown_timeout"`
	TrustProxyHeaders  bool     `yaml:"trust_proxy_headers"`
	// TrustedProxies lists the proxies in front of the gateway (CIDRs or
	// addresses): with trust_proxy_headers, the caller's address is the
	// rightmost X-Forwarded-For entry outside them (httpx.SourceAddr).
	TrustedProxies []string `yaml:"trusted_proxies"`

	InstanceTimeout        Duration `yaml:"instance_timeout"`          // a replica silent this long is presumed dead; its reservations are charged in full
	DefaultMaxOutputTokens int64    `yaml:"default_max_output_tokens"` // budgets: output ceiling when neither call nor price table has one
	AlertWebhookURL        string   `yaml:"alert_webhook_url"`         // budget and breaker alerts; secret in GATEHOUSE_ALERT_WEBHOOK_SECRET

	// AllowUnboundedCost lets keys under a hard budget use request fields whose
	// cost has no bound (background, previous_response_id, server-side tools,
	// files, audio…): such calls can overshoot the budget. Default off.
	AllowUnboundedCost bool `yaml:"allow_unbounded_cost"`
	// Budgets extends what a key under a hard budget may send (budgets.go).
	Budgets Budgets `yaml:"budgets"`

	// MemoryLimit is the Go runtime's soft memory limit for `gatehouse
	// serve` ("off" by default, or a size such as "48MiB"); GOMEMLIMIT or GOGC, when set,
	// win (memory.go).
	MemoryLimit string `yaml:"memory_limit"`

	Store          Store    `yaml:"store"` // pool size and deadlines (store.go)
	Breaker        Breaker  `yaml:"breaker"`
	Ledger         Ledger   `yaml:"ledger"`
	RedisURL       string   `yaml:"redis_url"`        // shared rate-limit counters for several replicas; "" keeps them in memory
	PolicyTimeZone string   `yaml:"policy_time_zone"` // the zone of context.hour and context.weekday in policies
	Tokens         Tokens   `yaml:"tokens"`
	RequireMFA     bool     `yaml:"require_mfa"` // users log in only with TOTP
	Keys           Keys     `yaml:"keys"`
	TLS            TLS      `yaml:"tls"`
	SessionTTL     Duration `yaml:"session_ttl"` // admin API login sessions
	Login          Login    `yaml:"login"`       // attempt limits and login cost (login.go)
	// StepUpMaxAge, when set, makes sensitive admin actions need a second
	// factor at most this old (a built-in policy, package policy).
	StepUpMaxAge Duration `yaml:"step_up_max_age"`
	// WorkloadIdentity lists trusted OIDC issuers whose tokens are exchanged for Gatehouse tokens.
	WorkloadIdentity []token.TrustedIssuer `yaml:"workload_identity"`
	// WebAuthn enables passkeys for users (registration and login on the admin API).
	WebAuthn WebAuthn `yaml:"webauthn"`
	// OIDCLogin lets users log in through the organisation's identity provider.
	OIDCLogin sso.Config `yaml:"oidc_login"`
	// Audit configures findings, their schedule, reports and secret scanning (package audit).
	Audit audit.Config `yaml:"audit"`

	// Metrics and Telemetry configure /metrics and traces (observability.go).
	Metrics   Metrics   `yaml:"metrics"`
	Telemetry Telemetry `yaml:"telemetry"`

	LogLevel  string `yaml:"log_level"`  // debug, info, warn, error
	LogFormat string `yaml:"log_format"` // text or json
}

// TLS configures the data plane's TLS listener and mTLS client certificates.
type TLS struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"` // verify client certificates against these CAs (mTLS)
	// ClientPrincipals maps a client certificate identity (a URI SAN such as
	// spiffe://acme/agent, a DNS SAN, or the subject CN) to a principal name or id.
	ClientPrincipals map[string]string `yaml:"client_principals"`
}

// WebAuthn configures passkeys; they are off while rp_id is empty.
type WebAuthn struct {
	RPID          string   `yaml:"rp_id"`           // the relying party id: the console's host name, e.g. gatehouse.example.com
	RPDisplayName string   `yaml:"rp_display_name"` // shown by authenticators; default Gatehouse
	Origins       []string `yaml:"origins"`         // origins allowed to run ceremonies, e.g. https://gatehouse.example.com
}

// Keys configures key lifetimes.
type Keys struct {
	MaxAge        Duration `yaml:"max_age"`        // no key lives longer (since creation or rotation); 0: no limit
	ExpiryWarning Duration `yaml:"expiry_warning"` // owners are warned (alert webhook) this long before a key expires
	CheckInterval Duration `yaml:"check_interval"` // how often expiring keys are looked for
}

// Tokens configures short-lived access tokens (package token).
type Tokens struct {
	Issuer string   `yaml:"issuer"` // iss and aud of the tokens
	TTL    Duration `yaml:"ttl"`
}

// Ledger configures the tamper-evident log (package ledger).
type Ledger struct {
	Origin             string   `yaml:"origin"`              // the log's name in checkpoints, e.g. "gatehouse.example.com/log"
	CheckpointInterval Duration `yaml:"checkpoint_interval"` // how often a growing log is signed
	ExportFile         string   `yaml:"export_file"`         // append every record as a JSON line here (SIEM)
	ExportWebhook      string   `yaml:"export_webhook"`      // POST records (JSON lines, signed like alerts) here
	// ExportFromStart makes an export target that has no cursor yet (first
	// start, or the upgrade to the exporter with cursors) deliver the whole
	// log; by default it starts at the log's end at that moment.
	ExportFromStart bool `yaml:"export_from_start"`
	// VerifyInterval is the old name of audit.log_verify_interval, still
	// accepted: Validate moves a positive value there, and refuses 0 (its old
	// "off") and a value the new key disagrees with. nil: not set.
	VerifyInterval *Duration `yaml:"verify_interval"`
	// LagEndRecords lets a call's end record (with its settlement and usage
	// row) be committed after the handler returned (default true; the hold
	// is durable already, docs/design/one-write-per-phase.md).
	LagEndRecords bool `yaml:"lag_end_records"`
	// BatchLinger is how long the sequencer's batch may wait for the entries
	// of calls in progress before it commits (0: never waits); a lone call
	// never waits.
	BatchLinger Duration `yaml:"batch_linger"`
	// LagWait is how long a batch holding only lagging end records waits
	// for an entry somebody waits on (a call's start) to share its commit;
	// that entry ends the wait at once (0: commit at once).
	LagWait Duration `yaml:"lag_wait"`
	// MaxDeferredRefusals bounds the end records of refused calls (nothing
	// at stake) kept one by one in memory while the store is unreachable;
	// past it they are counted into summary records, one per key × error
	// code × minute (default 1,000; 0: count all; docs/design/faults.md).
	MaxDeferredRefusals int `yaml:"max_deferred_refusals"`
}

// Breaker configures the spend-velocity breaker (package breaker).
type Breaker struct {
	Enabled          bool     `yaml:"enabled"`
	Window           Duration `yaml:"window"`            // sliding window
	Ceiling          string   `yaml:"ceiling"`           // USD per window per key, e.g. "5.00"; "0" for none
	BaselineMultiple int64    `yaml:"baseline_multiple"` // trip at this multiple of a key's usual spend; 0 for off
	MinSpend         string   `yaml:"min_spend"`         // USD; the baseline rule ignores windows below it
	// FlushInterval: how often a replica sends its keys' spend to the
	// shared windows (PostgreSQL or Redis) and judges the sums; the most a
	// trip on several replicas' spend lags, besides the flush itself.
	FlushInterval Duration `yaml:"flush_interval"`
}

// Config returns the breaker's configuration (validated amounts).
func (b Breaker) Config() breaker.Config {
	ceiling, _ := pricing.ParseUSD(b.Ceiling)
	minSpend, _ := pricing.ParseUSD(b.MinSpend)
	return breaker.Config{Enabled: b.Enabled, Window: b.Window.D(), CeilingMicros: ceiling, BaselineMultiple: b.BaselineMultiple, MinSpendMicros: minSpend, FlushInterval: b.FlushInterval.D()}
}

// Duration is a time.Duration written as "30s" in YAML.
type Duration time.Duration

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration such as 30s or 5m", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MaxDeferredRefusals is the largest ledger.max_deferred_refusals: each kept
// record costs about a KiB of memory (with the usage row it carries).
const MaxDeferredRefusals = 100_000

// Default returns the defaults.
func Default() Config {
	return Config{
		Listen:                 "127.0.0.1:8080",
		AdminListen:            "127.0.0.1:8081",
		DataDir:                "./gatehouse-data",
		MaxBodyBytes:           16 << 20,
		UpstreamTimeout:        Duration(10 * time.Minute),
		StreamIdleTimeout:      Duration(5 * time.Minute),
		KeyCacheTTL:            Duration(2 * time.Second),
		ConfigPollInterval:     Duration(2 * time.Second),
		ShutdownTimeout:        Duration(30 * time.Second),
		DefaultMaxOutputTokens: 32768,
		MemoryLimit:            DefaultMemoryLimit,
		InstanceTimeout:        Duration(20 * time.Second),
		PolicyTimeZone:         "UTC",
		Tokens:                 Tokens{Issuer: "gatehouse", TTL: Duration(15 * time.Minute)},
		SessionTTL:             Duration(12 * time.Hour),
		Login:                  DefaultLogin(),
		Keys:                   Keys{ExpiryWarning: Duration(7 * 24 * time.Hour), CheckInterval: Duration(time.Hour)},
		Ledger: Ledger{Origin: "gatehouse.local/log", CheckpointInterval: Duration(time.Second), LagEndRecords: true, BatchLinger: Duration(time.Millisecond), LagWait: Duration(time.Millisecond),
			MaxDeferredRefusals: ledger.DefaultMaxDeferredRefusals},
		Store:     DefaultStore,
		Breaker:   Breaker{Enabled: true, Window: Duration(5 * time.Minute), Ceiling: "5.00", BaselineMultiple: 10, MinSpend: "1.00", FlushInterval: Duration(100 * time.Millisecond)},
		Audit:     audit.DefaultConfig(),
		LogLevel:  "info",
		LogFormat: "text",
	}
}

// Parse overlays YAML onto c. Unknown keys are errors.
func (c *Config) Parse(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) { // io.EOF: an empty file
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// LoadFile overlays the YAML file at path onto c.
func (c *Config) LoadFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := c.Parse(b); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Env lists the environment variables Load reads, with the field each sets.
var Env = []struct{ Name, Help string }{
	{"GATEHOUSE_LISTEN", "data-plane address"},
	{"GATEHOUSE_ADMIN_LISTEN", "admin API address"},
	{"GATEHOUSE_DATA_DIR", "data directory"},
	{"GATEHOUSE_DATABASE", "database: empty for SQLite in the data directory, or postgres://…"},
	{"GATEHOUSE_KEK_FILE", "key-encryption key file"},
	{"GATEHOUSE_KEK", "key-encryption key itself (base64 or hex of 32 bytes); wins over the file"},
	{"GATEHOUSE_MAX_BODY_BYTES", "largest request body accepted"},
	{"GATEHOUSE_UPSTREAM_TIMEOUT", "longest upstream call"},
	{"GATEHOUSE_INSTANCE_TIMEOUT", "how long a silent replica keeps its budget reservations"},
	{"GATEHOUSE_LOG_LEVEL", "debug, info, warn or error"},
	{"GATEHOUSE_LOG_FORMAT", "text or json"},
	{"GATEHOUSE_ALERT_WEBHOOK_URL", "where budget and breaker alerts are posted"},
	{"GATEHOUSE_REDIS_URL", "redis://host:port/db for rate limits shared by replicas"},
	{"GATEHOUSE_ALERT_WEBHOOK_SECRET", "HMAC secret that signs alert webhooks"},
	{"GATEHOUSE_TRUSTED_PROXIES", "comma-separated CIDRs of the proxies in front of the gateway (with trust_proxy_headers)"},
	{"GATEHOUSE_METRICS_TOKEN", "bearer token a /metrics scrape must present (wins over metrics.token_file)"},
	{"GATEHOUSE_MEMORY_LIMIT", "Go's soft memory limit for serve (e.g. 64MiB, or off); GOMEMLIMIT or GOGC, when set, win"},
}

// LoadEnv overlays GATEHOUSE_* variables onto c.
func (c *Config) LoadEnv(getenv func(string) string) error {
	set := func(name string, dst *string) {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	set("GATEHOUSE_LISTEN", &c.Listen)
	set("GATEHOUSE_ADMIN_LISTEN", &c.AdminListen)
	set("GATEHOUSE_DATA_DIR", &c.DataDir)
	set("GATEHOUSE_DATABASE", &c.Database)
	set("GATEHOUSE_KEK_FILE", &c.KEKFile)
	set("GATEHOUSE_LOG_LEVEL", &c.LogLevel)
	set("GATEHOUSE_LOG_FORMAT", &c.LogFormat)
	set("GATEHOUSE_ALERT_WEBHOOK_URL", &c.AlertWebhookURL)
	set("GATEHOUSE_REDIS_URL", &c.RedisURL)
	set("GATEHOUSE_MEMORY_LIMIT", &c.MemoryLimit)
	if v := getenv("GATEHOUSE_TRUSTED_PROXIES"); v != "" {
		c.TrustedProxies = strings.Split(v, ",")
	}
	if v := getenv("GATEHOUSE_MAX_BODY_BYTES"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("config: GATEHOUSE_MAX_BODY_BYTES=%q: not a number", v)
		}
		c.MaxBodyBytes = n
	}
	if v := getenv("GATEHOUSE_INSTANCE_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("config: GATEHOUSE_INSTANCE_TIMEOUT=%q: not a duration", v)
		}
		c.InstanceTimeout = Duration(d)
	}
	if v := getenv("GATEHOUSE_UPSTREAM_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("config: GATEHOUSE_UPSTREAM_TIMEOUT=%q: not a duration", v)
		}
		c.UpstreamTimeout = Duration(d)
	}
	return nil
}

// mapLedgerVerifyInterval moves the old ledger.verify_interval to
// audit.log_verify_interval: the gateway now verifies its log once, in the
// audit's LogVerifier, and never ignores a setting silently. A positive value
// is moved. 0 (the old "off") is refused: it turned off one of two
// verifications while the audit's kept running, so neither "off" nor "on"
// would be what it meant. An audit.log_verify_interval other than its
// default that disagrees is refused, since one of the two would be ignored.
func (c *Config) mapLedgerVerifyInterval() error {
	old := c.Ledger.VerifyInterval
	if old == nil {
		return nil
	}
	if *old <= 0 {
		return fmt.Errorf("ledger.verify_interval %s: the setting is now audit.log_verify_interval (default 1h; negative: off); "+
			"0 no longer turns verification off, since it only ever turned off a second one: remove ledger.verify_interval and set audit.log_verify_interval", old.D())
	}
	cur := c.Audit.LogVerifyInterval
	if cur != 0 && cur != audit.DefaultConfig().LogVerifyInterval && cur != old.D() {
		return fmt.Errorf("ledger.verify_interval (%s) and audit.log_verify_interval (%s) disagree: ledger.verify_interval is the old name of audit.log_verify_interval; remove it", old.D(), cur)
	}
	c.Audit.LogVerifyInterval = old.D()
	return nil
}

// Validate checks the whole configuration and fills derived defaults.
func (c *Config) Validate() error {
	var errs []error
	errs = append(errs, c.mapLedgerVerifyInterval())
	errs = append(errs, c.Audit.Validate())
	for name, addr := range map[string]string{"listen": c.Listen, "admin_listen": c.AdminListen} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: want host:port", name, addr))
		}
	}
	if c.Listen == c.AdminListen && !strings.HasSuffix(c.Listen, ":0") {
		errs = append(errs, fmt.Errorf("listen and admin_listen are both %q", c.Listen))
	}
	if c.Database != "" && !strings.HasPrefix(c.Database, "postgres://") && !strings.HasPrefix(c.Database, "postgresql://") {
		errs = append(errs, errors.New("database: want empty (SQLite in the data directory) or a postgres:// URL"))
	}
	if err := c.Store.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.devDatabase(); err != nil {
		errs = append(errs, err)
	}
	if c.DataDir == "" && !c.Dev {
		errs = append(errs, errors.New("data_dir is empty"))
	}
	if _, err := httpx.ParsePrefixes(c.TrustedProxies); err != nil {
		errs = append(errs, fmt.Errorf("trusted_proxies: %w", err))
	}
	if len(c.TrustedProxies) > 0 && !c.TrustProxyHeaders {
		errs = append(errs, errors.New("trusted_proxies is set but trust_proxy_headers is off: X-Forwarded-For would be ignored"))
	}
	if err := c.Budgets.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.DefaultMaxOutputTokens <= 0 {
		errs = append(errs, errors.New("default_max_output_tokens must be positive"))
	}
	if err := c.validateMemoryLimit(); err != nil {
		errs = append(errs, err)
	}
	if c.AlertWebhookURL != "" && !strings.HasPrefix(c.AlertWebhookURL, "https://") && !strings.HasPrefix(c.AlertWebhookURL, "http://") {
		errs = append(errs, fmt.Errorf("alert_webhook_url %q: want an http(s) URL", c.AlertWebhookURL))
	}
	if _, err := pricing.ParseUSD(c.Breaker.Ceiling); err != nil {
		errs = append(errs, fmt.Errorf("breaker.ceiling: %w", err))
	}
	if _, err := pricing.ParseUSD(c.Breaker.MinSpend); err != nil {
		errs = append(errs, fmt.Errorf("breaker.min_spend: %w", err))
	}
	if c.Breaker.Window <= 0 || c.Breaker.BaselineMultiple < 0 {
		errs = append(errs, errors.New("breaker: window must be positive and baseline_multiple not negative"))
	}
	if f := c.Breaker.FlushInterval.D(); f != 0 && (f < 10*time.Millisecond || f > 10*time.Second) {
		errs = append(errs, errors.New("breaker.flush_interval: must be between 10ms and 10s"))
	}
	if c.Ledger.Origin == "" || strings.ContainsAny(c.Ledger.Origin, " +\n\t") {
		errs = append(errs, fmt.Errorf("ledger.origin %q: want a name without spaces or '+', e.g. gatehouse.example.com/log", c.Ledger.Origin))
	}
	if c.Ledger.CheckpointInterval <= 0 {
		errs = append(errs, errors.New("ledger.checkpoint_interval must be positive"))
	}
	if c.Ledger.BatchLinger < 0 || c.Ledger.BatchLinger.D() > time.Second {
		errs = append(errs, errors.New("ledger.batch_linger must be between 0 and 1s"))
	}
	if c.Ledger.LagWait < 0 || c.Ledger.LagWait.D() > time.Second {
		errs = append(errs, errors.New("ledger.lag_wait must be between 0 and 1s"))
	}
	if c.Ledger.MaxDeferredRefusals < 0 || c.Ledger.MaxDeferredRefusals > MaxDeferredRefusals {
		errs = append(errs, fmt.Errorf("ledger.max_deferred_refusals must be between 0 and %d", MaxDeferredRefusals))
	}
	if _, err := time.LoadLocation(c.PolicyTimeZone); err != nil {
		errs = append(errs, fmt.Errorf("policy_time_zone %q: %v", c.PolicyTimeZone, err))
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") || (c.TLS.ClientCAFile != "" && c.TLS.CertFile == "") {
		errs = append(errs, errors.New("tls: cert_file and key_file go together, and client_ca_file needs them"))
	}
	if err := c.Login.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.StepUpMaxAge < 0 || (c.StepUpMaxAge > 0 && c.StepUpMaxAge < Duration(time.Second)) {
		errs = append(errs, errors.New("step_up_max_age: 0 (off) or at least 1s"))
	}
	if c.Keys.MaxAge < 0 || c.Keys.ExpiryWarning < 0 || c.Keys.CheckInterval <= 0 {
		errs = append(errs, errors.New("keys: max_age and expiry_warning must not be negative, check_interval positive"))
	}
	if c.Tokens.Issuer == "" || c.Tokens.TTL <= 0 || c.Tokens.TTL.D() > token.MaxTTL {
		errs = append(errs, errors.New("tokens: issuer must be set and ttl between 1s and 24h"))
	}
	if strings.Contains(c.Tokens.Issuer, "://") && !token.IssuerURL(c.Tokens.Issuer) {
		errs = append(errs, fmt.Errorf("tokens: issuer %q: a URL issuer must be http(s) with a host and no query or fragment (RFC 8414)", c.Tokens.Issuer))
	}
	if c.WebAuthn.RPID != "" && len(c.WebAuthn.Origins) == 0 {
		errs = append(errs, errors.New("webauthn: origins are required with rp_id (e.g. https://"+c.WebAuthn.RPID+")"))
	}
	if err := c.OIDCLogin.Validate(); err != nil {
		errs = append(errs, err)
	}
	for i, w := range c.WorkloadIdentity {
		if w.Name == "" || w.Issuer == "" || w.Audience == "" || w.ServiceAccount == "" {
			errs = append(errs, fmt.Errorf("workload_identity[%d]: name, issuer, audience and service_account are required", i))
		}
	}
	if c.RedisURL != "" && !strings.HasPrefix(c.RedisURL, "redis://") && !strings.HasPrefix(c.RedisURL, "rediss://") {
		errs = append(errs, fmt.Errorf("redis_url: want redis:// or rediss://"))
	}
	if c.MaxBodyBytes <= 0 {
		errs = append(errs, errors.New("max_body_bytes must be positive"))
	}
	for name, d := range map[string]Duration{"upstream_timeout": c.UpstreamTimeout, "stream_idle_timeout": c.StreamIdleTimeout,
		"key_cache_ttl": c.KeyCacheTTL, "config_poll_interval": c.ConfigPollInterval, "shutdown_timeout": c.ShutdownTimeout,
		"instance_timeout": c.InstanceTimeout} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", name))
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log_level %q: want debug, info, warn or error", c.LogLevel))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("log_format %q: want text or json", c.LogFormat))
	}
	if c.DevAdminKey != "" && len(c.DevAdminKey) < 16 {
		errs = append(errs, errors.New("--dev-admin-key must be at least 16 characters"))
	}
	if c.DevAdminKey != "" && !c.Dev {
		errs = append(errs, errors.New("--dev-admin-key needs --dev"))
	}
	if err := devAdminKeyUsable(c.DevAdminKey); err != nil {
		errs = append(errs, err)
	}
	if c.KEKFile == "" && c.DataDir != "" {
		c.KEKFile = filepath.Join(c.DataDir, "kek.key")
	}
	return errors.Join(errs...)
}

// devAdminKeyUsable refuses a --dev-admin-key that starts like a Gatehouse key
// (gka_, gk_) without being a valid admin key: the admin API checks such
// strings as real keys, checksum first, so it would be printed as accepted and
// then refused on every call. The message does not repeat the key.
func devAdminKeyUsable(k string) error {
	if k == "" || !vkey.LooksLikeKey(k) {
		return nil
	}
	kind, _, err := vkey.Parse(k)
	if err == nil && kind == vkey.KindAdmin {
		return nil
	}
	why := "a virtual key, not an admin key"
	if err != nil {
		why = "its length, characters or checksum are not those of a key Gatehouse made"
	}
	return fmt.Errorf("--dev-admin-key starts like a Gatehouse key but is not a valid admin key (%s); "+
		"such strings are checked as real keys and would be refused on every call: pass an admin key Gatehouse printed, "+
		"or any string of 16+ characters that does not start with gka_ or gk_", why)
}
