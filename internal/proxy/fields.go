package proxy

import (
	"net/http"
	"slices"
	"strings"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/pricing"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
)

// Under a hard budget only the request shapes the gateway knows go upstream.
// A billing multiplier the provider adds tomorrow will be switched on by a new
// top-level field or a new beta (Anthropic's fast mode was both), and a field
// the gateway does not read is a field it did not price. So a key under a
// hard budget may send only the top-level fields listed here for its endpoint
// (every field of the API reference and of the official SDKs' *Params
// structs, openai-go/v3 v3.98.0 and anthropic-sdk-go/v2 v2.15.0), and only the
// Anthropic betas listed as known; the operator can add more in the
// configuration (budgets.allow_fields, budgets.allow_betas). Names are
// compared exactly, after the one strict reading of the body (JSON escapes
// decoded, as every upstream decodes them): a case variant of a known field
// is an unknown field. Soft budgets and calls under no budget are not
// checked.

// FieldsKey names an endpoint in budgets.allow_fields: "openai.chat",
// "openai.completions", "openai.embeddings", "openai.responses",
// "anthropic.messages".
func FieldsKey(ep provider.Endpoint) string { return string(ep.Protocol) + "." + ep.Name }

// knownFields are the documented top-level request fields of each endpoint.
var knownFields = map[string][]string{
	"openai.chat": {
		"messages", "model", "stream", "stream_options", "audio", "frequency_penalty", "function_call", "functions",
		"logit_bias", "logprobs", "max_completion_tokens", "max_tokens", "metadata", "modalities", "moderation", "n",
		"parallel_tool_calls", "prediction", "presence_penalty", "prompt_cache_key", "prompt_cache_options",
		"prompt_cache_retention", "reasoning_effort", "response_format", "safety_identifier", "seed", "service_tier",
		"stop", "store", "temperature", "tool_choice", "tools", "top_logprobs", "top_p", "user", "verbosity",
		"web_search_options",
	},
	"openai.completions": {
		"model", "prompt", "stream", "stream_options", "best_of", "echo", "frequency_penalty", "logit_bias", "logprobs",
		"max_tokens", "n", "presence_penalty", "seed", "stop", "suffix", "temperature", "top_p", "user",
	},
	"openai.embeddings": {"input", "model", "dimensions", "encoding_format", "user"},
	"openai.responses": {
		"model", "input", "stream", "stream_options", "access_programs", "background", "context_management",
		"conversation", "image", "include", "instructions", "max_output_tokens", "max_tool_calls", "metadata",
		"moderation", "parallel_tool_calls", "previous_response_id", "prompt", "prompt_cache_key",
		"prompt_cache_options", "prompt_cache_retention", "reasoning", "safety_identifier", "service_tier", "store",
		"temperature", "text", "tool_choice", "tools", "top_logprobs", "top_p", "truncation", "user",
	},
	"anthropic.messages": {
		"model", "messages", "max_tokens", "stream", "betas", "billing_policy", "cache_control", "compaction",
		"container", "context_management", "diagnostics", "fallback_credit_token", "fallbacks", "inference_geo",
		"mcp_servers", "metadata", "output_config", "output_format", "service_tier", "speed", "stop_sequences",
		"system", "temperature", "thinking", "thread", "tool_choice", "tools", "top_k", "top_p",
	},
}

// KnownFields returns the top-level fields the gateway knows for ep (a copy).
func KnownFields(ep provider.Endpoint) []string { return slices.Clone(knownFields[FieldsKey(ep)]) }

// knownBetas are the Anthropic betas (anthropic-beta header values, or the
// betas body field) that change nothing the gateway does not price: their
// cost shows in a body field the gateway reads (thinking budgets, one-hour
// cache writes, speed, fallbacks, threads, server tools, MCP servers,
// containers, files: priced or refused as unbounded by the walk), or in
// nothing at all. Betas whose effect the gateway cannot judge from the
// request are not here (managed agents, agent memory, task budgets, …).
var knownBetas = []string{
	"prompt-caching-2024-07-31", "message-batches-2024-09-24", "pdfs-2024-09-25", "token-counting-2024-11-01",
	"computer-use-2024-10-22", "computer-use-2025-01-24", "computer-use-2025-11-24",
	"token-efficient-tools-2025-02-19", "output-128k-2025-02-19", "output-300k-2026-03-24",
	"extended-cache-ttl-2025-04-11", "files-api-2025-04-14",
	"mcp-client-2025-04-04", "mcp-client-2025-11-20", "mcp-client-2026-09-15",
	"dev-full-thinking-2025-05-14", "interleaved-thinking-2025-05-14", "code-execution-2025-05-22",
	"context-management-2025-06-27", "model-context-window-exceeded-2025-08-26", "skills-2025-10-02",
	"structured-outputs-2025-11-13", "compact-2026-01-12", "compact-2026-09-04", "fast-mode-2026-02-01",
	"cache-diagnosis-2026-04-07", "thinking-token-count-2026-05-13",
	"server-side-fallback-2026-06-01", "server-side-fallback-2026-07-01",
	"fallback-credit-2026-06-01", "fallback-credit-2026-07-01", "message-threads-2026-08-12",
	"user-profiles-2026-03-24", "user-profiles-2026-08-18", "user-profiles-2026-09-04", "user-profiles-billing-2026-10-01",
	"thinking-display-updates-2026-08-18",
}

