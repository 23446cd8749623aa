package provider

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// Event is one server-sent event as it came off the wire. Raw holds its bytes
// exactly, terminating blank line included, so the proxy can forward it untouched.
type Event struct {
	Raw  []byte
	Name []byte // the "event:" field, if any
	Data []byte // "data:" lines joined with '\n'
}

// ErrEventTooLarge is returned for an event longer than the reader's limit.
var ErrEventTooLarge = errors.New("provider: SSE event too large")

// SSEReader splits a text/event-stream into events (WHATWG HTML §9.2). It is not
// safe for concurrent use.
type SSEReader struct {
	r     *bufio.Reader
	limit int
	raw   bytes.Buffer
	data  bytes.Buffer
}

// NewSSEReader reads events of at most limit bytes from r.
func NewSSEReader(r io.Reader, limit int) *SSEReader {
	return &SSEReader{r: bufio.NewReaderSize(r, 16<<10), limit: limit}
}

// Next returns the next event. Its slices are valid until the next call. At the
// end of the stream it returns io.EOF; a final event without its blank line is
// still returned first.
func (s *SSEReader) Next() (Event, error) {
	s.raw.Reset()
	s.data.Reset()
	var ev Event
	var name []byte
	hasData := false
	for {
		line, err := s.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A long line: keep reading it whole, within the limit.
			s.raw.Write(line)
			for errors.Is(err, bufio.ErrBufferFull) {
				if s.raw.Len() > s.limit {
					return Event{}, ErrEventTooLarge
				}
				line, err = s.r.ReadSlice('\n')
				s.raw.Write(line)
			}
			start := s.raw.Len() - lineLenFromEnd(s.raw.Bytes())
			line = append([]byte(nil), s.raw.Bytes()[start:]...)
			s.raw.Truncate(start)
		}
		if len(line) > 0 {
			s.raw.Write(line)
			if s.raw.Len() > s.limit {
				return Event{}, ErrEventTooLarge
			}
			content := bytes.TrimRight(line, "\r\n")
			if len(content) == 0 { // blank line: dispatch
				if hasData || name != nil {
					ev.Raw, ev.Name, ev.Data = s.raw.Bytes(), name, s.data.Bytes()
					return ev, nil
				}
				s.raw.Reset() // stray blank lines between events
				continue
			}
			field, value, _ := bytes.Cut(content, []byte(":"))
			value = bytes.TrimPrefix(value, []byte(" "))
			switch string(field) {
			case "data":
				if hasData {
					s.data.WriteByte('\n')
				}
				s.data.Write(value)
				hasData = true
			case "event":
				name = append([]byte(nil), value...)
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) && (hasData || name != nil) {
				ev.Raw, ev.Name, ev.Data = s.raw.Bytes(), name, s.data.Bytes()
				return ev, nil
			}
			return Event{}, err
		}
	}
}

// lineLenFromEnd returns the length of the last line in b (after the last '\n'
// that is not b's final byte).
func lineLenFromEnd(b []byte) int {
	end := len(b)
	if end > 0 && b[end-1] == '\n' {
		end--
	}
	i := bytes.LastIndexByte(b[:end], '\n')
	return len(b) - (i + 1)
}
