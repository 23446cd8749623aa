package audit

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// Evidence bundle: a zip for auditors.
//
//	report.md, report.json, report.csv   the audit report of the period
//	findings.json                        findings of the period with their histories
//	reviews.json                         review campaigns with every item and decision
//	policies.json                        the policy versions in force during the period
//	proofs.json                          the signed checkpoint and, for every ledger
//	                                     record referenced, the record and its
//	                                     inclusion proof
//	manifest.txt                         SHA-256 of each file above
//
// The manifest's own SHA-256 is in a ledger record (action "evidence.export")
// whose inclusion proof is in proofs.json, so VerifyBundle, with nothing but
// the pinned log key, proves every file unchanged and every referenced record
// in the log.

// ProofStore reads what inclusion proofs need.
type ProofStore interface {
	LedgerCheckpoint(ctx context.Context) (size int64, signed []byte, err error)
	LedgerHashes(ctx context.Context, idx []int64) ([]tlog.Hash, error)
	PolicyVersion(ctx context.Context, version int64) (policy.Version, error)
}

// Proofs is proofs.json.
type Proofs struct {
	Checkpoint string         `json:"checkpoint"` // signed note
	Manifest   string         `json:"manifest_sha256"`
	ExportedAt int64          `json:"export_index"` // the evidence.export record
	Records    []ledger.Proof `json:"records"`
}

// Reports lists stored reports.
func (e *Engine) Reports(ctx context.Context) ([]ReportInfo, error) {
	rs, ok := e.d.Store.(ReportStore)
	if !ok {
		return nil, errors.New("audit: the store keeps no reports")
	}
	return rs.ListReports(ctx, 100)
}

// StoredReport returns a stored report.
func (e *Engine) StoredReport(ctx context.Context, id string) (Report, error) {
	rs, ok := e.d.Store.(ReportStore)
	if !ok {
		return Report{}, errors.New("audit: the store keeps no reports")
	}
	return rs.Report(ctx, id)
}

