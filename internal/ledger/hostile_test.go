package ledger_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// Issue #9, item 7 and 8: whatever a caller sends, the log verifies. These
// tests build records the way the proxy and the admin API do, from hostile
// strings, append them to a real store (SQLite, and PostgreSQL when
// configured) and run the verifier over it.

// stores returns the backends a hostile test runs on.
func stores(t *testing.T) map[string]func(t *testing.T) *sqlstore.DB {
	return map[string]func(t *testing.T) *sqlstore.DB{
		"sqlite":   func(t *testing.T) *sqlstore.DB { _, db, _ := newLog(t); return db },
		"postgres": func(t *testing.T) *sqlstore.DB { return pgtest.Open(t) },
	}
}

var discard = slog.New(slog.DiscardHandler)

func logOn(t *testing.T, db *sqlstore.DB) *ledger.Log {
	t.Helper()
	skey, err := ledger.GenerateKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.New(db, "test", skey, discard)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// appendAndVerify appends recs, signs a checkpoint and runs the verifier.
func appendAndVerify(t *testing.T, l *ledger.Log, db *sqlstore.DB, recs ...ledger.Record) [][]byte {
	t.Helper()
	ctx := context.Background()
	var out [][]byte
	for _, r := range recs {
		data := r.Marshal()
		if _, err := l.Append(ctx, ledger.Entry{Data: data, RequestID: r.RequestID}); err != nil {
			t.Fatalf("append %.80q: %v", data, err)
		}
		out = append(out, data)
	}
	if err := l.SignCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ledger.Verify(ctx, ledger.StoreSource{Store: db}, l.Key(), nil, nil); err != nil {
		t.Fatalf("the log does not verify: %v", err)
	}
	return out
}

// hostileStart is a start record as the proxy writes one, with ua and model
// as the caller sent them.
func hostileStart(id, ua, model string) ledger.Record {
	return ledger.Record{Kind: ledger.KindCallStart, Time: time.Now(), RequestID: id, KeyID: "key_1", PrincipalID: "prn_1",
		SourceIP: "127.0.0.1", UserAgent: ua, Endpoint: "chat.completions", Model: model, Provider: "openai", Decision: "allow"}
}

func TestHostileUserAgentInvalidUTF8(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			db := open(t)
			l := logOn(t, db)
			uas := []string{"\xff\xfe", "curl/8 \xc3", "a\x00b\x1b[31m", "\xed\xa0\x80 surrogate", "ok\u2028\u2029<&>\"\\"}
			var recs []ledger.Record
			for i, ua := range uas {
				recs = append(recs, hostileStart("req_"+string(rune('a'+i)), ua, "gpt-4o"))
			}
			for i, data := range appendAndVerify(t, l, db, recs...) {
				r, err := ledger.ParseRecord(data)
				if err != nil {
					t.Fatal(err)
				}
				if want := string([]rune(uas[i])); r.UserAgent != want {
					t.Errorf("user agent %q recorded as %q, want %q", uas[i], r.UserAgent, want)
				}
				if len(r.Truncated) != 0 {
					t.Errorf("nothing was cut, yet truncated = %v", r.Truncated)
				}
			}
		})
	}
}

func TestHostileUserAgentCutMidRune(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			db := open(t)
			l := logOn(t, db)
			// 255 ASCII bytes then a 3-byte rune: a byte cut at 256 splits it.
			ua := strings.Repeat("a", 255) + "€€€"
			data := appendAndVerify(t, l, db, hostileStart("req_ua", ua, "gpt-4o"))[0]
			r, _ := ledger.ParseRecord(data)
			if r.UserAgent != strings.Repeat("a", 255) || !slices.Equal(r.Truncated, []string{"user_agent"}) {
				t.Fatalf("user agent recorded as %q (%d bytes), truncated %v", r.UserAgent, len(r.UserAgent), r.Truncated)
			}
		})
	}
}

