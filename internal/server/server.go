// Package server is the composition root: it picks the store from the
// configuration, builds every component, runs the listeners and background
// loops, and shuts them down in order (drain streams, flush last-used times,
// close the store). Only this package imports the storage backends.
package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/gatehouse-gw/gatehouse/internal/admin"
	"github.com/gatehouse-gw/gatehouse/internal/alert"
	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/auth"
	"github.com/gatehouse-gw/gatehouse/internal/breaker"
	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/denylog"
	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/instance"
	"github.com/gatehouse-gw/gatehouse/internal/keyring"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/metrics"
	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
	"github.com/gatehouse-gw/gatehouse/internal/pricing"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
	"github.com/gatehouse-gw/gatehouse/internal/provider/sim"
	"github.com/gatehouse-gw/gatehouse/internal/proxy"
	"github.com/gatehouse-gw/gatehouse/internal/ratelimit"
	"github.com/gatehouse-gw/gatehouse/internal/sso"
	"github.com/gatehouse-gw/gatehouse/internal/store"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
	"github.com/gatehouse-gw/gatehouse/internal/telemetry"
	"github.com/gatehouse-gw/gatehouse/internal/token"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// Bootstrap holds credentials created at start that the operator must see once.
type Bootstrap struct {
	AdminKey   string // set when this start created the first admin key (or in dev mode)
	AdminKeyID string // the id of AdminKey
	VirtualKey string // dev mode: a ready data-plane key
}

// Server is a running Gatehouse.
type Server struct {
	cfg      config.Config
	log      *slog.Logger
	db       *sqlstore.DB
	pool     postgres.PoolHealth // the PostgreSQL pool against the server's connection limit
	keyring  *keyring.Keyring
	verifier *vkey.Verifier
	auth     *auth.Authenticator
	usage    *usage.Writer
	budgets  *budget.Ledger
	alerts   *alert.Sink
	inst     *instance.Instance
	breaker  *breaker.Breaker
	limiter  *ratelimit.Limiter
	redis    *ratelimit.Redis
	ledger   *ledger.Log
	export   *ledger.Exporter
	denied   *denylog.Recorder
	tokens   *token.Issuer
	dpop     *token.DPoP
	webAuthn *webauthn.WebAuthn // nil: passkeys off
	audit    *audit.Engine
	logCheck *audit.LogVerifier
	clock    atomic.Pointer[func() time.Time]
	metrics  *metrics.Metrics
	tracer   *telemetry.Tracer // nil: traces off
	snap     atomic.Pointer[config.Snapshot]
	reloadMu sync.Mutex

	client  *http.Client
	sim     *sim.Handler
	simSrv  *http.Server
	simLn   net.Listener
	data    *http.Server
	admin   *http.Server
	dataLn  net.Listener
	adminLn net.Listener
	tmpDir  string
	dataTLS bool
	dirLock *sqlite.DirLock // the embedded store's data directory, held while open

	Bootstrap Bootstrap
}

// Open builds a server from cfg (validated) and binds its listeners, so that a
// taken port fails here, before anything runs.
func Open(ctx context.Context, cfg config.Config, log *slog.Logger) (_ *Server, err error) {
	s := &Server{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			s.closeAll()
		}
	}()
	if cfg.Dev {
		if s.tmpDir, err = os.MkdirTemp("", "gatehouse-dev-"); err != nil {
			return nil, err
		}
		cfg.DataDir, cfg.Database, cfg.KEKFile = s.tmpDir, "", filepath.Join(s.tmpDir, "kek.key")
		s.cfg = cfg
	}
	if s.db, s.dirLock, err = s.openDB(ctx, cfg); err != nil {
		return nil, err
	}
	keks, created, err := keyring.LoadKEKs(cfg.KEKFile, envOrDev(cfg.Dev))
	if err != nil {
		return nil, err
	}
	if created {
		log.Warn("created a new key-encryption key; back it up: without it the upstream keys in the store cannot be read", "file", cfg.KEKFile)
	}
	if s.keyring, err = keyring.New(keks...); err != nil {
		return nil, err
	}
	hasher, err := s.keyHasher(ctx)
	if err != nil {
		return nil, err
	}
	s.verifier = vkey.NewVerifier(s.db, hasher, vkey.VerifierOptions{TTL: cfg.KeyCacheTTL.D(), Logger: log, MaxAge: cfg.Keys.MaxAge.D(), TeamMaxAge: s.teamKeyAge})
	s.auth = auth.New(s.verifier, s.db, cfg.KeyCacheTTL.D())
	s.usage = usage.NewWriter(s.db, log)
	s.usage.Timeout = cfg.Store.Timeout.D()
	s.alerts = alert.New(cfg.AlertWebhookURL, []byte(os.Getenv(EnvAlertSecret)), log)
	s.inst = instance.New(s.db, vkey.NewID("gw"), log)
	s.inst.Stale, s.inst.Heartbeat, s.inst.Timeout = cfg.InstanceTimeout.D(), cfg.InstanceTimeout.D()/4, cfg.Store.Timeout.D()
	s.budgets = budget.NewLedger(s.db, s.inst.ID(), s.budgetList, s.alerts, log)
	s.budgets.Stale, s.budgets.Heartbeat = cfg.InstanceTimeout.D(), cfg.InstanceTimeout.D()/4
	s.budgets.SetInstance(s.inst.ID)
	s.budgets.Timeout = cfg.Store.Timeout.D()
	if cfg.Database != "" {
		// Fencing matters where another replica may sweep this one; the
		// embedded store has one gateway, which nobody sweeps while it runs.
		s.budgets.Gate = s.inst.Live
	}
	if s.ledger, err = s.openLedger(ctx); err != nil {
		return nil, err
	}
	s.denied = denylog.New(s.ledger, log, denylog.Options{MaxRecords: cfg.Login.DeniedRecordsPerSecond})
	if s.tokens, err = s.openTokens(ctx); err != nil {
		return nil, err
	}
	s.dpop = token.NewDPoP()
	if s.webAuthn, err = newWebAuthn(cfg.WebAuthn); err != nil {
		return nil, err
	}
	s.breaker = breaker.New(cfg.Breaker.Config(), s.suspendKey, s.alerts, log)
	s.openAudit()
	if err := s.openObservability(ctx); err != nil {
		return nil, err
	}
	var rl ratelimit.Backend = ratelimit.NewMemory(nil)
	if cfg.RedisURL != "" {
		if s.redis, err = ratelimit.OpenRedis(ctx, cfg.RedisURL, cfg.UpstreamTimeout.D()+time.Minute); err != nil {
			return nil, err
		}
		rl = s.redis
		s.dpop.Shared = s.redis // DPoP proofs are good once across replicas
	} else if cfg.Database != "" {
		s.dpop.Shared = s.db // no Redis: the shared store keeps the replay set
	}
	s.limiter = ratelimit.New(rl, func() []ratelimit.Limit { return s.snap.Load().Limits })
	switch { // the breaker's windows are shared by replicas: Redis when configured, else PostgreSQL
	case s.redis != nil:
		s.redis.SpendTTL = 2 * cfg.Breaker.Window.D()
		s.breaker.Shared = s.redis
	case cfg.Database != "":
		s.breaker.Shared = s.db
	}
	s.client = &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          512,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: cfg.UpstreamTimeout.D(),
	}}
	if err := s.startSim(); err != nil {
		return nil, err
	}
	if err := s.Reload(ctx); err != nil {
		return nil, err
	}
	if err := s.bootstrap(ctx); err != nil {
		return nil, err
	}
	// Reservations left open by a previous run are charged in full. The
	// embedded store has one gateway, so all of them are abandoned now; on
	// PostgreSQL the heartbeat sweep in Run finds them.
	// Liveness first: nothing is admitted before this instance's heartbeat
	// is in the store.
	if err := s.inst.Beat(ctx); err != nil {
		return nil, err
	}
	if cfg.Database == "" {
		if _, err := s.budgets.Recover(ctx, true); err != nil {
			return nil, err
		}
		if _, err := s.ledger.Recover(ctx, true, time.Time{}); err != nil {
			return nil, err
		}
	}
	if s.dataLn, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("data plane: %w", err)
	}
	if cfg.TLS.CertFile != "" {
		tc, err := tlsConfig(cfg.TLS)
		if err != nil {
			return nil, err
		}
		s.dataLn = tls.NewListener(s.dataLn, tc)
		s.dataTLS = true
	}
	if s.adminLn, err = net.Listen("tcp", cfg.AdminListen); err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	pp, err := pprofEnabled(os.Getenv, s.adminLn.Addr())
	if err != nil {
		return nil, err
	}
	s.buildHTTP()
	if pp {
		s.admin.Handler = withPprof(s.admin.Handler)
		s.log.Warn("profiler endpoints on the admin listener", "path", "/debug/pprof/", "env", EnvPprof)
	}
	return s, nil
}

