package server

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

const refusedReason = "PostgreSQL refuses new connections (too many clients, SQLSTATE 53300) and this replica has none free: see max_connections and store.max_open_conns"

// readyTimeout bounds /readyz: it answers within a second whatever the store does.
const readyTimeout = 800 * time.Millisecond

// readyz says whether this replica should get traffic: the store answers
// within readyTimeout, this instance's liveness is established (it is not
// fenced), and the ledger's sequencer is neither stuck in a commit nor
// holding end records for the store. 503 otherwise, naming what failed.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	checks := map[string]string{}
	ping := make(chan error, 1)
	// The ping gives up a little before the answer is due, so that a pool
	// retrying refused connects reports the server's reason in time.
	pctx, pcancel := context.WithTimeout(ctx, readyTimeout-100*time.Millisecond)
	defer pcancel()
	go func() { ping <- s.db.Ping(pctx) }()
	select {
	case err := <-ping:
		if err != nil {
			checks["store"] = "unavailable"
		}
	case <-ctx.Done():
		checks["store"] = "no answer within " + readyTimeout.String()
	}
	// A store that does not answer because the server refuses this replica
	// connections (and it holds none free) says so: the cure is capacity.
	if _, failed := checks["store"]; failed && s.pool.RefusedSince(time.Now().Add(-2*time.Second)) {
		checks["store"] = refusedReason
	}
	if err := s.inst.Live(); err != nil && s.cfg.Database != "" {
		checks["instance"] = err.Error()
	}
	if err := s.ledger.Ready(); err != nil {
		checks["ledger"] = err.Error()
	}
	if n := s.budgets.Deferred(); n > 0 {
		checks["budgets"] = "settlements wait for the store"
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if len(checks) > 0 {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		json.NewEncoder(w).Encode(map[string]any{"status": "not ready", "checks": checks})
		return
	}
	w.Write([]byte(`{"status":"ready"}` + "\n"))
}

// livez says whether the process is alive (serving HTTP); it never touches
// the store, so an orchestrator does not restart a replica for a database
// outage that a restart cannot fix.
func (s *Server) livez(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write([]byte(`{"status":"live"}` + "\n"))
}
