// Package server is the composition root: it picks the store from the
// configuration, builds every component, runs the listeners and background
// loops, and shuts them down in order (drain streams, flush last-used times,
// close the store). Only this package imports the storage backends.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/gatehouse-gw/gatehouse/internal/alert"
	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/auth"
	"github.com/gatehouse-gw/gatehouse/internal/breaker"
	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/denylog"
	"github.com/gatehouse-gw/gatehouse/internal/instance"
	"github.com/gatehouse-gw/gatehouse/internal/keyring"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/metrics"
	"github.com/gatehouse-gw/gatehouse/internal/provider/sim"
	"github.com/gatehouse-gw/gatehouse/internal/ratelimit"
	"github.com/gatehouse-gw/gatehouse/internal/sso"
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
		// Replicas' clocks differ; periods and sweeps follow the store's.
		s.budgets.StoreClock = s.inst.StoreNow
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
	} else {
		// No Redis: the store keeps the replay set, shared by replicas on
		// PostgreSQL and, on either store, kept across a restart (a proof
		// seen before it stays refused while its iat is in the window).
		s.dpop.Shared = s.db
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

// envOrDev returns os.Getenv, except that dev mode ignores GATEHOUSE_KEK: it
// must never touch a production key.
func envOrDev(dev bool) func(string) string {
	if dev {
		return func(string) string { return "" }
	}
	return os.Getenv
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

// EnvAlertSecret names the environment variable holding the alert webhook's
// HMAC secret (kept out of the configuration file).
const EnvAlertSecret = "GATEHOUSE_ALERT_WEBHOOK_SECRET"

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
	wg.Go(func() { s.recordSuspensions(bg) }) // after the log runs: it appends
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
