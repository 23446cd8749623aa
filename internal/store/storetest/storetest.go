// Package storetest is the storage conformance suite: every backend runs Run and
// must pass all of it. It speaks only through the domain packages' interfaces.
package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/console/sessionstore"
	"github.com/gatehouse-gw/gatehouse/internal/instance"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/mfa"
	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
	"github.com/gatehouse-gw/gatehouse/internal/pricing"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
	"github.com/gatehouse-gw/gatehouse/internal/ratelimit"
	"github.com/gatehouse-gw/gatehouse/internal/store"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// Backend is everything a storage backend provides.
type Backend interface {
	budget.Store
	instance.Store
	ledger.Store
	policy.Store
	ratelimit.Store
	org.Store
	vkey.Store
	provider.Store
	usage.Store
	mfa.PasskeyStore
	sessionstore.Store
	ListPrices(ctx context.Context) ([]pricing.Price, error)
	SetPrice(ctx context.Context, p pricing.Price) error
	DeletePrice(ctx context.Context, model string) error
	ConfigVersion(ctx context.Context) (int64, error)
	Secret(ctx context.Context, name string) ([]byte, error)
	PutSecretIfAbsent(ctx context.Context, name string, sealed []byte) ([]byte, error)
	SuspendKeyFirst(ctx context.Context, id, reason string, at time.Time, version int64) (bool, error)
}

// Run runs the suite; open returns a fresh, empty, migrated backend.
func Run(t *testing.T, open func(t *testing.T) Backend) {
	tests := []struct {
		name string
		fn   func(*testing.T, Backend)
	}{
		{"Teams", testTeams},
		{"Principals", testPrincipals},
		{"Keys", testKeys},
		{"BreakerSuspensionAtAVersion", testBreakerSuspensionAtAVersion},
		{"BreakerTripsAtOneInstant", testBreakerTripsAtOneInstant},
		{"Providers", testProviders},
		{"Prices", testPrices},
		{"Usage", testUsage},
		{"Secrets", testSecrets},
		{"Budgets", testBudgets},
		{"BudgetRace", testBudgetRace},
		{"Limits", testLimits},
		{"Policies", testPolicies},
		{"Passkeys", testPasskeys},
		{"Fencing", testFencing},
		{"FencingRace", testFencingRace},
		{"OneEndPerRequest", testOneEndPerRequest},
		{"ConsoleSessions", testConsoleSessions},
		{"BatchOneNoLongerFits", testBatchOneNoLongerFits},
		{"BatchEndsAreIdempotent", testBatchEndsAreIdempotent},
		{"BatchRace", testBatchRace},
		{"BatchSplitEachCallRefusedByADifferentRow", testBatchSplitEachCallRefusedByADifferentRow},
		{"BatchOfAThousandCalls", testBatchOfAThousandCalls},
		{"BatchHoldWithoutCharges", testBatchHoldWithoutCharges},
		{"BatchHoldSettledInItsOwnBatch", testBatchHoldSettledInItsOwnBatch},
		{"LedgerHashesOfWrongShape", testLedgerHashesOfWrongShape},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

var now = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %v", err, want)
	}
}

func seed(t *testing.T, b Backend) (org.Team, org.Principal) {
	ctx := context.Background()
	team := org.Team{ID: vkey.NewID("team"), Name: "research", CreatedAt: now}
	must(t, b.CreateTeam(ctx, team))
	p := org.Principal{ID: vkey.NewID("prn"), Name: "agent-1", Kind: org.KindServiceAccount, Teams: []string{team.ID}, Roles: []string{"member"}, CreatedAt: now}
	must(t, b.CreatePrincipal(ctx, p))
	return team, p
}

