package budget

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
)

// lossyStore commits a reservation and then reports an error, as a store
// whose connection drops (or whose caller's context ends) after COMMIT does.
type lossyStore struct {
	Store
	open map[string]int64
}

func (s *lossyStore) Reserve(ctx context.Context, r Reservation) error {
	s.open[r.ID] = r.Amount
	return errors.New("connection reset after commit")
}

func (s *lossyStore) Settle(ctx context.Context, id string, actual int64) ([]Spend, error) {
	delete(s.open, id)
	return nil, nil
}

// TestReserveReleasesWhatAFailedReservationLeft: a reservation reported as
// failed is released, so no money stays held for a call that never happened.
func TestReserveReleasesWhatAFailedReservationLeft(t *testing.T) {
	st := &lossyStore{open: map[string]int64{}}
	b := Budget{ID: "bud_1", Scope: ScopeKey, ScopeID: "key_1", Period: Day, LimitMicros: 100, Hard: true}
	l := NewLedger(st, "gw1", func() []Budget { return []Budget{b} }, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if _, err := l.Reserve(context.Background(), "req_1", Call{KeyID: "key_1"}, 50); err == nil {
		t.Fatal("the store's error was not reported")
	}
	if len(st.open) != 0 {
		t.Fatalf("reservations left open after a failed Reserve: %v", st.open)
	}
}
