// Package policy decides every data-plane call and every admin API call with
// Cedar (github.com/cedar-policy/cedar-go): default deny, forbid beats permit,
// roles and teams as entity groups, and the ids of the policies that decided.
//
// A Set is compiled once (parsed and validated against the shipped schema) and
// held in the request snapshot; Decide touches no store. Any evaluation error
// denies: Cedar skips a policy whose condition errors, which for a forbid would
// otherwise allow.
package policy

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
	"github.com/cedar-policy/cedar-go/x/exp/schema"
	"github.com/cedar-policy/cedar-go/x/exp/schema/validate"

	"github.com/gatehouse-gw/gatehouse/internal/org"
)

//go:embed schema.cedarschema
var schemaText []byte

//go:embed defaults.cedar
var defaultsText []byte

// Schema returns the Cedar schema policies are validated against.
func Schema() []byte { return schemaText }

// Defaults returns the default policy files.
func Defaults() map[string]string { return map[string]string{"defaults.cedar": string(defaultsText)} }

// StepUpID names the built-in step-up policy (step_up_max_age).
const StepUpID = "builtin-step-up"

// StepUpFile is the file name the built-in step-up policy compiles under.
const StepUpFile = "builtin-step-up.cedar"

// SensitiveActions need a recent second factor when step_up_max_age is set:
// creating admin keys, changing budgets, applying or rolling back policies,
// reinstating or rotating keys (signing keys included), rotating the log's key,
// adding providers or their keys, resetting a user's second factors, an
// administrator setting a user's password (which would let an admin key log
// in as a user without a factor, enrol one and step up), clearing lockouts
// (which would let an admin key guess a user's TOTP five codes at a time,
// without end).
var SensitiveActions = []string{"keys.create_admin", "keys.reinstate", "keys.rotate", "budgets.create", "budgets.update",
	"policies.apply", "policies.rollback", "log.rotate", "providers.create", "providers.update", "principals.reset_factors",
	"principals.set_password", "principals.unlock"}

// StepUpPolicy returns the built-in policy that forbids SensitiveActions
// unless the caller passed a second factor within maxAge.
func StepUpPolicy(maxAge time.Duration) string {
	acts := make([]string, len(SensitiveActions))
	for i, a := range SensitiveActions {
		acts[i] = fmt.Sprintf("Action::%q", a)
	}
	return fmt.Sprintf(`// Built in: step_up_max_age is %s.
@id(%q)
forbid (principal, action in [%s], resource)
when { context.mfa_age_seconds < 0 || context.mfa_age_seconds > %d };
`, maxAge, StepUpID, strings.Join(acts, ", "), int64(maxAge/time.Second))
}

// Set is a compiled, validated set of policies.
type Set struct {
	ps    *cedar.PolicySet
	files map[string]string
	// principals caches each principal's entity: it is the same on every
	// call of that principal, and building it (a set of parents, a record
	// with its hash) was a fifth of a decision's allocations. An entry is
	// used only while the principal it was built from is unchanged (kind,
	// name, teams, roles compared on every use), so a role revoked is a
	// role gone at the next decision. Nil: no cache.
	principals *principalCache
}

// maxCachedPrincipals bounds the cache; past it, entities are built per
// decision as before (principals come from the store, not from callers).
const maxCachedPrincipals = 10000

type principalCache struct {
	m sync.Map // principal id → *principalEntity
	n atomic.Int64
}

type principalEntity struct {
	p   Principal // a copy: the slices are not the caller's
	uid types.EntityUID
	e   types.Entity
}

// Files returns the source files of s.
func (s *Set) Files() map[string]string { return maps.Clone(s.files) }

// Problem is one compile or validation error, with its place.
type Problem struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Policy  string `json:"policy,omitempty"`
	Message string `json:"message"`
}

func (p Problem) String() string {
	if p.Policy != "" {
		return fmt.Sprintf("%s:%d:%d: policy %s: %s", p.File, p.Line, p.Column, p.Policy, p.Message)
	}
	return fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Column, p.Message)
}

// Problems is a list of problems; it is the error Compile returns.
type Problems []Problem

func (ps Problems) Error() string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, "\n")
}

var validator = func() *validate.Validator {
	var s schema.Schema
	s.SetFilename("schema.cedarschema")
	if err := s.UnmarshalCedar(schemaText); err != nil {
		panic("policy: shipped schema does not parse: " + err.Error())
	}
	r, err := s.Resolve()
	if err != nil {
		panic("policy: shipped schema does not resolve: " + err.Error())
	}
	return validate.New(r)
}()