func testTeams(t *testing.T, b Backend) {
	ctx := context.Background()
	team := org.Team{ID: "team_a", Name: "alpha", CreatedAt: now}
	must(t, b.CreateTeam(ctx, team))
	wantErr(t, b.CreateTeam(ctx, org.Team{ID: "team_b", Name: "alpha", CreatedAt: now}), store.ErrExists)
	got, err := b.Team(ctx, "alpha")
	must(t, err)
	if got.ID != "team_a" || got.Version != 1 || !got.CreatedAt.Equal(now) {
		t.Fatalf("Team(alpha) = %+v", got)
	}
	if got, err := b.Team(ctx, "team_a"); err != nil || got.Name != "alpha" {
		t.Fatalf("Team(team_a) = %+v, %v", got, err)
	}
	_, err = b.Team(ctx, "nope")
	wantErr(t, err, store.ErrNotFound)
	must(t, b.CreateTeam(ctx, org.Team{ID: "team_b", Name: "beta", CreatedAt: now}))
	list, err := b.ListTeams(ctx)
	must(t, err)
	if len(list) != 2 || list[0].Name != "alpha" || list[1].Name != "beta" {
		t.Fatalf("ListTeams = %+v", list)
	}
	wantErr(t, b.DeleteTeam(ctx, "team_a", 7), store.ErrConflict)
	must(t, b.DeleteTeam(ctx, "team_a", 1))
	wantErr(t, b.DeleteTeam(ctx, "team_a", 0), store.ErrNotFound)

	// A team's maximum key age round-trips, and changing it is configuration.
	quarter := org.Age(90 * 24 * time.Hour)
	must(t, b.CreateTeam(ctx, org.Team{ID: "team_c", Name: "gamma", MaxKeyAge: quarter, CreatedAt: now}))
	if got, err := b.Team(ctx, "gamma"); err != nil || got.MaxKeyAge != quarter {
		t.Fatalf("Team(gamma) = %+v, %v; want max key age %v", got, err, time.Duration(quarter))
	}
	g0, err := b.ConfigVersion(ctx)
	must(t, err)
	c, _ := b.Team(ctx, "team_c")
	c.MaxKeyAge, c.Name = org.Age(24*time.Hour), "gamma-2"
	_, err = b.UpdateTeam(ctx, c, 9)
	wantErr(t, err, store.ErrConflict)
	up, err := b.UpdateTeam(ctx, c, 1)
	must(t, err)
	if up.Version != 2 || up.Name != "gamma-2" || up.MaxKeyAge != org.Age(24*time.Hour) {
		t.Fatalf("UpdateTeam = %+v", up)
	}
	if g1, _ := b.ConfigVersion(ctx); g1 <= g0 {
		t.Fatalf("config version %d after a team's key age changed, was %d", g1, g0)
	}
	_, err = b.UpdateTeam(ctx, org.Team{ID: "team_missing", Name: "m"}, 0)
	wantErr(t, err, store.ErrNotFound)
	list, err = b.ListTeams(ctx)
	must(t, err)
	if len(list) != 2 || list[1].MaxKeyAge != org.Age(24*time.Hour) {
		t.Fatalf("ListTeams = %+v", list)
	}
}

func testPrincipals(t *testing.T, b Backend) {
	ctx := context.Background()
	team, p := seed(t, b)
	got, err := b.Principal(ctx, p.Name)
	must(t, err)
	if diff := cmp.Diff(p, got, cmpopts.IgnoreFields(org.Principal{}, "Version")); diff != "" {
		t.Fatalf("Principal mismatch (-want +got):\n%s", diff)
	}
	wantErr(t, b.CreatePrincipal(ctx, org.Principal{ID: "prn_x", Name: "x", Kind: org.KindUser, Teams: []string{"team_missing"}, CreatedAt: now}), store.ErrNotFound)
	if _, err := b.Principal(ctx, "x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("principal with a missing team was half-created")
	}
	wantErr(t, b.DeleteTeam(ctx, team.ID, 0), store.ErrInUse)

	other := org.Team{ID: "team_o", Name: "other", CreatedAt: now}
	must(t, b.CreateTeam(ctx, other))
	p.Teams = []string{team.ID, other.ID}
	p.Disabled = true
	up, err := b.UpdatePrincipal(ctx, p, got.Version)
	must(t, err)
	if up.Version != got.Version+1 || !up.Disabled || len(up.Teams) != 2 {
		t.Fatalf("UpdatePrincipal = %+v", up)
	}
	_, err = b.UpdatePrincipal(ctx, p, got.Version) // stale
	wantErr(t, err, store.ErrConflict)
	list, err := b.ListPrincipals(ctx, other.ID)
	must(t, err)
	if len(list) != 1 || list[0].ID != p.ID {
		t.Fatalf("ListPrincipals(other) = %+v", list)
	}
	must(t, b.CreateKey(ctx, vkey.Key{ID: "key_1", Kind: vkey.KindVirtual, Hash: "h1", PrincipalID: p.ID, TeamID: team.ID, CreatedAt: now}))
	wantErr(t, b.DeletePrincipal(ctx, p.ID, 0), store.ErrInUse)
}