// Evidence writes the evidence bundle of [from, to) to w.
func (e *Engine) Evidence(ctx context.Context, from, to time.Time, by string, w io.Writer) error {
	ps, ok := e.d.Store.(ProofStore)
	if !ok || e.d.Ledger == nil {
		return errors.New("audit: evidence needs the ledger")
	}
	rep, err := e.Generate(ctx, "evidence", from, to, false)
	if err != nil {
		return err
	}
	files := map[string][]byte{}
	js := func(v any) []byte { b, _ := json.MarshalIndent(v, "", "  "); return append(b, '\n') }
	files["report.md"], files["report.json"], files["report.csv"] = Markdown(rep), js(rep), CSV(rep)

	all, err := e.d.Store.ListFindings(ctx, Filter{})
	if err != nil {
		return err
	}
	var fs []Finding
	refs := map[int64]bool{}
	for _, f := range all {
		if f.LastSeen.Before(from) || !f.FirstSeen.Before(to) {
			continue
		}
		fs = append(fs, f)
		for _, h := range f.History {
			if h.LedgerIndex >= 0 {
				refs[h.LedgerIndex] = true
			}
		}
		for _, i := range f.Evidence.LedgerIndexes {
			refs[i] = true
		}
	}
	files["findings.json"] = js(fs)
	type campaignOut struct {
		Campaign Campaign `json:"campaign"`
		Items    []Item   `json:"items"`
	}
	var cs []campaignOut
	if rs, ok := e.d.Store.(ReviewStore); ok {
		camps, err := rs.ListCampaigns(ctx)
		if err != nil {
			return err
		}
		for _, c := range camps {
			if !c.CreatedAt.Before(to) || (c.ClosedAt != nil && c.ClosedAt.Before(from)) {
				continue
			}
			items, err := rs.ReviewItems(ctx, c.ID)
			if err != nil {
				return err
			}
			for _, it := range items {
				if it.Ledger > 0 {
					refs[it.Ledger] = true
				}
			}
			cs = append(cs, campaignOut{c, items})
		}
	}
	files["reviews.json"] = js(cs)
	hist, err := e.d.Store.PolicyHistory(ctx) // newest first
	if err != nil {
		return err
	}
	var pols []policy.Version
	for i, v := range hist {
		inForce := v.CreatedAt.Before(to) && (i == 0 || !hist[i-1].CreatedAt.Before(from))
		if !inForce {
			continue
		}
		full, err := ps.PolicyVersion(ctx, v.Version)
		if err != nil {
			return err
		}
		pols = append(pols, full)
	}
	files["policies.json"] = js(pols)

	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var man strings.Builder
	for _, n := range names {
		sum := sha256.Sum256(files[n])
		fmt.Fprintf(&man, "%s  %s\n", hex.EncodeToString(sum[:]), n)
	}
	manifest := []byte(man.String())
	msum := sha256.Sum256(manifest)
	now := e.d.Now().UTC()
	exportIdx := e.record(ctx, ledger.Record{Kind: LedgerKind, Time: now, RequestID: "evidence-" + vkey.NewID("ev"), PrincipalID: actor(by), Action: "evidence.export",
		Detail: "manifest sha256 " + hex.EncodeToString(msum[:]) + fmt.Sprintf(" period %s to %s", from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))})
	if exportIdx < 0 {
		return errors.New("audit: evidence: the ledger did not record the export")
	}
	if e.d.Checkpoint != nil {
		if err := e.d.Checkpoint(ctx); err != nil {
			return fmt.Errorf("audit: evidence: checkpoint: %w", err)
		}
	}
	size, signed, err := ps.LedgerCheckpoint(ctx)
	if err != nil {
		return fmt.Errorf("audit: evidence: checkpoint: %w", err)
	}
	if exportIdx >= size {
		return fmt.Errorf("audit: evidence: the latest checkpoint (%d records) does not cover the export record yet; try again", size)
	}
	refs[exportIdx] = true
	pr := Proofs{Checkpoint: string(signed), Manifest: hex.EncodeToString(msum[:]), ExportedAt: exportIdx}
	idx := make([]int64, 0, len(refs))
	for i := range refs {
		if i < size {
			idx = append(idx, i)
		}
	}
	slices.Sort(idx)
	reader := tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) { return ps.LedgerHashes(ctx, ix) })
	for _, i := range idx {
		entries, err := e.d.Store.LedgerEntries(ctx, i, i+1)
		if err != nil || len(entries) != 1 {
			return fmt.Errorf("audit: evidence: record %d unavailable: %v", i, err)
		}
		p, err := tlog.ProveRecord(size, i, reader)
		if err != nil {
			return fmt.Errorf("audit: evidence: proof of %d: %w", i, err)
		}
		pr.Records = append(pr.Records, ledger.Proof{Index: i, Record: string(entries[0]), LeafHash: tlog.RecordHash(entries[0]), TreeSize: size, Proof: p})
	}
	files["proofs.json"] = js(pr)
	files["manifest.txt"] = manifest

	z := zip.NewWriter(w)
	for _, n := range append(names, "manifest.txt", "proofs.json") {
		fw, err := z.CreateHeader(&zip.FileHeader{Name: n, Method: zip.Deflate, Modified: now})
		if err != nil {
			return err
		}
		if _, err := fw.Write(files[n]); err != nil {
			return err
		}
	}
	return z.Close()
}

// BundleReport is what VerifyBundle proved.
type BundleReport struct {
	Origin     string `json:"origin"`
	TreeSize   int64  `json:"tree_size"`
	Files      int    `json:"files"`
	Records    int    `json:"records"`
	Findings   int    `json:"findings"`
	ExportedAt int64  `json:"export_index"`
}

// A bundle is untrusted input: these bound what checking one may read.
const (
	maxBundleFile  = 256 << 20
	maxBundleTotal = 1 << 30
	maxBundleFiles = 64
)

// MaxBundleBytes bounds the size of a bundle file itself (the zip), so that a
// verifier refuses a huge file before reading it into memory.
const MaxBundleBytes = maxBundleTotal + 16<<20

