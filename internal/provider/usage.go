package provider

import (
	"bytes"
	"encoding/json"

	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

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

func (u openAIUsage) tokens() usage.Tokens {
	t := usage.Tokens{Input: u.PromptTokens + u.InputTokens, Output: u.CompletionTokens + u.OutputTokens}
	if u.PromptTokensDetails != nil {
		t.CachedInput += u.PromptTokensDetails.CachedTokens
	}
	if u.InputTokensDetails != nil {
		t.CachedInput += u.InputTokensDetails.CachedTokens
	}
	return t
}

type anthropicUsage struct {
	InputTokens              int64 `json:"input_tokens"`
	OutputTokens             int64 `json:"output_tokens"`
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
}

func (u anthropicUsage) tokens() usage.Tokens {
	return usage.Tokens{
		Input:       u.InputTokens + u.CacheCreationInputTokens + u.CacheReadInputTokens,
		CachedInput: u.CacheReadInputTokens,
		CacheWrite:  u.CacheCreationInputTokens,
		Output:      u.OutputTokens,
	}
}

// ParseUsage reads the usage and the response id out of a complete JSON
// response of ep. ok is false when the body reports no usage.
func ParseUsage(ep Endpoint, body []byte) (t usage.Tokens, id string, ok bool) {
	t, id, _, ok = ParseUsageModel(ep, body)
	return t, id, ok
}

// ParseUsageModel is ParseUsage that also returns the model the response
// names (the model that answered; "" when it names none).
func ParseUsageModel(ep Endpoint, body []byte) (t usage.Tokens, id, model string, ok bool) {
	if ep.Protocol == TypeAnthropic {
		var r struct {
			ID    string          `json:"id"`
			Model string          `json:"model"`
			Usage *anthropicUsage `json:"usage"`
		}
		if json.Unmarshal(body, &r) != nil || r.Usage == nil {
			return usage.Tokens{}, r.ID, r.Model, false
		}
		return r.Usage.tokens().Clamp(), r.ID, r.Model, true
	}
	var r struct {
		ID    string       `json:"id"`
		Model string       `json:"model"`
		Usage *openAIUsage `json:"usage"`
	}
	if json.Unmarshal(body, &r) != nil || r.Usage == nil {
		return usage.Tokens{}, r.ID, r.Model, false
	}
	return r.Usage.tokens().Clamp(), r.ID, r.Model, true
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
	done     bool   // a terminal event was seen
}

// NewMeter returns a Meter for a stream of ep.
func NewMeter(ep Endpoint) *Meter { return &Meter{ep: ep} }

var (
	doneData  = []byte("[DONE]")
	usageWord = []byte(`"usage"`)
)

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
		ID      string       `json:"id"`
		Model   string       `json:"model"`
		Usage   *openAIUsage `json:"usage"`
		Choices []struct {
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
	if json.Unmarshal(ev.Data, &c) != nil {
		return true
	}
	if m.id == "" {
		m.id = c.ID
	}
	if m.model == "" {
		m.model = c.Model
	}
	for _, ch := range c.Choices {
		m.outChars += int64(len(ch.Text) + len(ch.Delta.Content) + len(ch.Delta.Reasoning))
		for _, tc := range ch.Delta.ToolCalls {
			m.outChars += int64(len(tc.Function.Arguments))
		}
	}
	if c.Usage != nil {
		m.tokens = c.Usage.tokens()
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
			ID    string       `json:"id"`
			Model string       `json:"model"`
			Usage *openAIUsage `json:"usage"`
		} `json:"response"`
	}
	if json.Unmarshal(ev.Data, &e) != nil {
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
		if e.Response.Usage != nil {
			m.tokens = e.Response.Usage.tokens()
			m.haveIn, m.haveOut = true, true
		}
	}
	switch e.Type {
	case "response.completed", "response.incomplete", "response.failed":
		m.done = true
	}
	return true
}

func (m *Meter) anthropic(ev Event) bool {
	if !bytes.Contains(ev.Data, usageWord) && !bytes.Contains(ev.Data, []byte("delta")) && !bytes.Contains(ev.Data, []byte("message_stop")) {
		return true
	}
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
	if json.Unmarshal(ev.Data, &e) != nil {
		return true
	}
	switch e.Type {
	case "message_start":
		if e.Message != nil {
			m.id, m.model = e.Message.ID, e.Message.Model
			if e.Message.Usage != nil {
				in := e.Message.Usage.tokens()
				m.tokens.Input, m.tokens.CachedInput, m.tokens.CacheWrite = in.Input, in.CachedInput, in.CacheWrite
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
			// restated (newer API versions): take them when present.
			m.tokens.Output = e.Usage.OutputTokens
			m.haveOut = true
			if in := e.Usage.tokens(); in.Input > 0 {
				m.tokens.Input, m.tokens.CachedInput, m.tokens.CacheWrite = in.Input, in.CachedInput, in.CacheWrite
				m.haveIn = true
			}
		}
	case "message_stop":
		m.done = true
	}
	return true
}

// ResponseID returns the upstream's id of the response, once seen.
func (m *Meter) ResponseID() string { return m.id }

// ResponseModel returns the model the stream names ("" when none).
func (m *Meter) ResponseModel() string { return m.model }

// Done reports whether the stream reached its terminal event.
func (m *Meter) Done() bool { return m.done }

// Usage returns the usage of the stream so far. When the upstream reported
// none, it counts locally and estimated is true: one token per byte of output
// text (every token covers at least one byte, so this never under-counts) and
// inputEstimate for input.
func (m *Meter) Usage(inputEstimate int64) (t usage.Tokens, estimated bool) {
	t = m.tokens
	if !m.haveIn {
		t.Input, estimated = inputEstimate, true
	}
	if !m.haveOut {
		t.Output, estimated = m.outChars, true
	}
	return t.Clamp(), estimated
}