func testKeys(t *testing.T, b Backend) {
	ctx := context.Background()
	team, p := seed(t, b)
	exp := now.Add(24 * time.Hour)
	k := vkey.Key{ID: "key_a", Kind: vkey.KindVirtual, Name: "ci", Hash: "hash-a", Hint: "gk_abcd…", PrincipalID: p.ID, TeamID: team.ID,
		Scope: vkey.Scope{Models: []string{"gpt-4o*"}, Endpoints: []string{"chat"}, CIDRs: []string{"10.0.0.0/8"}}, ExpiresAt: &exp, CreatedAt: now}
	must(t, b.CreateKey(ctx, k))
	wantErr(t, b.CreateKey(ctx, vkey.Key{ID: "key_b", Kind: vkey.KindVirtual, Hash: "hash-a", PrincipalID: p.ID, CreatedAt: now}), store.ErrExists)
	wantErr(t, b.CreateKey(ctx, vkey.Key{ID: "key_c", Kind: vkey.KindVirtual, Hash: "hash-c", PrincipalID: "prn_missing", CreatedAt: now}), store.ErrNotFound)

	got, err := b.KeyByHash(ctx, "hash-a")
	must(t, err)
	k.Version = 1
	if diff := cmp.Diff(k, got); diff != "" {
		t.Fatalf("KeyByHash mismatch (-want +got):\n%s", diff)
	}
	_, err = b.KeyByHash(ctx, "hash-zz")
	wantErr(t, err, store.ErrNotFound)

	must(t, b.CreateKey(ctx, vkey.Key{ID: "key_adm", Kind: vkey.KindAdmin, Hash: "hash-adm", PrincipalID: p.ID, TeamID: team.ID, CreatedAt: now.Add(time.Second)}))
	list, err := b.ListKeys(ctx, vkey.Filter{Kind: vkey.KindVirtual})
	must(t, err)
	if len(list) != 1 || list[0].ID != "key_a" {
		t.Fatalf("ListKeys(virtual) = %+v", list)
	}

	used := now.Add(time.Hour)
	must(t, b.TouchKeys(ctx, map[string]time.Time{"key_a": used}))
	must(t, b.TouchKeys(ctx, map[string]time.Time{"key_a": now})) // older: ignored
	got, _ = b.Key(ctx, "key_a")
	if got.LastUsedAt == nil || !got.LastUsedAt.Equal(used) || got.Version != 1 {
		t.Fatalf("after touch: last used %v, version %d", got.LastUsedAt, got.Version)
	}

	must(t, b.SuspendKey(ctx, "key_a", "too fast", now))
	must(t, b.SuspendKey(ctx, "key_a", "again", now.Add(time.Minute)))
	sk, _ := b.Key(ctx, "key_a")
	if sk.SuspendedAt == nil || sk.SuspendReason != "too fast" || sk.State(now) != vkey.ErrSuspended || sk.Version != 2 {
		t.Fatalf("suspended key = %+v", sk)
	}
	wantErr(t, b.SuspendKey(ctx, "key_none", "x", now), store.ErrNotFound)
	rk0, err := b.ReinstateKey(ctx, "key_a", 2)
	must(t, err)
	if rk0.SuspendedAt != nil || rk0.SuspendReason != "" || rk0.State(now) != nil || rk0.Version != 3 {
		t.Fatalf("reinstated key = %+v", rk0)
	}
	// Rotation: a new hash; the old one still finds the key, with its grace.
	grace := now.Add(24 * time.Hour)
	rot, err := b.RotateKey(ctx, "key_a", "hash-a2", "gk_new…", now, grace, 3)
	must(t, err)
	if rot.Hash != "hash-a2" || rot.PrevHash != "hash-a" || rot.PrevHint != "gk_abcd…" || !rot.PrevValidUntil.Equal(grace) || rot.Version != 4 {
		t.Fatalf("rotated key = %+v", rot)
	}
	for _, h := range []string{"hash-a", "hash-a2"} {
		if got, err := b.KeyByHash(ctx, h); err != nil || got.ID != "key_a" {
			t.Fatalf("KeyByHash(%s) after rotation: %+v %v", h, got, err)
		}
	}
	_, err = b.RevokeKey(ctx, "key_a", now, 5)
	wantErr(t, err, store.ErrConflict)
	rk, err := b.RevokeKey(ctx, "key_a", now, 4)
	must(t, err)
	if rk.RevokedAt == nil || !rk.RevokedAt.Equal(now) || rk.Version != 5 {
		t.Fatalf("revoked key = %+v", rk)
	}
	rk, err = b.RevokeKey(ctx, "key_a", now.Add(time.Hour), 0)
	must(t, err)
	if !rk.RevokedAt.Equal(now) {
		t.Fatalf("second revoke moved revoked_at to %v", rk.RevokedAt)
	}
	_, err = b.RotateKey(ctx, "key_a", "hash-a3", "", now, grace, 0)
	wantErr(t, err, store.ErrConflict) // revoked keys do not rotate
	_, err = b.RevokeKey(ctx, "key_none", now, 0)
	wantErr(t, err, store.ErrNotFound)
	list, _ = b.ListKeys(ctx, vkey.Filter{Kind: vkey.KindVirtual})
	all, _ := b.ListKeys(ctx, vkey.Filter{IncludeRevoked: true, PrincipalID: p.ID})
	if len(list) != 0 || len(all) != 2 {
		t.Fatalf("ListKeys: %d active virtual, %d all; want 0, 2", len(list), len(all))
	}
}

