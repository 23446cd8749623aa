package breaker

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestManyKeysDoNotResetASpendingKey: past the cap on windows kept, the
// breaker evicts idle windows, not every window: a key with spend in its
// window still trips on its next call however many other keys spend once
// (before, the map was emptied at the cap, and a key that had spent just
// under its ceiling could spend a whole ceiling more). The idle windows go,
// so the windows kept stay near the cap.
func TestManyKeysDoNotResetASpendingKey(t *testing.T) {
	b, r, now := setup(Config{Enabled: true, Window: 5 * time.Minute, CeilingMicros: 1000})
	b.maxKeys, b.sweepAt = 10, 10
	ctx := context.Background()
	if b.Observe(ctx, "key_hot", 900) {
		t.Fatal("tripped under the ceiling")
	}
	for i := range 25 { // other keys spend once each, and go idle
		*now = now.Add(time.Second)
		if b.Observe(ctx, fmt.Sprintf("key_%d", i), 1) {
			t.Fatal("a small spend tripped")
		}
	}
	if !b.Observe(ctx, "key_hot", 200) {
		t.Fatal("the key did not trip at 1100 of a 1000 ceiling: its window was emptied by other keys' windows")
	}
	if r.suspended["key_hot"] == "" {
		t.Fatalf("suspended %v", r.suspended)
	}
	// An hour later the small spenders are idle: a sweep evicts them.
	*now = now.Add(time.Hour)
	for i := range 30 {
		b.Observe(ctx, fmt.Sprintf("new_%d", i), 1)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range 25 {
		if _, ok := b.keys[fmt.Sprintf("key_%d", i)]; ok {
			t.Fatalf("key_%d's idle window was kept (%d windows, cap %d)", i, len(b.keys), b.maxKeys)
		}
	}
	if _, ok := b.keys["key_hot"]; !ok {
		t.Fatal("a tripped key's window was evicted")
	}
}
