// Package sessionstore declares what the web console keeps for every replica
// (console sessions and OIDC sign-ins in flight) and an in-memory Store for a
// console built alone. The database backends implement Store; the console
// decides what goes in it: hashes of cookie values and sealed secrets only
// (see package console, sessions.go).
package sessionstore

import (
	"context"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/store"
)

// Session is a console session as the store keeps it.
type Session struct {
	IDHash      []byte // SHA-256 of the cookie value (domain-separated)
	SealedToken []byte // the admin API session token, sealed with the cookie value
	User        string // display name
	PrincipalID string
	Created     time.Time
	Seen        time.Time
}

// OIDCLogin is an OIDC sign-in in flight as the store keeps it.
type OIDCLogin struct {
	StateHash      []byte // SHA-256 of the state parameter
	BindingHash    []byte // SHA-256 of the browser-binding cookie value
	SealedVerifier []byte // the PKCE verifier, sealed with the binding
	Next           string
	Started        time.Time
}

// Store keeps console sessions and OIDC sign-ins for every replica.
// Times are compared by the store with the bounds the caller passes, so a
// store with a fake clock in tests behaves as with the real one.
type Store interface {
	// CreateConsoleSession stores a new session.
	CreateConsoleSession(ctx context.Context, s Session) error
	// TouchConsoleSession moves the session's last-seen time to now (never
	// back) and returns it, in one step, if it was seen after idleAfter and created after
	// createdAfter; otherwise store.ErrNotFound (also when it does not exist).
	TouchConsoleSession(ctx context.Context, idHash []byte, now, idleAfter, createdAfter time.Time) (Session, error)
	// DeleteConsoleSession removes a session (no error when there is none).
	DeleteConsoleSession(ctx context.Context, idHash []byte) error
	// SweepConsoleSessions removes sessions last seen at or before
	// idleBefore or created at or before createdBefore.
	SweepConsoleSessions(ctx context.Context, idleBefore, createdBefore time.Time) (int64, error)
	// CreateOIDCLogin stores a sign-in in flight if fewer than max sign-ins
	// started after since are stored; ok false when that many are.
	CreateOIDCLogin(ctx context.Context, l OIDCLogin, since time.Time, max int) (ok bool, err error)
	// TakeOIDCLogin removes and returns the sign-in with that state hash
	// (store.ErrNotFound when there is none): of any number of concurrent
	// takes, on any replicas, one gets it.
	TakeOIDCLogin(ctx context.Context, stateHash []byte) (OIDCLogin, error)
	// SweepOIDCLogins removes sign-ins started at or before before.
	SweepOIDCLogins(ctx context.Context, before time.Time) (int64, error)
}

// Memory is the Store of a console without a database (tests, a console
// built alone): one process's memory.
type Memory struct {
	mu       sync.Mutex
	sessions map[string]Session
	logins   map[string]OIDCLogin
}

// NewMemory returns an empty Memory.
func NewMemory() *Memory {
	return &Memory{sessions: map[string]Session{}, logins: map[string]OIDCLogin{}}
}

func (m *Memory) CreateConsoleSession(_ context.Context, s Session) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.sessions[string(s.IDHash)]; ok {
		return store.ErrExists
	}
	m.sessions[string(s.IDHash)] = s
	return nil
}

func (m *Memory) TouchConsoleSession(_ context.Context, id []byte, now, idleAfter, createdAfter time.Time) (Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[string(id)]
	if !ok || !s.Seen.After(idleAfter) || !s.Created.After(createdAfter) {
		return Session{}, store.ErrNotFound
	}
	if now.After(s.Seen) {
		s.Seen = now
	}
	m.sessions[string(id)] = s
	return s, nil
}

func (m *Memory) DeleteConsoleSession(_ context.Context, id []byte) error {
	m.mu.Lock()
	delete(m.sessions, string(id))
	m.mu.Unlock()
	return nil
}

func (m *Memory) SweepConsoleSessions(_ context.Context, idleBefore, createdBefore time.Time) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for k, s := range m.sessions {
		if !s.Seen.After(idleBefore) || !s.Created.After(createdBefore) {
			delete(m.sessions, k)
			n++
		}
	}
	return n, nil
}

func (m *Memory) CreateOIDCLogin(_ context.Context, l OIDCLogin, since time.Time, max int) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, p := range m.logins {
		if p.Started.After(since) {
			n++
		}
	}
	if n >= max {
		return false, nil
	}
	if _, ok := m.logins[string(l.StateHash)]; ok {
		return false, store.ErrExists
	}
	m.logins[string(l.StateHash)] = l
	return true, nil
}

func (m *Memory) TakeOIDCLogin(_ context.Context, state []byte) (OIDCLogin, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.logins[string(state)]
	if !ok {
		return OIDCLogin{}, store.ErrNotFound
	}
	delete(m.logins, string(state))
	return l, nil
}

func (m *Memory) SweepOIDCLogins(_ context.Context, before time.Time) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for k, l := range m.logins {
		if !l.Started.After(before) {
			delete(m.logins, k)
			n++
		}
	}
	return n, nil
}
