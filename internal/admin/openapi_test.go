package admin

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
)

type openAPIDoc struct {
	Paths map[string]map[string]struct {
		OperationID string                     `json:"operationId"`
		Responses   map[string]json.RawMessage `json:"responses"`
		Parameters  []struct {
			Name string `json:"name"`
			In   string `json:"in"`
		} `json:"parameters"`
	} `json:"paths"`
}

// serverRoutes are served on the admin listener by package server around the
// admin API's handler (server/observe.go).
var serverRoutes = []string{"GET /metrics"}

// noClientError lists operations that cannot answer 4xx: they take no input
// and need no credential.
var noClientError = []string{"health", "ready", "getOpenAPI", "getLogKey", "getLogKeys", "findLogRecords"}

// servedRoutes returns every method and path the admin listener serves:
// the admin mux's patterns, with the log's own patterns for /log/.
func servedRoutes(t *testing.T) []string {
	// A non-nil engine registers the audit routes (they are served only with one).
	h := New(Deps{LogHandler: http.NotFoundHandler(), Log: slog.New(slog.DiscardHandler), Audit: &audit.Engine{}})
	var out []string
	for _, p := range h.Routes() {
		switch p {
		case "/": // the catch-all 404
		case "GET /log/":
			out = append(out, ledger.Routes()...)
		default:
			out = append(out, p)
		}
	}
	return append(out, serverRoutes...)
}

var wildcard = regexp.MustCompile(`\{([a-z_]+)(\.\.\.)?\}`)

// TestOpenAPIListsEveryRoute holds the document to the routes: every route
// served is documented, every documented operation is served, each has a
// unique operationId, declares its path parameters and (unless it takes no
// input) its 4xx responses.
func TestOpenAPIListsEveryRoute(t *testing.T) {
	var doc openAPIDoc
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{} // "GET /v1/keys/{id}"
	ids := map[string]string{}
	for path, item := range doc.Paths {
		for method, op := range item {
			if method == "parameters" {
				continue
			}
			key := strings.ToUpper(method) + " " + path
			documented[key] = false
			switch prev, dup := ids[op.OperationID]; {
			case op.OperationID == "":
				t.Errorf("%s has no operationId", key)
			case dup:
				t.Errorf("operationId %q used by %s and %s", op.OperationID, prev, key)
			}
			ids[op.OperationID] = key
			has4xx := false
			for code := range op.Responses {
				has4xx = has4xx || strings.HasPrefix(code, "4")
			}
			if !has4xx && !slices.Contains(noClientError, op.OperationID) {
				t.Errorf("%s (%s) documents no 4xx response", key, op.OperationID)
			}
			for _, m := range wildcard.FindAllStringSubmatch(path, -1) {
				if !slices.ContainsFunc(op.Parameters, func(p struct {
					Name string `json:"name"`
					In   string `json:"in"`
				}) bool {
					return p.Name == m[1] && p.In == "path"
				}) {
					t.Errorf("%s does not declare its path parameter %s", key, m[1])
				}
			}
		}
	}
	routes := servedRoutes(t)
	if len(routes) < 60 {
		t.Fatalf("only %d routes found; is the walk broken?", len(routes))
	}
	for _, r := range routes {
		norm := wildcard.ReplaceAllString(r, "{$1}")
		if _, ok := documented[norm]; ok {
			documented[norm] = true
			continue
		}
		if strings.HasSuffix(norm, "/") { // a prefix pattern: documented by the paths under it
			found := false
			for k := range documented {
				if strings.HasPrefix(k, norm) {
					documented[k], found = true, true
				}
			}
			if found {
				continue
			}
		}
		t.Errorf("route %q is served but not in openapi.json", r)
	}
	for k, served := range documented {
		if !served {
			t.Errorf("openapi.json documents %s, which is not served", k)
		}
	}
}

// TestOpenAPIRefsResolve: every $ref points at a component that exists.
func TestOpenAPIRefsResolve(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	comps := doc["components"].(map[string]any)
	for _, ref := range regexp.MustCompile(`"\$ref":\s*"#/components/([a-zA-Z]+)/([A-Za-z0-9_]+)"`).FindAllStringSubmatch(string(OpenAPI()), -1) {
		kind, _ := comps[ref[1]].(map[string]any)
		if _, ok := kind[ref[2]]; !ok {
			t.Errorf("$ref #/components/%s/%s does not resolve", ref[1], ref[2])
		}
	}
}
