package sqlstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// onceUpsert records a key unless it is recorded and alive: a dead row (past
// its expiry) is taken over. One statement, so two replicas racing on one
// proof serialise on the row and exactly one sees a row affected.
const onceUpsert = `INSERT INTO dpop_jtis (key, expires_at) VALUES (?, ?)
ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at WHERE dpop_jtis.expires_at <= CAST(? AS BIGINT)`

// onceSweepEvery is how many Once calls pass between sweeps of dead rows;
// onceSweepAfter is the longest time between two (counted from the next
// call), so that the rows of a burst do not wait for 1,024 more proofs.
const (
	onceSweepEvery = 1024
	onceSweepAfter = 5 * time.Minute
)

// Once implements token.OnceStore on the shared store (replicas without
// Redis): true the first time key is seen within ttl, false after. The key
// is stored as its SHA-256 (a proof's jti is the client's to choose).
func (s *DB) Once(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	sum := sha256.Sum256([]byte(key))
	now := time.Now()
	res, err := s.exec(ctx, s.db, onceUpsert, hex.EncodeToString(sum[:]), micros(now.Add(max(ttl, time.Millisecond))), micros(now))
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, err
	}
	last := s.onceSwept.Load()
	due := s.onceCalls.Add(1)%onceSweepEvery == 0 ||
		micros(now)-last > onceSweepAfter.Microseconds() && s.onceSwept.CompareAndSwap(last, micros(now))
	if due {
		s.onceSwept.Store(micros(now))
		s.exec(context.WithoutCancel(ctx), s.db, `DELETE FROM dpop_jtis WHERE expires_at <= ?`, micros(now))
	}
	return n == 1, nil
}