// TestHostileModelNameHuge: a 70 KB model name used to make the end record
// too large, so it was dropped; an 8 MB one would have added 16 MB. The
// record is now kept, cut, and marked.
func TestHostileModelNameHuge(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			db := open(t)
			l := logOn(t, db)
			for _, n := range []int{70 << 10, 8 << 20} {
				model := strings.Repeat("\x01", n) // escaped as six bytes each
				end := ledger.Record{Kind: ledger.KindCallEnd, Time: time.Now(), RequestID: "req_big", KeyID: "key_1", Model: model,
					Decision: "deny", Status: 403, ErrorCode: "model_not_allowed", UserAgent: model, Detail: model, Reasons: []string{model}}
				data := appendAndVerify(t, l, db, end)[0]
				if len(data) > ledger.MaxEntrySize {
					t.Fatalf("record of %d bytes", len(data))
				}
				r, _ := ledger.ParseRecord(data)
				if len(r.Model) != ledger.FieldBound("model") || !slices.Equal(r.Truncated, []string{"user_agent", "model", "reasons", "detail"}) {
					t.Fatalf("model of %d bytes kept as %d, truncated %v", n, len(r.Model), r.Truncated)
				}
			}
		})
	}
}

// TestRecordWorstCaseFits: every string at many times its bound, made of the
// characters JSON escapes longest, every number at its longest: the record
// still fits one entry and parses back.
func TestRecordWorstCaseFits(t *testing.T) {
	for _, unit := range []string{"\x01", "\u2028", "\"", "\xff", "é", "€", "𝄞"} {
		s := strings.Repeat(unit, 10_000)
		reasons := make([]string, 100)
		for i := range reasons {
			reasons[i] = s
		}
		r := ledger.Record{Kind: s, Time: time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC), RequestID: s, PrincipalID: s, KeyID: s, TeamID: s,
			SourceIP: s, UserAgent: s, Endpoint: s, Model: s, Provider: s, Stream: true, Decision: s, Reasons: reasons,
			BodySHA256: s, Status: -1 << 62, ErrorCode: s, InputTokens: -1 << 63, CachedInputTokens: -1 << 63, OutputTokens: -1 << 63,
			CostMicros: -1 << 63, Estimated: true, LatencyMillis: -1 << 63, UpstreamRequestID: s, Action: s, Target: s, Detail: s,
			Truncated: []string{"bogus"}}
		data := r.Marshal()
		if len(data) > ledger.MaxEntrySize {
			t.Errorf("unit %q: worst-case record of %d bytes > %d", unit, len(data), ledger.MaxEntrySize)
		}
		got, err := ledger.ParseRecord(data)
		if err != nil {
			t.Fatalf("unit %q: %v", unit, err)
		}
		if len(got.Reasons) != ledger.MaxReasons || len(got.Truncated) != 18 /* every bounded field */ {
			t.Errorf("unit %q: %d reasons kept, truncated %v", unit, len(got.Reasons), got.Truncated)
		}
	}
}

// TestBound: valid UTF-8, a rune-boundary prefix of the valid form, no
// longer than asked.
func TestBound(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
		cut  bool
	}{
		{"abc", 3, "abc", false},
		{"abcd", 3, "abc", true},
		{"ab€", 3, "ab", true},
		{"ab€", 5, "ab€", false},
		{"\xff", 3, "\uFFFD", false},
		{"\xff", 2, "", true},
		{"a\xffb", 5, "a\uFFFDb", false},
		{"\xff\xfe", 6, "\uFFFD\uFFFD", false},
		{"\xff\xfe", 5, "\uFFFD", true},
		{"", 0, "", false},
		{"x", 0, "", true},
	}
	for _, tt := range tests {
		if got, cut := ledger.Bound(tt.in, tt.n); got != tt.want || cut != tt.cut {
			t.Errorf("Bound(%q, %d) = %q, %v; want %q, %v", tt.in, tt.n, got, cut, tt.want, tt.cut)
		}
	}
}

func FuzzBound(f *testing.F) {
	f.Add("ab€\xff", 4)
	f.Add(strings.Repeat("€", 100)+"\xe2\x82", 256)
	f.Fuzz(func(t *testing.T, s string, n int) {
		n = max(n%600, 0)
		got, cut := ledger.Bound(s, n)
		valid := string([]rune(s))
		if !utf8.ValidString(got) || len(got) > n || !strings.HasPrefix(valid, got) {
			t.Fatalf("Bound(%q, %d) = %q", s, n, got)
		}
		if cut != (got != valid) {
			t.Fatalf("Bound(%q, %d) = %q, cut %v", s, n, got, cut)
		}
		if !cut && len(valid) > n || cut && len(valid) <= n {
			t.Fatalf("Bound(%q, %d): cut %v with the valid form %d bytes long", s, n, cut, len(valid))
		}
		// A cut keeps as much as fits: the next rune would not.
		if cut {
			r, size := utf8.DecodeRuneInString(valid[len(got):])
			if len(got)+size <= n {
				t.Fatalf("Bound(%q, %d) = %q cut early before %q", s, n, got, r)
			}
		}
	})
}