// tlsConfig loads the data plane's certificate and, for mTLS, the client CAs.
// Client certificates are verified when presented, and optional: keys and
// tokens still work over the same listener.
func tlsConfig(c config.TLS) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.ClientCAFile != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: no certificate in %s", c.ClientCAFile)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	return tc, nil
}

// envOrDev returns os.Getenv, except that dev mode ignores GATEHOUSE_KEK: it
// must never touch a production key.
func envOrDev(dev bool) func(string) string {
	if dev {
		return func(string) string { return "" }
	}
	return os.Getenv
}

// keyHasher loads the server secret used to hash keys, creating it on first
// start. It is stored sealed under the KEK, so replicas sharing a database and
// a KEK agree on it.
func (s *Server) keyHasher(ctx context.Context) (*vkey.Hasher, error) {
	const name = "key_hmac"
	aad := []byte("server-secret/" + name)
	fresh := make([]byte, 32)
	rand.Read(fresh)
	sealed, err := s.keyring.Seal(fresh, aad)
	if err != nil {
		return nil, err
	}
	stored, err := s.db.PutSecretIfAbsent(ctx, name, sealed)
	if err != nil {
		return nil, fmt.Errorf("server secret: %w", err)
	}
	secret, err := s.keyring.Open(stored, aad)
	if err != nil {
		return nil, fmt.Errorf("server secret: %w (is this the key-encryption key the store was created with?)", err)
	}
	return vkey.NewHasher(secret)
}

func (s *Server) startSim() error {
	s.sim = sim.New("")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("simulated provider: %w", err)
	}
	s.simLn = ln
	s.simSrv = &http.Server{Handler: s.sim, ReadHeaderTimeout: 10 * time.Second}
	go s.simSrv.Serve(ln)
	return nil
}

