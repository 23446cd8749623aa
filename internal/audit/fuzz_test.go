package audit_test

import (
	"archive/zip"
	"bytes"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
)

// FuzzVerifyBundle: a bundle is untrusted input; whatever it holds, checking
// it returns an error or a report, never a panic, and never accepts a bundle
// without a signed checkpoint.
func FuzzVerifyBundle(f *testing.F) {
	skey, _ := ledger.GenerateKey("fuzz.example/log")
	vk, _ := ledger.VerifierKey(skey)
	mk := func(files map[string]string) []byte {
		var b bytes.Buffer
		z := zip.NewWriter(&b)
		for n, c := range files {
			w, _ := z.Create(n)
			w.Write([]byte(c))
		}
		z.Close()
		return b.Bytes()
	}
	f.Add(mk(map[string]string{"proofs.json": `{"checkpoint":"x","records":[{"index":0,"record":"{}","tree_size":1,"proof":[]}]}`, "manifest.txt": "00  a\n"}))
	f.Add(mk(map[string]string{"proofs.json": `{}`, "findings.json": `[]`}))
	f.Add([]byte("PK\x03\x04garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := audit.VerifyBundle(data, vk); err == nil {
			t.Fatal("a bundle without a checkpoint signed by the key verified")
		}
	})
}
