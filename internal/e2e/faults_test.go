package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/faultnet"
	"github.com/gatehouse-gw/gatehouse/internal/provider/sim"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// Fault tests (issue #11): replicas on one PostgreSQL schema, each through
// its own fault proxy (package faultnet) that the test kills, freezes or
// resets. Pools are small (a few connections per replica) so the suite also
// passes while another process holds most of the server's connections.

const faultInstanceTimeout = 3 * time.Second

// cluster is n replicas sharing one schema; replica i reaches PostgreSQL
// through proxies[i]; fx is replica 0 with providers and a key.
type cluster struct {
	fx      *fixture
	gws     []*gateway
	proxies []*faultnet.Proxy
	db      *sqlstore.DB // the test's own view of the store (no proxy)
	app     string       // application_name of the replicas' connections
}

// connections counts the replicas' open connections to PostgreSQL.
func (c *cluster) connections(t *testing.T) int {
	return c.count(t, `SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = $1`, c.app)
}

// admin is the admin API of replica i.
func (c *cluster) admin(i int) *client.Client {
	return client.New("http://"+c.gws[i].srv.AdminAddr(), c.fx.adminKey)
}

func viaProxy(t *testing.T, dsn, app string) (*faultnet.Proxy, string) {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	p, err := faultnet.Listen(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	u.Host = p.Addr()
	return p, u.String()
}

func faultConfig(c *config.Config) {
	c.InstanceTimeout = config.Duration(faultInstanceTimeout)
	smallPool(c)
	c.Store.Timeout = config.Duration(2 * time.Second)
	c.Store.StatementTimeout = config.Duration(2 * time.Second)
	c.Store.ConnectTimeout = config.Duration(2 * time.Second)
	c.ShutdownTimeout = config.Duration(3 * time.Second)
}

func startCluster(t *testing.T, n int) *cluster { return startClusterWith(t, n, nil) }

func startClusterWith(t *testing.T, n int, extra func(*config.Config)) *cluster {
	t.Helper()
	dsn := backends(t)["postgres"](t)
	// One key-encryption key for the cluster, in a file the first replica
	// creates (not GATEHOUSE_KEK: t.Setenv would forbid t.Parallel).
	kek := filepath.Join(t.TempDir(), "kek.key")
	mutate := func(c *config.Config) {
		faultConfig(c)
		c.KEKFile = kek
		if extra != nil {
			extra(c)
		}
	}
	c := &cluster{app: fmt.Sprintf("gh-e2e-%d", time.Now().UnixNano())}
	for i := range n {
		p, via := viaProxy(t, dsn, c.app)
		c.proxies = append(c.proxies, p)
		if i == 0 {
			c.fx = newFixture(t, gwOptions{database: via, mutate: mutate})
			c.gws = append(c.gws, c.fx.gateway)
			continue
		}
		c.gws = append(c.gws, startGateway(t, gwOptions{database: via, mutate: mutate}))
	}
	db, err := postgres.OpenWith(context.Background(), dsn, testStoreOptions)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c.db = db
	return c
}

// count runs a COUNT query on the test's own connection.
func (c *cluster) count(t *testing.T, q string, args ...any) int {
	t.Helper()
	var n int
	if err := c.db.SQL().QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitFor polls cond until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

type callResult struct {
	status int
	id     string
}

// fire sends n calls spread over urls, all at once, and returns each status
// and request id.
func fire(urls []string, key string, n int) []callResult {
	out := make([]callResult, n)
	var wg sync.WaitGroup
	hc := &http.Client{Timeout: 60 * time.Second}
	for i := range n {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", urls[i%len(urls)]+"/v1/chat/completions", strings.NewReader(attackBody))
			req.Header.Set("Authorization", "Bearer "+key)
			resp, err := hc.Do(req)
			if err != nil {
				out[i] = callResult{status: -1}
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			out[i] = callResult{status: resp.StatusCode, id: resp.Header.Get("X-Request-Id")}
		})
	}
	wg.Wait()
	return out
}

// checkClosedOnce: no open start and no reservation left, and no request has
// more than one end record.
func (c *cluster) checkClosedOnce(t *testing.T, within time.Duration) {
	t.Helper()
	ok := waitFor(within, func() bool {
		return c.count(t, `SELECT COUNT(*) FROM ledger_open`) == 0 && c.count(t, `SELECT COUNT(*) FROM reservations`) == 0
	})
	if !ok {
		t.Fatalf("%v after recovery: %d open starts, %d reservations left", within,
			c.count(t, `SELECT COUNT(*) FROM ledger_open`), c.count(t, `SELECT COUNT(*) FROM reservations`))
	}
	if n := c.count(t, `SELECT COUNT(*) FROM (SELECT request_id FROM ledger_entries WHERE data LIKE '%"kind":"call.end"%' GROUP BY request_id HAVING COUNT(*) > 1) d`); n != 0 {
		t.Fatalf("%d requests have more than one end record", n)
	}
}

func statuses(rs []callResult) map[int]int {
	m := map[int]int{}
	for _, r := range rs {
		m[r.status]++
	}
	return m
}

// TestFaultShortOutage: one replica loses PostgreSQL for less than
// instance_timeout while calls are in flight. Its calls' settlements and end
// records wait in memory and are written when the store is back: nothing
// stays held or open, every request has one end record, and the budget's
// spend equals the sum of the settlements (the usage records).
func TestFaultShortOutage(t *testing.T) {
	t.Parallel() // mostly waits on outages and timeouts
	// Short means well inside instance_timeout: the outage lasts until the
	// in-flight calls end (their upstream answers in 1.5 s) and one more
	// call is refused. With a 3 s timeout, a fixed 1.5 s outage, the refused
	// call's own wait and a heartbeat every 750 ms outlasted it on a loaded
	// machine: the others swept replica 0 (charged its calls in full) and the
	// test failed on spend, not on the promise it tests.
	const instanceTimeout = 20 * time.Second
	c := startClusterWith(t, 3, func(c *config.Config) { c.InstanceTimeout = config.Duration(instanceTimeout) })
	ctx := context.Background()
	bud := setBudget(t, c.fx.admin, c.fx.keyID, 1_000_000_000, false)
	for _, g := range c.gws { // every replica has the budget before the attack
		g.srv.Reload(ctx)
	}
	c.fx.up.SetFault(sim.Fault{Latency: 1500 * time.Millisecond})
	urls := []string{c.gws[0].dataURL, c.gws[1].dataURL, c.gws[2].dataURL}
	var results []callResult
	done := make(chan struct{})
	go func() { results = fire(urls, c.fx.key, 30); close(done) }()
	// Every call is admitted (a reservation and a durable start each) before the outage.
	if !waitFor(10*time.Second, func() bool { return c.count(t, `SELECT COUNT(*) FROM ledger_open`) == 30 }) {
		t.Fatalf("only %d of 30 calls started", c.count(t, `SELECT COUNT(*) FROM ledger_open`))
	}
	// A few connections per replica, however many calls are in flight: the
	// pool (4) and the change listener (1).
	if n := c.connections(t); n > 3*(4+1) {
		t.Errorf("3 replicas hold %d connections under load; want at most 15", n)
	}
	c.proxies[0].Kill()
	<-done // replica 0's calls end while its store is away
	// A call to the cut-off replica fails closed meanwhile.
	cut := fire(urls[:1], c.fx.key, 1)[0]
	c.proxies[0].Restore()
	if cut.status != http.StatusServiceUnavailable {
		t.Errorf("a call during the outage got %d, want 503", cut.status)
	}
	t.Logf("calls: %v", statuses(results))
	for _, r := range results {
		if r.status != 200 {
			t.Fatalf("an in-flight call failed with %d: it was admitted before the outage and its upstream answered", r.status)
		}
	}
	c.checkClosedOnce(t, 10*time.Second)
	for i, g := range c.gws {
		if strings.Contains(g.logs.String(), "settled abandoned reservations") {
			t.Fatalf("replica %d swept abandoned reservations: the outage outlasted instance_timeout (%v), not a short one", i, instanceTimeout)
		}
	}
	// Spend = the sum of the settlements, once every usage record is stored.
	var recs []client.UsageRecord
	waitFor(10*time.Second, func() bool {
		recs, _ = c.admin(1).Usage(ctx, client.UsageQuery{Key: c.fx.keyID, Limit: 1000})
		return len(recs) >= 30
	})
	var sum int64
	for _, r := range recs {
		sum += r.CostMicros
	}
	after, err := c.admin(1).Budget(ctx, bud.ID)
	if err != nil {
		t.Fatal(err)
	}
	if after.Reserved != 0 || after.Spent != sum {
		t.Fatalf("budget spent %d reserved %d; usage records add up to %d (%d records)", after.Spent, after.Reserved, sum, len(recs))
	}
	for _, g := range c.gws {
		if n := strings.Count(g.logs.String(), "settle failed"); n > 0 {
			t.Logf("replica logged %d deferred settlements", n)
		}
	}
}

// TestFaultLongOutage: one replica loses PostgreSQL for longer than
// instance_timeout with calls in flight. Another replica fences it and
// charges those calls in full; when the store comes back the replica starts
// a new epoch before it admits again, so no call admitted after the outage
// is swept, and every request has exactly one end record.
func TestFaultLongOutage(t *testing.T) {
	t.Parallel() // mostly waits on outages and timeouts
	c := startCluster(t, 2)
	ctx := context.Background()
	bud := setBudget(t, c.fx.admin, c.fx.keyID, 1_000_000_000, false)
	for _, g := range c.gws {
		g.srv.Reload(ctx)
	}
	c.fx.up.SetFault(sim.Fault{Latency: 3 * faultInstanceTimeout})
	var inFlight []callResult
	done := make(chan struct{})
	go func() { inFlight = fire([]string{c.gws[0].dataURL}, c.fx.key, 5); close(done) }()
	if !waitFor(10*time.Second, func() bool { return c.count(t, `SELECT COUNT(*) FROM ledger_open`) == 5 }) {
		t.Fatal("calls not in flight")
	}
	c.proxies[0].Kill()
	// The other replica sweeps the silent one: its holds charged in full.
	if !waitFor(5*faultInstanceTimeout, func() bool { return c.count(t, `SELECT COUNT(*) FROM reservations`) == 0 }) {
		t.Fatal("the silent replica's reservations were never swept")
	}
	swept, err := c.admin(1).Budget(ctx, bud.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := 5 * worstCase(attackBody); swept.Spent != want {
		t.Fatalf("swept holds charged %d, want %d (in full)", swept.Spent, want)
	}
	c.proxies[0].Restore()
	// New calls on the replica that came back, with a long sweep running
	// on the other: none of them may be swept.
	c.fx.up.SetFault(sim.Fault{Latency: 2 * faultInstanceTimeout})
	var later []callResult
	ok := waitFor(20*time.Second, func() bool {
		later = fire([]string{c.gws[0].dataURL}, c.fx.key, 5)
		return statuses(later)[200] == 5
	})
	if !ok {
		t.Fatalf("the replica did not serve again after the outage: %v", statuses(later))
	}
	<-done
	t.Logf("in flight through the outage: %v", statuses(inFlight))
	c.checkClosedOnce(t, 10*time.Second)
	for _, r := range later {
		var incomplete int
		c.db.SQL().QueryRow(`SELECT COUNT(*) FROM ledger_entries WHERE request_id = $1 AND data LIKE '%"error_code":"incomplete"%'`, r.id).Scan(&incomplete)
		if incomplete != 0 {
			t.Fatalf("call %s, admitted after the outage, was swept as abandoned", r.id)
		}
		if n := c.count(t, `SELECT COUNT(*) FROM ledger_entries WHERE request_id = $1`, r.id); n != 2 {
			t.Fatalf("call %s has %d records, want a start and one end", r.id, n)
		}
	}
	if !strings.Contains(c.gws[0].logs.String(), "starting a new epoch") {
		t.Fatal("the fenced replica did not start a new epoch")
	}
}

// TestFaultBlackHole: PostgreSQL stops answering (connections stay open, no
// byte flows). Requests to that replica fail closed with 503 and Retry-After
// within the store deadline instead of hanging; /readyz answers not-ready;
// after the connections are reset the replica serves again.
func TestFaultBlackHole(t *testing.T) {
	t.Parallel() // mostly waits on outages and timeouts
	c := startCluster(t, 2)
	if r := fire([]string{c.gws[0].dataURL}, c.fx.key, 1)[0]; r.status != 200 {
		t.Fatalf("before the fault: %d", r.status)
	}
	c.proxies[0].Freeze()
	time.Sleep(2500 * time.Millisecond) // past the key cache and the liveness window
	hc := &http.Client{Timeout: 30 * time.Second}
	start := time.Now()
	req, _ := http.NewRequest("POST", c.gws[0].dataURL+"/v1/chat/completions", strings.NewReader(attackBody))
	req.Header.Set("Authorization", "Bearer "+c.fx.key)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	t.Logf("black hole: %d in %v", resp.StatusCode, took.Round(time.Millisecond))
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("want 503 with Retry-After, got %d %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if took > 15*time.Second { // generous functional bound: it did not hang
		t.Fatalf("the request waited %v on a black-holed store", took)
	}
	rc := &http.Client{Timeout: 5 * time.Second}
	rr, err := rc.Get(c.gws[0].dataURL + "/readyz")
	if err != nil {
		t.Fatalf("/readyz did not answer: %v", err)
	}
	body, _ := io.ReadAll(rr.Body)
	rr.Body.Close()
	if rr.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/readyz during a black hole: %d %s", rr.StatusCode, body)
	}
	t.Logf("/readyz: %s", strings.TrimSpace(string(body)))
	if lr, err := rc.Get(c.gws[0].dataURL + "/livez"); err != nil || lr.StatusCode != 200 {
		t.Fatalf("/livez during a black hole: %v %v", lr, err)
	}
	// The other replica is unaffected.
	if r := fire([]string{c.gws[1].dataURL}, c.fx.key, 1)[0]; r.status != 200 {
		t.Fatalf("the healthy replica: %d", r.status)
	}
	c.proxies[0].Reset()
	c.proxies[0].Thaw()
	if !waitFor(20*time.Second, func() bool { return fire([]string{c.gws[0].dataURL}, c.fx.key, 1)[0].status == 200 }) {
		t.Fatal("no recovery after the reset")
	}
	c.checkClosedOnce(t, 10*time.Second)
}

// TestFaultKillReplicaUnderLoad: kill -9 of one replica (a child process)
// with calls in flight, while another serves: the dead one's holds are
// charged in full after instance_timeout, and the budget never overshoots.
func TestFaultKillReplicaUnderLoad(t *testing.T) {
	dsn := backends(t)["postgres"](t)
	kek := "BgYGBgYGBgYGBgYGBgYGBgYGBgYGBgYGBgYGBgYGBgY="
	t.Setenv("GATEHOUSE_KEK", kek)
	env := []string{"GATEHOUSE_INSTANCE_TIMEOUT=" + faultInstanceTimeout.String(), "GATEHOUSE_KEK=" + kek}
	victim := startChild(t, env, "--data-dir", t.TempDir()+"/data", "--database", dsn)
	up := newUpstream(t)
	adm, k := victim.agentKey(t, up)
	ctx := context.Background()
	worst := worstCase(attackBody)
	limit := 12 * worst
	b := setBudget(t, adm, k.ID, limit, false)
	survivor := startGateway(t, gwOptions{database: dsn, mutate: faultConfig})
	db, err := postgres.OpenWith(ctx, dsn, testStoreOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	up.SetFault(sim.Fault{Latency: time.Minute}) // the victim's calls hang upstream until it dies
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() { fire([]string{victim.dataURL}, k.Secret, 1) })
	}
	if !waitFor(10*time.Second, func() bool {
		var n int
		db.SQL().QueryRow(`SELECT COUNT(*) FROM reservations`).Scan(&n)
		return n == 6
	}) {
		t.Fatal("victim's calls not in flight")
	}
	victim.cmd.Process.Kill()
	victim.cmd.Wait()
	wg.Wait()
	// Load on the survivor meanwhile: it may spend only what is left.
	up.SetFault(sim.Fault{})
	var admitted atomic.Int64
	for range 3 {
		for _, r := range fire([]string{survivor.dataURL}, k.Secret, 4) {
			if r.status == 200 {
				admitted.Add(1)
			}
		}
	}
	cur := client.Budget{}
	if !waitFor(5*faultInstanceTimeout, func() bool {
		cur, _ = client.New("http://"+survivor.srv.AdminAddr(), victim.adminKey).Budget(ctx, b.ID)
		return cur.Reserved == 0 && cur.Spent >= 6*worst
	}) {
		t.Fatalf("the dead replica's holds were not charged: spent %d reserved %d", cur.Spent, cur.Reserved)
	}
	t.Logf("kill -9: spent %d of %d (%d held by the dead replica, charged in full; %d calls admitted on the survivor)", cur.Spent, limit, 6*worst, admitted.Load())
	if cur.Spent > limit {
		t.Fatalf("OVERSHOOT: spent %d of %d", cur.Spent, limit)
	}
	var open int
	waitFor(5*faultInstanceTimeout, func() bool {
		db.SQL().QueryRow(`SELECT COUNT(*) FROM ledger_open`).Scan(&open)
		return open == 0
	})
	if open != 0 {
		t.Fatalf("%d open starts left after the sweep", open)
	}
}