// Reload rebuilds the request-path snapshot from the store and swaps it in.
func (s *Server) Reload(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	gen, err := s.db.ConfigVersion(ctx)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	ps, err := s.db.ListProviders(ctx)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	var ups []*provider.Upstream
	for _, p := range ps {
		keys := make([]provider.APIKey, 0, len(p.Keys))
		for _, k := range p.Keys {
			b, err := s.keyring.Open(k.Sealed, provider.SealAAD(k.ID))
			if err != nil {
				return fmt.Errorf("reload: provider %s key %s: %w", p.Name, k.ID, err)
			}
			keys = append(keys, provider.APIKey(b))
		}
		ups = append(ups, provider.NewUpstream(p, keys, s.client))
	}
	simURL := "http://" + s.simLn.Addr().String()
	fallback := map[provider.Type]*provider.Upstream{
		provider.TypeOpenAI:    provider.NewUpstream(provider.Provider{Name: "simulated", Type: provider.TypeOpenAI, BaseURL: simURL + "/v1"}, nil, s.client),
		provider.TypeAnthropic: provider.NewUpstream(provider.Provider{Name: "simulated", Type: provider.TypeAnthropic, BaseURL: simURL}, nil, s.client),
	}
	overrides, err := s.db.ListPrices(ctx)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	budgets, err := s.db.ListBudgets(ctx)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	limits, err := s.db.ListLimits(ctx)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	files, pver := policy.Defaults(), int64(0)
	if v, err := s.db.PolicyVersion(ctx, 0); err == nil {
		files, pver = v.Files, v.Version
	} else if !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("reload: %w", err)
	}
	if s.cfg.StepUpMaxAge > 0 {
		files = maps.Clone(files)
		files[policy.StepUpFile] = policy.StepUpPolicy(s.cfg.StepUpMaxAge.D())
	}
	policies, err := policy.Compile(files)
	if err != nil {
		return fmt.Errorf("reload: policy version %d does not compile: %w", pver, err)
	}
	if s.tokens != nil {
		jtis, cutoffs, err := s.db.TokenRevocations(ctx, time.Now())
		if err != nil {
			return fmt.Errorf("reload: %w", err)
		}
		s.tokens.Revocations(jtis, cutoffs)
		seeds, err := s.tokenSeeds(ctx)
		if err != nil {
			return fmt.Errorf("reload: %w", err)
		}
		if err := s.tokens.SetKeys(seeds); err != nil {
			return fmt.Errorf("reload: %w", err)
		}
	}
	if s.ledger != nil {
		keys, err := s.ledgerKeys(ctx)
		if err != nil {
			return fmt.Errorf("reload: %w", err)
		}
		if err := s.ledger.SetKeys(keys); err != nil {
			return fmt.Errorf("reload: %w", err)
		}
	}
	teams, err := s.db.ListTeams(ctx)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	ages := make(map[string]time.Duration)
	for _, t := range teams {
		if t.MaxKeyAge > 0 {
			ages[t.ID] = time.Duration(t.MaxKeyAge)
		}
	}
	prev := s.snap.Load()
	s.snap.Store(&config.Snapshot{Generation: gen, Router: provider.NewRouter(ups, fallback), Prices: pricing.NewTable(pricing.Defaults(), overrides), Budgets: budgets, Limits: limits, Policies: policies, PolicyVer: pver, TeamKeyAges: ages})
	if prev == nil || prev.Generation != gen {
		mode := "providers"
		if len(ups) == 0 {
			mode = "simulated provider (no provider configured)"
		}
		s.log.Info("configuration loaded", "generation", gen, "providers", len(ups), "routing", mode, "price_overrides", len(overrides))
	}
	return nil
}

// newWebAuthn configures passkeys, or returns nil when webauthn.rp_id is empty.
func newWebAuthn(c config.WebAuthn) (*webauthn.WebAuthn, error) {
	if c.RPID == "" {
		return nil, nil
	}
	name := c.RPDisplayName
	if name == "" {
		name = "Gatehouse"
	}
	w, err := webauthn.New(&webauthn.Config{RPID: c.RPID, RPDisplayName: name, RPOrigins: c.Origins})
	if err != nil {
		return nil, fmt.Errorf("webauthn: %w", err)
	}
	return w, nil
}

// ssoVerifier returns the OIDC login verifier, or nil when oidc_login is not
// configured.
func (s *Server) ssoVerifier() *sso.Verifier {
	if !s.cfg.OIDCLogin.Enabled() {
		return nil
	}
	return sso.NewVerifier(s.cfg.OIDCLogin, nil, nil)
}

// teamKeyAge returns a team's own maximum key age (0: none).
func (s *Server) teamKeyAge(teamID string) time.Duration {
	if snap := s.snap.Load(); snap != nil {
		return snap.TeamKeyAges[teamID]
	}
	return 0
}

// keyMaxAge returns the maximum age of a key of the team: the stricter of the
// organisation's and the team's.
func (s *Server) keyMaxAge(teamID string) time.Duration {
	return vkey.MinAge(s.cfg.Keys.MaxAge.D(), s.teamKeyAge(teamID))
}

// Snapshot returns the current snapshot.
func (s *Server) Snapshot() *config.Snapshot { return s.snap.Load() }

func (s *Server) budgetList() []budget.Budget { return s.snap.Load().Budgets }

// suspendKey stores a breaker's suspension and drops the key from the cache,
// so the very next request is refused.
// The suspension holds in this process from the moment it is decided: the
// calls admitted while its write waits for the store would otherwise spend
// past the trip (and if the write fails, the key stays suspended here).
// A trip (sp.At zero) returns the instant it wrote and the key's version it
// marked; a retry passes them back, marks nothing anew (a mark lifted
// meanwhile was lifted by a change of the key, which wins), writes only
// while the key is still at that version (breaker.ErrChanged otherwise) and
// finds out whether the trip's own write committed after all (then it
// records and alerts, as the trip would have).
func (s *Server) suspendKey(ctx context.Context, keyID string, sp breaker.Suspension) (bool, breaker.Suspension, error) {
	if proxy.Keyless(keyID) { // nothing stored to suspend: the breaker alerts once instead
		return false, sp, breaker.ErrNoKey
	}
	reason, trip := sp.Reason, sp.At.IsZero()
	if trip {
		sp.At = time.Now().UTC().Truncate(time.Microsecond) // as stored
	}
	at := sp.At
	if trip {
		// At once, at the version cached for the key's secrets; then at the
		// version its tokens run with, which may take a store read (a key used
		// only by its secret is not cached by id).
		sp.Version = s.verifier.Suspend(keyID, 0, reason, at)
		if k, err := s.auth.KeyByID(ctx, keyID); err == nil {
			sp.Version = max(sp.Version, s.verifier.Suspend(keyID, k.Version, reason, at))
		}
		s.auth.ForgetKey(keyID)
	}
	first, err := s.db.SuspendKeyFirst(ctx, keyID, reason, at, sp.Version)
	if trip {
		s.verifier.Written(keyID)
	}
	if errors.Is(err, store.ErrConflict) {
		return false, sp, fmt.Errorf("%w: %v", breaker.ErrChanged, err)
	}
	if err != nil {
		return false, sp, err
	}
	s.verifier.Forget(keyID)
	s.auth.ForgetKey(keyID)
	if !first { // another replica tripped it first and recorded it
		return false, sp, nil
	}
	rec := ledger.Record{Kind: ledger.KindBreaker, Time: time.Now(), RequestID: "breaker-" + keyID, KeyID: keyID, Action: "suspend", Target: keyID, Detail: reason}
	if _, err := s.ledger.Append(ctx, ledger.Entry{Data: rec.Marshal(), RequestID: rec.RequestID}); err != nil {
		s.log.Error("ledger: a key suspension was not recorded", "key_id", keyID, "err", err)
	}
	s.log.Warn("key suspended by the spend-velocity breaker", "key_id", keyID, "reason", reason)
	return true, sp, nil
}

