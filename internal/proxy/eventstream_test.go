package proxy

import "testing"

func TestIsEventStream(t *testing.T) {
	for ct, want := range map[string]bool{
		"text/event-stream":                true,
		"text/event-stream; charset=utf-8": true,
		"Text/Event-Stream":                true,
		"TEXT/EVENT-STREAM;charset=UTF-8":  true,
		"application/json":                 false,
		"text/event-streamx":               false,
		"":                                 false,
		"text/event-stream;;;":             false,
	} {
		if got := isEventStream(ct); got != want {
			t.Errorf("isEventStream(%q) = %v, want %v", ct, got, want)
		}
	}
}
