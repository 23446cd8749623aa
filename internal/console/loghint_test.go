package console

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestLogPageNamesTheRealAdminAddress: the offline-verify hint on the log
// page names the address the page was reached at (scheme included), not a
// placeholder; a Host header that could break out of the shell command it
// is shown in falls back to the placeholder.
func TestLogPageNamesTheRealAdminAddress(t *testing.T) {
	e := newEnv()
	c, _ := e.signIn(t)
	for _, tc := range []struct {
		host string
		tls  bool
		want string
	}{
		{"gatehouse.test", false, `'http://gatehouse.test/log'`},
		{"10.0.0.7:8081", false, `'http://10.0.0.7:8081/log'`},
		{"[::1]:8081", true, `'https://[::1]:8081/log'`},
		{"evil.test';touch${IFS}pwned;'", false, `'http://ADMIN/log'`},
		{"evil.test$(id)", false, `'http://ADMIN/log'`},
	} {
		r := httptest.NewRequest("GET", "http://gatehouse.test/console/log", nil)
		r.Host = tc.host
		if tc.tls {
			r.TLS = &tls.ConnectionState{}
		}
		ck := *c
		ck.Name = e.h.cookieName(r) // the secure cookie's name over TLS
		r.AddCookie(&ck)
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, r)
		body := w.Body.String()
		if w.Code != http.StatusOK {
			t.Fatalf("%s: %d", tc.host, w.Code)
		}
		i := strings.Index(body, `id="verify-command"`)
		if i < 0 {
			t.Fatalf("%s: no verify command on the page", tc.host)
		}
		cmd := body[i : i+strings.Index(body[i:], "</code>")]
		if !strings.Contains(cmd, tc.want) || strings.Count(cmd, "'") != 2 {
			t.Errorf("host %q: command %s, want %s", tc.host, cmd, tc.want)
		}
	}
}