// openLedger loads the log's signing key (sealed under the KEK; created on
// first start) and the export sinks.
func (s *Server) openLedger(ctx context.Context) (*ledger.Log, error) {
	skey, err := ledger.GenerateKey(s.cfg.Ledger.Origin)
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal([]string{skey})
	sealed, err := s.keyring.Seal(b, ledgerKeysAAD())
	if err != nil {
		return nil, err
	}
	if _, err := s.db.PutSecretIfAbsent(ctx, ledgerKeysSecret, sealed); err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	skeys, err := s.ledgerKeys(ctx)
	if err != nil {
		return nil, err
	}
	l, err := ledger.New(s.db, s.inst.ID(), skeys[0], s.log)
	if err != nil {
		return nil, err
	}
	l.SetInstance(s.inst.ID)
	if s.cfg.Database != "" {
		l.Gate = s.inst.Live
	}
	l.CommitTimeout = s.cfg.Store.Timeout.D()
	if err := l.SetKeys(skeys); err != nil {
		return nil, err
	}
	if l.Origin() != s.cfg.Ledger.Origin {
		s.log.Warn("ledger: the log keeps the origin it was created with; ledger.origin is ignored", "origin", l.Origin(), "configured", s.cfg.Ledger.Origin)
	}
	l.Interval = s.cfg.Ledger.CheckpointInterval.D()
	if s.export, err = ledger.NewExporter(s.cfg.Ledger.ExportFile, s.cfg.Ledger.ExportWebhook, []byte(os.Getenv(EnvAlertSecret)), s.log); err != nil {
		return nil, err
	}
	if s.export.Enabled() {
		l.Sink = s.export.Add
	}
	return l, nil
}

// Token signing keys are a sealed JSON list of Ed25519 seeds, current first;
// the previous one keeps verifying after a rotation.
const tokenKeysSecret = "token_signing_keys"

func tokenKeysAAD() []byte { return []byte("server-secret/" + tokenKeysSecret) }

// openTokens loads the token signing keys (sealed under the KEK; created on
// first start).
func (s *Server) openTokens(ctx context.Context) (*token.Issuer, error) {
	b, _ := json.Marshal([][]byte{token.NewKey()})
	sealed, err := s.keyring.Seal(b, tokenKeysAAD())
	if err != nil {
		return nil, err
	}
	if _, err := s.db.PutSecretIfAbsent(ctx, tokenKeysSecret, sealed); err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	seeds, err := s.tokenSeeds(ctx)
	if err != nil {
		return nil, err
	}
	iss, err := token.New(seeds[0], s.cfg.Tokens.Issuer, s.cfg.Tokens.Issuer, seeds[1:]...)
	if err != nil {
		return nil, err
	}
	iss.TTL = s.cfg.Tokens.TTL.D()
	return iss, nil
}

func (s *Server) tokenSeeds(ctx context.Context) ([][]byte, error) {
	stored, err := s.db.Secret(ctx, tokenKeysSecret)
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	raw, err := s.keyring.Open(stored, tokenKeysAAD())
	if err != nil {
		return nil, fmt.Errorf("token signing keys: %w", err)
	}
	var seeds [][]byte
	if err := json.Unmarshal(raw, &seeds); err != nil || len(seeds) == 0 {
		return nil, fmt.Errorf("token signing keys: corrupt")
	}
	return seeds, nil
}

// RotateTokenKey makes a new token signing key current; the previous one keeps
// verifying (and stays in the JWKS) until the next rotation, so rotate at most
// once per token lifetime. It returns the new key id.
func (s *Server) RotateTokenKey(ctx context.Context) (string, error) {
	seeds, err := s.tokenSeeds(ctx)
	if err != nil {
		return "", err
	}
	next := [][]byte{token.NewKey(), seeds[0]}
	b, _ := json.Marshal(next)
	sealed, err := s.keyring.Seal(b, tokenKeysAAD())
	if err != nil {
		return "", err
	}
	if err := s.db.SetSecret(ctx, tokenKeysSecret, sealed); err != nil {
		return "", err
	}
	if err := s.Reload(ctx); err != nil {
		return "", err
	}
	kid := s.tokens.JWKS().Keys[0].KeyID
	s.log.Warn("token signing key rotated", "kid", kid)
	return kid, nil
}

// Tokens returns the token issuer.
func (s *Server) Tokens() *token.Issuer { return s.tokens }

// The ledger's checkpoint signing keys: a sealed JSON list of note signer
// keys, current first; all of them sign each checkpoint.
const ledgerKeysSecret = "ledger_signing_keys"

func ledgerKeysAAD() []byte { return []byte("server-secret/" + ledgerKeysSecret) }

func (s *Server) ledgerKeys(ctx context.Context) ([]string, error) {
	stored, err := s.db.Secret(ctx, ledgerKeysSecret)
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	raw, err := s.keyring.Open(stored, ledgerKeysAAD())
	if err != nil {
		return nil, fmt.Errorf("ledger signing keys: %w", err)
	}
	var keys []string
	if err := json.Unmarshal(raw, &keys); err != nil || len(keys) == 0 {
		return nil, errors.New("ledger signing keys: corrupt")
	}
	return keys, nil
}

// RotateLedgerKey makes a new checkpoint signing key current. Checkpoints are
// signed by the new and the previous key until the next rotation, so auditors
// who pinned the previous key verify the new one's checkpoints and can re-pin
// (gatehouse audit verify --key NEW accepts a key that co-signs with the pinned one).
func (s *Server) RotateLedgerKey(ctx context.Context) (string, error) {
	keys, err := s.ledgerKeys(ctx)
	if err != nil {
		return "", err
	}
	fresh, err := ledger.GenerateKey(s.ledger.Origin())
	if err != nil {
		return "", err
	}
	b, _ := json.Marshal([]string{fresh, keys[0]})
	sealed, err := s.keyring.Seal(b, ledgerKeysAAD())
	if err != nil {
		return "", err
	}
	if err := s.db.SetSecret(ctx, ledgerKeysSecret, sealed); err != nil {
		return "", err
	}
	if err := s.Reload(ctx); err != nil {
		return "", err
	}
	if err := s.ledger.Resign(ctx); err != nil {
		s.log.Warn("ledger: checkpoint after key rotation", "err", err)
	}
	return s.ledger.Key(), nil
}

