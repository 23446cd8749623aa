package provider

import (
	"bytes"
	"errors"
	"reflect"
	"slices"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

// Usage is read from the upstream's JSON only when the JSON has one reading.
// A name given twice in an object, or a member whose name differs from one
// the gateway reads only in case or in '_' and '-' ("Prompt_Tokens",
// "completiontokens"), could be read by the provider's billing either way:
// first or last, case-sensitively or not. Such a report is no report, so the
// call is charged its whole hold, at least what any reading billed. (This
// package used encoding/json, which took the last duplicate and matched
// names case-insensitively: an upstream could bill 1000 tokens and have the
// gateway meter 1.) Invalid UTF-8 in strings is let through, as before: it
// changes no count.
var (
	exactNames  = json.JoinOptions(jsontext.AllowInvalidUTF8(true))                                       // names matched exactly; duplicates refused
	foldedNames = json.JoinOptions(jsontext.AllowInvalidUTF8(true), json.MatchCaseInsensitiveNames(true)) // and every spelling of them
)

// reading is how an upstream's JSON read.
type reading int

const (
	readOK        reading = iota
	readInvalid           // not JSON of the expected shape: no usage in it (as before)
	readAmbiguous         // duplicate names or spelling variants: the usage is missing
)

// readStrict decodes data into v and says whether it has one reading: it
// decodes it twice, matching names exactly and case-insensitively (both
// refusing duplicate names), and the two must agree.
func readStrict[T any](data []byte, v *T) reading {
	if err := json.Unmarshal(data, v, exactNames); err != nil {
		if errors.Is(err, jsontext.ErrDuplicateName) {
			return readAmbiguous
		}
		return readInvalid
	}
	var folded T
	if err := json.Unmarshal(data, &folded, foldedNames); err != nil || !reflect.DeepEqual(*v, folded) {
		return readAmbiguous
	}
	return readOK
}

// invalidEventHidesUsage reports whether a stream event that did not read in
// its expected shape may still carry a usage report for another reader: it
// is not JSON at all, or some object in it has a member whose name is
// "usage" in any spelling a reader may match (case, '_' and '-', Unicode
// folds, JSON escapes). Counts as strings or floats ("5000", 5000.0), past
// int64 or under "USAGE" are read so by lenient parsers, and a stream that
// also reported a small usage cleanly must not be metered by the small one.
func invalidEventHidesUsage(data []byte) bool {
	var v any
	if err := json.Unmarshal(data, &v, jsontext.AllowInvalidUTF8(true), jsontext.AllowDuplicateNames(true)); err != nil {
		return true
	}
	return namesUsage(v, 0)
}

// namesUsage walks v (a decoded JSON value) for a member named like usage.
func namesUsage(v any, depth int) bool {
	if depth > 64 {
		return true // deeper than any real event: not read as one
	}
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if isUsageName(k) || namesUsage(e, depth+1) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if namesUsage(e, depth+1) {
				return true
			}
		}
	}
	return false
}

// isUsageName: name is "usage" as a case-insensitive reader that also
// ignores '_' and '-' (json v2's folding, a superset of encoding/json's)
// would match it.
func isUsageName(name string) bool {
	if len(name) > 64 {
		return false
	}
	return strings.EqualFold(strings.NewReplacer("_", "", "-", "").Replace(name), "usage")
}

