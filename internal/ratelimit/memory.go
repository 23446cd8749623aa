package ratelimit

import (
	"context"
	"sync"
	"time"
)

// Memory is the in-process backend.
type Memory struct {
	now func() time.Time

	mu    sync.Mutex
	tat   map[string]time.Time // GCRA theoretical arrival time per bucket
	slots map[string]map[string]struct{}
}

// NewMemory returns an in-process backend; now may be nil (time.Now).
func NewMemory(now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{now: now, tat: map[string]time.Time{}, slots: map[string]map[string]struct{}{}}
}

// emission is GCRA's emission interval: the time one unit takes to refill. It
// is never zero, also for limits stored before MaxPerMinute existed.
func emission(perMinute int64) time.Duration {
	return max(time.Minute/time.Duration(max(perMinute, 1)), 1)
}

// Take implements Backend with GCRA: burst perMinute, refill perMinute a minute.
func (m *Memory) Take(_ context.Context, key string, perMinute, n int64) (Result, error) {
	now := m.now()
	interval := emission(perMinute)
	m.mu.Lock()
	defer m.mu.Unlock()
	tat := m.tat[key]
	if tat.Before(now) {
		tat = now
	}
	newTat := tat.Add(time.Duration(n) * interval)
	res := Result{Limit: perMinute}
	if over := newTat.Sub(now) - time.Minute; over > 0 {
		res.RetryAfter = over
		res.ResetAfter = tat.Sub(now)
		res.Remaining = int64((time.Minute - tat.Sub(now)) / interval)
		return res, nil
	}
	m.tat[key] = newTat
	if len(m.tat) > 1_000_000 {
		m.gc(now)
	}
	res.Allowed = true
	res.ResetAfter = newTat.Sub(now)
	res.Remaining = int64((time.Minute - newTat.Sub(now)) / interval)
	return res, nil
}

// Give implements Backend.
func (m *Memory) Give(_ context.Context, key string, perMinute, n int64) error {
	interval := emission(perMinute)
	m.mu.Lock()
	defer m.mu.Unlock()
	if tat, ok := m.tat[key]; ok {
		m.tat[key] = tat.Add(-time.Duration(n) * interval)
	}
	return nil
}

func (m *Memory) gc(now time.Time) {
	for k, t := range m.tat {
		if t.Before(now) {
			delete(m.tat, k)
		}
	}
}

// Acquire implements Backend.
func (m *Memory) Acquire(_ context.Context, key, id string, max int64) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.slots[key]
	if s == nil {
		s = map[string]struct{}{}
		m.slots[key] = s
	}
	if int64(len(s)) >= max {
		return false, nil
	}
	s[id] = struct{}{}
	return true, nil
}

// Release implements Backend.
func (m *Memory) Release(_ context.Context, key, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.slots[key], id)
	if len(m.slots[key]) == 0 {
		delete(m.slots, key)
	}
	return nil
}
