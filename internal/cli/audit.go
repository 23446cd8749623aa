package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/server"
)

func auditCmd() *command {
	return &command{name: "audit", short: "Verify and read the tamper-evident log; reports and evidence", sub: []*command{
		{name: "verify", short: "Verify the log against its signed checkpoint", json: true,
			long: `Verifies a Gatehouse log without trusting its operator: checks the checkpoint's
signature with the verifier key, recomputes every record's leaf hash and the
tree's root, and checks that the log still contains, unchanged, the tree
verified last time (kept in --state), so a log that was rewritten, forked or
truncated is caught. Exit status 0 only when all of it holds.

Pin the key: the first run takes it from --key (get it once, out of band, with
'gatehouse audit key'); later runs take it from the state file.

Examples:
  gatehouse audit verify --url http://127.0.0.1:8081/log --key "$(cat gatehouse.vkey)"
  gatehouse audit verify --data-dir ./gatehouse-data --state audit.state`,
			flags: func(fs *flag.FlagSet, o *opts) {
				o.str(fs, "url", "", "the log's URL, e.g. http://127.0.0.1:8081/log")
				o.str(fs, "data-dir", "", "verify a data directory directly (reads its SQLite store)")
				o.str(fs, "database", "", "verify a PostgreSQL store directly")
				o.str(fs, "key", "", "checkpoint verifier key (note verifier-key text); default: the state file's")
				o.str(fs, "state", "gatehouse-audit.state", "where the last verified checkpoint is kept")
				o.str(fs, "bundle", "", "verify an evidence bundle (gatehouse audit evidence) offline instead")
			},
			run: runVerify},
		auditReportCmd(), auditReportsCmd(), auditEvidenceCmd(),
		{name: "key", short: "Print the checkpoint verifier key, to pin it", admin: true,
			run: func(ctx context.Context, e *Env, o *opts, args []string) error {
				b, err := httpGet(ctx, strings.TrimRight(o.addr, "/")+"/log/key")
				if err != nil {
					return err
				}
				fmt.Fprint(e.Stdout, string(b))
				return nil
			}},
		{name: "rotate-key", short: "Make a new checkpoint signing key current (co-signing with the previous one)", admin: true,
			run: func(ctx context.Context, e *Env, o *opts, args []string) error {
				c, err := o.client(e)
				if err != nil {
					return err
				}
				var out struct {
					Key string `json:"verifier_key"`
				}
				if _, err := c.DoJSON(ctx, "POST", "/v1/log/rotate-key", map[string]string{}, &out); err != nil {
					return err
				}
				fmt.Fprintf(e.Stdout, "New checkpoint key (checkpoints are co-signed with the previous key until the next rotation):\n\n    %s\n\nAuditors re-pin with: gatehouse audit verify --key '%s'\n", out.Key, out.Key)
				return nil
			}},
		{name: "show", args: "REQUEST_ID", short: "Print a request's records with verified inclusion proofs", admin: true, json: true,
			flags: func(fs *flag.FlagSet, o *opts) {
				o.str(fs, "key", "", "checkpoint verifier key; default: the one the gateway serves (pin it for real audits)")
			},
			run: runShow},
		{name: "tail", short: "Follow new records as they are logged", admin: true,
			flags: func(fs *flag.FlagSet, o *opts) {
				o.str(fs, "from", "", "start at this index (default: the end)")
				o.str(fs, "interval", "1s", "how often to look for new records")
			},
			run: runTail},
	}}
}

func httpGet(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	return b, nil
}