// longContextBetas open input past the standard context window, where
// Anthropic bills every token at a long-context premium: priced when the
// model's price carries a long-context tier, unbounded otherwise.
var longContextBetas = []string{"context-1m-2025-08-07"}

// FieldPolicy is what a key under a hard budget may send beyond the built-in
// lists: extra top-level fields per endpoint (keyed as FieldsKey), extra
// Anthropic betas and API versions, from the configuration.
type FieldPolicy struct {
	Fields   map[string][]string
	Betas    []string
	Versions []string // anthropic-version values
}

// checkFields refuses the first top-level member of c's body that is neither
// a known field of ep nor allowed by the operator.
func (fp FieldPolicy) checkFields(ep provider.Endpoint, c Call) error {
	key := FieldsKey(ep)
	known, extra := knownFields[key], fp.Fields[key]
	for _, m := range c.body {
		if slices.Contains(known, m.name) || slices.Contains(extra, m.name) {
			continue
		}
		e := httpx.Errorf(http.StatusBadRequest, "unsupported_field_under_hard_budget",
			"The field %s is not one the gateway knows for the %s endpoint, so a key under a hard budget may not send it (it could change what the call costs); an operator can allow it: budgets.allow_fields.%s.",
			quoteName(m.name), ep.Name, key)
		return e.WithParam(clip(m.name))
	}
	return nil
}

// checkBetas judges the Anthropic betas a call asks for (header and body
// alike): known ones pass, long-context ones pass when the price has a
// long-context tier (else their field is reported as unbounded), others are
// refused unless the operator allows them.
func (fp FieldPolicy) checkBetas(betas []string, price pricing.Price) (unbounded string, err error) {
	for _, b := range betas {
		switch {
		case slices.Contains(knownBetas, b) || slices.Contains(fp.Betas, b):
		case slices.Contains(longContextBetas, b):
			if price.LongContext.Above <= 0 && unbounded == "" {
				unbounded = "anthropic-beta: " + clip(b)
			}
		default:
			e := httpx.Errorf(http.StatusBadRequest, "unsupported_beta_under_hard_budget",
				"The beta %s is not one the gateway knows, so a key under a hard budget may not use it (it could change what the call costs); an operator can allow it: budgets.allow_betas.", quoteName(b))
			return "", e.WithParam("anthropic-beta")
		}
	}
	return unbounded, nil
}

// knownVersions are the anthropic-version values the gateway has read the
// API of: a later version may change a default that bills (a region, a
// speed), so under a hard budget another version is refused like an
// unknown field. No header is the default, AnthropicVersion.
// "2026-10-21" is the version anthropic-sdk-go v2.15.0 sends, whose request
// fields knownFields lists.
var knownVersions = []string{"", provider.AnthropicVersion, "2023-01-01", "2026-10-21"}

// checkVersion refuses an anthropic-version the gateway does not know (the
// value NewRequest forwards: the first header line) unless the operator
// allows it.
func (fp FieldPolicy) checkVersion(v string) error {
	if slices.Contains(knownVersions, v) || slices.Contains(fp.Versions, v) {
		return nil
	}
	return httpx.Errorf(http.StatusBadRequest, "unsupported_version_under_hard_budget",
		"The anthropic-version %s is not one the gateway knows, so a key under a hard budget may not use it (it could change a default that bills); an operator can allow it: budgets.allow_versions.", quoteName(v)).WithParam("anthropic-version")
}

// maxBetas bounds the betas a call may name.
const maxBetas = 64

// headerBetas returns every value of every Anthropic-Beta header of h, split
// at commas and trimmed: all of them are judged, whichever the upstream
// reads.
func headerBetas(h http.Header) []string {
	var out []string
	for _, v := range h.Values("Anthropic-Beta") {
		for _, b := range strings.Split(v, ",") {
			if b = strings.Trim(b, " \t"); b != "" {
				out = append(out, b)
			}
		}
	}
	return out
}

// bodyBetas reads the betas body field of an Anthropic call: an array of
// strings, or absent (null).
func bodyBetas(o object) ([]string, error) {
	v, ok := o.get("betas")
	if !ok || isNull(v) {
		return nil, nil
	}
	bad := badRequest("invalid_type", "betas", "Invalid type for 'betas': expected an array of strings.")
	if v.Kind() != '[' {
		return nil, bad
	}
	dec := jsontext.NewDecoder(strings.NewReader(string(v)))
	if _, err := dec.ReadToken(); err != nil {
		return nil, bad
	}
	var out []string
	for dec.PeekKind() != ']' {
		tok, err := dec.ReadToken()
		if err != nil || tok.Kind() != '"' {
			return nil, bad
		}
		out = append(out, tok.String())
		if len(out) > maxBetas {
			return nil, badRequest("invalid_value", "betas", "Too many betas: at most %d.", maxBetas)
		}
	}
	return out, nil
}
