package server

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/auth"
	"github.com/gatehouse-gw/gatehouse/internal/breaker"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/ledger/ledgertest"
	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// breakerRecords returns the log's breaker records of keyID.
func breakerRecords(t *testing.T, db *sqlstore.DB, keyID string) []ledger.Record {
	t.Helper()
	var out []ledger.Record
	for _, r := range ledgertest.RecordsOfKind(t, db, ledger.KindBreaker) {
		if r.KeyID == keyID {
			out = append(out, r)
		}
	}
	return out
}

// suspendServer is the part of a Server the breaker's suspensions go
// through (suspendKey): a SQLite store with team team_a, service account
// prn_a and its virtual keys of ids keys (stored with hash "hash-"+id, made
// at now), a verifier, the authenticator and a log that is not running.
func suspendServer(t *testing.T, keys ...string) (s *Server, db *sqlstore.DB, lg *ledger.Log, now time.Time) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	now = time.Now().UTC().Truncate(time.Second)
	team := org.Team{ID: "team_a", Name: "a", CreatedAt: now}
	p := org.Principal{ID: "prn_a", Name: "agent", Kind: org.KindServiceAccount, Teams: []string{team.ID}, Roles: []string{"member"}, CreatedAt: now}
	if err := db.CreateTeam(ctx, team); err != nil {
		t.Fatal(err)
	}
	if err := db.CreatePrincipal(ctx, p); err != nil {
		t.Fatal(err)
	}
	for _, id := range keys {
		if err := db.CreateKey(ctx, vkey.Key{ID: id, Kind: vkey.KindVirtual, Hash: "hash-" + id, PrincipalID: p.ID, TeamID: team.ID, CreatedAt: now, Version: 1}); err != nil {
			t.Fatal(err)
		}
	}
	h, err := vkey.NewHasher(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	skey, _ := ledger.GenerateKey("test.example/log")
	if lg, err = ledger.New(db, "t", skey, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	v := vkey.NewVerifier(db, h, vkey.VerifierOptions{})
	s = &Server{log: slog.New(slog.DiscardHandler), db: db, verifier: v, auth: auth.New(v, db, time.Minute), ledger: lg}
	return s, db, lg, now
}

// TestTripLostThenReinstatedIsRecorded: a trip whose suspension committed
// but whose answer was lost (a timeout), and an admin's reinstatement of the
// key before the breaker's retry. The retry finds the key changed since its
// trip (ErrChanged: the reinstatement wins), and before the fix nothing
// recorded the suspension: the log showed a reinstatement of a key never
// suspended. The trip is recorded once, at its own instant, however many
// times the retry runs.
func TestTripLostThenReinstatedIsRecorded(t *testing.T) {
	ctx := context.Background()
	s, db, lg, now := suspendServer(t, "key_a")

	// The trip's write commits; its answer is lost (so nothing recorded it).
	at := now.Add(1500 * time.Microsecond)
	trip := breaker.Suspension{Reason: "spent $6.00 in 5m0s", At: at, Version: 1}
	if first, err := db.SuspendKeyFirst(ctx, "key_a", trip.Reason, at, 0); err != nil || !first {
		t.Fatalf("the trip's write: %v %v", first, err)
	}
	if _, err := db.ReinstateKey(ctx, "key_a", 0); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the retry, and a second one (Run's next round had it not ended)
		if _, _, err := s.suspendKey(ctx, "key_a", trip); !errors.Is(err, breaker.ErrChanged) {
			t.Fatalf("a retry after a reinstatement: %v; want ErrChanged", err)
		}
	}
	recs := breakerRecords(t, db, "key_a")
	if len(recs) != 1 {
		t.Fatalf("%d breaker records of the key; want its trip recorded once: %+v", len(recs), recs)
	}
	if !recs[0].Time.Equal(at) || recs[0].Detail != trip.Reason || recs[0].Action != "suspend" {
		t.Fatalf("the trip's record %+v; want a suspension at %v for %q", recs[0], at, trip.Reason)
	}
	if k, _ := db.Key(ctx, "key_a"); k.SuspendedAt != nil {
		t.Fatalf("the retry overruled the reinstatement: %+v", k)
	}

	// A trip answered as usual is recorded once too, and a later
	// reinstatement's record of it (admin.reinstateKey) is the same record.
	if _, _, err := s.suspendKey(ctx, "key_a", breaker.Suspension{Reason: "again"}); err != nil {
		t.Fatal(err)
	}
	k, err := db.Key(ctx, "key_a")
	if err != nil || k.SuspendedAt == nil {
		t.Fatalf("after a trip: %+v %v", k, err)
	}
	if _, err := lg.Append(ctx, ledger.BreakerTrip("key_a", k.SuspendReason, *k.SuspendedAt)); !errors.Is(err, ledger.ErrAlreadyClosed) {
		t.Fatalf("the same suspension recorded again: %v; want ErrAlreadyClosed", err)
	}
	if recs := breakerRecords(t, db, "key_a"); len(recs) != 2 {
		t.Fatalf("%d breaker records; want 2 (two suspensions)", len(recs))
	}
}
