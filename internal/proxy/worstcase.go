package proxy

import (
	"bytes"
	"slices"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/pricing"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

// Reservation ≥ anything the upstream can bill: the worst case of a call is
// computed from a structured walk of the body as read (never from byte
// patterns, which an escape such as "image\u005furl" defeats), multiplied by
// every multiplier the API has. What has no computable bound is listed in
// Shape.Unbounded, and a key under a hard budget is refused it unless the
// operator allows unbounded cost (docs/budgets.md has the table).

// Shape is what a request's input holds, as far as cost goes.
type Shape struct {
	Images         int64    // image parts: by URL, base64 or file id
	ToolTokens     int64    // prompt tokens of provider-defined client tools (Anthropic bash, text editor, computer, memory)
	ThinkingBudget int64    // Anthropic thinking.budget_tokens: may exceed max_tokens with interleaved thinking
	ExtraOutput    int64    // output tokens beyond the cap per generation: a predicted output's rejected tokens
	Priority       bool     // may run at OpenAI's priority tier: billed at a premium (assumed at most 2×); see tier
	CacheTTL1h     bool     // Anthropic one-hour cache writes: 2× the input price
	Unbounded      []string // fields whose cost the gateway cannot bound

	ambiguous, ambiguousAs string // a content member named like a governed one, and which
}

// Per-item worst cases (tokens). They are generous on purpose: a reservation
// is settled to the actual cost, so a high bound only costs headroom.
const (
	// imageTokens bounds one image: OpenAI's largest patch or tile count
	// times its model multipliers (gpt-4.1-nano: 1536 × 2.46 ≈ 3,800) and
	// Anthropic's largest image (about 1,600) are below it.
	imageTokens = 6_000
	// miniImageTokens bounds one image on gpt-4o-mini, which prices images
	// as 2,833 + 5,667 per 512-pixel tile, up to 8 tiles: 48,169.
	miniImageTokens = 48_200
	// clientToolTokens bounds the system prompt Anthropic adds for one of its
	// defined client tools (computer use adds about 735 tokens).
	clientToolTokens = 2_000
	// maxUnbounded bounds the fields Shape.Unbounded lists.
	maxUnbounded = 16
	// maxTokens saturates token arithmetic.
	maxTokens = int64(1) << 50
)

// imageTokensFor is the per-image worst case for model.
func imageTokensFor(model string) int64 {
	if strings.HasPrefix(model, "gpt-4o-mini") {
		return miniImageTokens
	}
	return imageTokens
}

// InputUpperBound returns a count of text input tokens never below the real
// one: every token of a BPE tokenizer covers at least one byte of text, and
// the JSON around the text (message framing included) is longer than the
// tokens a provider adds for it. Images and provider tools are counted
// apart, from the structure of the body (Shape).
func InputUpperBound(body []byte) int64 { return int64(len(body)) + 16 }

func satMul(a, b int64) int64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	if a > maxTokens/b {
		return maxTokens
	}
	return a * b
}

func satAdd(a, b int64) int64 { return min(a+b, maxTokens) }

// worstOf is the most call c can cost at price p with output cap out per
// generation: every generation (n, best_of, every prompt of a batch) runs to
// the cap (reasoning tokens count inside it), every input token is billed at
// the dearest input rate (uncached, or as a cache write), a priority tier at
// twice the price.
func worstOf(ep provider.Endpoint, c Call, body []byte, p pricing.Price, out int64) worstCase {
	in := satAdd(satAdd(InputUpperBound(body), satMul(c.Shape.Images, imageTokensFor(c.Model))), c.Shape.ToolTokens)
	var o int64
	if ep.Output {
		gens := satMul(max(c.Choices, 1), max(c.Prompts, 1))
		o = satAdd(satMul(max(out, c.Shape.ThinkingBudget), gens), satMul(c.Shape.ExtraOutput, gens))
	}
	cost := max(p.Cost(usage.Tokens{Input: in, Output: o}), p.Cost(usage.Tokens{Input: in, CacheWrite: in, Output: o}))
	if c.Shape.CacheTTL1h {
		cost = satAdd(cost, p.Cost(usage.Tokens{Input: in}))
	}
	if c.Shape.Priority {
		cost = satMul(cost, 2)
	}
	return worstCase{input: in, output: o, cost: cost}
}

