package ratelimit

import (
	"context"
	"fmt"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// Redis is the backend shared by every replica.
type Redis struct {
	rdb     *redis.Client
	limiter *redis_rate.Limiter
	// SlotTTL bounds how long a concurrency slot of a crashed replica lingers.
	SlotTTL time.Duration
	// SpendTTL is how long the breaker's buckets live (twice its window).
	SpendTTL time.Duration
	prefix   string
}

// OpenRedis connects to url (redis://host:port/db) and checks it answers.
func OpenRedis(ctx context.Context, url string, slotTTL time.Duration) (*Redis, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: redis URL: %w", err)
	}
	rdb := redis.NewClient(opt)
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("ratelimit: redis: %w", err)
	}
	return &Redis{rdb: rdb, limiter: redis_rate.NewLimiter(rdb), SlotTTL: slotTTL, prefix: "gatehouse:"}, nil
}

// WithPrefix namespaces keys (tests share one server).
func (r *Redis) WithPrefix(p string) *Redis { c := *r; c.prefix = p; return &c }

// Close closes the connection.
func (r *Redis) Close() error { return r.rdb.Close() }

// Take implements Backend with redis_rate's GCRA.
func (r *Redis) Take(ctx context.Context, key string, perMinute, n int64) (Result, error) {
	res, err := r.limiter.AllowN(ctx, r.prefix+key, redis_rate.PerMinute(int(perMinute)), int(n))
	if err != nil {
		return Result{}, fmt.Errorf("ratelimit: %w", err)
	}
	return Result{Allowed: res.Allowed > 0, Limit: perMinute, Remaining: int64(res.Remaining), RetryAfter: max(res.RetryAfter, 0), ResetAfter: max(res.ResetAfter, 0)}, nil
}

// Give implements Backend. redis_rate has no refund; a negative take would
// corrupt its state, so TPM refunds are skipped: the shared limit errs on the
// side of refusing.
func (r *Redis) Give(context.Context, string, int64, int64) error { return nil }

// acquire: drop expired members, count, add if room; one atomic script.
var acquire = redis.NewScript(`
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1`)

// Acquire implements Backend.
func (r *Redis) Acquire(ctx context.Context, key, id string, max int64) (bool, error) {
	now := time.Now()
	ok, err := acquire.Run(ctx, r.rdb, []string{r.prefix + key},
		now.Add(-r.SlotTTL).UnixMilli(), now.UnixMilli(), max, id, r.SlotTTL.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("ratelimit: %w", err)
	}
	return ok == 1, nil
}

// Release implements Backend.
func (r *Redis) Release(ctx context.Context, key, id string) error {
	return r.rdb.ZRem(ctx, r.prefix+key, id).Err()
}