// testBreakerSuspensionAtAVersion: a breaker's suspension retried at the
// key's version of its trip does not overrule a reinstatement made since
// (ErrConflict, the key stays active); at the key's current version it
// suspends it, once; a trip (version 0) suspends whatever the version; a
// retry of a write that committed unanswered is told it was first.
func testBreakerSuspensionAtAVersion(t *testing.T, b Backend) {
	ctx := context.Background()
	team, p := seed(t, b)
	must(t, b.CreateKey(ctx, vkey.Key{ID: "key_s", Kind: vkey.KindVirtual, Hash: "hash-s", PrincipalID: p.ID, TeamID: team.ID, CreatedAt: now}))
	// The trip's write failed at version 1; an admin reinstated the key
	// meanwhile (version 2).
	_, err := b.ReinstateKey(ctx, "key_s", 1)
	must(t, err)
	first, err := b.SuspendKeyFirst(ctx, "key_s", "too fast", now, 1)
	wantErr(t, err, store.ErrConflict)
	if k, _ := b.Key(ctx, "key_s"); first || k.SuspendedAt != nil || k.Version != 2 {
		t.Fatalf("a retry decided before the reinstatement: first %v, key %+v; want it active at version 2", first, k)
	}
	// Decided at the current version: suspends, once.
	if first, err := b.SuspendKeyFirst(ctx, "key_s", "too fast", now, 2); err != nil || !first {
		t.Fatalf("suspend at the current version: first %v, %v", first, err)
	}
	if first, err := b.SuspendKeyFirst(ctx, "key_s", "too fast", now.Add(time.Second), 2); err != nil || first {
		t.Fatalf("suspend again (another replica's trip): first %v, %v; want suspended already", first, err)
	}
	if k, _ := b.Key(ctx, "key_s"); k.SuspendedAt == nil || k.Version != 3 {
		t.Fatalf("key %+v; want suspended at version 3", k)
	}
	_, err = b.ReinstateKey(ctx, "key_s", 3)
	must(t, err)
	if first, err := b.SuspendKeyFirst(ctx, "key_s", "a new trip", now, 0); err != nil || !first {
		t.Fatalf("a trip: first %v, %v", first, err)
	}
	// A retry whose trip's write committed though its answer was lost (a
	// timeout) finds the key suspended at its own instant: first, once more,
	// so that it records and alerts; another instant or reason is another
	// suspension.
	if first, err := b.SuspendKeyFirst(ctx, "key_s", "a new trip", now, 4); err != nil || !first {
		t.Fatalf("a retry of a write that committed: first %v, %v; want first", first, err)
	}
	if first, err := b.SuspendKeyFirst(ctx, "key_s", "a new trip", now.Add(time.Microsecond), 4); err != nil || first {
		t.Fatalf("a retry of another instant: first %v, %v; want suspended by another", first, err)
	}
	if first, err := b.SuspendKeyFirst(ctx, "key_s", "another reason", now, 4); err != nil || first {
		t.Fatalf("a retry of another reason: first %v, %v; want suspended by another", first, err)
	}
	_, err = b.SuspendKeyFirst(ctx, "key_none", "x", now, 1)
	wantErr(t, err, store.ErrNotFound)
}

