package ledger

import (
	"testing"
	"time"
)

// FuzzSummaryEntry: whatever the records a summary counts hold (strings a
// hostile caller chose, any times), its entry is a canonical record that
// ParseRecord accepts, fits one entry, and says how many calls it counts.
func FuzzSummaryEntry(f *testing.F) {
	f.Add("req_1", "req_2", "key_1", "policy_denied", "gpt-4o", "ua", int64(1_700_000_000), int64(5), uint8(3), uint8(notOverflow))
	f.Add("\xff\xfe", "", "", SummaryOverflow, "\u2028", "\x00", int64(-62135596800), int64(-1), uint8(0), uint8(allOverflow))
	f.Add("req_1", "req_2", "key_\u2028", "policy_denied", "gpt-4o", "ua\x7f", int64(1_700_000_000), int64(61), uint8(9), uint8(keyOverflow)) // a key's overflow summary
	f.Fuzz(func(t *testing.T, id1, id2, key, code, model, agent string, sec, step int64, n, kind uint8) {
		s := &summary{key: summaryKey{keyID: key, code: code, overflow: overflow(kind % 3)}}
		for i := range int64(n) + 1 {
			id := id1
			if i%2 == 1 {
				id = id2
			}
			// Records as the sequencer sees them: parsed from Marshal's bytes.
			r, err := ParseRecord(Record{Kind: KindCallEnd, Time: time.Unix(sec+i*step, 0), RequestID: id, KeyID: key, ErrorCode: code,
				Model: model, UserAgent: agent, Decision: "deny", Status: 403}.Marshal())
			if err != nil {
				t.Fatal(err)
			}
			s.add(r)
		}
		e := s.entry()
		if len(e.Data) > MaxEntrySize {
			t.Fatalf("summary of %d bytes", len(e.Data))
		}
		got, err := ParseRecord(e.Data)
		if err != nil {
			t.Fatalf("summary does not parse: %v\n%s", err, e.Data)
		}
		if got.Kind != KindCallSummary || got.Count != int64(n)+1 || got.RequestID != e.RequestID {
			t.Fatalf("summary %+v (entry id %q), want %d calls", got, e.RequestID, int64(n)+1)
		}
	})
}
