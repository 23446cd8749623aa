package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3/option"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
)

// TestModelsCallsLeaveVerifiedRecords: through the official OpenAI SDK, an
// allowed models list, a model and an unknown model each leave exactly one
// end record in the log (decision allow, the caller's key and user agent),
// and the log verifies.
func TestModelsCallsLeaveVerifiedRecords(t *testing.T) {
	f := newFixture(t, gwOptions{})
	ctx := context.Background()
	oc := f.openai(f.key)
	type call struct {
		id, model string
		status    int
	}
	var calls []call
	var resp *http.Response
	if _, err := oc.Models.List(ctx, option.WithHeader("User-Agent", "recon/1"), option.WithResponseInto(&resp)); err != nil {
		t.Fatal(err)
	}
	calls = append(calls, call{resp.Header.Get("x-request-id"), "", 200})
	if _, err := oc.Models.Get(ctx, "gpt-4o", option.WithHeader("User-Agent", "recon/1"), option.WithResponseInto(&resp)); err != nil {
		t.Fatal(err)
	}
	calls = append(calls, call{resp.Header.Get("x-request-id"), "gpt-4o", 200})
	if _, err := oc.Models.Get(ctx, "no-such-model", option.WithHeader("User-Agent", "recon/1"), option.WithResponseInto(&resp), option.WithMaxRetries(0)); err == nil {
		t.Fatal("an unknown model was found")
	}
	calls = append(calls, call{resp.Header.Get("x-request-id"), "no-such-model", 404})

	vk := mustCLI(t, f.gateway, "audit", "key")
	for deadline := time.Now().Add(10 * time.Second); ; {
		code, out, errs := runCLI(t, f.gateway, "audit", "verify", "--url", "http://"+f.srv.AdminAddr()+"/log", "--key", strings.TrimSpace(vk),
			"--state", filepath.Join(t.TempDir(), "s"), "--json")
		var v struct {
			OK     bool          `json:"ok"`
			Report ledger.Report `json:"report"`
		}
		json.Unmarshal([]byte(out), &v)
		if code == 0 && v.OK && v.Report.Kinds[ledger.KindCallEnd] >= len(calls) { // a checkpoint is signed each second
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit verify after models calls: %d %s %s", code, out, errs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, c := range calls {
		code, out, errs := runCLI(t, f.gateway, "audit", "show", c.id, "--json")
		var shown []struct {
			Verified bool          `json:"verified"`
			Record   ledger.Record `json:"record"`
		}
		json.Unmarshal([]byte(out), &shown)
		if code != 0 || len(shown) != 1 {
			t.Fatalf("request %s: %d records, want 1: %s %s", c.id, len(shown), out, errs)
		}
		r := shown[0].Record
		if !shown[0].Verified || r.Kind != ledger.KindCallEnd || r.Decision != "allow" || r.Endpoint != "models" || r.Model != c.model ||
			r.Status != c.status || r.KeyID != f.keyID || r.UserAgent != "recon/1" || r.SourceIP == "" {
			t.Errorf("request %s: record %+v", c.id, r)
		}
	}
}
