package cli

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/gatehouse-gw/gatehouse/internal/server"
)

func ledgerCmd() *command {
	return &command{name: "ledger", short: "Operate the log's export", sub: []*command{
		{name: "export-reset", short: "Set an export target's cursor (after a store was restored from a backup)",
			long: `Sets where an export target (file or webhook) resumes, and records it in the
ledger. The exporter stalls a target whose cursor is past the log's end, which
happens when the store was restored from an older backup: the target already
holds other records under the indexes the log lost. Decide with the SIEM's
owner where to resume: by default the log's end (records appended since the
restore, below the old cursor, are not exported; deliver them with --to), or
--to N (the target receives indexes it has seen before, as other records).

On the embedded store stop the gateway first; on PostgreSQL the replicas take
the new cursor within a second. Needs the key-encryption key (the reset is
recorded in the ledger and a checkpoint signed).

Example:
  gatehouse ledger export-reset --data-dir ./gatehouse-data --target webhook --to 1200`,
			flags: func(fs *flag.FlagSet, o *opts) {
				o.str(fs, "config", "", "YAML configuration file")
				o.str(fs, "data-dir", "", "data directory (default ./gatehouse-data)")
				o.str(fs, "database", "", "postgres://… when the gateway uses PostgreSQL")
				o.str(fs, "target", "", "the export target: file or webhook")
				o.str(fs, "to", "", "the index of the next record to export (default: the log's end)")
			},
			run: func(ctx context.Context, e *Env, o *opts, args []string) error {
				if err := nargs(args, 0, "no arguments"); err != nil {
					return err
				}
				if !o.set("target") {
					return fmt.Errorf("%w: --target file or --target webhook", ErrUsage)
				}
				to := int64(-1)
				if o.set("to") {
					n, err := strconv.ParseInt(o.S("to"), 10, 64)
					if err != nil || n < 0 {
						return fmt.Errorf("%w: --to is a record index (0 or more)", ErrUsage)
					}
					to = n
				}
				cfg, err := loadConfig(e, o, nil)
				if err != nil {
					return err
				}
				was, now, err := server.ResetExport(ctx, cfg, o.S("target"), to, slog.New(slog.NewTextHandler(e.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
				if err != nil {
					return err
				}
				fmt.Fprintf(e.Stdout, "Export target %s: cursor %d → %d; recorded in the ledger.\n", o.S("target"), was, now)
				return nil
			}},
	}}
}