// Ledger returns the log.
func (s *Server) Ledger() *ledger.Log { return s.ledger }

// EnvAlertSecret names the environment variable holding the alert webhook's
// HMAC secret (kept out of the configuration file).
const EnvAlertSecret = "GATEHOUSE_ALERT_WEBHOOK_SECRET"

// bootstrap creates the first admin credential when none exists, and in dev
// mode a ready data-plane key too.
func (s *Server) bootstrap(ctx context.Context) error {
	admins, err := s.db.ListKeys(ctx, vkey.Filter{Kind: vkey.KindAdmin})
	if err != nil {
		return err
	}
	if len(admins) > 0 && !s.cfg.Dev {
		return nil
	}
	if err := s.createAdminKey(ctx, "bootstrap admin key"); err != nil {
		return err
	}
	if !s.cfg.Dev {
		return nil
	}
	return s.createDevKey(ctx)
}

// createAdminKey makes an admin key for the principal "admin" in team
// "default", creating both when missing, and keeps the secret in s.Bootstrap.
func (s *Server) createAdminKey(ctx context.Context, name string) error {
	now := time.Now().UTC()
	team, err := s.db.Team(ctx, "default")
	if errors.Is(err, store.ErrNotFound) {
		team = org.Team{ID: vkey.NewID("team"), Name: "default", CreatedAt: now, Version: 1}
		err = s.db.CreateTeam(ctx, team)
	}
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	p, err := s.db.Principal(ctx, "admin")
	if errors.Is(err, store.ErrNotFound) {
		p = org.Principal{ID: vkey.NewID("prn"), Name: "admin", Kind: org.KindUser, Teams: []string{team.ID}, Roles: []string{"admin"}, CreatedAt: now, Version: 1}
		err = s.db.CreatePrincipal(ctx, p)
	}
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	secret := vkey.Generate(vkey.KindAdmin)
	if s.cfg.DevAdminKey != "" {
		secret = vkey.Secret(s.cfg.DevAdminKey)
	}
	k := vkey.Key{ID: vkey.NewID("key"), Kind: vkey.KindAdmin, Name: name, Hash: s.verifier.Hasher().Hash(secret),
		Hint: secret.Hint(), PrincipalID: p.ID, TeamID: team.ID, CreatedAt: now, Version: 1}
	if k.Hint == "" {
		k.Hint = "dev key"
	}
	if err := s.db.CreateKey(ctx, k); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	s.Bootstrap.AdminKey, s.Bootstrap.AdminKeyID = secret.Reveal(), k.ID
	s.log.Info("created an admin key", "name", name, "key_id", k.ID, "principal", p.Name)
	return nil
}

// createDevKey makes, in dev mode, a principal "dev" with a data-plane key.
func (s *Server) createDevKey(ctx context.Context) error {
	now := time.Now().UTC()
	team, err := s.db.Team(ctx, "default")
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	dev := org.Principal{ID: vkey.NewID("prn"), Name: "dev", Kind: org.KindServiceAccount, Teams: []string{team.ID}, Roles: []string{"member"}, CreatedAt: now, Version: 1}
	if err := s.db.CreatePrincipal(ctx, dev); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	vs := vkey.Generate(vkey.KindVirtual)
	vk := vkey.Key{ID: vkey.NewID("key"), Kind: vkey.KindVirtual, Name: "dev key", Hash: s.verifier.Hasher().Hash(vs), Hint: vs.Hint(),
		PrincipalID: dev.ID, TeamID: team.ID, CreatedAt: now, Version: 1}
	if err := s.db.CreateKey(ctx, vk); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	s.Bootstrap.VirtualKey = vs.Reveal()
	return nil
}

// OpenStore opens the store of cfg directly for offline tools that only read
// (audit verify). The embedded store opens read-only and without the data
// directory's lock, so it may run while the gateway that owns the directory
// does.
func OpenStore(ctx context.Context, cfg config.Config) (*sqlstore.DB, func() error, error) {
	var db *sqlstore.DB
	var err error
	if cfg.Database != "" {
		// Offline tools (verify a large log) may run long statements.
		db, err = postgres.OpenWith(ctx, cfg.Database, postgres.Options{MaxOpenConns: 4, StatementTimeout: time.Hour})
	} else {
		path := filepath.Join(cfg.DataDir, sqlite.FileName)
		if _, serr := os.Stat(path); serr != nil {
			return nil, nil, fmt.Errorf("no Gatehouse store at %s", path)
		}
		db, err = sqlite.OpenReadOnly(ctx, path)
	}
	if err != nil {
		return nil, nil, err
	}
	return db, db.Close, nil
}

// openExclusive opens the store of cfg for an offline tool that must be its
// only writer (kek rotate): on the embedded store it takes the data
// directory's lock, so it refuses to run while a gateway does, and says so.
func openExclusive(ctx context.Context, cfg config.Config, todo string) (*sqlstore.DB, func() error, error) {
	if cfg.Database != "" {
		// Re-wrapping every secret in one transaction may run long.
		db, err := postgres.OpenWith(ctx, cfg.Database, postgres.Options{MaxOpenConns: 4, StatementTimeout: time.Hour})
		if err != nil {
			return nil, nil, err
		}
		return db, db.Close, nil
	}
	path := filepath.Join(cfg.DataDir, sqlite.FileName)
	if _, err := os.Stat(path); err != nil {
		return nil, nil, fmt.Errorf("no Gatehouse store at %s", path)
	}
	lock, err := lockDataDir(cfg.DataDir, todo)
	if err != nil {
		return nil, nil, err
	}
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		lock.Close()
		return nil, nil, err
	}
	return db, func() error { err := db.Close(); lock.Close(); return err }, nil
}