// testBreakerTripsAtOneInstant: two replicas' trips of one key (version 0:
// a trip takes no version) that fall on the same microsecond with the same
// reason (both judged on the same shared sums) are two suspensions: only the
// one that changed the key is first, so the suspension is recorded and
// alerted once. Only a retry (at its trip's version) takes a key suspended
// at its own instant and reason for its own write.
func testBreakerTripsAtOneInstant(t *testing.T, b Backend) {
	ctx := context.Background()
	team, p := seed(t, b)
	must(t, b.CreateKey(ctx, vkey.Key{ID: "key_t", Kind: vkey.KindVirtual, Hash: "hash-t", PrincipalID: p.ID, TeamID: team.ID, CreatedAt: now}))
	at := now.Add(1234 * time.Microsecond)
	if first, err := b.SuspendKeyFirst(ctx, "key_t", "spent $0.01 in 5m0s", at, 0); err != nil || !first {
		t.Fatalf("replica a's trip: first %v, %v", first, err)
	}
	if first, err := b.SuspendKeyFirst(ctx, "key_t", "spent $0.01 in 5m0s", at, 0); err != nil || first {
		t.Fatalf("replica b's trip at the same instant: first %v, %v; want suspended already (recorded once)", first, err)
	}
	if first, err := b.SuspendKeyFirst(ctx, "key_t", "spent $0.01 in 5m0s", at, 1); err != nil || !first {
		t.Fatalf("a retry of a's write that committed unanswered: first %v, %v; want first", first, err)
	}
}

func testProviders(t *testing.T, b Backend) {
	ctx := context.Background()
	v0, err := b.ConfigVersion(ctx)
	must(t, err)
	p := provider.Provider{ID: "prv_1", Name: "openai", Type: provider.TypeOpenAI, BaseURL: "https://api.openai.com/v1", Models: []string{"gpt-*"},
		Keys: []provider.UpstreamKey{{ID: "upk_1", Sealed: []byte{1, 2, 3}, CreatedAt: now}}, CreatedAt: now}
	must(t, b.CreateProvider(ctx, p))
	wantErr(t, b.CreateProvider(ctx, provider.Provider{ID: "prv_2", Name: "openai", Type: provider.TypeOpenAI, Models: []string{"x"}, CreatedAt: now}), store.ErrExists)
	got, err := b.Provider(ctx, "openai")
	must(t, err)
	p.Version = 1
	if diff := cmp.Diff(p, got); diff != "" {
		t.Fatalf("Provider mismatch (-want +got):\n%s", diff)
	}
	must(t, b.AddProviderKey(ctx, p.ID, provider.UpstreamKey{ID: "upk_2", Sealed: []byte{4}, CreatedAt: now.Add(time.Second)}))
	wantErr(t, b.AddProviderKey(ctx, "prv_none", provider.UpstreamKey{ID: "upk_3", Sealed: []byte{4}, CreatedAt: now}), store.ErrNotFound)
	got, _ = b.Provider(ctx, p.ID)
	if len(got.Keys) != 2 || got.Version != 2 {
		t.Fatalf("after AddProviderKey: %d keys, version %d", len(got.Keys), got.Version)
	}
	must(t, b.DeleteProviderKey(ctx, p.ID, "upk_1"))
	wantErr(t, b.DeleteProviderKey(ctx, p.ID, "upk_1"), store.ErrNotFound)
	v1, _ := b.ConfigVersion(ctx)
	if v1 <= v0 {
		t.Fatalf("config version did not grow: %d → %d", v0, v1)
	}
	wantErr(t, b.DeleteProvider(ctx, p.ID, 1), store.ErrConflict)
	must(t, b.DeleteProvider(ctx, p.ID, 0))
	list, _ := b.ListProviders(ctx)
	if len(list) != 0 {
		t.Fatalf("providers left: %+v", list)
	}
}