func runVerify(ctx context.Context, e *Env, o *opts, args []string) error {
	if err := nargs(args, 0, "no arguments"); err != nil {
		return err
	}
	if o.set("bundle") {
		return verifyBundle(e, o)
	}
	n := 0
	for _, f := range []string{"url", "data-dir", "database"} {
		if o.set(f) {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("%w: give exactly one of --url, --data-dir, --database", ErrUsage)
	}
	prev, err := ledger.LoadState(o.S("state"))
	if err != nil {
		return err
	}
	key := o.S("key")
	if key == "" && prev != nil {
		key = prev.VerifierKey
	}
	if key == "" {
		return fmt.Errorf("%w: no verifier key: pass --key (from 'gatehouse audit key', obtained out of band) on the first run", ErrUsage)
	}
	rekey := prev != nil && prev.VerifierKey != "" && key != prev.VerifierKey
	var src ledger.Source
	switch {
	case o.set("url"):
		src = ledger.HTTPSource{Base: o.S("url")}
	default:
		cfg := config.Default()
		if o.set("data-dir") {
			cfg.DataDir = o.S("data-dir")
		}
		cfg.Database = o.S("database")
		st, closeFn, err := server.OpenStore(ctx, cfg)
		if err != nil {
			return err
		}
		defer closeFn()
		src = ledger.StoreSource{Store: st}
	}
	if rekey {
		// A new key is accepted only when the pinned key co-signs the current
		// checkpoint (the operator rotated the key, as the log allows).
		signed, err := src.Checkpoint(ctx)
		if err != nil {
			return err
		}
		if _, err := ledger.OpenCheckpoint(signed, prev.VerifierKey); err != nil {
			return fmt.Errorf("--key differs from the key pinned in %s, and the pinned key does not co-sign the checkpoint: refusing the change (%v)", o.S("state"), err)
		}
		fmt.Fprintf(e.Stderr, "accepting the new key: the pinned key co-signs the checkpoint\n")
	}
	start := time.Now()
	lastShown := time.Now()
	rep, state, err := ledger.Verify(ctx, src, key, prev, func(done, total int64) {
		if !o.json && time.Since(lastShown) > time.Second {
			fmt.Fprintf(e.Stderr, "verified %d of %d records…\n", done, total)
			lastShown = time.Now()
		}
	})
	if err != nil {
		if o.json {
			printJSON(e.Stdout, map[string]any{"ok": false, "error": err.Error()})
		}
		return fmt.Errorf("verification FAILED: %w", err)
	}
	if err := state.Save(o.S("state")); err != nil {
		return fmt.Errorf("verified, but saving the state failed: %w", err)
	}
	if o.json {
		return printJSON(e.Stdout, map[string]any{"ok": true, "report": rep, "seconds": time.Since(start).Seconds()})
	}
	grew := ""
	if prev != nil {
		grew = fmt.Sprintf(", consistent with the %d verified before", prev.Size)
	}
	fmt.Fprintf(e.Stdout, "OK: log %s, %d records, root %s%s (%.1fs).\n", rep.Origin, rep.Size, rep.Root, grew, time.Since(start).Seconds())
	fmt.Fprintf(e.Stdout, "    records: %v; calls in flight at the checkpoint: %d\n", rep.Kinds, rep.OpenCalls)
	return nil
}

func runShow(ctx context.Context, e *Env, o *opts, args []string) error {
	if err := nargs(args, 1, "a request id"); err != nil {
		return err
	}
	base := strings.TrimRight(o.addr, "/") + "/log"
	key := o.S("key")
	if key == "" {
		b, err := httpGet(ctx, base+"/key")
		if err != nil {
			return err
		}
		key = strings.TrimSpace(string(b))
	}
	b, err := httpGet(ctx, base+"/find/"+args[0])
	if err != nil {
		return err
	}
	var found struct {
		Indexes []int64 `json:"indexes"`
	}
	if err := json.Unmarshal(b, &found); err != nil {
		return err
	}
	if len(found.Indexes) == 0 {
		return fmt.Errorf("no records of request %s", args[0])
	}
	var out []map[string]any
	for _, i := range found.Indexes {
		b, err := httpGet(ctx, fmt.Sprintf("%s/proof/%d", base, i))
		if err != nil {
			return err
		}
		var p ledger.Proof
		if err := json.Unmarshal(b, &p); err != nil {
			return err
		}
		c, err := ledger.OpenCheckpoint([]byte(p.Checkpoint), key)
		if err != nil {
			return err
		}
		leaf := tlog.RecordHash([]byte(p.Record))
		if err := tlog.CheckRecord(p.Proof, c.Size, c.Hash, p.Index, leaf); err != nil {
			return fmt.Errorf("record %d: inclusion proof FAILED: %w", p.Index, err)
		}
		var rec map[string]any
		json.Unmarshal([]byte(p.Record), &rec)
		out = append(out, map[string]any{"index": p.Index, "record": rec, "tree_size": c.Size, "root": c.Hash.String(), "proof": p.Proof, "verified": true})
		if !o.json {
			fmt.Fprintf(e.Stdout, "record %d (included in the signed tree of %d records, root %s: proof verified)\n%s\n\n", p.Index, c.Size, c.Hash, termSafe(p.Record))
		}
	}
	if o.json {
		return printJSON(e.Stdout, out)
	}
	return nil
}

func runTail(ctx context.Context, e *Env, o *opts, args []string) error {
	base := strings.TrimRight(o.addr, "/") + "/log"
	interval, err := time.ParseDuration(o.S("interval"))
	if err != nil || interval <= 0 {
		return fmt.Errorf("--interval: want a duration such as 1s")
	}
	src := ledger.HTTPSource{Base: base}
	next := int64(-1)
	if o.set("from") {
		fmt.Sscan(o.S("from"), &next)
	}
	for {
		signed, err := src.Checkpoint(ctx)
		if err != nil {
			return err
		}
		text := string(signed)
		if i := strings.Index(text, "\n\n"); i >= 0 {
			text = text[:i+1]
		}
		c, err := ledger.ParseCheckpoint(text)
		if err != nil {
			return err
		}
		if next < 0 {
			next = c.Size
		}
		for next < c.Size {
			from := next &^ 255
			to := min(from+256, c.Size)
			entries, err := src.Entries(ctx, from, to)
			if err != nil {
				return err
			}
			for i := next - from; i < int64(len(entries)); i++ {
				fmt.Fprintf(e.Stdout, "%d %s\n", from+i, termSafe(string(entries[i])))
			}
			next = to
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}
