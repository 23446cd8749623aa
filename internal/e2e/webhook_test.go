package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/alert"
	"github.com/gatehouse-gw/gatehouse/internal/config"
)

type configT = config.Config

// webhook receives alerts and checks every signature.
type webhook struct {
	url string
	mu  sync.Mutex
	got []map[string]any
}

func newWebhook(t *testing.T) *webhook {
	w := &webhook{}
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ts, _ := strconv.ParseInt(r.Header.Get("X-Gatehouse-Timestamp"), 10, 64)
		if !alert.Verify([]byte("whsec-test"), ts, body, r.Header.Get("X-Gatehouse-Signature")) {
			t.Errorf("alert with a bad signature: %s", body)
			rw.WriteHeader(400)
			return
		}
		var m map[string]any
		json.Unmarshal(body, &m)
		w.mu.Lock()
		w.got = append(w.got, m)
		w.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	w.url = srv.URL
	return w
}

func (w *webhook) all() []map[string]any {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]map[string]any(nil), w.got...)
}

func (w *webhook) wait(t *testing.T, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(w.all()) < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	return w.all()
}