// FuzzRecordRoundTrip: for any strings in any field, Marshal gives a record
// that ParseRecord accepts and that re-encodes to the same bytes, within
// MaxEntrySize, each string a valid prefix of what was given.
func FuzzRecordRoundTrip(f *testing.F) {
	f.Add("Mozilla/5.0 \xff", "gpt-4o", "POST /v1/keys/\xc3", "policy\x00", "detail", "req_1", int64(1_700_000_000_000_000))
	f.Add(strings.Repeat("a", 255)+"€", strings.Repeat("m", 70_000), "", "", "", "", int64(-1))
	f.Fuzz(func(t *testing.T, ua, model, action, reason, detail, id string, micros int64) {
		r := ledger.Record{Kind: ledger.KindCallEnd, Time: time.UnixMicro(micros), RequestID: id, UserAgent: ua, Model: model,
			Action: action, Reasons: []string{reason, ua}, Detail: detail, UpstreamRequestID: detail, ErrorCode: reason}
		data := r.Marshal()
		if len(data) > ledger.MaxEntrySize {
			t.Fatalf("record of %d bytes", len(data))
		}
		got, err := ledger.ParseRecord(data)
		if err != nil {
			t.Fatalf("ParseRecord(Marshal(…)) = %v\n%q", err, data)
		}
		if again := got.Marshal(); !bytes.Equal(again, data) {
			t.Fatalf("Marshal is not idempotent:\n%q\n%q", data, again)
		}
		// Record.Entry is trusted without parsing: it must be exactly what
		// ParseRecord would have accepted and taken the request id from.
		if e := r.Entry(); !bytes.Equal(e.Data, data) || e.RequestID != got.RequestID {
			t.Fatalf("Entry() = %q, %q; want %q, %q", e.Data, e.RequestID, data, got.RequestID)
		}
		for _, c := range []struct{ got, in string }{{got.UserAgent, ua}, {got.Model, model}, {got.Action, action}, {got.Detail, detail}, {got.RequestID, id}} {
			if !strings.HasPrefix(string([]rune(c.in)), c.got) {
				t.Fatalf("%q recorded as %q", c.in, c.got)
			}
		}
	})
}

// FuzzHostileAppendVerify: arbitrary caller strings → append to a log → the
// verifier passes. The log is kept in memory (memStore) so that fuzzing runs
// thousands of appends a second; the tests above run the same on SQLite and
// PostgreSQL.
func FuzzHostileAppendVerify(f *testing.F) {
	f.Add("\xff\xfe", "gpt-4o", "/v1/chat/completions")
	f.Add(strings.Repeat("a", 255)+"€", strings.Repeat("\x01", 70_000), "/v1/keys/%ff")
	f.Fuzz(func(t *testing.T, ua, model, path string) {
		st := &memStore{}
		skey, _ := ledger.GenerateKey(origin)
		l, err := ledger.New(st, "fuzz", skey, discard)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		for _, r := range []ledger.Record{hostileStart("req_f", ua, model),
			{Kind: ledger.KindAdmin, Time: time.Now(), RequestID: "req_a", Action: "POST " + path, Target: path, Detail: ua}} {
			if _, err := l.Append(ctx, ledger.Entry{Data: r.Marshal(), RequestID: r.RequestID}); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.SignCheckpoint(ctx); err != nil {
			t.Fatal(err)
		}
		if _, _, err := ledger.Verify(ctx, ledger.StoreSource{Store: st}, l.Key(), nil, nil); err != nil {
			t.Fatalf("the log does not verify: %v", err)
		}
	})
}

// memStore is a ledger.Store in memory, for fuzzing.
type memStore struct {
	mu      sync.Mutex
	entries [][]byte
	hashes  []tlog.Hash
	size    int64
	signed  []byte
	closed  map[string]bool
}

func (m *memStore) LedgerAppend(_ context.Context, _ string, entries []ledger.Entry, hashes func(int64, []ledger.Entry, tlog.HashReader) ([][]tlog.Hash, error)) ([]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed == nil {
		m.closed = map[string]bool{}
	}
	idx := make([]int64, len(entries))
	var kept []ledger.Entry
	for i, e := range entries {
		if e.Closes && m.closed[e.RequestID] { // one end record per request
			idx[i] = -1
			continue
		}
		if e.Closes {
			m.closed[e.RequestID] = true
		}
		idx[i] = int64(len(m.entries) + len(kept))
		kept = append(kept, e)
	}
	hs, err := hashes(int64(len(m.entries)), kept, tlog.HashReaderFunc(m.read))
	if err != nil {
		return nil, err
	}
	for i, e := range kept {
		m.entries = append(m.entries, e.Data)
		m.hashes = append(m.hashes, hs[i]...)
	}
	return idx, nil
}

func (m *memStore) read(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		if x < 0 || x >= int64(len(m.hashes)) {
			return nil, errors.New("no such hash")
		}
		out[i] = m.hashes[x]
	}
	return out, nil
}