// TestFaultDiskFull: the embedded store's disk fills while calls are in
// flight and frees again. The calls' settlements, end records and usage
// records wait in memory and are written once there is room, without a
// restart: nothing stays held or open.
func TestFaultDiskFull(t *testing.T) {
	t.Parallel() // mostly waits on outages and timeouts
	var disk faultnet.Disk
	f := newFixture(t, gwOptions{mutate: func(c *config.Config) {
		faultConfig(c)
		c.WrapSQLite = disk.Connector
	}})
	ctx := context.Background()
	bud := setBudget(t, f.admin, f.keyID, 1_000_000_000, false)
	f.srv.Reload(ctx)
	db, err := sqlite.Open(ctx, filepath.Join(f.srv.DataDir(), sqlite.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	count := func(q string) int {
		var n int
		if err := db.SQL().QueryRow(q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	f.up.SetFault(sim.Fault{Latency: time.Second})
	var results []callResult
	done := make(chan struct{})
	go func() { results = fire([]string{f.dataURL}, f.key, 6); close(done) }()
	if !waitFor(10*time.Second, func() bool { return count(`SELECT COUNT(*) FROM ledger_open`) == 6 }) {
		t.Fatal("calls not in flight")
	}
	disk.Fill()
	<-done
	if s := statuses(results); s[200] != 6 {
		t.Fatalf("in-flight calls: %v", s)
	}
	if n := count(`SELECT COUNT(*) FROM reservations`); n != 6 {
		t.Fatalf("%d reservations while the disk is full, want the 6 held ones", n)
	}
	disk.Free()
	if !waitFor(10*time.Second, func() bool {
		return count(`SELECT COUNT(*) FROM reservations`) == 0 && count(`SELECT COUNT(*) FROM ledger_open`) == 0
	}) {
		t.Fatalf("10 s after the disk was freed: %d reservations, %d open starts", count(`SELECT COUNT(*) FROM reservations`), count(`SELECT COUNT(*) FROM ledger_open`))
	}
	var recs []client.UsageRecord
	waitFor(10*time.Second, func() bool {
		recs, _ = f.admin.Usage(ctx, client.UsageQuery{Key: f.keyID, Limit: 100})
		return len(recs) >= 6
	})
	var sum int64
	for _, r := range recs {
		sum += r.CostMicros
	}
	after, err := f.admin.Budget(ctx, bud.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 6 || after.Spent != sum || after.Reserved != 0 {
		t.Fatalf("%d usage records adding up to %d; budget spent %d reserved %d", len(recs), sum, after.Spent, after.Reserved)
	}
}

// patient raises the store's deadlines for the proofs of money that fire
// hundreds of calls at once, on a shared two-core machine, under the race
// detector: there the 5 s bound on a request's store work (a promise of
// its own, proven above) can be reached by queueing alone, and a 503 would
// blur what those tests prove. On PostgreSQL the pool stays small (the
// calls queue for it, which is the point of a deadline this long); the
// embedded store gets more readers.
func patient(c *config.Config) {
	c.Store.Timeout, c.Store.StatementTimeout = config.Duration(time.Minute), config.Duration(time.Minute)
	if c.Database == "" {
		c.Store.MaxOpenConns = 32
	}
}
