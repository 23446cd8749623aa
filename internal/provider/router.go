package provider

import (
	"cmp"
	"errors"
	"slices"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/glob"
)

// Routing errors.
var (
	ErrNoRoute       = errors.New("provider: no provider serves this model")
	ErrWrongProtocol = errors.New("provider: model served by a provider of another API type")
)

// Router maps a model name to the upstream that serves it: the most specific
// pattern wins (exact name, then longer literal prefix); among equals, the
// provider created first. When no provider is configured at all, the fallback
// upstreams (the simulator) serve every model. A Router is immutable.
type Router struct {
	routes   []route
	fallback map[Type]*Upstream
}

type route struct {
	pattern string
	up      *Upstream
}

// NewRouter builds a router over ups (in creation order). fallback serves every
// model, per protocol, when ups is empty.
func NewRouter(ups []*Upstream, fallback map[Type]*Upstream) *Router {
	r := &Router{}
	for _, u := range ups {
		for _, p := range u.Models {
			r.routes = append(r.routes, route{pattern: p, up: u})
		}
	}
	slices.SortStableFunc(r.routes, func(a, b route) int {
		return cmp.Compare(glob.Specificity(b.pattern), glob.Specificity(a.pattern))
	})
	if len(ups) == 0 {
		r.fallback = fallback
	}
	return r
}

// Simulated reports whether the router serves everything from the fallback.
func (r *Router) Simulated() bool { return len(r.fallback) > 0 }

// Route returns the upstream for model over protocol.
func (r *Router) Route(model string, protocol Type) (*Upstream, error) {
	if r.fallback != nil {
		if u := r.fallback[protocol]; u != nil {
			return u, nil
		}
		return nil, ErrNoRoute
	}
	other := false
	for _, rt := range r.routes {
		if glob.Match(rt.pattern, model) {
			if rt.up.Type == protocol {
				return rt.up, nil
			}
			other = true
		}
	}
	if other {
		return nil, ErrWrongProtocol
	}
	return nil, ErrNoRoute
}

// Models lists the model names that can be listed: every route that is an
// exact name (patterns cannot be enumerated), or the fallback's models.
func (r *Router) Models(fallbackModels []string) []ModelInfo {
	var out []ModelInfo
	if r.fallback != nil {
		for _, m := range fallbackModels {
			out = append(out, ModelInfo{ID: m, Provider: "simulated"})
		}
		return out
	}
	seen := map[string]bool{}
	for _, rt := range r.routes {
		if strings.ContainsAny(rt.pattern, "*?") || seen[rt.pattern] {
			continue
		}
		seen[rt.pattern] = true
		out = append(out, ModelInfo{ID: rt.pattern, Provider: rt.up.Name, Type: rt.up.Type})
	}
	slices.SortFunc(out, func(a, b ModelInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// ModelInfo is a listable model.
type ModelInfo struct {
	ID       string
	Provider string
	Type     Type
}
