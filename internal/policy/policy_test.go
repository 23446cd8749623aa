package policy

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cedar-policy/cedar-go/types"

	"github.com/gatehouse-gw/gatehouse/internal/org"
)

var update = flag.Bool("update", false, "rewrite golden files")

func mustCompile(t testing.TB, files map[string]string) *Set {
	t.Helper()
	s, err := Compile(files)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func example(t testing.TB) *Set {
	b, err := os.ReadFile("testdata/example.cedar")
	if err != nil {
		t.Fatal(err)
	}
	return mustCompile(t, map[string]string{"example.cedar": string(b)})
}

var monday10 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func sa(roles, teams []string) Principal {
	return Principal{ID: "prn_x", Kind: org.KindServiceAccount, Name: "x", Roles: roles, Teams: teams}
}

func TestDefaults(t *testing.T) {
	s := mustCompile(t, Defaults())
	tests := []struct {
		name    string
		p       Principal
		action  string
		admin   bool
		allow   bool
		reasons string
	}{
		{"member calls a model", sa([]string{"member"}, nil), "chat", false, true, "members-call-models"},
		{"member lists models", sa([]string{"member"}, nil), "models", false, true, "members-call-models"},
		{"member may not administer", sa([]string{"member"}, nil), "keys.create", true, false, ""},
		{"no role: nothing", sa(nil, nil), "chat", false, false, ""},
		{"admin administers", sa([]string{"admin"}, nil), "keys.create", true, true, "admins-administer"},
		{"admin calls models", sa([]string{"admin"}, nil), "messages", false, true, "admins-administer"},
		{"auditor reads usage", sa([]string{"auditor"}, nil), "usage.read", true, true, "auditors-read-usage-and-log"},
		{"auditor reads the log", sa([]string{"auditor"}, nil), "log.read", true, true, "auditors-read-usage-and-log"},
		{"auditor may not create keys", sa([]string{"auditor"}, nil), "keys.create", true, false, ""},
		{"auditor may not call models", sa([]string{"auditor"}, nil), "chat", false, false, ""},
	}
	for _, tt := range tests {
		var d Decision
		if tt.admin {
			d = s.DecideAdmin(AdminCall{Principal: tt.p, Action: tt.action, Area: strings.Split(tt.action, ".")[0], Time: monday10, MFAAgeSeconds: -1})
		} else {
			d = s.Decide(Call{Principal: tt.p, Action: tt.action, Model: "gpt-4o", Provider: "openai", Time: monday10, BudgetRemaining: -1, MFAAgeSeconds: -1})
		}
		if d.Allow != tt.allow || strings.Join(d.Reasons, ",") != tt.reasons {
			t.Errorf("%s: %+v, want allow=%v reasons=%q", tt.name, d, tt.allow, tt.reasons)
		}
	}
}

// TestExampleTable runs the example policies over roles × models × cost,
// time, address and MFA, and compares the explanations with a golden file
// (go test ./internal/policy -run TestExampleTable -update to rewrite it).
func TestExampleTable(t *testing.T) {
	s := example(t)
	var b strings.Builder
	principals := []struct {
		name string
		p    Principal
	}{
		{"member", sa([]string{"member"}, nil)},
		{"intern", sa([]string{"member", "intern"}, nil)},
		{"finance", sa([]string{"member"}, []string{"finance"})},
		{"contractor", sa([]string{"member", "contractor"}, nil)},
		{"user", Principal{ID: "prn_u", Kind: org.KindUser, Name: "u", Roles: []string{"member"}}},
	}
	models := []struct{ model, provider string }{{"gpt-4o", "openai"}, {"claude-opus-4-1", "anthropic"}, {"o1-pro", "openai"}}
	contexts := []struct {
		name string
		c    Call
	}{
		{"office, weekday 10:00, cheap", Call{SourceIP: netip.MustParseAddr("10.1.2.3"), Time: monday10, EstimatedCostMicros: 1000, MFAAgeSeconds: -1}},
		{"home, weekday 10:00, cheap", Call{SourceIP: netip.MustParseAddr("203.0.113.7"), Time: monday10, EstimatedCostMicros: 1000, MFAAgeSeconds: -1}},
		{"office, sunday 23:00, cheap", Call{SourceIP: netip.MustParseAddr("10.1.2.3"), Time: monday10.AddDate(0, 0, 6).Add(13 * time.Hour), EstimatedCostMicros: 1000, MFAAgeSeconds: -1}},
		{"office, weekday, $3 call", Call{SourceIP: netip.MustParseAddr("10.1.2.3"), Time: monday10, EstimatedCostMicros: 3_000_000, MFAAgeSeconds: -1}},
		{"office, weekday, fresh MFA", Call{SourceIP: netip.MustParseAddr("10.1.2.3"), Time: monday10, EstimatedCostMicros: 1000, MFAAgeSeconds: 60}},
	}
	for _, p := range principals {
		for _, m := range models {
			for _, ctx := range contexts {
				c := ctx.c
				c.Principal, c.Action, c.Model, c.Provider, c.BudgetRemaining = p.p, "chat", m.model, m.provider, -1
				d := s.Decide(c)
				verdict := "DENY "
				if d.Allow {
					verdict = "ALLOW"
				}
				fmt.Fprintf(&b, "%-10s %-16s %-28s %s %s\n", p.name, m.model, ctx.name, verdict, strings.Join(d.Reasons, ","))
			}
		}
	}
	golden := filepath.Join("testdata", "example.golden")
	if *update {
		os.WriteFile(golden, []byte(b.String()), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if b.String() != string(want) {
		t.Errorf("decisions differ from %s (run with -update if intended):\n%s", golden, b.String())
	}
}

// TestEvaluationErrorDenies: Cedar skips a policy whose condition errors; a
// forbid that errors must not turn into an allow.
func TestEvaluationErrorDenies(t *testing.T) {
	s := mustCompile(t, map[string]string{"p.cedar": `
@id("allow-members") permit (principal in Role::"member", action, resource);
@id("erroring-forbid") forbid (principal, action, resource is Model) when { context.max_tokens + 9223372036854775807 > 0 };
`})
	d := s.Decide(Call{Principal: sa([]string{"member"}, nil), Action: "chat", Model: "m", MaxTokens: 1, Time: monday10, BudgetRemaining: -1, MFAAgeSeconds: -1})
	if d.Allow || len(d.Errors) != 1 || d.Errors[0] != "erroring-forbid" {
		t.Fatalf("an erroring forbid: %+v, want deny naming it", d)
	}
}

func TestCompileProblems(t *testing.T) {
	_, err := Compile(map[string]string{"bad.cedar": "permit (principal, action, resource)\nwhen { context.nope == 1 };\n"})
	var probs Problems
	if err == nil || !asProblems(err, &probs) || probs[0].File != "bad.cedar" || probs[0].Line != 1 {
		t.Fatalf("unknown attribute: %v", err)
	}
	_, err = Compile(map[string]string{"syntax.cedar": "permit (principal, action, resource);\n\npermit (principal action);\n"})
	if err == nil || !asProblems(err, &probs) || probs[0].Line != 3 || probs[0].Column == 0 {
		t.Fatalf("syntax error: %#v", err)
	}
	_, err = Compile(map[string]string{"a.cedar": `@id("x") permit (principal, action, resource);`, "b.cedar": `@id("x") permit (principal, action, resource);`})
	if err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Fatalf("duplicate ids: %v", err)
	}
}

func asProblems(err error, p *Problems) bool {
	ps, ok := err.(Problems)
	*p = ps
	return ok && len(ps) > 0
}

// FuzzDecide converts arbitrary requests into Cedar entities and context:
// never a panic, and nobody without a role is ever allowed by the defaults.
func FuzzDecide(f *testing.F) {
	s := mustCompile(f, Defaults())
	f.Add("prn_1", "member", "team_a", "chat", "gpt-4o", "openai", "10.0.0.1", int64(100), int64(5))
	f.Add("", "", "", "", "", "", "::1", int64(-1), int64(-1))
	f.Fuzz(func(t *testing.T, id, role, team, action, model, provider, ip string, maxTokens, cost int64) {
		addr, _ := netip.ParseAddr(ip)
		p := Principal{ID: id, Kind: org.KindUser, Roles: []string{role}, Teams: []string{team}}
		d := s.Decide(Call{Principal: p, Action: action, Model: model, Provider: provider, MaxTokens: maxTokens,
			EstimatedCostMicros: cost, SourceIP: addr, Time: monday10, BudgetRemaining: -1, MFAAgeSeconds: -1})
		if d.Allow && role != "member" && role != "admin" {
			t.Fatalf("role %q allowed %s by %v", role, action, d.Reasons)
		}
		s.DecideAdmin(AdminCall{Principal: p, Action: action, Area: model, SourceIP: addr, Time: monday10})
	})
}

func BenchmarkDecide(b *testing.B) {
	for _, n := range []int{20, 200} {
		var src strings.Builder
		src.WriteString(string(defaultsText))
		for i := range n - 3 {
			fmt.Fprintf(&src, "@id(\"team-%d-models\")\npermit (principal in Team::\"team_%d\", action == Action::\"chat\", resource is Model) when { context.estimated_cost_micros < %d && context.model like \"gpt-*\" };\n", i, i, 1000+i)
		}
		s := mustCompile(b, map[string]string{"bench.cedar": src.String()})
		c := Call{Principal: sa([]string{"member"}, []string{"team_5"}), Action: "chat", Model: "gpt-4o", Provider: "openai",
			SourceIP: netip.MustParseAddr("10.0.0.1"), Time: monday10, BudgetRemaining: -1, MFAAgeSeconds: -1}
		b.Run(fmt.Sprintf("%d-policies", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !s.Decide(c).Allow {
					b.Fatal("denied")
				}
			}
		})
	}
}

// TestStepUpPolicy: the built-in step-up policy forbids exactly the sensitive
// actions without a second factor younger than its age, and names itself.
func TestStepUpPolicy(t *testing.T) {
	files := Defaults()
	files[StepUpFile] = StepUpPolicy(5 * time.Minute)
	s, err := Compile(files)
	if err != nil {
		t.Fatal(err)
	}
	admin := sa([]string{"admin"}, nil)
	for _, tt := range []struct {
		action string
		age    int64
		allow  bool
	}{
		{"budgets.create", -1, false},
		{"budgets.create", 300, true},
		{"budgets.create", 301, false},
		{"keys.create_admin", -1, false},
		{"keys.create_admin", 0, true},
		{"policies.apply", 1000, false},
		{"keys.create", -1, true}, // a virtual key is not sensitive
		{"teams.create", -1, true},
		{"budgets.read", -1, true},
	} {
		d := s.DecideAdmin(AdminCall{Principal: admin, Action: tt.action, Area: strings.Split(tt.action, ".")[0], Time: monday10, MFAAgeSeconds: tt.age})
		if d.Allow != tt.allow || (!d.Allow && !slices.Contains(d.Reasons, StepUpID)) {
			t.Errorf("%s with mfa age %d: %+v, want allow=%v", tt.action, tt.age, d, tt.allow)
		}
	}
}

// TestIPValueAsParsed: the source address a policy sees is what Cedar's own
// parser makes of it, for every kind of address.
func TestIPValueAsParsed(t *testing.T) {
	parsed := func(a netip.Addr) types.Value {
		if !a.IsValid() {
			a = netip.IPv4Unspecified()
		}
		ip, err := types.ParseIPAddr(a.Unmap().String())
		if err != nil {
			ip, _ = types.ParseIPAddr("0.0.0.0")
		}
		return ip
	}
	for _, s := range []string{"", "127.0.0.1", "10.1.2.3", "0.0.0.0", "255.255.255.255", "::1", "::", "2001:db8::5",
		"::ffff:10.1.2.3", "::ffff:0:0", "64:ff9b::a01:203", "fe80::1%eth0", "::ffff:10.1.2.3%eth0", "fe80::1"} {
		var a netip.Addr
		if s != "" {
			a = netip.MustParseAddr(s)
		}
		if got, want := ipValue(a), parsed(a); !got.Equal(want) {
			t.Errorf("%q: %v, Cedar parses %v", s, got, want)
		}
	}
}

// TestCachedPrincipalFollowsChanges: a principal's entity is cached between
// decisions, but a change to it (a role revoked or granted, a team, its
// kind or name) is seen at the very next decision, also while other
// decisions run.
func TestCachedPrincipalFollowsChanges(t *testing.T) {
	s := mustCompile(t, map[string]string{"p.cedar": `
@id("members") permit (principal in Role::"member", action == Action::"chat", resource);
@id("team-a") permit (principal in Team::"a", action == Action::"embeddings", resource);
@id("named") permit (principal, action == Action::"responses", resource) when { principal.name == "carol" };
@id("users") permit (principal is User, action == Action::"messages", resource);`})
	decide := func(p Principal, action string) bool {
		return s.Decide(Call{Principal: p, Action: action, Model: "gpt-4o", Provider: "openai", Time: monday10, BudgetRemaining: -1, MFAAgeSeconds: -1}).Allow
	}
	roles := []string{"member"}
	p := Principal{ID: "prn_1", Kind: org.KindServiceAccount, Name: "carol", Roles: roles, Teams: []string{"a"}}
	for _, step := range []struct {
		change func()
		action string
		want   bool
	}{
		{func() {}, "chat", true},
		{func() {}, "chat", true}, // from the cache
		{func() { p.Roles = nil }, "chat", false},
		{func() { p.Roles = roles }, "chat", true},
		{func() { roles[0] = "auditor" }, "chat", false}, // the caller's slice changed in place
		{func() {}, "embeddings", true},
		{func() { p.Teams = []string{"b"} }, "embeddings", false},
		{func() {}, "responses", true},
		{func() { p.Name = "mallory" }, "responses", false},
		{func() {}, "messages", false},
		{func() { p.Kind = org.KindUser }, "messages", true},
		{func() { p.Kind = org.KindServiceAccount }, "messages", false},
	} {
		step.change()
		if got := decide(p, step.action); got != step.want {
			t.Fatalf("%+v %s: allow=%v, want %v", p, step.action, got, step.want)
		}
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q := Principal{ID: "prn_2", Kind: org.KindServiceAccount, Roles: []string{"member"}}
			if i%2 == 1 {
				q.Roles = nil
			}
			for range 50 {
				if got := decide(q, "chat"); got != (i%2 == 0) {
					t.Errorf("roles %v: allow=%v", q.Roles, got)
					return
				}
			}
		}()
	}
	wg.Wait()
}