// Compile parses files (name → Cedar text) and validates every policy
// against the schema. Policy ids come from an @id("…") annotation, or are
// "<file>:<line>". Ids must be unique.
func Compile(files map[string]string) (*Set, error) {
	var probs Problems
	ps := cedar.NewPolicySet()
	names := slices.Sorted(maps.Keys(files))
	if len(names) == 0 {
		return nil, Problems{{Message: "no policy files"}}
	}
	for _, name := range names {
		list, err := cedar.NewPolicyListFromBytes(name, []byte(files[name]))
		if err != nil {
			probs = append(probs, parseProblem(name, err))
			continue
		}
		for _, p := range list {
			pos := p.Position()
			id := fmt.Sprintf("%s:%d", name, pos.Line)
			if v, ok := p.Annotations()["id"]; ok && v != "" {
				id = string(v)
			}
			if ps.Get(cedar.PolicyID(id)) != nil {
				probs = append(probs, Problem{File: name, Line: pos.Line, Column: pos.Column, Policy: id, Message: "duplicate policy id"})
				continue
			}
			if err := validator.Policy(id, (*xast.Policy)(p.AST())); err != nil {
				probs = append(probs, Problem{File: name, Line: pos.Line, Column: pos.Column, Policy: id, Message: err.Error()})
				continue
			}
			ps.Add(cedar.PolicyID(id), p)
		}
	}
	if len(probs) > 0 {
		return nil, probs
	}
	return &Set{ps: ps, files: maps.Clone(files), principals: &principalCache{}}, nil
}

// parseProblem turns a Cedar parse error ("file:line:col: msg" at best) into
// a Problem.
func parseProblem(name string, err error) Problem {
	msg := err.Error()
	p := Problem{File: name, Message: msg}
	if m := positionRE.FindStringSubmatch(msg); m != nil {
		p.Line, _ = strconv.Atoi(m[1])
		p.Column, _ = strconv.Atoi(m[2])
		p.Message = strings.TrimSpace(positionRE.ReplaceAllString(msg, ""))
	}
	return p
}

// positionRE finds "<input>:3:25" or "file.cedar:3:25" in a parse error.
var positionRE = regexp.MustCompile(`(?:<input>|[\w./-]+\.cedar):(\d+):(\d+):?`)

// Decision is the outcome of one request.
type Decision struct {
	Allow   bool     `json:"allow"`
	Reasons []string `json:"reasons"` // ids of the policies that decided (permits when allowed, forbids when denied)
	Errors  []string `json:"errors,omitempty"`
}

// Principal is who asks.
type Principal struct {
	ID    string
	Kind  org.Kind
	Name  string
	Teams []string
	Roles []string
}

// FromOrg converts an org principal.
func FromOrg(p org.Principal) Principal {
	return Principal{ID: p.ID, Kind: p.Kind, Name: p.Name, Teams: p.Teams, Roles: p.Roles}
}

// Call is a data-plane request, as policies see it.
type Call struct {
	Principal           Principal
	Action              string // chat, completions, embeddings, responses, messages, models
	Model               string
	Provider            string
	Stream              bool
	MaxTokens           int64
	InputTokens         int64
	EstimatedCostMicros int64
	BudgetRemaining     int64 // -1: no budget applies
	SourceIP            netip.Addr
	Time                time.Time // in the configured zone
	KeyAgeDays          int64
	MFAAgeSeconds       int64 // -1: no MFA
	PoPBound            bool
}

// AdminCall is an admin API request.
type AdminCall struct {
	Principal     Principal
	Action        string // e.g. "keys.create"
	Area          string // e.g. "keys"
	SourceIP      netip.Addr
	Time          time.Time
	MFAAgeSeconds int64
}

var (
	actionType = types.EntityType("Action")
	adminRead  = types.NewEntityUID(actionType, "admin.read")
	adminWrite = types.NewEntityUID(actionType, "admin.write")
)

// principal adds p's entity to em, from the cache when p is unchanged since
// it was cached, and returns its uid.
func (s *Set) principal(p Principal, em types.EntityMap) types.EntityUID {
	c := s.principals
	if c == nil {
		return principalEntities(p, em)
	}
	if v, ok := c.m.Load(p.ID); ok {
		if pe := v.(*principalEntity); pe.p.Kind == p.Kind && pe.p.Name == p.Name && slices.Equal(pe.p.Teams, p.Teams) && slices.Equal(pe.p.Roles, p.Roles) {
			em[pe.uid] = pe.e
			return pe.uid
		}
	}
	uid := principalEntities(p, em)
	if c.n.Load() < maxCachedPrincipals {
		pe := &principalEntity{p: Principal{ID: p.ID, Kind: p.Kind, Name: p.Name, Teams: slices.Clone(p.Teams), Roles: slices.Clone(p.Roles)}, uid: uid, e: em[uid]}
		if _, loaded := c.m.Swap(p.ID, pe); !loaded {
			c.n.Add(1)
		}
	}
	return uid
}