func testPrices(t *testing.T, b Backend) {
	ctx := context.Background()
	v0, _ := b.ConfigVersion(ctx)
	must(t, b.SetPrice(ctx, pricing.Price{Model: "my-model", Input: 1, CachedInput: 2, CacheWrite: 3, Output: 4}))
	must(t, b.SetPrice(ctx, pricing.Price{Model: "my-model", Input: 5, Output: 6}))
	list, err := b.ListPrices(ctx)
	must(t, err)
	if len(list) != 1 || list[0].Input != 5 || list[0].Output != 6 || list[0].CachedInput != 0 {
		t.Fatalf("ListPrices = %+v", list)
	}
	// A long-context tier round-trips (migration 0012).
	tier := pricing.Tier{Above: 200_000, Input: 7, CachedInput: 8, CacheWrite: 9, Output: 10}
	must(t, b.SetPrice(ctx, pricing.Price{Model: "my-model", Input: 5, Output: 6, LongContext: tier}))
	if list, _ := b.ListPrices(ctx); len(list) != 1 || list[0].LongContext != tier {
		t.Fatalf("ListPrices with a tier = %+v", list)
	}
	wantErr(t, b.DeletePrice(ctx, "nope"), store.ErrNotFound)
	must(t, b.DeletePrice(ctx, "my-model"))
	if v1, _ := b.ConfigVersion(ctx); v1 < v0+4 {
		t.Fatalf("config version %d → %d, want +4", v0, v1)
	}
}

func testUsage(t *testing.T, b Backend) {
	ctx := context.Background()
	day1 := time.Date(2026, 11, 25, 23, 0, 0, 0, time.UTC)
	day2 := day1.Add(2 * time.Hour)
	recs := []usage.Record{
		{ID: "req_1", Time: day1, KeyID: "key_a", PrincipalID: "prn_a", TeamID: "team_a", Endpoint: "chat", Model: "gpt-4o", Provider: "openai",
			Status: 200, Tokens: usage.Tokens{Input: 100, CachedInput: 10, Output: 20}, CostMicros: 450, Priced: true, LatencyMillis: 12, UpstreamRequestID: "up_1"},
		{ID: "req_2", Time: day2, KeyID: "key_a", PrincipalID: "prn_a", TeamID: "team_a", Endpoint: "chat", Model: "gpt-4o", Provider: "openai",
			Stream: true, Status: 200, Tokens: usage.Tokens{Input: 50, Output: 5}, CostMicros: 175, Priced: true, Estimated: true, OverReservation: true},
		{ID: "req_3", Time: day2, KeyID: "key_b", PrincipalID: "prn_b", TeamID: "team_b", Endpoint: "messages", Model: "claude-haiku-4-5", Provider: "anthropic",
			Status: 502, ErrorCode: "upstream_error"},
	}
	for _, r := range recs {
		must(t, b.InsertUsage(ctx, r))
	}
	wantErr(t, b.InsertUsage(ctx, recs[0]), store.ErrExists)
	got, err := b.ListUsage(ctx, usage.Query{KeyID: "key_a"})
	must(t, err)
	if diff := cmp.Diff([]usage.Record{recs[1], recs[0]}, got); diff != "" {
		t.Fatalf("ListUsage(key_a) mismatch (-want +got):\n%s", diff)
	}
	got, _ = b.ListUsage(ctx, usage.Query{Since: day2})
	if len(got) != 2 {
		t.Fatalf("ListUsage(since day2) = %d records, want 2", len(got))
	}
	got, _ = b.ListUsage(ctx, usage.Query{Limit: 1})
	if len(got) != 1 {
		t.Fatalf("ListUsage(limit 1) = %d records", len(got))
	}
	sum, err := b.SummarizeUsage(ctx, usage.Query{}, usage.ByKey)
	must(t, err)
	want := []usage.Summary{
		{Group: "key_a", Requests: 2, Tokens: usage.Tokens{Input: 150, CachedInput: 10, Output: 25}, CostMicros: 625, Estimated: 1},
		{Group: "key_b", Requests: 1},
	}
	if diff := cmp.Diff(want, sum); diff != "" {
		t.Fatalf("SummarizeUsage(key) mismatch (-want +got):\n%s", diff)
	}
	days, err := b.SummarizeUsage(ctx, usage.Query{}, usage.ByDay)
	must(t, err)
	if len(days) != 2 || days[0].Group != "2026-11-25" || days[1].Group != "2026-11-26" || days[1].Requests != 2 {
		t.Fatalf("SummarizeUsage(day) = %+v", days)
	}
	if _, err := b.SummarizeUsage(ctx, usage.Query{}, "color"); err == nil {
		t.Fatal("unknown grouping accepted")
	}
}

