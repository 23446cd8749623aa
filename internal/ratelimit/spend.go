package ratelimit

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// addSpend adds ARGV[2] to the bucket KEYS[1] (expiring after ARGV[1] ms)
// and returns the values of KEYS[2..] (missing: 0), in one atomic script.
var addSpend = redis.NewScript(`
redis.call('INCRBY', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
local out = {}
for i = 2, #KEYS do
  out[#out+1] = tonumber(redis.call('GET', KEYS[i]) or '0')
end
return out
`)

// AddBreakerSpend implements breaker.Shared on Redis: one key per bucket,
// expiring after twice the window.
func (r *Redis) AddBreakerSpend(ctx context.Context, keyID string, bucket, cost int64, n int) ([]int64, error) {
	keys := []string{r.spendKey(keyID, bucket)}
	for b := bucket - int64(n) + 1; b <= bucket; b++ {
		keys = append(keys, r.spendKey(keyID, b))
	}
	ttl := r.SpendTTL
	if ttl <= 0 {
		ttl = time.Hour
	}
	vals, err := addSpend.Run(ctx, r.rdb, keys, ttl.Milliseconds(), cost).Int64Slice()
	if err != nil {
		return nil, fmt.Errorf("breaker: redis: %w", err)
	}
	return vals, nil
}

// ResetBreakerSpend implements breaker.Shared: deletes the n buckets
// ending at bucket.
func (r *Redis) ResetBreakerSpend(ctx context.Context, keyID string, bucket int64, n int) error {
	var keys []string
	for b := bucket - int64(n) + 1; b <= bucket; b++ {
		keys = append(keys, r.spendKey(keyID, b))
	}
	if err := r.rdb.Del(ctx, keys...).Err(); err != nil {
		return fmt.Errorf("breaker: redis: %w", err)
	}
	return nil
}

func (r *Redis) spendKey(keyID string, bucket int64) string {
	return r.prefix + "spend:" + keyID + ":" + strconv.FormatInt(bucket, 10)
}
