package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/client"
	"github.com/gatehouse-gw/gatehouse/internal/provider/sim"
)

// Red team of the whole budget path as it stands (branch rtbudget): the
// hostile shapes of hostile_test.go no longer one at a time on one gateway,
// but mixed in one flood over three PostgreSQL replicas, two leaked keys of
// one team, streams that hang up mid-answer, and an upstream that reads JSON
// like a non-Go server and under-reports or withholds usage. The team's hard
// budget and one key's hard budget must hold together.

// mixedShapes are the admitted shapes of the hostile suite plus the request
// shapes of the brief (no cap, include_usage false, Anthropic streams).
func mixedShapes() []hostileShape {
	var out []hostileShape
	for _, s := range hostileShapes() {
		if s.refused == "" && !s.hangUp && !s.clamp && s.fault == (sim.Fault{}) {
			out = append(out, s)
		}
	}
	return append(out,
		hostileShape{name: "StreamNoUsageAsked", path: "/v1/chat/completions",
			body: `{"model":"gpt-4o","max_tokens":200,"stream":true,"stream_options":{"include_usage":false},` + hostileUser + `}`},
		hostileShape{name: "ChatNoCap", path: "/v1/chat/completions", body: `{"model":"gpt-4o",` + hostileUser + `}`},
		hostileShape{name: "MessagesStream", path: "/v1/messages",
			body: `{"model":"claude-sonnet-4-5","max_tokens":200,"stream":true,` + hostileUser + `}`},
		hostileShape{name: "ResponsesStream", path: "/v1/responses",
			body: `{"model":"gpt-4o","input":"hi","max_output_tokens":200,"stream":true}`},
	)
}

// TestBudgetMixedFloodThreeReplicas: every round fires each mixed shape
// several times at once, spread over three replicas and two keys, under one
// upstream fault; a quarter of the streams hang up after their first bytes.
// After every round: nothing reserved, spent ≤ limit at the team's and the
// key's budget, the upstream's bill ≤ the team's spend, and the usage rows
// add up to it.
func TestBudgetMixedFloodThreeReplicas(t *testing.T) {
	dsn := backends(t)["postgres"](t)
	t.Setenv("GATEHOUSE_KEK", "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=")
	f := hostileFixture(t, dsn, smallPool)
	ctx := context.Background()
	replicas := []*gateway{f.gateway}
	for range 2 {
		replicas = append(replicas, startGateway(t, gwOptions{database: dsn, mutate: smallPool}))
	}
	var urls []string
	for _, g := range replicas {
		urls = append(urls, g.dataURL)
	}
	const teamLimit, keyLimit = int64(120_000), int64(40_000)
	shapes := mixedShapes()
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 60 * time.Second}
	for round, fault := range []sim.Fault{{}, {UnderReport: true}, {CutAfter: 2}, {NoUsage: true}} {
		fault.Hostile = true
		// A fresh team, principal, two keys and budgets per round.
		team, period, hard := fmt.Sprintf("rt-%d", round), "day", true
		if _, err := f.admin.CreateTeam(ctx, team); err != nil {
			t.Fatal(err)
		}
		name, teams := team+"-agent", []string{team}
		if _, err := f.admin.CreatePrincipal(ctx, client.PrincipalInput{Name: &name, Teams: &teams}); err != nil {
			t.Fatal(err)
		}
		var keys, keyIDs []string
		for range 2 {
			k, err := f.admin.CreateKey(ctx, client.KeyInput{Principal: name, Name: "leaked"})
			if err != nil {
				t.Fatal(err)
			}
			keys, keyIDs = append(keys, k.Secret), append(keyIDs, k.ID)
		}
		scope, tl := "team", teamLimit
		tb, err := f.admin.CreateBudget(ctx, client.BudgetInput{Scope: &scope, ScopeID: &team, Period: &period, LimitMicros: &tl, Hard: &hard})
		if err != nil {
			t.Fatal(err)
		}
		kb := setBudget(t, f.admin, keyIDs[0], keyLimit, false)
		for _, g := range replicas[1:] {
			if err := g.srv.Reload(ctx); err != nil {
				t.Fatal(err)
			}
		}
		bills0 := len(f.up.Bills())
		f.up.SetFault(fault)
		statuses := map[int]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 4 * len(shapes) {
			s := shapes[i%len(shapes)]
			wg.Go(func() {
				<-start
				cctx, cancel := context.WithCancel(ctx)
				defer cancel()
				req, _ := http.NewRequestWithContext(cctx, "POST", urls[i%len(urls)]+s.path, strings.NewReader(s.body))
				req.Header.Set("Authorization", "Bearer "+keys[(i/len(urls))%len(keys)])
				if s.path == "/v1/messages" {
					req.Header.Set("anthropic-version", "2023-06-01")
				}
				resp, err := c.Do(req)
				if err != nil {
					return
				}
				defer resp.Body.Close()
				if resp.StatusCode == 200 && strings.Contains(s.body, `"stream":true`) && i%4 == 0 {
					resp.Body.Read(make([]byte, 64))
					cancel() // the caller hangs up mid-stream
				} else {
					io.Copy(io.Discard, resp.Body)
				}
				mu.Lock()
				statuses[resp.StatusCode]++
				mu.Unlock()
			})
		}
		close(start)
		wg.Wait()
		spent := waitSettled(t, f.admin, tb.ID)
		key := waitSettled(t, f.admin, kb.ID)
		billed := billedCost(f.up.Bills()[bills0:])
		t.Logf("fault %+v: statuses %v; team spent %d of %d, key spent %d of %d, upstream billed %d",
			fault, statuses, spent.Spent, teamLimit, key.Spent, keyLimit, billed)
		if statuses[200] == 0 {
			t.Fatalf("no call admitted: the round exercised nothing")
		}
		if spent.Reserved != 0 || key.Reserved != 0 {
			t.Fatalf("still reserved after every call ended: team %d, key %d", spent.Reserved, key.Reserved)
		}
		if spent.Spent > teamLimit || key.Spent > keyLimit {
			t.Fatalf("OVERSHOOT: team %d of %d, key %d of %d", spent.Spent, teamLimit, key.Spent, keyLimit)
		}
		if billed > spent.Spent {
			t.Fatalf("UNDERCHARGED: the upstream billed %d, the team was charged %d", billed, spent.Spent)
		}
		// The usage rows of both keys add up to the team's spend.
		checkUsageAddsUp(t, f, keyIDs, spent.Spent)
	}
}