// RotateKEK makes a new key-encryption key current and re-wraps every sealed
// secret in the store under it (upstream keys, signing keys, the key-hashing
// secret, TOTP secrets), in one transaction; then it drops the old key from the
// key file. Gateways must be stopped: a running one holds the old key only.
func RotateKEK(ctx context.Context, cfg config.Config, log *slog.Logger) (oldID, newID string, n int, err error) {
	if os.Getenv(keyring.EnvKEK) != "" {
		return "", "", 0, fmt.Errorf("%s is set: rotate the key in your secret manager instead (this command rotates the key file)", keyring.EnvKEK)
	}
	old, _, err := keyring.LoadKEKs(cfg.KEKFile, func(string) string { return "" })
	if err != nil {
		return "", "", 0, err
	}
	db, closeFn, err := openExclusive(ctx, cfg, "stop the gateway first: a running gateway holds the old key only")
	if err != nil {
		return "", "", 0, err
	}
	defer closeFn()
	fresh := keyring.NewKEK()
	// Write the new key first, with the old ones after: a crash from here on
	// leaves a file that opens every blob, whatever was re-wrapped.
	if err := keyring.WriteKEKs(cfg.KEKFile, append([][]byte{fresh}, old...)); err != nil {
		return "", "", 0, err
	}
	kr, err := keyring.New(append([][]byte{fresh}, old...)...)
	if err != nil {
		return "", "", 0, err
	}
	n, err = db.Rewrap(ctx, func(blob, aad []byte) ([]byte, error) {
		pt, err := kr.Open(blob, aad)
		if err != nil {
			return nil, err
		}
		return kr.Seal(pt, aad)
	})
	if err != nil {
		return "", "", 0, fmt.Errorf("re-wrapping (nothing changed; the key file holds both keys): %w", err)
	}
	if err := keyring.WriteKEKs(cfg.KEKFile, [][]byte{fresh}); err != nil {
		return "", "", 0, err
	}
	oldID, newID = keyring.KEKID(old[0]), keyring.KEKID(fresh)
	s := &Server{cfg: cfg, log: log, db: db, keyring: kr}
	rec := ledger.Record{Kind: ledger.KindAdmin, Time: time.Now(), RequestID: "kek-rotate-" + newID, Action: "kek rotate",
		Target: newID, Detail: fmt.Sprintf("%s → %s, %d secrets re-wrapped", oldID, newID, n), Status: http.StatusOK}
	if err := s.recordOffline(ctx, rec); err != nil {
		return "", "", 0, fmt.Errorf("the key was rotated, but recording it in the ledger failed: %w", err)
	}
	log.Warn("key-encryption key rotated", "old", oldID, "new", newID, "secrets", n)
	return keyring.KEKID(old[0]), keyring.KEKID(fresh), n, nil
}

// RecoverAdminKey opens the store of cfg directly (no listeners) and creates a
// new admin key for the bootstrap principal "admin": the way back in for an
// operator who lost every admin key but holds the data directory (or database
// URL) and the key-encryption key.
func RecoverAdminKey(ctx context.Context, cfg config.Config, log *slog.Logger) (string, error) {
	if os.Getenv(keyring.EnvKEK) == "" {
		if _, err := os.Stat(cfg.KEKFile); err != nil {
			return "", fmt.Errorf("no key-encryption key at %s and %s is unset: this is not the data directory of an existing gateway", cfg.KEKFile, keyring.EnvKEK)
		}
	}
	s := &Server{cfg: cfg, log: log}
	defer s.closeAll()
	var err error
	// Without the data directory's lock: recovery works while the gateway
	// runs. It writes a new admin key and one ledger record, which the
	// ledger's transaction orders after the gateway's own appends.
	if s.db, err = s.openStore(ctx, cfg); err != nil {
		return "", err
	}
	keks, _, err := keyring.LoadKEKs(cfg.KEKFile, os.Getenv)
	if err != nil {
		return "", err
	}
	if s.keyring, err = keyring.New(keks...); err != nil {
		return "", err
	}
	hasher, err := s.keyHasher(ctx)
	if err != nil {
		return "", err
	}
	s.verifier = vkey.NewVerifier(s.db, hasher, vkey.VerifierOptions{})
	s.cfg.Dev, s.cfg.DevAdminKey = false, ""
	if err := s.createAdminKey(ctx, "recovered admin key"); err != nil {
		return "", err
	}
	rec := ledger.Record{Kind: ledger.KindAdmin, Time: time.Now(), RequestID: "recover-admin-key-" + s.Bootstrap.AdminKeyID, Action: "recover-admin-key",
		Target: s.Bootstrap.AdminKeyID, Detail: "admin key created offline with the data directory and the key-encryption key", Status: http.StatusCreated}
	if err := s.recordOffline(ctx, rec); err != nil {
		return "", fmt.Errorf("recording the recovery in the ledger: %w (the new key was not handed out)", err)
	}
	return s.Bootstrap.AdminKey, nil
}