// VerifyBundle checks an evidence bundle offline with the pinned log key:
// the checkpoint's signature, every record's inclusion proof, the export
// record naming the manifest's hash, every file against the manifest, and
// that every ledger index the findings cite is proven.
func VerifyBundle(data []byte, vkeyText string) (BundleReport, error) {
	var rep BundleReport
	if len(data) > MaxBundleBytes {
		return rep, fmt.Errorf("the bundle is larger than %d bytes", MaxBundleBytes)
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return rep, fmt.Errorf("not a zip: %w", err)
	}
	if len(zr.File) > maxBundleFiles {
		return rep, fmt.Errorf("the bundle holds %d files; an evidence bundle has 9", len(zr.File))
	}
	// Sizes as the zip declares them, before anything is inflated: a zip bomb
	// is refused without decompressing it (and archive/zip refuses to inflate
	// an entry past its declared size).
	var declared uint64
	for _, f := range zr.File {
		declared += f.UncompressedSize64
		if f.UncompressedSize64 > maxBundleFile || declared > maxBundleTotal {
			return rep, fmt.Errorf("%q is too large", f.Name)
		}
	}
	files := map[string][]byte{}
	total := 0
	for _, f := range zr.File {
		if _, dup := files[f.Name]; dup {
			return rep, fmt.Errorf("the bundle holds %q twice", f.Name)
		}
		rc, err := f.Open()
		if err != nil {
			return rep, err
		}
		b, err := io.ReadAll(io.LimitReader(rc, maxBundleFile+1))
		rc.Close()
		if err != nil {
			return rep, err
		}
		total += len(b)
		if len(b) > maxBundleFile || total > maxBundleTotal {
			return rep, fmt.Errorf("%q is too large", f.Name)
		}
		files[f.Name] = b
	}
	var pr Proofs
	if err := json.Unmarshal(files["proofs.json"], &pr); err != nil {
		return rep, fmt.Errorf("proofs.json: %w", err)
	}
	cp, err := ledger.OpenCheckpoint([]byte(pr.Checkpoint), vkeyText)
	if err != nil {
		return rep, err
	}
	rep.Origin, rep.TreeSize, rep.ExportedAt = cp.Origin, cp.Size, pr.ExportedAt
	proven := map[int64]ledger.Record{}
	for _, p := range pr.Records {
		rec := []byte(p.Record)
		if p.TreeSize != cp.Size {
			return rep, fmt.Errorf("record %d: proof for tree size %d, checkpoint has %d", p.Index, p.TreeSize, cp.Size)
		}
		if err := tlog.CheckRecord(p.Proof, cp.Size, cp.Hash, p.Index, tlog.RecordHash(rec)); err != nil {
			return rep, fmt.Errorf("record %d: NOT IN THE LOG: %w", p.Index, err)
		}
		r, err := ledger.ParseRecord(rec)
		if err != nil {
			return rep, fmt.Errorf("record %d: %w", p.Index, err)
		}
		proven[p.Index] = r
	}
	rep.Records = len(proven)
	exp, ok := proven[pr.ExportedAt]
	if !ok || exp.Action != "evidence.export" || !strings.HasPrefix(exp.Detail, "manifest sha256 "+pr.Manifest+" ") || len(pr.Manifest) != 64 {
		return rep, errors.New("the export record does not name this manifest")
	}
	manifest := files["manifest.txt"]
	sum := sha256.Sum256(manifest)
	if hex.EncodeToString(sum[:]) != pr.Manifest {
		return rep, errors.New("manifest.txt CHANGED: its hash is not the one the log recorded")
	}
	listed := map[string]bool{"manifest.txt": true, "proofs.json": true}
	for _, line := range strings.Split(strings.TrimSuffix(string(manifest), "\n"), "\n") {
		h, name, ok := strings.Cut(line, "  ")
		if !ok {
			return rep, fmt.Errorf("manifest line %q", line)
		}
		b, present := files[name]
		if !present {
			return rep, fmt.Errorf("%q is MISSING", name)
		}
		s := sha256.Sum256(b)
		if hex.EncodeToString(s[:]) != h {
			return rep, fmt.Errorf("%q CHANGED since the export", name)
		}
		listed[name] = true
	}
	for name := range files {
		if !listed[name] {
			return rep, fmt.Errorf("%q is not in the manifest", name)
		}
	}
	rep.Files = len(files)
	var fs []Finding
	if err := json.Unmarshal(files["findings.json"], &fs); err != nil {
		return rep, fmt.Errorf("findings.json: %w", err)
	}
	for _, f := range fs {
		for _, h := range f.History {
			if h.LedgerIndex < 0 || h.LedgerIndex >= cp.Size {
				continue
			}
			r, ok := proven[h.LedgerIndex]
			if !ok {
				return rep, fmt.Errorf("finding %s: ledger record %d has no proof", f.ID, h.LedgerIndex)
			}
			if r.Kind != LedgerKind || r.Target != f.ID {
				return rep, fmt.Errorf("finding %s: ledger record %d is about %q, not this finding", f.ID, h.LedgerIndex, r.Target)
			}
		}
	}
	rep.Findings = len(fs)
	return rep, nil
}