// analyze walks the members of a request body of ep that carry cost.
func analyze(ep provider.Endpoint, o object) (Shape, error) {
	s, tier, err := analyzeMembers(ep, o)
	if err != nil {
		return s, err
	}
	s.tier(ep, tier)
	return s, nil
}

// analyzeMembers is analyze's walk; tier is the service_tier named, or ""
// (absent or null).
func analyzeMembers(ep provider.Endpoint, o object) (s Shape, tier string, err error) {
	for _, m := range o {
		if isNull(m.value) {
			continue
		}
		switch m.name {
		case "messages", "input", "system":
			if bytes.IndexByte(m.value, '{') < 0 {
				// No object inside (a string, token ids): nothing but its
				// bytes to count, and no tree worth building for it.
				continue
			}
			v, err := decodeAny(m.value)
			if err != nil {
				return s, "", err
			}
			s.walk(v, m.name)
		case "prompt":
			if ep.Name == provider.Responses.Name { // a stored prompt template, by id
				s.unbounded("prompt")
			}
		case "tools":
			v, err := decodeAny(m.value)
			if err != nil {
				return s, "", err
			}
			s.tools(ep, v)
		case "background":
			if m.value.Kind() == 't' {
				s.unbounded("background")
			}
		case "previous_response_id", "conversation", "web_search_options", "container", "audio":
			s.unbounded(m.name)
		case "mcp_servers":
			if v, _ := decodeAny(m.value); v != nil {
				if a, ok := v.([]any); !ok || len(a) > 0 {
					s.unbounded(m.name)
				}
			}
		case "modalities":
			// Read as JSON, not as bytes: "\u0061udio" is "audio" too.
			var mods []string
			if json.Unmarshal(m.value, &mods) != nil || slices.Contains(mods, "audio") {
				s.unbounded("modalities")
			}
		case "service_tier":
			if m.value.Kind() != '"' {
				return s, "", badRequest("invalid_type", "service_tier", "Invalid type for 'service_tier': expected a string.")
			}
			t, _ := jsontext.AppendUnquote(nil, m.value)
			tier = string(t)
		case "cache_control":
			// Anthropic's top-level cache_control marks the last cacheable
			// block: a one-hour TTL there writes the cache at 2x input too.
			if v, err := decodeAny(m.value); err == nil {
				if cc, ok := v.(map[string]any); ok && cc["ttl"] == "1h" {
					s.CacheTTL1h = true
				}
			}
		case "fallbacks":
			// Anthropic's server-side fallback runs the call again on other
			// models (or a server-defined list), at their prices.
			if v, _ := decodeAny(m.value); v != nil {
				if a, ok := v.([]any); !ok || len(a) > 0 {
					s.unbounded(m.name)
				}
			}
		case "thread":
			// A continued thread bills the server-held conversation as
			// input, which is not in the request; creating one does not.
			if v, _ := decodeAny(m.value); v != nil {
				if t, ok := v.(map[string]any); !ok || t["type"] != "create" || len(t) != 1 {
					s.unbounded(m.name)
				}
			}
		case "speed":
			// Anthropic's fast mode ("fast", with its beta header) bills the
			// model at a multiple of its price (6x on Opus 4.6 and 4.7, 2x
			// later) that the price table does not carry: any value but the
			// default is unbounded.
			if t, err := jsontext.AppendUnquote(nil, m.value); m.value.Kind() != '"' || err != nil || string(t) != "standard" {
				s.unbounded("speed")
			}
		case "inference_geo":
			// Anthropic's US-only inference ("us") costs more than the
			// model's price, by a premium the price table does not carry;
			// only the default ("global") is bounded.
			if t, err := jsontext.AppendUnquote(nil, m.value); m.value.Kind() != '"' || err != nil || string(t) != "global" {
				s.unbounded("inference_geo")
			}
		case "prediction":
			s.ExtraOutput = satAdd(s.ExtraOutput, int64(len(m.value)))
		case "thinking":
			if sub, err := readObject(m.value); err == nil {
				if err := checkVariants(sub, []string{"type", "budget_tokens"}, " in 'thinking'"); err != nil {
					return s, "", err
				}
			}
			var t struct {
				BudgetTokens int64 `json:"budget_tokens"`
			}
			if json.Unmarshal(m.value, &t) != nil || t.BudgetTokens < 0 {
				return s, "", badRequest("invalid_type", "thinking", "Invalid value for 'thinking'.")
			}
			s.ThinkingBudget = t.BudgetTokens
		}
	}
	return s, tier, nil
}