// recordOffline appends an admin record to the ledger from a command that
// works on the store directly (no gateway running), and signs a checkpoint
// over it. A store whose ledger was never created has nothing to append to.
func (s *Server) recordOffline(ctx context.Context, rec ledger.Record) error {
	keys, err := s.ledgerKeys(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	l, err := ledger.New(s.db, vkey.NewID("offline"), keys[0], s.log)
	if err != nil {
		return err
	}
	if err := l.SetKeys(keys); err != nil {
		return err
	}
	if _, err := l.Append(ctx, ledger.Entry{Data: rec.Marshal(), RequestID: rec.RequestID}); err != nil {
		return err
	}
	return l.SignCheckpoint(ctx)
}

func zoneOf(name string) *time.Location {
	if z, err := time.LoadLocation(name); err == nil {
		return z
	}
	return time.UTC
}

// adminSnapshot adapts a config.Snapshot to what the admin API reads.
type adminSnapshot struct{ *config.Snapshot }

func (a adminSnapshot) Policies() *policy.Set        { return a.Snapshot.Policies }
func (a adminSnapshot) Prices() *pricing.Table       { return a.Snapshot.Prices }
func (a adminSnapshot) Models() []provider.ModelInfo { return a.Router.Models(sim.Models) }
func (a adminSnapshot) Simulated() bool              { return a.Router.Simulated() }

func (s *Server) buildHTTP() {
	devHash := ""
	if s.cfg.DevAdminKey != "" {
		devHash = s.verifier.Hasher().Hash(vkey.Secret(s.cfg.DevAdminKey))
	}
	al := s.authLimits()
	endpoint := &token.Endpoint{Issuer: s.tokens, DPoP: s.dpop, Federation: token.NewFederation(s.cfg.WorkloadIdentity, nil),
		Keys: s.auth, Principals: s.db, Log: s.log, // MFA: guardToken
		URL: func(r *http.Request) string {
			scheme := "http"
			if r.TLS != nil || (s.cfg.TrustProxyHeaders && r.Header.Get("X-Forwarded-Proto") == "https") {
				scheme = "https"
			}
			return scheme + "://" + r.Host + r.URL.Path
		}}
	px := proxy.New(proxy.Deps{Snapshot: s.Snapshot, Auth: boundedAuth{s.auth, s.cfg.Store.Timeout.D()}, Usage: s.usage, Ledger: s.ledger, Limiter: s.limiter,
		Tokens: &proxy.Tokens{Issuer: s.tokens, DPoP: s.dpop, Endpoint: s.guardToken(endpoint, al), Metadata: http.HandlerFunc(endpoint.ServeMetadata)}, Budgets: s.budgets, Breaker: s.breaker, Alerts: s.alerts, Log: s.log, Denied: s.denied, Observer: s.observer(), Clock: s.now}, proxy.Options{
		MaxBodyBytes: s.cfg.MaxBodyBytes, UpstreamTimeout: s.cfg.UpstreamTimeout.D(),
		StreamIdleTimeout: s.cfg.StreamIdleTimeout.D(), TrustProxyHeaders: s.cfg.TrustProxyHeaders, TrustedProxies: trustedProxies(s.cfg.TrustedProxies), DefaultMaxOutput: s.cfg.DefaultMaxOutputTokens,
		PolicyZone: s.cfg.PolicyTimeZone, ClientPrincipals: s.cfg.TLS.ClientPrincipals, AllowUnboundedCost: s.cfg.AllowUnboundedCost,
		LagEnd: s.cfg.Ledger.LagEndRecords,
	})
	if s.ledger != nil {
		s.ledger.Calls = px.InFlight
		s.ledger.Linger = s.cfg.Ledger.BatchLinger.D()
		s.ledger.LagWait = s.cfg.Ledger.LagWait.D()
		s.ledger.MaxDeferredRefusals = s.cfg.Ledger.MaxDeferredRefusals
	}
	dataMux := http.NewServeMux()
	dataMux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	dataMux.HandleFunc("GET /readyz", s.readyz)
	dataMux.HandleFunc("GET /livez", s.livez)
	if ph := s.partnerHandler(); ph != nil {
		dataMux.Handle("POST "+audit.PartnerPath, ph)
	}
	dataMux.Handle("/", px)
	errLog := slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
	s.data = &http.Server{Handler: dataMux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 2 * time.Minute,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10, ErrorLog: errLog}
	adm := admin.New(admin.Deps{
		Store: s.db, Keyring: s.keyring, Verifier: s.verifier, ForgetPrincipal: s.auth.Forget, ForgetKey: s.auth.ForgetKey, Reload: s.Reload,
		Snapshot: func() admin.Snapshot { return adminSnapshot{s.Snapshot()} }, DevAdminKeyHash: devHash, Log: s.log,
		Spend: s.budgets.Statuses, ResetBreaker: s.breaker.Reset, Ledger: s.ledger, LogHandler: s.ledger.Handler(),
		PolicyZone: zoneOf(s.cfg.PolicyTimeZone), TokenTTL: s.cfg.Tokens.TTL.D(),
		Guard: al.guard, Passwords: al.passwords, Throttle: al.throttle, Alerts: s.alerts,
		SessionTTL: s.cfg.SessionTTL.D(), RequireMFA: s.cfg.RequireMFA, RotateTokenKey: s.RotateTokenKey, RotateLedgerKey: s.RotateLedgerKey, KeyMaxAge: s.keyMaxAge, SSO: s.ssoVerifier(), WebAuthn: s.webAuthn, StepUpMaxAge: s.cfg.StepUpMaxAge.D(),
		Audit: s.audit,
	})
	s.admin = &http.Server{Handler: s.adminHandler(adm, al.throttle), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute, ErrorLog: errLog}
}

// DataAddr returns the data plane's bound address.
func (s *Server) DataAddr() string { return s.dataLn.Addr().String() }

// DataURL returns the data plane's base URL (https with TLS).
func (s *Server) DataURL() string {
	if s.dataTLS {
		return "https://" + s.DataAddr()
	}
	return "http://" + s.DataAddr()
}

// AdminAddr returns the admin API's bound address.
func (s *Server) AdminAddr() string { return s.adminLn.Addr().String() }

// DataDir returns the data directory in use (a temporary one in dev mode).
func (s *Server) DataDir() string { return s.cfg.DataDir }

// Run serves until ctx ends, then shuts down in order: stop accepting, drain
// in-flight calls and streams (up to the shutdown timeout), flush last-used
// times, close the store.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 2)
	go func() { errc <- serve(s.data, s.dataLn) }()
	go func() { errc <- serve(s.admin, s.adminLn) }()
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { s.verifier.Run(bg, 10*time.Second) })
	breakerCtx, stopBreaker := context.WithCancel(context.WithoutCancel(ctx))
	breakerDone := make(chan struct{})
	go func() { s.breaker.Run(breakerCtx, 5*time.Second); close(breakerDone) }()
	wg.Go(func() { s.pollConfig(bg) })
	wg.Go(func() { s.inst.Run(bg) })
	wg.Go(func() { s.alerts.Run(bg) })
	wg.Go(func() { s.warnExpiringKeys(bg) })
	wg.Go(func() { s.denied.Run(bg) })
	wg.Go(func() { s.runAudit(bg) })
	budgetCtx, stopBudgets := context.WithCancel(context.WithoutCancel(ctx))
	budgetDone := make(chan struct{})
	go func() { s.budgets.Run(budgetCtx, s.cfg.Database != ""); close(budgetDone) }()
	usageCtx, stopUsage := context.WithCancel(context.WithoutCancel(ctx))
	usageDone := make(chan struct{})
	go func() { s.usage.Run(usageCtx); close(usageDone) }()
	ledgerCtx, stopLedger := context.WithCancel(context.WithoutCancel(ctx))
	ledgerDone := make(chan struct{})
	go func() { s.ledger.Run(ledgerCtx); close(ledgerDone) }()
	exportCtx, stopExport := context.WithCancel(context.WithoutCancel(ctx))
	exportDone := make(chan struct{})
	go func() { s.export.Run(exportCtx); close(exportDone) }()
	if s.cfg.Database != "" {
		wg.Go(func() { s.recoverLedger(bg) })
		wg.Go(func() { s.listenChanges(bg) })
	}
	s.log.Info("gatehouse serving", "data_plane", s.DataURL(), "admin_api", "http://"+s.AdminAddr(), "store", s.storeName())

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	s.log.Info("shutting down: draining in-flight requests", "timeout", s.cfg.ShutdownTimeout.D().String())
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout.D())
	defer cancel()
	if err := s.data.Shutdown(sctx); err != nil {
		s.log.Warn("data plane did not drain in time; closing", "err", err)
		s.data.Close()
	}
	s.admin.Shutdown(sctx)
	// After the data plane drained, before the ledger stops: the breaker
	// flushes the last interval's spend (a trip it finds is recorded).
	stopBreaker()
	<-breakerDone
	stopBudgets() // after the data plane drained: tries deferred settlements once more
	<-budgetDone
	stopUsage() // after the data plane drained: every call's record is queued
	<-usageDone
	// The last counts of refused credentials, while the ledger still runs.
	s.denied.Flush(sctx)
	stopLedger() // after every end record: signs the final checkpoint
	<-ledgerDone
	stopExport()
	<-exportDone
	stopBG()
	wg.Wait()
	s.closeAll()
	s.log.Info("stopped")
	return runErr
}