func (m *memStore) LedgerSize(context.Context) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return int64(len(m.entries)), nil
}

func (m *memStore) LedgerHashes(_ context.Context, idx []int64) ([]tlog.Hash, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.read(idx)
}

func (m *memStore) LedgerEntries(_ context.Context, from, to int64) ([][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if from < 0 || to > int64(len(m.entries)) || from > to {
		return nil, errors.New("no such entries")
	}
	return slices.Clone(m.entries[from:to]), nil
}

func (m *memStore) LedgerFind(context.Context, string) ([]int64, error) { return nil, nil }

func (m *memStore) LedgerSaveCheckpoint(_ context.Context, size int64, signed []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.size, m.signed = size, signed
	return nil
}

func (m *memStore) LedgerCheckpoint(context.Context) (int64, []byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.signed == nil {
		return 0, nil, errors.New("no checkpoint")
	}
	return m.size, m.signed, nil
}

func (m *memStore) LedgerAbandoned(context.Context, string, time.Time) ([]ledger.OpenCall, error) {
	return nil, nil
}

// TestAppendRefusesNonCanonical: data not made by Marshal cannot enter the log.
func TestAppendRefusesNonCanonical(t *testing.T) {
	l, db, _ := newLog(t)
	ctx := context.Background()
	good := ledger.Record{Kind: ledger.KindAdmin, Time: time.Now(), RequestID: "r"}.Marshal()
	for _, bad := range [][]byte{
		[]byte(`{"v":1,"kind":"admin","time":"2026-01-01T00:00:00Z","request_id":"` + "\xff" + `"}`),
		[]byte(`{"v":1,"kind":"admin","time":"2026-01-01T00:00:00+00:00","request_id":"r"}`),
		[]byte(`{"v":1,"kind":"admin","time":"2026-01-01T00:00:00.123456789Z","request_id":"r"}`),
		append(slices.Clone(good), ' '),
		[]byte("not json"),
	} {
		if _, err := l.Append(ctx, ledger.Entry{Data: bad, RequestID: "r"}); !errors.Is(err, ledger.ErrUnavailable) || !errors.Is(err, ledger.ErrBadRecord) {
			t.Errorf("Append(%q) = %v, want ErrUnavailable and ErrBadRecord", bad, err)
		}
	}
	if n, _ := db.LedgerSize(ctx); n != 0 {
		t.Fatalf("%d refused records in the log", n)
	}
}

// TestAppendRefusesReplacedEntryData: an entry made by Record.Entry is not
// parsed again, but one whose Data was replaced afterwards is, and refused
// when it is not canonical; its RequestID is the record's, not the caller's.
func TestAppendRefusesReplacedEntryData(t *testing.T) {
	l, db, _ := newLog(t)
	ctx := context.Background()
	e := ledger.Record{Kind: ledger.KindAdmin, Time: time.Now(), RequestID: "r"}.Entry()
	e.Data = append(slices.Clone(e.Data), ' ')
	if _, err := l.Append(ctx, e); !errors.Is(err, ledger.ErrBadRecord) {
		t.Fatalf("Append(replaced data) = %v, want ErrBadRecord", err)
	}
	e = ledger.Record{Kind: ledger.KindAdmin, Time: time.Now(), RequestID: "r"}.Entry()
	e.Data = ledger.Record{Kind: ledger.KindAdmin, Time: time.Now(), RequestID: "other"}.Marshal()
	if _, err := l.Append(ctx, e); err != nil {
		t.Fatal(err)
	}
	if err := l.Enqueue(ctx, func() ledger.Entry {
		e := ledger.Record{Kind: ledger.KindCallEnd, Time: time.Now(), RequestID: "r2"}.Entry()
		e.Data, e.Closes = []byte("not json"), true
		return e
	}()); !errors.Is(err, ledger.ErrBadRecord) {
		t.Fatalf("Enqueue(replaced data) = %v, want ErrBadRecord", err)
	}
	if n, _ := db.LedgerSize(ctx); n != 1 {
		t.Fatalf("%d records in the log, want 1", n)
	}
	got, err := db.LedgerFind(ctx, "other")
	if err != nil || len(got) != 1 {
		t.Fatalf("Find(other) = %v, %v: the stored request id must be the record's", got, err)
	}
}

// TestParseRecordAcceptsLegacy: records written before fields were bounded
// (a long model name, an admin path) still verify.
func TestParseRecordAcceptsLegacy(t *testing.T) {
	legacy := `{"v":1,"kind":"call.end","time":"2026-01-01T00:00:00Z","request_id":"r","model":"` + strings.Repeat("m", 1000) + `","status":403}`
	r, err := ledger.ParseRecord([]byte(legacy))
	if err != nil || len(r.Model) != 1000 {
		t.Fatalf("legacy record: %v", err)
	}
}

// BenchmarkRecordMarshal and BenchmarkParseRecord: the work bounding adds to
// every record (Marshal), and the canonical check Append runs on each.
func BenchmarkRecordMarshal(b *testing.B) {
	r := hostileStart("req_0123456789abcdefghijklmn", "Mozilla/5.0 (X11; Linux x86_64) openai-python/2.1.0", "gpt-4o-mini")
	b.ReportAllocs()
	for b.Loop() {
		r.Marshal()
	}
}

func BenchmarkParseRecord(b *testing.B) {
	data := hostileStart("req_0123456789abcdefghijklmn", "Mozilla/5.0 (X11; Linux x86_64) openai-python/2.1.0", "gpt-4o-mini").Marshal()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ledger.ParseRecord(data); err != nil {
			b.Fatal(err)
		}
	}
}