// checkUsageAddsUp waits for the usage rows of keys to add up to spent.
func checkUsageAddsUp(t *testing.T, f *fixture, keyIDs []string, spent int64) {
	t.Helper()
	var sum int64
	deadline := time.Now().Add(10 * time.Second)
	for {
		sum = 0
		for _, id := range keyIDs {
			recs, err := f.admin.Usage(context.Background(), client.UsageQuery{Key: id, Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				sum += r.CostMicros
			}
		}
		if sum == spent || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if sum != spent {
		t.Fatalf("usage rows charge %d, the team's budget spent %d", sum, spent)
	}
}

// TestCrashMidFloodNeverOvershoots: kill -9 in the middle of a flood that
// exhausts the budget (calls held upstream, ends lagging in the sequencer's
// queue, streams and JSON, an upstream that bills every generation to its
// cap), restart on the same store, flood again until every call is refused.
// Spend never passes the limit, nothing stays reserved, and the upstream's
// bill stays within what was charged: calls cut by the crash are charged in
// full on recovery.
func TestCrashMidFloodNeverOvershoots(t *testing.T) {
	for name, dsn := range backends(t) {
		t.Run(name, func(t *testing.T) {
			args, env := killableArgs(t, dsn(t))
			up := newUpstream(t)
			first := startChild(t, env, args...)
			adm, k := first.agentKey(t, up)
			limit := 30 * worstCase(streamBody)
			b := setBudget(t, adm, k.ID, limit, false)
			up.SetFault(sim.Fault{Hostile: true, ChunkDelay: 2 * time.Millisecond})

			// flood fires from 8 workers, each up to n calls or until stop.
			flood := func(url string, n int, stop func() bool) (ok, refused int) {
				var mu sync.Mutex
				var wg sync.WaitGroup
				for w := range 8 {
					wg.Go(func() {
						for i := 0; i < n && !stop(); i++ {
							body := attackBody
							if (w+i)%2 == 0 {
								body = streamBody
							}
							req, _ := http.NewRequest("POST", url+"/v1/chat/completions", strings.NewReader(body))
							req.Header.Set("Authorization", "Bearer "+k.Secret)
							resp, err := http.DefaultClient.Do(req)
							if err != nil {
								continue // the gateway died under us
							}
							io.Copy(io.Discard, resp.Body)
							resp.Body.Close()
							mu.Lock()
							switch resp.StatusCode {
							case 200:
								ok++
							case 429:
								refused++
							}
							mu.Unlock()
						}
					})
				}
				wg.Wait()
				return ok, refused
			}
			// Kill once a dozen calls reached the upstream, with more in flight.
			calls0 := up.Calls.Load()
			killed := make(chan struct{})
			go func() {
				deadline := time.Now().Add(20 * time.Second)
				for up.Calls.Load()-calls0 < 12 && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				first.cmd.Process.Kill()
				first.cmd.Wait()
				close(killed)
			}()
			ok1, _ := flood(first.dataURL, 1<<30, func() bool {
				select {
				case <-killed:
					return true
				default:
					return false
				}
			})
			second := startChild(t, env, args...)
			adm = client.New(second.adminURL, first.adminKey)
			// Flood again until two rounds in a row are refused whole.
			var ok2, dry int
			for round := 0; round < 40 && dry < 2; round++ {
				o, r := flood(second.dataURL, 8, func() bool { return false })
				ok2 += o
				if o == 0 && r > 0 {
					dry++
				} else {
					dry = 0
				}
			}
			cur := waitSettled(t, adm, b.ID)
			billed := billedCost(up.Bills())
			t.Logf("%d calls answered before the kill, %d after; spent %d of %d (reserved %d), upstream billed %d",
				ok1, ok2, cur.Spent, limit, cur.Reserved, billed)
			if dry < 2 {
				t.Fatalf("the budget never ran out: the attack did not reach the limit")
			}
			if cur.Reserved != 0 {
				t.Fatalf("%d micros still reserved after recovery", cur.Reserved)
			}
			if cur.Spent > limit {
				t.Fatalf("OVERSHOOT after kill -9: spent %d of %d", cur.Spent, limit)
			}
			if billed > cur.Spent {
				t.Fatalf("UNDERCHARGED after kill -9: the upstream billed %d, the budget was charged %d", billed, cur.Spent)
			}
		})
	}
}

// TestPriorityTierChargedAtItsPremium (red team rtbudget): OpenAI bills a
// call with service_tier "priority" at a premium (up to about twice the
// standard price). The worst case was doubled for it, but the settlement
// priced the reported tokens at the standard price, so a key sending every
// call at priority was charged about half of what the upstream billed and
// could spend about twice its hard budget. The charge now carries the same
// premium the reservation assumed.
func TestPriorityTierChargedAtItsPremium(t *testing.T) {
	f := hostileFixture(t, "", nil)
	ctx := context.Background()
	k, err := f.admin.CreateKey(ctx, client.KeyInput{Principal: "agent", Name: "priority"})
	if err != nil {
		t.Fatal(err)
	}
	b := setBudget(t, f.admin, k.ID, hostileLimit, false)
	for _, body := range []string{
		`{"model":"gpt-4o","max_tokens":50,"service_tier":"priority",` + hostileUser + `}`,
		`{"model":"gpt-4o","max_tokens":50,"service_tier":"priority","stream":true,` + hostileUser + `}`,
	} {
		req, _ := http.NewRequest("POST", f.dataURL+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+k.Secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	recs := f.usageOf(t, k.ID, 2)
	if len(recs) != 2 {
		t.Fatalf("%d usage records", len(recs))
	}
	var sum int64
	for _, r := range recs {
		standard := (r.InputTokens*hostileIn + r.OutputTokens*hostileOut + 999_999) / 1_000_000
		if r.Estimated || r.OutputTokens == 0 {
			t.Fatalf("call %s not metered: %+v", r.RequestID, r)
		}
		if r.CostMicros < 2*standard-1 {
			t.Errorf("call %s at priority charged %d micros, the standard price of its tokens is %d: the premium was not charged",
				r.RequestID, r.CostMicros, standard)
		}
		sum += r.CostMicros
	}
	if got := waitSettled(t, f.admin, b.ID); got.Spent != sum {
		t.Errorf("the budget spent %d, the usage records charge %d", got.Spent, sum)
	}
}
