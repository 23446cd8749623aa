package provider

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func readAll(t *testing.T, in string, limit int) ([]Event, error) {
	t.Helper()
	r := NewSSEReader(strings.NewReader(in), limit)
	var out []Event
	for {
		ev, err := r.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
		out = append(out, Event{Raw: bytes.Clone(ev.Raw), Name: bytes.Clone(ev.Name), Data: bytes.Clone(ev.Data)})
	}
}

func TestSSEReader(t *testing.T) {
	in := "data: {\"a\":1}\n\n" +
		"event: message_start\r\ndata: {\"b\":2}\r\n\r\n" +
		": comment\n\n" +
		"data: line1\ndata: line2\n\n" +
		"data: [DONE]\n\n" +
		"data: tail-without-blank"
	evs, err := readAll(t, in, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ name, data string }{
		{"", `{"a":1}`}, {"message_start", `{"b":2}`}, {"", "line1\nline2"}, {"", "[DONE]"}, {"", "tail-without-blank"},
	}
	if len(evs) != len(want) {
		t.Fatalf("got %d events, want %d: %q", len(evs), len(want), evs)
	}
	var raw bytes.Buffer
	for i, w := range want {
		if string(evs[i].Name) != w.name || string(evs[i].Data) != w.data {
			t.Errorf("event %d = %q/%q, want %q/%q", i, evs[i].Name, evs[i].Data, w.name, w.data)
		}
		raw.Write(evs[i].Raw)
	}
	// Forwarding Raw reproduces the stream, minus comment-only blocks.
	if wantRaw := strings.Replace(in, ": comment\n\n", "", 1); raw.String() != wantRaw {
		t.Errorf("raw concatenation differs:\n got %q\nwant %q", raw.String(), wantRaw)
	}
}

func TestSSELongLineAndLimit(t *testing.T) {
	long := strings.Repeat("x", 100_000)
	evs, err := readAll(t, "data: "+long+"\n\n", 1<<20)
	if err != nil || len(evs) != 1 || string(evs[0].Data) != long {
		t.Fatalf("long line: %d events, err %v", len(evs), err)
	}
	if _, err := readAll(t, "data: "+long+"\n\n", 1000); !errors.Is(err, ErrEventTooLarge) {
		t.Fatalf("over limit: err = %v", err)
	}
}

func FuzzSSEReader(f *testing.F) {
	f.Add("data: {\"a\":1}\n\nevent: x\ndata: y\n\n")
	f.Add("data: " + strings.Repeat("z", 20000) + "\n\n")
	f.Add("\n\n\r\n:\n")
	f.Fuzz(func(t *testing.T, in string) {
		r := NewSSEReader(strings.NewReader(in), 1<<16)
		total := 0
		for {
			ev, err := r.Next()
			if err != nil {
				return
			}
			total += len(ev.Raw)
			if total > len(in) {
				t.Fatalf("events hold %d bytes of a %d-byte stream", total, len(in))
			}
			if !strings.Contains(in, string(ev.Raw)) {
				t.Fatalf("raw %q is not part of the input", ev.Raw)
			}
		}
	})
}