// TestFindHostileRequestID: /log/find with an id no record can hold answers
// an empty list on every store (PostgreSQL refuses such bytes as a query
// parameter; it used to answer 503).
func TestFindHostileRequestID(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			db := open(t)
			l := logOn(t, db)
			appendAndVerify(t, l, db, hostileStart("req_ok", "ua", "gpt-4o"))
			srv := httptest.NewServer(l.Handler())
			defer srv.Close()
			for _, id := range []string{"%FF%FE", "a%00b", strings.Repeat("r", 200), "req_ok"} {
				resp, err := http.Get(srv.URL + "/log/find/" + id)
				if err != nil {
					t.Fatal(err)
				}
				var out struct {
					Indexes []int64 `json:"indexes"`
				}
				json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				want := 0
				if id == "req_ok" {
					want = 1
				}
				if resp.StatusCode != 200 || len(out.Indexes) != want {
					t.Errorf("find %s: %d %v; want 200 and %d indexes", id, resp.StatusCode, out.Indexes, want)
				}
			}
		})
	}
}

// TestAppendTakesRequestIDFromRecord: the stored request id is the record's,
// whatever the entry says, so an id a store refuses cannot fail a batch of
// other callers' records.
func TestAppendTakesRequestIDFromRecord(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			db := open(t)
			l := logOn(t, db)
			ctx := context.Background()
			data := hostileStart("req_mine", "ua", "gpt-4o").Marshal()
			if _, err := l.Append(ctx, ledger.Entry{Data: data, RequestID: "\xff\x00 not this"}); err != nil {
				t.Fatal(err)
			}
			if idx, err := db.LedgerFind(ctx, "req_mine"); err != nil || len(idx) != 1 {
				t.Fatalf("find req_mine: %v %v", idx, err)
			}
		})
	}
}
