package cli

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/server"
)

func serveCmd() *command {
	return &command{
		name:  "serve",
		short: "Run the gateway",
		long: `Runs the data plane (OpenAI- and Anthropic-compatible API) and the admin API.

Configuration comes from defaults, then --config FILE (YAML), then GATEHOUSE_*
environment variables, then flags. With no database configured, Gatehouse keeps
its state in SQLite in the data directory (./gatehouse-data), beside its
key-encryption key (kek.key, mode 0600: back it up). With no provider
configured, every model is served by the built-in simulated provider.

On the first start, Gatehouse creates an admin key and prints it once.

--dev runs in a temporary directory that is removed on exit, and prints an admin
key and a ready data-plane key, like 'vault server -dev'.

Environment:
  GATEHOUSE_LISTEN, GATEHOUSE_ADMIN_LISTEN, GATEHOUSE_DATA_DIR, GATEHOUSE_DATABASE,
  GATEHOUSE_KEK_FILE, GATEHOUSE_KEK (base64 of 32 bytes; wins over the file),
  GATEHOUSE_MAX_BODY_BYTES, GATEHOUSE_UPSTREAM_TIMEOUT, GATEHOUSE_LOG_LEVEL,
  GATEHOUSE_LOG_FORMAT, GATEHOUSE_MEMORY_LIMIT
  GOMEMLIMIT, GOGC: Go's own; when either is set, memory_limit (default off)
  is not applied`,
		flags: func(fs *flag.FlagSet, o *opts) {
			o.bool(fs, "dev", "development mode: temporary store, simulated provider, printed keys")
			o.str(fs, "dev-admin-key", "", "with --dev: use this admin key instead of a random one: 16+ characters not starting with gka_ or gk_, or a valid admin key")
			o.str(fs, "config", "", "YAML configuration file")
			o.str(fs, "listen", "", "data-plane address (default 127.0.0.1:8080)")
			o.str(fs, "admin-listen", "", "admin API address (default 127.0.0.1:8081)")
			o.str(fs, "data-dir", "", "data directory (default ./gatehouse-data)")
			o.str(fs, "database", "", "postgres://… to use PostgreSQL instead of SQLite")
			o.str(fs, "log-level", "", "debug, info, warn or error")
			o.str(fs, "log-format", "", "text or json")
		},
		run: runServe,
	}
}

// loadConfig builds the configuration from the defaults, the --config file,
// the environment and the command's flags (those it defines), in that order;
// adjust, when not nil, changes it last. The result is validated.
func loadConfig(e *Env, o *opts, adjust func(*config.Config)) (config.Config, error) {
	cfg := config.Default()
	if o.set("config") {
		if err := cfg.LoadFile(o.S("config")); err != nil {
			return cfg, err
		}
	}
	if err := cfg.LoadEnv(e.Getenv); err != nil {
		return cfg, err
	}
	for flagName, dst := range map[string]*string{"listen": &cfg.Listen, "admin-listen": &cfg.AdminListen, "data-dir": &cfg.DataDir,
		"database": &cfg.Database, "log-level": &cfg.LogLevel, "log-format": &cfg.LogFormat} {
		if o.set(flagName) {
			*dst = o.S(flagName)
		}
	}
	if adjust != nil {
		adjust(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("configuration: %w", err)
	}
	return cfg, nil
}

func runServe(ctx context.Context, e *Env, o *opts, args []string) error {
	if err := nargs(args, 0, "no arguments"); err != nil {
		return err
	}
	cfg, err := loadConfig(e, o, func(cfg *config.Config) { cfg.Dev, cfg.DevAdminKey = o.B("dev"), o.S("dev-admin-key") })
	if err != nil {
		return err
	}
	log := newLogger(e, cfg)

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if ml := server.NewMemoryLimit(cfg, e.Getenv, log); ml != nil {
		log.Debug("Go soft memory limit", "bytes", ml.Apply())
		mlCtx, stopML := context.WithCancel(ctx)
		mlDone := make(chan struct{})
		go func() { ml.Run(mlCtx); close(mlDone) }()
		defer func() { stopML(); <-mlDone; ml.Restore() }()
	}
	srv, err := server.Open(ctx, cfg, log)
	if err != nil {
		return err
	}
	printBanner(e, cfg, srv)
	return srv.Run(ctx)
}

func newLogger(e *Env, cfg config.Config) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.LogLevel))
	hopts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(e.Stderr, hopts))
	}
	return slog.New(slog.NewTextHandler(e.Stderr, hopts))
}

