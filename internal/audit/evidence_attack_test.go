package audit_test

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"context"
	"encoding/json"
	"hash/crc32"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"golang.org/x/mod/sumdb/note"
)

// TestEvidenceBundleAttacks: every part of a bundle changed, removed or
// added, a checkpoint forged with another key, hostile zip entries (path
// traversal, terminal escapes in names, a zip bomb): verify fails on each, and
// never inflates the bomb.
func TestEvidenceBundleAttacks(t *testing.T) {
	ctx := context.Background()
	db := openStore(t)
	clk := &clock{t: time.Now().UTC()}
	seed(t, db, clk.Now().Add(-time.Hour))
	skey, _ := ledger.GenerateKey("test.example/log")
	lg, err := ledger.New(db, "t", skey, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	vk := lg.Key()
	e := audit.New(audit.Deps{Store: db, Ledger: lg, Now: clk.Now, Checkpoint: lg.SignCheckpoint})
	if _, err := e.Run(ctx, "prn_admin"); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := e.Evidence(ctx, clk.Now().Add(-24*time.Hour), clk.Now().Add(time.Minute), "prn_admin", &buf); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.VerifyBundle(buf.Bytes(), vk); err != nil {
		t.Fatal(err)
	}
	type entry struct {
		name string
		data []byte
	}
	var orig []entry
	zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range zr.File {
		rc, _ := f.Open()
		b, _ := io.ReadAll(rc)
		rc.Close()
		orig = append(orig, entry{f.Name, b})
	}
	build := func(es []entry) []byte {
		var out bytes.Buffer
		zw := zip.NewWriter(&out)
		for _, x := range es {
			w, _ := zw.Create(x.name)
			w.Write(x.data)
		}
		zw.Close()
		return out.Bytes()
	}
	if _, err := audit.VerifyBundle(build(orig), vk); err != nil {
		t.Fatalf("the bundle rebuilt unchanged does not verify: %v", err)
	}
	mutate := func(name string, fn func([]byte) []byte) []entry {
		out := make([]entry, 0, len(orig))
		for _, x := range orig {
			if x.name == name {
				x.data = fn(bytes.Clone(x.data))
			}
			out = append(out, x)
		}
		return out
	}
	proofs := func(fn func(*audit.Proofs)) []entry {
		return mutate("proofs.json", func(b []byte) []byte {
			var p audit.Proofs
			if err := json.Unmarshal(b, &p); err != nil {
				t.Fatal(err)
			}
			fn(&p)
			out, _ := json.Marshal(p)
			return out
		})
	}
	// Every file the manifest covers: one byte more, and removed.
	for _, x := range orig {
		if x.name == "proofs.json" {
			continue
		}
		if _, err := audit.VerifyBundle(build(mutate(x.name, func(b []byte) []byte { return append(b, ' ') })), vk); err == nil {
			t.Errorf("%s with a byte appended verifies", x.name)
		}
		var without []entry
		for _, y := range orig {
			if y.name != x.name {
				without = append(without, y)
			}
		}
		if _, err := audit.VerifyBundle(build(without), vk); err == nil {
			t.Errorf("the bundle without %s verifies", x.name)
		}
	}
	other, _ := ledger.GenerateKey("test.example/log") // same origin, another key
	signer, err := note.NewSigner(other)
	if err != nil {
		t.Fatal(err)
	}
	var genuine audit.Proofs
	for _, x := range orig {
		if x.name == "proofs.json" {
			json.Unmarshal(x.data, &genuine)
		}
	}
	cp, err := ledger.OpenCheckpoint([]byte(genuine.Checkpoint), vk)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := ledger.Sign(cp, signer) // the same tree, signed by the wrong key
	if err != nil {
		t.Fatal(err)
	}
	for name, es := range map[string][]entry{
		"checkpoint signed by another key": proofs(func(p *audit.Proofs) { p.Checkpoint = string(forged) }),
		"checkpoint removed":               proofs(func(p *audit.Proofs) { p.Checkpoint = "" }),
		"export index moved":               proofs(func(p *audit.Proofs) { p.ExportedAt = p.Records[0].Index }),
		"manifest hash replaced":           proofs(func(p *audit.Proofs) { p.Manifest = strings.Repeat("0", 64) }),
		"a proof dropped":                  proofs(func(p *audit.Proofs) { p.Records = p.Records[1:] }),
		"a proof for another index":        proofs(func(p *audit.Proofs) { p.Records[0].Index++ }),
		"path traversal entry":             append(append([]entry{}, orig...), entry{"../../../tmp/evil", []byte("x")}),
		"terminal escape in a name":        append(append([]entry{}, orig...), entry{"\x1b]0;pwned\x07", []byte("x")}),
		"a file twice":                     append(append([]entry{}, orig...), orig[0]),
		"not a zip":                        nil,
	} {
		data := build(es)
		if es == nil {
			data = []byte("PK\x03\x04 not really")
		}
		_, err := audit.VerifyBundle(data, vk)
		if err == nil {
			t.Errorf("%s: verifies", name)
			continue
		}
		if strings.ContainsAny(err.Error(), "\x1b\x07") {
			t.Errorf("%s: the error carries a raw control character: %q", name, err)
		}
	}
	// Zip bombs: an entry declaring 2 GiB is refused by its declared size
	// before anything is inflated; an entry declaring 100 bytes that inflates
	// to 1 MiB is cut off at its declared size by archive/zip (an error, never
	// a verified bundle).
	raw := func(declared uint64, content []byte) []byte {
		var def bytes.Buffer
		fw, _ := flate.NewWriter(&def, flate.BestCompression)
		fw.Write(content)
		fw.Close()
		var out bytes.Buffer
		zw := zip.NewWriter(&out)
		for _, x := range orig {
			if x.name == "report.md" {
				w, err := zw.CreateRaw(&zip.FileHeader{Name: x.name, Method: zip.Deflate, CRC32: crc32.ChecksumIEEE(content),
					CompressedSize64: uint64(def.Len()), UncompressedSize64: declared})
				if err != nil {
					t.Fatal(err)
				}
				w.Write(def.Bytes())
				continue
			}
			w, _ := zw.Create(x.name)
			w.Write(x.data)
		}
		zw.Close()
		return out.Bytes()
	}
	zeros := make([]byte, 1<<20)
	if _, err := audit.VerifyBundle(raw(2<<30, zeros), vk); err == nil || !strings.Contains(err.Error(), "too large") {
		t.Errorf("entry declaring 2 GiB: %v", err)
	}
	if _, err := audit.VerifyBundle(raw(100, zeros), vk); err == nil {
		t.Error("entry inflating past its declared size verifies")
	}
}
