package server

import (
	"context"
	"strings"
	"sync"

	"github.com/gatehouse-gw/gatehouse/internal/store/postgres"
)

// listenChanges applies the store's change notifications on PostgreSQL (see
// postgres.Listener): a key or principal change drops it from the caches at
// once, a config change reloads the snapshot (coalesced: one reload runs at a
// time, and one more after it if changes arrived meanwhile). A (re)connect
// forgets every cached key and principal and reloads, for the notifications
// lost while away. pollConfig and the key cache TTL remain the fallback.
func (s *Server) listenChanges(ctx context.Context) {
	reload := make(chan struct{}, 1)
	request := func() {
		select {
		case reload <- struct{}{}:
		default:
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-reload:
				if err := s.Reload(ctx); err != nil && ctx.Err() == nil {
					s.log.Warn("reload on a change notification failed; polling will retry", "err", err)
				}
			}
		}
	})
	l := &postgres.Listener{DSN: s.cfg.Database, Log: s.log, ConnectTimeout: s.cfg.Store.ConnectTimeout.D(),
		// Notifications sent while the listener was away are lost: a key
		// revoked or a principal disabled meanwhile would be served from
		// the caches until their TTL. So every (re)connect, once LISTEN is
		// in place, forgets them all (the next request reads the store) and
		// reloads the snapshot.
		OnConnect: func() {
			s.verifier.ForgetAll()
			s.auth.ForgetAll()
			request()
		},
		OnNotify: func(payload string) {
			switch {
			case payload == "config":
				request()
			case strings.HasPrefix(payload, "key:"):
				id := strings.TrimPrefix(payload, "key:")
				s.verifier.Forget(id)
				s.auth.ForgetKey(id)
				s.breaker.Rearm(id)
			case strings.HasPrefix(payload, "principal:"):
				s.auth.Forget(strings.TrimPrefix(payload, "principal:"))
			}
		}}
	l.Run(ctx)
}
