package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"testing/iotest"

	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
)

func TestParseCall(t *testing.T) {
	tests := []struct {
		body   string
		ep     provider.Endpoint
		want   Call
		status int
	}{
		{`{"model":"gpt-4o"}`, provider.Chat, Call{Model: "gpt-4o"}, 0},
		{`{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}`, provider.Chat, Call{Model: "gpt-4o", Stream: true, IncludeUsage: true, HasStreamOpt: true}, 0},
		{` {"model":"m","max_tokens":5}`, provider.Messages, Call{Model: "m", MaxOutput: ptr(5)}, 0},
		{`{"model":"m","max_completion_tokens":7,"max_tokens":7}`, provider.Chat, Call{Model: "m", MaxOutput: ptr(7)}, 0},
		{`{"model":"m","max_completion_tokens":7,"max_tokens":5}`, provider.Chat, Call{}, 400},
		{`{"model":"m","max_output_tokens":9}`, provider.Responses, Call{Model: "m", MaxOutput: ptr(9)}, 0},
		{`{"model":""}`, provider.Chat, Call{}, 400},
		{`{"model":null}`, provider.Chat, Call{}, 400},
		{`{}`, provider.Chat, Call{}, 400},
		{`{"model":"m","max_tokens":-1}`, provider.Chat, Call{}, 400},
		{`{"model":"m","stream":true}`, provider.Embeddings, Call{}, 400},
		{`{"model":"m","stream_options":5}`, provider.Chat, Call{}, 400},
		{`"model"`, provider.Chat, Call{}, 400},
		{``, provider.Chat, Call{}, 400},
	}
	for _, tt := range tests {
		got, err := ParseCall(tt.ep, []byte(tt.body))
		var he *httpx.Error
		switch {
		case tt.status == 0 && err != nil:
			t.Errorf("ParseCall(%s) = %v", tt.body, err)
		case tt.status != 0 && (!errors.As(err, &he) || he.Status != tt.status):
			t.Errorf("ParseCall(%s) error = %v, want status %d", tt.body, err, tt.status)
		case tt.status == 0 && (got.Model != tt.want.Model || got.Stream != tt.want.Stream || got.IncludeUsage != tt.want.IncludeUsage ||
			got.HasStreamOpt != tt.want.HasStreamOpt || !eqPtr(got.MaxOutput, tt.want.MaxOutput)):
			t.Errorf("ParseCall(%s) = %+v, want %+v", tt.body, got, tt.want)
		}
	}
}

func ptr(v int64) *int64 { return &v }

func eqPtr(a, b *int64) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

func TestRequestUsage(t *testing.T) {
	tests := []struct {
		body      string
		ep        provider.Endpoint
		strip     bool
		wantUsage bool
	}{
		{`{"model":"m","stream":true}`, provider.Chat, true, true},
		{`{ }`, provider.Chat, false, false}, // not streaming: untouched
		{`{"model":"m","stream":true,"stream_options":{"include_usage":false}}`, provider.Chat, true, true},
		{`{"model":"m","stream":true,"stream_options":{"include_usage":true}}`, provider.Chat, false, true},
		{`{"model":"m","stream":true,"stream_options":{"include_obfuscation":false}}`, provider.Completions, true, true},
		{`{"model":"m","stream":true,"max_tokens":5}`, provider.Messages, false, false},
		{`{"model":"m","stream":true}`, provider.Responses, false, false},
	}
	for _, tt := range tests {
		c, err := ParseCall(tt.ep, []byte(tt.body))
		if err != nil && tt.body != `{ }` {
			t.Fatal(err)
		}
		out, strip, err := requestUsage(tt.ep, c, []byte(tt.body))
		if err != nil {
			t.Fatal(err)
		}
		var m struct {
			StreamOptions map[string]any `json:"stream_options"`
			Model         string         `json:"model"`
		}
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("%s → invalid JSON %s", tt.body, out)
		}
		if strip != tt.strip || (m.StreamOptions["include_usage"] == true) != tt.wantUsage {
			t.Errorf("%s → %s strip=%v", tt.body, out, strip)
		}
		if len(m.StreamOptions) > 1 && m.StreamOptions["include_obfuscation"] != false {
			t.Errorf("%s → lost other stream options: %s", tt.body, out)
		}
	}
}

