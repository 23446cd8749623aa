package server

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestPprofEnabled(t *testing.T) {
	loop := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8081}
	loop6 := &net.TCPAddr{IP: net.IPv6loopback, Port: 8081}
	any4 := &net.TCPAddr{IP: net.IPv4zero, Port: 8081}
	public := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 5), Port: 8081}
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == EnvPprof {
				return v
			}
			return ""
		}
	}
	for _, tc := range []struct {
		name, v string
		addr    net.Addr
		want    bool
		wantErr bool
	}{
		{"unset", "", public, false, false},
		{"zero", "0", public, false, false},
		{"loopback", "1", loop, true, false},
		{"loopback v6", "1", loop6, true, false},
		{"wildcard refused", "1", any4, false, true},
		{"public refused", "1", public, false, true},
		{"unix refused", "1", &net.UnixAddr{Name: "/tmp/x", Net: "unix"}, false, true},
		{"junk value refused", "yes", loop, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pprofEnabled(env(tc.v), tc.addr)
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Fatalf("pprofEnabled(%q, %v) = %v, %v; want %v, error %v", tc.v, tc.addr, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestWithPprofKeepsAdminRoutes(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("admin:" + r.URL.Path)) })
	h := withPprof(next)
	for path, want := range map[string]string{
		"/v1/keys":                  "admin:/v1/keys",
		"/debug/pprof/":             "goroutine",
		"/debug/pprof/heap?debug=1": "heap profile",
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("GET %s: body %.80q, want it to contain %q", path, rec.Body.String(), want)
		}
	}
}
