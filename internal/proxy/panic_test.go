package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/auth"
	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
	"github.com/gatehouse-gw/gatehouse/internal/pricing"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

type oneCaller struct{}

func (oneCaller) Authenticate(context.Context, string) (auth.Caller, error) {
	p := org.Principal{ID: "prn_1", Name: "agent", Roles: []string{"member"}}
	return auth.Caller{Key: vkey.Key{ID: "key_1", Kind: vkey.KindVirtual, PrincipalID: p.ID, CreatedAt: time.Now()}, Principal: p}, nil
}
func (oneCaller) Principal(context.Context, string) (org.Principal, error) {
	return org.Principal{}, errors.New("none")
}
func (oneCaller) KeyByID(context.Context, string) (vkey.Key, error) {
	return vkey.Key{}, errors.New("none")
}

type memLedger struct {
	mu   sync.Mutex
	recs []ledger.Record
}

func (m *memLedger) Append(_ context.Context, e ledger.Entry) (int64, error) {
	r, err := ledger.ParseRecord(e.Data)
	if err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs = append(m.recs, r)
	return int64(len(m.recs) - 1), nil
}

type memUsage struct {
	mu   sync.Mutex
	recs []usage.Record
}

func (m *memUsage) Record(_ context.Context, r usage.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs = append(m.recs, r)
	return nil
}

type panicTransport struct{}

func (panicTransport) RoundTrip(*http.Request) (*http.Response, error) { panic("upstream client bug") }

// TestPanicAfterStartLeavesEndRecord: a panic while a call is in flight (here
// in the upstream client, after the start record) still leaves the call's end
// record (500, internal_error) and usage record; the start is not left open
// until a recovery that, on a live gateway, never comes.
func TestPanicAfterStartLeavesEndRecord(t *testing.T) {
	pol, err := policy.Compile(policy.Defaults())
	if err != nil {
		t.Fatal(err)
	}
	up := provider.NewUpstream(provider.Provider{Name: "p", Type: provider.TypeOpenAI, BaseURL: "http://127.0.0.1:1", Models: []string{"gpt-4o"}},
		[]provider.APIKey{"sk-x"}, &http.Client{Transport: panicTransport{}})
	snap := &config.Snapshot{Router: provider.NewRouter([]*provider.Upstream{up}, nil), Prices: pricing.NewTable(pricing.Defaults(), nil), Policies: pol}
	led, rec := &memLedger{}, &memUsage{}
	h := New(Deps{Ledger: led, Snapshot: func() *config.Snapshot { return snap }, Auth: oneCaller{}, Usage: rec, Log: slog.New(slog.DiscardHandler)}, Options{})

	w := chat(h, "gk_test") // the middleware turns the panic into a 500
	if w.Code != 500 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if len(led.recs) != 2 || led.recs[0].Kind != ledger.KindCallStart || led.recs[1].Kind != ledger.KindCallEnd {
		t.Fatalf("ledger records: %+v", led.recs)
	}
	if end := led.recs[1]; end.Status != 500 || end.ErrorCode != "internal_error" || end.Decision != "allow" || end.RequestID != led.recs[0].RequestID {
		t.Fatalf("end record: %+v", end)
	}
	if len(rec.recs) != 1 || rec.recs[0].Status != 500 {
		t.Fatalf("usage records: %+v", rec.recs)
	}
}