// FuzzParseCall feeds arbitrary bodies to the request parser and the usage
// rewrite: no panic, and every body passed upstream is valid JSON.
func FuzzParseCall(f *testing.F) {
	f.Add(`{"model":"gpt-4o","stream":true,"messages":[]}`)
	f.Add(`{"model":"m","stream":true,"stream_options":{"include_usage":false}}`)
	f.Add(`{"model":1}`)
	f.Add("{\"model\":\"m\",\"stream\":true}\n")
	f.Fuzz(func(t *testing.T, body string) {
		for _, ep := range []provider.Endpoint{provider.Chat, provider.Completions, provider.Messages} {
			c, err := ParseCall(ep, []byte(body))
			if err != nil {
				continue
			}
			if c.Model == "" {
				t.Fatal("accepted an empty model")
			}
			out, _, err := requestUsage(ep, c, []byte(body))
			if err == nil && !json.Valid(out) {
				t.Fatalf("rewrite of %q is invalid JSON: %q", body, out)
			}
		}
	})
}

// TestReadAllWhateverTheDeclaredLength: the body read is the bytes sent,
// whatever length was declared (none, exact, short, long, past the presized
// bound), and a declared length allocates at most maxPresized before the
// bytes arrive.
func TestReadAllWhateverTheDeclaredLength(t *testing.T) {
	for _, size := range []int{0, 1, 511, 512, 513, maxPresized - 1, maxPresized, maxPresized + 1, 3*maxPresized + 7} {
		body := bytes.Repeat([]byte("abcdefg"), size/7+1)[:size]
		for _, declared := range []int64{-1, int64(size), int64(size) / 2, int64(size) * 2, 16 << 20} {
			got, err := readAll(iotest.OneByteReader(bytes.NewReader(body)), declared)
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("size %d declared %d: %d bytes, %v", size, declared, len(got), err)
			}
			got, err = readAll(bytes.NewReader(body), declared)
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("size %d declared %d: %d bytes, %v", size, declared, len(got), err)
			}
		}
	}
	if b, _ := readAll(bytes.NewReader(nil), 16<<20); cap(b) > maxPresized+1 {
		t.Fatalf("a declared 16 MiB with nothing sent holds %d bytes", cap(b))
	}
	wantErr := errors.New("broken")
	if _, err := readAll(iotest.ErrReader(wantErr), 10); err != wantErr {
		t.Fatalf("error %v, want %v", err, wantErr)
	}
}

// TestReadAnswer: an upstream answer is read whole whatever length it
// declared, one byte past the limit is read so that "too large" shows, and a
// reused buffer holds only the new answer.
func TestReadAnswer(t *testing.T) {
	var buf bytes.Buffer
	for _, size := range []int{0, 10, 4096, maxPooledAnswer + 3} {
		body := bytes.Repeat([]byte("x"), size)
		for _, declared := range []int64{-1, 0, int64(size), int64(size) / 2, int64(size) * 3, 1 << 40} {
			buf.WriteString("left over from the last answer")
			buf.Reset()
			if err := readAnswer(&buf, iotest.HalfReader(bytes.NewReader(body)), declared, 1<<20); err != nil || !bytes.Equal(buf.Bytes(), body) {
				t.Fatalf("size %d declared %d: %d bytes, %v", size, declared, buf.Len(), err)
			}
			buf.Reset()
			if err := readAnswer(&buf, bytes.NewReader(body), declared, 5); err != nil || buf.Len() != min(size, 6) {
				t.Fatalf("size %d declared %d, limit 5: read %d bytes, want %d", size, declared, buf.Len(), min(size, 6))
			}
		}
	}
}
