// Package providertest runs the simulated provider (package sim) as a real HTTP
// server on loopback, for tests: the gateway under test reaches it over TCP as
// it would a real provider, and the test can inject faults and inspect what the
// upstream received.
package providertest

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/provider/sim"
)

// Request is what the upstream received.
type Request struct {
	Method, Path string
	Header       http.Header
	Body         []byte
}

// Server is a fake upstream.
type Server struct {
	*sim.Handler
	URL string // root, e.g. http://127.0.0.1:1234

	mu       sync.Mutex
	requests []Request
}

// New starts a fake upstream that requires apiKey ("" accepts any), stopped when
// t ends.
func New(t testing.TB, apiKey string) *Server {
	s := &Server{Handler: sim.New(apiKey)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body})
		s.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		s.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// OpenAIBaseURL is the base URL to configure for a provider of type openai.
func (s *Server) OpenAIBaseURL() string { return s.URL + "/v1" }

// Requests returns a copy of every request received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}