func principalEntities(p Principal, em types.EntityMap) types.EntityUID {
	typ := types.EntityType("ServiceAccount")
	if p.Kind == org.KindUser {
		typ = "User"
	}
	uid := types.NewEntityUID(typ, types.String(p.ID))
	var parents []types.EntityUID
	for _, t := range p.Teams {
		parents = append(parents, types.NewEntityUID("Team", types.String(t)))
	}
	for _, r := range p.Roles {
		parents = append(parents, types.NewEntityUID("Role", types.String(r)))
	}
	em[uid] = types.Entity{UID: uid, Parents: types.NewEntityUIDSet(parents...),
		Attributes: types.NewRecord(types.RecordMap{"name": types.String(p.Name)})}
	return uid
}

// ipValue is a's Cedar value: what types.ParseIPAddr(a.Unmap().String())
// gives (a host prefix; 0.0.0.0 for no address or one with a zone, which
// Cedar refuses), built without printing and parsing the address on every
// decision.
func ipValue(a netip.Addr) types.Value {
	a = a.Unmap()
	if !a.IsValid() || a.Zone() != "" {
		a = netip.IPv4Unspecified()
	}
	return types.IPAddr(netip.PrefixFrom(a, a.BitLen()))
}

// Decide decides a data-plane call.
func (s *Set) Decide(c Call) Decision {
	em := make(types.EntityMap, 2)
	principal := s.principal(c.Principal, em)
	model := types.NewEntityUID("Model", types.String(c.Model))
	em[model] = types.Entity{UID: model, Attributes: types.NewRecord(types.RecordMap{"provider": types.String(c.Provider)})}
	ctx := types.NewRecord(types.RecordMap{
		"model": types.String(c.Model), "provider": types.String(c.Provider), "endpoint": types.String(c.Action),
		"stream": types.Boolean(c.Stream), "max_tokens": types.Long(c.MaxTokens), "input_tokens": types.Long(c.InputTokens),
		"estimated_cost_micros": types.Long(c.EstimatedCostMicros), "budget_remaining_micros": types.Long(c.BudgetRemaining),
		"source_ip": ipValue(c.SourceIP), "hour": types.Long(c.Time.Hour()), "weekday": types.Long(c.Time.Weekday()),
		"key_age_days": types.Long(c.KeyAgeDays), "mfa_age_seconds": types.Long(c.MFAAgeSeconds), "pop_bound": types.Boolean(c.PoPBound),
	})
	return s.decide(em, types.Request{Principal: principal, Action: types.NewEntityUID(actionType, types.String(c.Action)), Resource: model, Context: ctx})
}

// DecideAdmin decides an admin API call.
func (s *Set) DecideAdmin(c AdminCall) Decision {
	em := types.EntityMap{}
	principal := principalEntities(c.Principal, em)
	action := types.NewEntityUID(actionType, types.String(c.Action))
	group := adminWrite
	if strings.HasSuffix(c.Action, ".read") {
		group = adminRead
	}
	em[action] = types.Entity{UID: action, Parents: types.NewEntityUIDSet(group)}
	em[group] = types.Entity{UID: group}
	resource := types.NewEntityUID("Admin", types.String(c.Area))
	em[resource] = types.Entity{UID: resource}
	ctx := types.NewRecord(types.RecordMap{"source_ip": ipValue(c.SourceIP), "hour": types.Long(c.Time.Hour()),
		"weekday": types.Long(c.Time.Weekday()), "mfa_age_seconds": types.Long(c.MFAAgeSeconds)})
	return s.decide(em, types.Request{Principal: principal, Action: action, Resource: resource, Context: ctx})
}

func (s *Set) decide(em types.EntityMap, req types.Request) Decision {
	d, diag := cedar.Authorize(s.ps, em, req)
	out := Decision{Allow: d == cedar.Allow}
	for _, r := range diag.Reasons {
		out.Reasons = append(out.Reasons, string(r.PolicyID))
	}
	if len(diag.Errors) > 0 {
		// Fail closed: an erroring policy might have been a forbid.
		out.Allow = false
		for _, e := range diag.Errors {
			out.Errors = append(out.Errors, string(e.PolicyID))
		}
		out.Reasons = slices.Clone(out.Errors)
	}
	sort.Strings(out.Reasons)
	return out
}

// ErrNoPolicies is returned when a store holds no policy version yet.
var ErrNoPolicies = errors.New("policy: no policies applied")

// Version is one applied policy set.
type Version struct {
	Version   int64             `json:"version"`
	Files     map[string]string `json:"files,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
	CreatedBy string            `json:"created_by"` // admin key id
	Note      string            `json:"note"`
}

// Store is what policy needs from storage.
type Store interface {
	SavePolicies(ctx context.Context, files map[string]string, by, note string) (Version, error)
	// PolicyVersion returns a version; 0 is the one in force.
	PolicyVersion(ctx context.Context, version int64) (Version, error)
	PolicyHistory(ctx context.Context) ([]Version, error)
}