// printBanner shows the operator where things are and, once, the credentials
// created at start. It writes to stdout, never to the log.
func printBanner(e *Env, cfg config.Config, srv *server.Server) {
	w := e.Stdout
	fmt.Fprintf(w, "\nGatehouse is running.\n  data plane:  %s/v1   (OpenAI and Anthropic SDKs: set the base URL here)\n  admin API:   http://%s\n",
		srv.DataURL(), srv.AdminAddr())
	if cfg.Dev {
		fmt.Fprintf(w, "  mode:        dev (in a temporary directory, removed on exit)\n")
	} else if cfg.Database == "" {
		fmt.Fprintf(w, "  data:        %s\n", srv.DataDir())
	}
	if srv.Snapshot().Router.Simulated() {
		fmt.Fprintf(w, "  provider:    simulated (no provider configured; add one with 'gatehouse providers add')\n")
	}
	if k := srv.Bootstrap.AdminKey; k != "" {
		fmt.Fprintf(w, "\nAdmin key (shown once; keep it safe):\n\n    export GATEHOUSE_ADMIN_KEY=%s\n    export GATEHOUSE_ADDR=http://%s\n", k, srv.AdminAddr())
	}
	if k := srv.Bootstrap.VirtualKey; k != "" {
		fmt.Fprintf(w, "\nData-plane key for principal 'dev':\n\n    export OPENAI_API_KEY=%s OPENAI_BASE_URL=%s/v1\n", k, srv.DataURL())
	}
	fmt.Fprintf(w, "\nPress Ctrl-C to stop.\n\n")
}

func recoverCmd() *command {
	return &command{
		name:  "recover-admin-key",
		short: "Create a new admin key straight in the store (when every admin key is lost)",
		long: `Opens the store directly, without the admin API, and creates a new admin key
for the principal "admin". It needs what the gateway needs: the data directory
(or --database) and the key-encryption key (kek.key in the data directory, or
GATEHOUSE_KEK). It works while the gateway runs. The key is printed once.`,
		flags: func(fs *flag.FlagSet, o *opts) {
			o.str(fs, "config", "", "YAML configuration file")
			o.str(fs, "data-dir", "", "data directory (default ./gatehouse-data)")
			o.str(fs, "database", "", "postgres://… when the gateway uses PostgreSQL")
		},
		run: func(ctx context.Context, e *Env, o *opts, args []string) error {
			if err := nargs(args, 0, "no arguments"); err != nil {
				return err
			}
			cfg, err := loadConfig(e, o, nil)
			if err != nil {
				return err
			}
			key, err := server.RecoverAdminKey(ctx, cfg, slog.New(slog.NewTextHandler(e.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
			if err != nil {
				return err
			}
			fmt.Fprintf(e.Stdout, "New admin key (shown once):\n\n    export GATEHOUSE_ADMIN_KEY=%s\n\n", key)
			return nil
		},
	}
}

func kekCmd() *command {
	return &command{name: "kek", short: "Rotate the key-encryption key", sub: []*command{
		{name: "rotate", short: "Make a new key-encryption key current and re-wrap every sealed secret under it",
			long: `Generates a new key-encryption key, re-wraps every secret sealed in the store
(upstream keys, the token and ledger signing keys, the key-hashing secret, TOTP
secrets) under it in one transaction, and replaces the key file. Stop every
gateway of the store first: a running gateway holds the old key only. Then
distribute the new key file (or value) to every replica and start them.

A crash midway leaves a key file with both keys, which opens everything.`,
			flags: func(fs *flag.FlagSet, o *opts) {
				o.str(fs, "data-dir", "", "data directory (default ./gatehouse-data)")
				o.str(fs, "database", "", "postgres://… when the gateway uses PostgreSQL")
				o.str(fs, "kek-file", "", "key file (default <data-dir>/kek.key)")
			},
			run: func(ctx context.Context, e *Env, o *opts, args []string) error {
				cfg := config.Default()
				if o.set("data-dir") {
					cfg.DataDir = o.S("data-dir")
				}
				cfg.Database = o.S("database")
				cfg.KEKFile = o.S("kek-file")
				if err := cfg.Validate(); err != nil {
					return err
				}
				oldID, newID, n, err := server.RotateKEK(ctx, cfg, slog.New(slog.NewTextHandler(e.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
				if err != nil {
					return err
				}
				fmt.Fprintf(e.Stdout, "Rotated the key-encryption key %s → %s; re-wrapped %d secrets. Back up %s now.\n", oldID, newID, n, cfg.KEKFile)
				return nil
			}},
	}}
}