func serve(srv *http.Server, ln net.Listener) error {
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// warnExpiringKeys alerts (webhook and log) once per key and expiry time when
// a key will expire within keys.expiry_warning, so its owner can rotate it.
func (s *Server) warnExpiringKeys(ctx context.Context) {
	if s.cfg.Keys.ExpiryWarning <= 0 {
		return
	}
	t := time.NewTicker(s.cfg.Keys.CheckInterval.D())
	defer t.Stop()
	for {
		keys, err := s.db.ListKeys(ctx, vkey.Filter{})
		if err != nil && ctx.Err() == nil {
			s.log.Warn("key expiry check failed", "err", err)
		}
		now := time.Now()
		for _, k := range keys {
			exp := k.Expiry(s.keyMaxAge(k.TeamID))
			if exp == nil || exp.Before(now) || exp.Sub(now) > s.cfg.Keys.ExpiryWarning.D() {
				continue
			}
			if first, err := s.db.MarkKeyWarned(ctx, k.ID, *exp); err != nil || !first {
				continue
			}
			s.alerts.Send(alert.Alert{Kind: "key_expiring",
				Message: fmt.Sprintf("key %s (%s) of principal %s expires at %s; rotate it (gatehouse keys rotate %s)", k.ID, k.Name, k.PrincipalID, exp.UTC().Format(time.RFC3339), k.ID),
				Details: map[string]any{"key_id": k.ID, "principal_id": k.PrincipalID, "team_id": k.TeamID, "expires_at": exp.UTC()}})
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// recoverLedger closes, on a shared database, the calls left open by replicas
// that stopped (no heartbeat for instance_timeout).
func (s *Server) recoverLedger(ctx context.Context) {
	t := time.NewTicker(s.cfg.InstanceTimeout.D() / 4)
	defer t.Stop()
	for {
		if _, err := s.ledger.Recover(ctx, false, time.Now().Add(-s.cfg.InstanceTimeout.D())); err != nil && ctx.Err() == nil {
			s.log.Warn("ledger: recovery sweep failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pollConfig reloads the snapshot when another replica changed providers or
// prices.
func (s *Server) pollConfig(ctx context.Context) {
	t := time.NewTicker(s.cfg.ConfigPollInterval.D())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			gen, err := s.db.ConfigVersion(ctx)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("config poll failed", "err", err)
				}
				continue
			}
			if cur := s.snap.Load(); cur == nil || cur.Generation != gen {
				if err := s.Reload(ctx); err != nil {
					s.log.Error("config reload failed; keeping the previous snapshot", "err", err)
				}
			}
		}
	}
}

func (s *Server) storeName() string {
	if s.cfg.Database != "" {
		return "postgres"
	}
	if s.cfg.Dev {
		return "sqlite (temporary, dev mode)"
	}
	return "sqlite " + filepath.Join(s.cfg.DataDir, sqlite.FileName)
}

// Close releases everything without serving; for a server that never ran.
func (s *Server) Close() error {
	s.closeAll()
	return nil
}

func (s *Server) closeAll() {
	for _, ln := range []net.Listener{s.dataLn, s.adminLn} {
		if ln != nil {
			ln.Close()
		}
	}
	if s.simSrv != nil {
		s.simSrv.Close()
	}
	s.shutdownTracer()
	if s.redis != nil {
		s.redis.Close()
		s.redis = nil
	}
	if s.db != nil {
		s.db.Close()
		s.db = nil
	}
	if s.dirLock != nil { // after the store: the next owner finds it closed
		s.dirLock.Close()
		s.dirLock = nil
	}
	if s.tmpDir != "" && strings.Contains(s.tmpDir, "gatehouse-dev-") {
		os.RemoveAll(s.tmpDir)
		s.tmpDir = ""
	}
}

// trustedProxies parses the validated trusted_proxies list.
func trustedProxies(ss []string) []netip.Prefix {
	ps, _ := httpx.ParsePrefixes(ss) // config.Validate refused anything unparsable
	return ps
}
