package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/breaker"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres/pgtest"
)

// TestBreakerSpendsOneRoundTrip: the breaker's flush sends every key's
// spend since the last one and reads their windows back (breaker.
// BatchShared) in one round trip, however many keys it carries; two
// replicas' flushes of the same keys, concurrently, add up.
func TestBreakerSpendsOneRoundTrip(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var trips postgres.PoolHealth
	db, err := postgres.OpenWith(ctx, pgtest.DSN(t), postgres.Options{MaxOpenConns: 2, MinOpenConns: 1, Health: &trips})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var spends []breaker.Spend
	for k := range 300 { // more than one chunk of rows
		id := fmt.Sprintf("key_%03d", k)
		spends = append(spends, breaker.Spend{KeyID: id, Bucket: 99, Cost: 1}, breaker.Spend{KeyID: id, Bucket: 100, Cost: int64(k)})
	}
	if _, err := db.AddBreakerSpends(ctx, spends[:2], 100, 10); err != nil {
		t.Fatal(err)
	}
	before := trips.RoundTrips()
	sums, err := db.AddBreakerSpends(ctx, spends, 100, 10)
	if err != nil {
		t.Fatal(err)
	}
	got := trips.RoundTrips() - before
	t.Logf("a flush of 300 keys: %d round trips", got)
	if got > 1+1 {
		t.Errorf("a flush of 300 keys took %d round trips, want 1", got)
	}
	if len(sums) != 300 {
		t.Fatalf("%d windows, want 300", len(sums))
	}
	if want := []int64{0, 0, 0, 0, 0, 0, 0, 0, 2, 0}; fmt.Sprint(sums["key_000"]) != fmt.Sprint(want) {
		t.Errorf("key_000's window %v, want %v", sums["key_000"], want)
	}
	if want := []int64{0, 0, 0, 0, 0, 0, 0, 0, 1, 299}; fmt.Sprint(sums["key_299"]) != fmt.Sprint(want) {
		t.Errorf("key_299's window %v, want %v", sums["key_299"], want)
	}
	// Two flushes at once (two replicas), rows in one order: no deadlock, and
	// both counted.
	errs := make(chan error, 2)
	for range 2 {
		go func() { _, err := db.AddBreakerSpends(ctx, spends, 100, 10); errs <- err }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	sums, err = db.AddBreakerSpends(ctx, spends[len(spends)-1:], 100, 10)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{0, 0, 0, 0, 0, 0, 0, 0, 3, 299 * 4}; fmt.Sprint(sums["key_299"]) != fmt.Sprint(want) {
		t.Errorf("key_299's window after four flushes %v, want %v", sums["key_299"], want)
	}
}
