package server

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
)

// EnvPprof turns on Go's profiler endpoints (/debug/pprof/) on the admin
// listener when set to "1". It is for measuring (docs/benchmarks.md), off by
// default, and only allowed when the admin listener is on a loopback address:
// the endpoints carry no authentication and show the process's internals.
const EnvPprof = "GATEHOUSE_PPROF"

// pprofEnabled reports whether EnvPprof asks for the profiler, and fails when
// it does but the admin listener is reachable from elsewhere (fail closed).
func pprofEnabled(getenv func(string) string, adminAddr net.Addr) (bool, error) {
	switch v := getenv(EnvPprof); v {
	case "", "0":
		return false, nil
	case "1":
	default:
		return false, fmt.Errorf("%s=%q: want 1 or unset", EnvPprof, v)
	}
	ta, ok := adminAddr.(*net.TCPAddr)
	if !ok || !ta.IP.IsLoopback() {
		return false, fmt.Errorf("%s=1 needs the admin listener on a loopback address, not %s: the profiler has no authentication", EnvPprof, adminAddr)
	}
	return true, nil
}

// withPprof serves /debug/pprof/ beside next.
func withPprof(next http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/", next)
	return mux
}

// SetMemProfileRate turns off Go's heap-profile sampling unless EnvPprof is
// "1". Sampling is on in every Go program and keeps a record per allocation
// stack (~1.5 MB under load, docs/benchmarks.md) that nothing reads while
// the profiler's endpoints are off. Call it before anything else allocates
// (cmd/gatehouse does, in a package variable's initialiser): what was
// sampled before stays.
func SetMemProfileRate(getenv func(string) string) {
	if getenv(EnvPprof) != "1" {
		runtime.MemProfileRate = 0
	}
}