// openAIUsage covers chat, completions and embeddings usage objects.
type openAIUsage struct {
	PromptTokens        int64 `json:"prompt_tokens"`
	CompletionTokens    int64 `json:"completion_tokens"`
	PromptTokensDetails *struct {
		CachedTokens int64 `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
	// Responses API names.
	InputTokens        int64 `json:"input_tokens"`
	OutputTokens       int64 `json:"output_tokens"`
	InputTokensDetails *struct {
		CachedTokens int64 `json:"cached_tokens"`
	} `json:"input_tokens_details"`
}

// tokens returns the usage u reports; ok is false when the report cannot be
// a real one (a negative count, or no input at all: every call the upstream
// bills has input), so that it is treated as missing and the hold charged.
func (u openAIUsage) tokens() (t usage.Tokens, ok bool) {
	var cached []int64
	if u.PromptTokensDetails != nil {
		cached = append(cached, u.PromptTokensDetails.CachedTokens)
	}
	if u.InputTokensDetails != nil {
		cached = append(cached, u.InputTokensDetails.CachedTokens)
	}
	t = usage.Tokens{Input: satSum(u.PromptTokens, u.InputTokens), Output: satSum(u.CompletionTokens, u.OutputTokens), CachedInput: satSum(cached...)}
	return t, t.Input > 0 && t.Output >= 0 && t.CachedInput >= 0
}

// maxCount saturates token sums: a report near the int64 limit must not wrap
// to a negative count, which would be clamped to nothing.
const maxCount = int64(1) << 50

// satSum adds counts, saturating at maxCount; it is negative if any count is.
func satSum(ns ...int64) int64 {
	var s int64
	for _, n := range ns {
		if n < 0 {
			return -1
		}
		s = min(s+min(n, maxCount), maxCount)
	}
	return s
}

// maxOf is, field by field, the larger of two reports of one call's usage:
// an upstream that reports twice is charged for the larger, never the later.
func maxOf(a, b usage.Tokens) usage.Tokens {
	return usage.Tokens{Input: max(a.Input, b.Input), CachedInput: max(a.CachedInput, b.CachedInput),
		CacheWrite: max(a.CacheWrite, b.CacheWrite), Output: max(a.Output, b.Output)}
}

type anthropicUsage struct {
	InputTokens              int64 `json:"input_tokens"`
	OutputTokens             int64 `json:"output_tokens"`
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
}

// tokens returns the usage u reports; ok is false when a count is negative.
// (Input may be zero: message_delta restates only what it has.)
func (u anthropicUsage) tokens() (t usage.Tokens, ok bool) {
	t = usage.Tokens{
		Input:       satSum(u.InputTokens, u.CacheCreationInputTokens, u.CacheReadInputTokens),
		CachedInput: satSum(u.CacheReadInputTokens),
		CacheWrite:  satSum(u.CacheCreationInputTokens),
		Output:      satSum(u.OutputTokens),
	}
	return t, t.Input >= 0 && t.Output >= 0
}

// ParseUsage reads the usage and the response id out of a complete JSON
// response of ep. ok is false when the body reports no usage, or a usage no
// real call has (a negative count, no input tokens): it is then missing.
func ParseUsage(ep Endpoint, body []byte) (t usage.Tokens, id string, ok bool) {
	t, id, _, ok = ParseUsageModel(ep, body)
	return t, id, ok
}

// ParseUsageModel is ParseUsage that also returns the model the response
// names (the model that answered; "" when it names none).
func ParseUsageModel(ep Endpoint, body []byte) (t usage.Tokens, id, model string, ok bool) {
	t, id, model, _, ok = ParseUsageTier(ep, body)
	return t, id, model, ok
}

// standardTiers are the service tiers an OpenAI response reports for a call
// billed at most at the model's price.
var standardTiers = []string{"default", "flex", "scale", "standard"}

// TierRank orders the service tiers a response may report by what they may
// bill: 0 none reported (or "auto": the request's value echoed, as a
// Responses stream's first events do, which says nothing of the tier that
// ran), 1 a standard tier, 2 "priority", 3 any other ("fast", a tier the
// gateway does not know).
func TierRank(tier string) int {
	switch {
	case tier == "" || tier == "auto":
		return 0
	case slices.Contains(standardTiers, tier):
		return 1
	case tier == "priority":
		return 2
	}
	return 3
}

// ParseUsageTier is ParseUsageModel that also returns the service tier an
// OpenAI response reports ("" when none; always "" for Anthropic).
func ParseUsageTier(ep Endpoint, body []byte) (t usage.Tokens, id, model, tier string, ok bool) {
	if ep.Protocol == TypeAnthropic {
		var r struct {
			ID    string          `json:"id"`
			Model string          `json:"model"`
			Usage *anthropicUsage `json:"usage"`
		}
		if readStrict(body, &r) != readOK || r.Usage == nil {
			return usage.Tokens{}, r.ID, r.Model, "", false
		}
		t, ok = r.Usage.tokens()
		if !ok || t.Input == 0 {
			return usage.Tokens{}, r.ID, r.Model, "", false
		}
		return t.Clamp(), r.ID, r.Model, "", true
	}
	var r struct {
		ID          string       `json:"id"`
		Model       string       `json:"model"`
		ServiceTier string       `json:"service_tier"`
		Usage       *openAIUsage `json:"usage"`
	}
	if readStrict(body, &r) != readOK || r.Usage == nil {
		return usage.Tokens{}, r.ID, r.Model, "", false
	}
	t, ok = r.Usage.tokens()
	if !ok {
		return usage.Tokens{}, r.ID, r.Model, "", false
	}
	return t.Clamp(), r.ID, r.Model, r.ServiceTier, true
}

// Meter follows a stream of ep, event by event: it picks up the usage the
// upstream reports, counts output characters as a fallback, and says which
// events to forward.
type Meter struct {
	ep Endpoint
	// StripUsage drops OpenAI's usage-only final chunk: set when the gateway
	// asked for usage and the caller did not.
	StripUsage bool

	tokens   usage.Tokens
	haveIn   bool
	haveOut  bool
	outChars int64
	id       string
	model    string // the first model an event names
	tier     string // the dearest service tier an event reports (TierRank)
	done     bool   // a terminal event was seen
	bogus    bool   // a usage report no real call has: the usage is missing
}

// NewMeter returns a Meter for a stream of ep.
func NewMeter(ep Endpoint) *Meter { return &Meter{ep: ep} }

var doneData = []byte("[DONE]")

// Observe accounts for ev and reports whether to forward it to the caller.
func (m *Meter) Observe(ev Event) bool {
	if len(ev.Data) == 0 {
		return true
	}
	if bytes.Equal(ev.Data, doneData) {
		m.done = true
		return true
	}
	switch m.ep {
	case Messages:
		return m.anthropic(ev)
	case Responses:
		return m.responses(ev)
	default:
		return m.openAI(ev)
	}
}

func (m *Meter) openAI(ev Event) bool {
	var c struct {
		ID          string       `json:"id"`
		Model       string       `json:"model"`
		ServiceTier string       `json:"service_tier"`
		Usage       *openAIUsage `json:"usage"`
		Choices     []struct {
			Text  string `json:"text"`
			Delta struct {
				Content   string `json:"content"`
				Reasoning string `json:"reasoning_content"`
				ToolCalls []struct {
					Function struct {
						Arguments string `json:"arguments"`
					} `json:"function"`
				} `json:"tool_calls"`
			} `json:"delta"`
		} `json:"choices"`
	}
	if !read(m, ev.Data, &c) {
		return true
	}
	if m.id == "" {
		m.id = c.ID
	}
	if m.model == "" {
		m.model = c.Model
	}
	m.seeTier(c.ServiceTier)
	for _, ch := range c.Choices {
		m.outChars += int64(len(ch.Text) + len(ch.Delta.Content) + len(ch.Delta.Reasoning))
		for _, tc := range ch.Delta.ToolCalls {
			m.outChars += int64(len(tc.Function.Arguments))
		}
	}
	if c.Usage != nil {
		t, ok := c.Usage.tokens()
		m.bogus = m.bogus || !ok
		m.tokens = maxOf(m.tokens, t)
		m.haveIn, m.haveOut = true, true
		if m.StripUsage && len(c.Choices) == 0 {
			return false
		}
	}
	return true
}

func (m *Meter) responses(ev Event) bool {
	var e struct {
		Type     string `json:"type"`
		Delta    string `json:"delta"`
		Response *struct {
			ID          string       `json:"id"`
			Model       string       `json:"model"`
			ServiceTier string       `json:"service_tier"`
			Usage       *openAIUsage `json:"usage"`
		} `json:"response"`
		Usage *openAIUsage `json:"usage"` // not where the API puts it: see below
	}
	if !read(m, ev.Data, &e) {
		return true
	}
	if e.Usage != nil { // a usage beside the response, which another reader may take
		m.bogus = true
		return true
	}
	switch e.Type {
	case "response.output_text.delta", "response.function_call_arguments.delta", "response.reasoning_text.delta", "response.refusal.delta":
		m.outChars += int64(len(e.Delta))
	}
	if e.Response != nil {
		if m.id == "" {
			m.id = e.Response.ID
		}
		if m.model == "" {
			m.model = e.Response.Model
		}
		m.seeTier(e.Response.ServiceTier)
		if e.Response.Usage != nil {
			t, ok := e.Response.Usage.tokens()
			m.bogus = m.bogus || !ok
			m.tokens = maxOf(m.tokens, t)
			m.haveIn, m.haveOut = true, true
		}
	}
	switch e.Type {
	case "response.completed", "response.incomplete", "response.failed":
		m.done = true
	}
	return true
}

// read decodes one stream event into v strictly for m; false: the event is not
// read further (it was not JSON, or reads two ways), and whether usage it
// may have held now counts as missing is noted on m.
func read[T any](m *Meter, data []byte, v *T) bool {
	switch readStrict(data, v) {
	case readInvalid:
		m.bogus = m.bogus || invalidEventHidesUsage(data)
		return false
	case readAmbiguous:
		m.bogus = true // whatever usage it held is missing
		return false
	}
	return true
}

func (m *Meter) anthropic(ev Event) bool {
	// Every event is read: a byte pre-filter ("usage", "delta") is blind
	// to JSON escapes ("\u0075sage", "message_\u0064elta") and case
	// variants, which every reader decodes.
	var e struct {
		Type    string `json:"type"`
		Message *struct {
			ID    string          `json:"id"`
			Model string          `json:"model"`
			Usage *anthropicUsage `json:"usage"`
		} `json:"message"`
		Delta *struct {
			Text        string `json:"text"`
			PartialJSON string `json:"partial_json"`
			Thinking    string `json:"thinking"`
		} `json:"delta"`
		Usage *anthropicUsage `json:"usage"`
	}
	if !read(m, ev.Data, &e) {
		return true
	}
	// Usage on an event that does not carry it (a ping, a content block, a
	// message object outside message_start) is a report the gateway would
	// not read and another reader might: the usage is missing.
	if (e.Usage != nil && e.Type != "message_delta") || (e.Message != nil && e.Message.Usage != nil && e.Type != "message_start") {
		m.bogus = true
		return true
	}
	switch e.Type {
	case "message_start":
		if e.Message != nil {
			if m.id == "" && m.model == "" { // the first, as for the other protocols
				m.id, m.model = e.Message.ID, e.Message.Model
			}
			if e.Message.Usage != nil {
				in, ok := e.Message.Usage.tokens()
				m.bogus = m.bogus || !ok || in.Input == 0
				in.Output = 0 // message_start's output count is a placeholder
				m.tokens = maxOf(m.tokens, in)
				m.haveIn = true
			}
		}
	case "content_block_delta":
		if e.Delta != nil {
			m.outChars += int64(len(e.Delta.Text) + len(e.Delta.PartialJSON) + len(e.Delta.Thinking))
		}
	case "message_delta":
		if e.Usage != nil {
			// output_tokens in message_delta is cumulative; input fields may be
			// restated (newer API versions). Every count is the largest reported,
			// so a later, smaller report cannot lower what is charged.
			t, ok := e.Usage.tokens()
			m.bogus = m.bogus || !ok
			m.tokens = maxOf(m.tokens, t)
			m.haveOut = true
			if t.Input > 0 {
				m.haveIn = true
			}
		}
	case "message_stop":
		m.done = true
	}
	return true
}

// seeTier keeps the dearest service tier the stream reported.
func (m *Meter) seeTier(t string) {
	if TierRank(t) > TierRank(m.tier) {
		m.tier = t
	}
}

// ServiceTier returns the dearest service tier the stream reported (an
// OpenAI stream: chat chunks, a Responses event's response), "" when none.
func (m *Meter) ServiceTier() string { return m.tier }

// ResponseID returns the upstream's id of the response, once seen.
func (m *Meter) ResponseID() string { return m.id }

// ResponseModel returns the model the stream names ("" when none).
func (m *Meter) ResponseModel() string { return m.model }

// Done reports whether the stream reached its terminal event.
func (m *Meter) Done() bool { return m.done }

// Usage returns the usage of the stream so far. When the upstream reported
// none, it counts locally and estimated is true: one token per byte of output
// text (every token covers at least one byte, so this never under-counts) and
// inputEstimate for input. A report no real call has (a negative count) is
// no report; an Anthropic stream without message_stop is estimated too, as
// message_delta's count is only the output so far.
func (m *Meter) Usage(inputEstimate int64) (t usage.Tokens, estimated bool) {
	t = m.tokens
	if m.bogus {
		return usage.Tokens{Input: inputEstimate, Output: m.outChars}.Clamp(), true
	}
	if m.ep == Messages && !m.done {
		estimated = true
	}
	if !m.haveIn {
		t.Input, estimated = inputEstimate, true
	}
	if !m.haveOut {
		t.Output, estimated = m.outChars, true
	}
	return t.Clamp(), estimated
}
