package ratelimit

import (
	"context"
	"fmt"
	"time"
)

// Once records key for ttl and reports whether it was new (SET NX PX, one
// atomic command): a set of one-time values (DPoP proof ids) shared by every
// replica.
func (r *Redis) Once(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	ok, err := r.rdb.SetNX(ctx, r.prefix+"once:"+key, 1, max(ttl, time.Millisecond)).Result()
	if err != nil {
		return false, fmt.Errorf("ratelimit: %w", err)
	}
	return ok, nil
}