// tiered are the endpoints that take OpenAI's service_tier: a call that
// names no tier runs at the project's default tier, which can be priority.
func tiered(ep provider.Endpoint) bool {
	return ep.Name == provider.Chat.Name || ep.Name == provider.Responses.Name
}

// standardTiers are the tiers billed at most at the model's price ("flex"
// is cheaper, "scale" is paid for in advance); Anthropic's "standard_only"
// is its request value for the same.
var standardTiers = []string{"default", "flex", "scale", "standard", "standard_only"}

// tier sets what the service_tier a call names (or not) costs. On chat and
// responses a call that names no tier, or "auto", runs at the project's
// default tier, which can be priority: held at the priority rate; only an
// explicit standard tier is held at the price. "fast" (OpenAI's fast mode)
// bills a multiple the price table does not carry, and so does a tier the
// gateway does not know: unbounded. Elsewhere only "priority" is priced
// above the standard rate.
func (s *Shape) tier(ep provider.Endpoint, tier string) {
	switch {
	case !tiered(ep):
		s.Priority = tier == "priority"
	case tier == "" || tier == "auto" || tier == "priority":
		s.Priority = true
	case slices.Contains(standardTiers, tier):
	default:
		s.unbounded("service_tier")
	}
}

func decodeAny(v jsontext.Value) (any, error) {
	var x any
	if err := json.Unmarshal(v, &x); err != nil {
		return nil, httpx.Errorf(400, "invalid_json", "We could not parse the JSON body of your request.").WithCause(err)
	}
	return x, nil
}

func (s *Shape) unbounded(field string) {
	if len(s.Unbounded) < maxUnbounded && !slices.Contains(s.Unbounded, field) {
		s.Unbounded = append(s.Unbounded, clip(field))
	}
}

// contentNames are the member names of content parts that decide their cost.
var contentNames = []string{"type", "image_url", "source", "file", "input_audio", "cache_control"}

// textTypes are content types whose cost is their text, bounded by its bytes.
var textTypes = map[string]bool{
	"text": true, "input_text": true, "output_text": true, "refusal": true, "summary_text": true,
	"reasoning_text": true, "thinking": true, "redacted_thinking": true,
	// Tool calls the model made, passed back: their arguments are text.
	"function": true, "function_call": true, "custom_tool_call": true, "tool_use": true,
	// Reasoning items passed back: encrypted content is longer than its tokens.
	"reasoning": true,
}

// path is where a value sits in the body, kept as segments and formatted
// only when it is reported: a body of millions of parts must not cost a
// string per part (nor a string per level of a deep nest).
type path []seg

// seg is one step of a path: a member name, or an array index when name is "".
type seg struct {
	name  string
	index int
}

func (p path) String() string {
	var b strings.Builder
	for i, sg := range p {
		switch {
		case sg.name == "":
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(sg.index))
			b.WriteByte(']')
		case i > 0:
			b.WriteByte('.')
			fallthrough
		default:
			b.WriteString(sg.name)
		}
	}
	return b.String()
}

// walk accounts for one value of the conversation at member name. Images are
// counted wherever they sit; types are judged (an unknown one has no bound)
// where the APIs define content, not inside tool arguments or text parts.
func (s *Shape) walk(v any, name string) {
	p := make(path, 1, 32) // room to go deep without growing at every level
	p[0] = seg{name: name}
	s.walkIn(v, p, true)
}