func testSecrets(t *testing.T, b Backend) {
	ctx := context.Background()
	_, err := b.Secret(ctx, "hmac")
	wantErr(t, err, store.ErrNotFound)
	got, err := b.PutSecretIfAbsent(ctx, "hmac", []byte("first"))
	must(t, err)
	if string(got) != "first" {
		t.Fatalf("first put = %q", got)
	}
	got, err = b.PutSecretIfAbsent(ctx, "hmac", []byte("second"))
	must(t, err)
	if string(got) != "first" {
		t.Fatalf("second put replaced the secret: %q", got)
	}
}

func testPasskeys(t *testing.T, b Backend) {
	ctx := context.Background()
	_, p := seed(t, b)
	pk := mfa.Passkey{ID: "cred-1", PrincipalID: p.ID, Name: "laptop", Credential: []byte(`{"n":1}`), CreatedAt: now}
	must(t, b.AddPasskey(ctx, pk))
	wantErr(t, b.AddPasskey(ctx, pk), store.ErrExists)
	must(t, b.AddPasskey(ctx, mfa.Passkey{ID: "cred-2", PrincipalID: p.ID, Name: "phone", Credential: []byte(`{"n":2}`), CreatedAt: now.Add(time.Second)}))
	list, err := b.Passkeys(ctx, p.ID)
	must(t, err)
	if len(list) != 2 || list[0].ID != "cred-1" || string(list[0].Credential) != `{"n":1}` || list[0].LastUsedAt != nil || !list[0].CreatedAt.Equal(now) {
		t.Fatalf("Passkeys = %+v", list)
	}
	must(t, b.UsePasskey(ctx, "cred-1", []byte(`{"n":3}`), now.Add(time.Minute)))
	wantErr(t, b.UsePasskey(ctx, "cred-x", nil, now), store.ErrNotFound)
	list, _ = b.Passkeys(ctx, p.ID)
	if string(list[0].Credential) != `{"n":3}` || list[0].LastUsedAt == nil || !list[0].LastUsedAt.Equal(now.Add(time.Minute)) {
		t.Fatalf("after use: %+v", list[0])
	}
	wantErr(t, b.DeletePasskey(ctx, "prn_other", "cred-1"), store.ErrNotFound) // only its owner's
	must(t, b.DeletePasskey(ctx, p.ID, "cred-1"))
	if list, _ = b.Passkeys(ctx, p.ID); len(list) != 1 {
		t.Fatalf("after delete: %+v", list)
	}

	c := mfa.Ceremony{ID: "cer-1", PrincipalID: p.ID, Kind: "login", Data: []byte(`{"challenge":"x"}`), ExpiresAt: time.Now().Add(time.Minute).Truncate(time.Microsecond)}
	must(t, b.PutCeremony(ctx, c))
	got, err := b.TakeCeremony(ctx, "cer-1")
	must(t, err)
	if got.PrincipalID != p.ID || got.Kind != "login" || string(got.Data) != string(c.Data) || !got.ExpiresAt.Equal(c.ExpiresAt) {
		t.Fatalf("TakeCeremony = %+v", got)
	}
	_, err = b.TakeCeremony(ctx, "cer-1") // good once
	wantErr(t, err, store.ErrNotFound)
	must(t, b.PutCeremony(ctx, mfa.Ceremony{ID: "cer-old", PrincipalID: p.ID, Kind: "login", Data: []byte(`{}`), ExpiresAt: time.Now().Add(-time.Hour)}))
	must(t, b.PutCeremony(ctx, mfa.Ceremony{ID: "cer-2", PrincipalID: p.ID, Kind: "login", Data: []byte(`{}`), ExpiresAt: time.Now().Add(time.Minute)}))
	_, err = b.TakeCeremony(ctx, "cer-old") // swept when the next one was put
	wantErr(t, err, store.ErrNotFound)
}
