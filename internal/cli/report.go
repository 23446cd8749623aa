package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
)

func render(r audit.Report, format string) ([]byte, error) {
	switch format {
	case "md", "":
		return audit.Markdown(r), nil
	case "html":
		return audit.HTML(r), nil
	case "csv":
		return audit.CSV(r), nil
	case "json":
		b, err := json.MarshalIndent(r, "", "  ")
		return append(b, '\n'), err
	}
	return nil, fmt.Errorf("%w: --format: want md, json, html or csv", ErrUsage)
}

func writeOut(e *Env, path string, b []byte) error {
	if path == "" || path == "-" {
		_, err := e.Stdout.Write(b)
		return err
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return err
	}
	fmt.Fprintf(e.Stderr, "wrote %s (%d bytes)\n", path, len(b))
	return nil
}

func auditReportCmd() *command {
	return &command{name: "report", short: "Produce an audit report (spend, permissions, findings, reviews, log integrity)", admin: true,
		long: `Generates a report over the last --since (stored on the gateway, so it is
listed by 'gatehouse audit reports'), or fetches a stored one with --id, and
writes it as Markdown, JSON, CSV or one self-contained HTML file with charts.

Examples:
  gatehouse audit report --since 7d
  gatehouse audit report --since 30d --format html -o report.html`,
		flags: func(fs *flag.FlagSet, o *opts) {
			o.str(fs, "since", "7d", "the period: the last 7d, 24h …")
			o.str(fs, "format", "md", "md, json, html or csv")
			o.str(fs, "o", "", "write to this file (default: stdout)")
			o.str(fs, "id", "", "a stored report (scheduled or earlier) instead of a new one")
		},
		run: func(ctx context.Context, e *Env, o *opts, args []string) error {
			if err := nargs(args, 0, "no arguments"); err != nil {
				return err
			}
			if _, err := render(audit.Report{}, o.S("format")); err != nil {
				return err
			}
			c, err := o.client(e)
			if err != nil {
				return err
			}
			var raw []byte
			if o.set("id") {
				raw, err = c.ReportAs(ctx, o.S("id"), "json")
			} else {
				raw, err = c.CreateReport(ctx, o.S("since"))
			}
			if err != nil {
				return err
			}
			var r audit.Report
			if err := json.Unmarshal(raw, &r); err != nil {
				return fmt.Errorf("decoding the report: %w", err)
			}
			b, err := render(r, o.S("format"))
			if err != nil {
				return err
			}
			return writeOut(e, o.S("o"), b)
		}}
}

func auditReportsCmd() *command {
	return &command{name: "reports", short: "List stored reports (scheduled and on demand)", admin: true, json: true,
		run: fetch((*client.Client).ListReports, tableOf([]string{"ID", "NAME", "GENERATED", "FROM", "TO"}, "", func(r client.ReportInfo) []string {
			return []string{r.ID, r.Name, r.GeneratedAt.Local().Format("2006-01-02 15:04"), r.From.Local().Format("2006-01-02 15:04"), r.To.Local().Format("2006-01-02 15:04")}
		}))}
}

func auditEvidenceCmd() *command {
	return &command{name: "evidence", short: "Export an evidence bundle for auditors (zip, verifiable offline)", admin: true,
		long: `Writes a zip with the report (md, json, csv), the findings with their
histories, the review decisions, the policy versions in force, and for every
ledger record referenced a signed checkpoint and inclusion proof. Anyone with
the pinned log key verifies it offline:

  gatehouse audit evidence --since 30d -o evidence.zip
  gatehouse audit verify --bundle evidence.zip --key "$(cat gatehouse.vkey)"`,
		flags: func(fs *flag.FlagSet, o *opts) {
			o.str(fs, "since", "30d", "the period: the last 30d …")
			o.str(fs, "o", "evidence.zip", "the file to write")
		},
		run: func(ctx context.Context, e *Env, o *opts, args []string) error {
			if err := nargs(args, 0, "no arguments"); err != nil {
				return err
			}
			c, err := o.client(e)
			if err != nil {
				return err
			}
			b, err := c.Evidence(ctx, o.S("since"))
			if err != nil {
				return err
			}
			return writeOut(e, o.S("o"), b)
		}}
}

// verifyBundle checks an evidence bundle offline (gatehouse audit verify --bundle).
func verifyBundle(e *Env, o *opts) error {
	key := o.S("key")
	if key == "" {
		prev, err := ledger.LoadState(o.S("state"))
		if err != nil {
			return err
		}
		if prev != nil {
			key = prev.VerifierKey
		}
	}
	if key == "" {
		return fmt.Errorf("%w: --bundle needs the pinned log key: --key (or a state file from an earlier verify)", ErrUsage)
	}
	f, err := os.Open(o.S("bundle"))
	if err != nil {
		return err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, audit.MaxBundleBytes+1)) // VerifyBundle refuses anything longer
	if err != nil {
		return err
	}
	rep, err := audit.VerifyBundle(data, key)
	if err != nil {
		return fmt.Errorf("the bundle does NOT verify: %w", err)
	}
	if o.json {
		return printJSON(e.Stdout, rep)
	}
	fmt.Fprintf(e.Stdout, "OK: %d files unchanged since the export (ledger record %d); %d ledger records proven in the signed tree of %d records of %s; %d findings, each history entry proven.\n",
		rep.Files, rep.ExportedAt, rep.Records, rep.TreeSize, rep.Origin, rep.Findings)
	return nil
}