func (s *Shape) walkIn(v any, p path, judge bool) {
	switch x := v.(type) {
	case []any:
		for i, e := range x {
			s.walkIn(e, append(p, seg{index: i}), judge)
		}
	case map[string]any:
		if cc, ok := x["cache_control"].(map[string]any); ok && cc["ttl"] == "1h" {
			s.CacheTTL1h = true
		}
		if judge && s.ambiguous == "" {
			for k := range x {
				if g := foldVariant(k, contentNames); g != "" {
					s.ambiguous, s.ambiguousAs = append(p, seg{name: k}).String(), g
				}
			}
		}
		t, typed := x["type"].(string)
		switch {
		case t == "image_url" || t == "input_image" || t == "image" || t == "computer_screenshot":
			s.Images++
			return
		case !typed:
			if _, ok := x["image_url"]; ok {
				s.Images++
				return
			}
			if a, ok := x["audio"]; ok && a != nil && judge { // an assistant message's audio, by id: audio tokens
				s.unbounded(append(p, seg{name: "audio"}).String())
			}
		case !judge || textTypes[t]:
			judge = false // below: arguments and text, where "type" is anyone's word
		case t == "message" || t == "function_call_output" || t == "custom_tool_call_output" || t == "tool_result" || t == "search_result":
		case t == "document":
			src, _ := x["source"].(map[string]any)
			switch src["type"] {
			case "text":
			case "content":
				s.walkIn(src["content"], append(p, seg{name: "source"}, seg{name: "content"}), judge)
			default: // a PDF by base64, URL or file id: pages are not countable here
				s.unbounded(p.String() + " (document)")
			}
			return
		case t == "file" || t == "input_file":
			s.unbounded(p.String() + " (file)")
		case t == "input_audio" || t == "audio":
			s.unbounded(p.String() + " (audio)")
		default:
			s.unbounded(p.String() + " (type " + t + ")")
		}
		var buf [8]string
		for _, k := range appendSortedKeys(buf[:0], x) {
			if k != "cache_control" && k != "type" {
				s.walkIn(x[k], append(p, seg{name: k}), judge)
			}
		}
	}
}

// appendSortedKeys appends m's keys to ks in order (a walk that reports the
// first unbounded field must not depend on map order).
func appendSortedKeys(ks []string, m map[string]any) []string {
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// anthropicClientTools are the prefixes of Anthropic-defined tools that the
// caller runs: their cost is a fixed prompt, not a server-side loop.
var anthropicClientTools = []string{"bash_", "text_editor_", "computer_", "memory_"}

// tools accounts for tool definitions: functions and custom tools run at the
// caller and cost their definition's text; server-side tools (web search,
// file search, code interpreter, MCP, …) run loops the upstream bills and are
// unbounded.
func (s *Shape) tools(ep provider.Endpoint, v any) {
	list, _ := v.([]any)
	for i, e := range list {
		tool, _ := e.(map[string]any)
		if cc, ok := tool["cache_control"].(map[string]any); ok && cc["ttl"] == "1h" {
			s.CacheTTL1h = true
		}
		if s.ambiguous == "" {
			for k := range tool {
				if g := foldVariant(k, contentNames); g != "" {
					s.ambiguous, s.ambiguousAs = path{{name: "tools"}, {index: i}, {name: k}}.String(), g
				}
			}
		}
		t, _ := tool["type"].(string)
		switch {
		case t == "function" || t == "custom":
		case ep.Protocol == provider.TypeAnthropic && t == "":
		case ep.Protocol == provider.TypeAnthropic && slices.ContainsFunc(anthropicClientTools, func(p string) bool { return strings.HasPrefix(t, p) }):
			s.ToolTokens = satAdd(s.ToolTokens, clientToolTokens)
		case len(s.Unbounded) < maxUnbounded:
			s.unbounded(path{{name: "tools"}, {index: i}}.String() + " (type " + t + ")")
		}
	}
}
