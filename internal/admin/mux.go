package admin

import (
	"net/http"
	"slices"
	"sync"
)

// routeMux is an http.ServeMux that remembers its patterns, so that a test
// can hold the OpenAPI document to the routes actually served.
type routeMux struct {
	*http.ServeMux
	mu       sync.Mutex
	patterns []string
}

func newRouteMux() *routeMux { return &routeMux{ServeMux: http.NewServeMux()} }

func (m *routeMux) record(pattern string) {
	m.mu.Lock()
	m.patterns = append(m.patterns, pattern)
	m.mu.Unlock()
}

// HandleFunc registers f for pattern.
func (m *routeMux) HandleFunc(pattern string, f func(http.ResponseWriter, *http.Request)) {
	m.record(pattern)
	m.ServeMux.HandleFunc(pattern, f)
}

// Handle registers h for pattern.
func (m *routeMux) Handle(pattern string, h http.Handler) {
	m.record(pattern)
	m.ServeMux.Handle(pattern, h)
}

// Routes returns every pattern the admin API serves ("GET /v1/keys", …), in
// registration order.
func (h *Handler) Routes() []string {
	h.mux.mu.Lock()
	defer h.mux.mu.Unlock()
	return slices.Clone(h.mux.patterns)
}
