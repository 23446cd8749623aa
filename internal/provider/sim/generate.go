package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// stream writes SSE events with the fault's pacing and cut.
type stream struct {
	w      http.ResponseWriter
	r      *http.Request
	fault  Fault
	events int
}

func (s *stream) start() {
	s.w.Header().Set("Content-Type", "text/event-stream")
	s.w.Header().Set("Cache-Control", "no-cache")
	s.w.WriteHeader(http.StatusOK)
}

// send writes one event; it returns false when the stream must stop (cut by the
// fault, or the client went away).
func (s *stream) send(event string, data any) bool {
	if s.fault.CutAfter > 0 && s.events >= s.fault.CutAfter {
		panic(http.ErrAbortHandler) // drop the connection without a clean end
	}
	if s.events > 0 && s.fault.ChunkDelay > 0 {
		select {
		case <-time.After(s.fault.ChunkDelay):
		case <-s.r.Context().Done():
			return false
		}
	}
	var b strings.Builder
	if event != "" {
		b.WriteString("event: " + event + "\n")
	}
	switch d := data.(type) {
	case string:
		b.WriteString("data: " + d + "\n\n")
	default:
		j, _ := json.Marshal(d)
		b.WriteString("data: " + string(j) + "\n\n")
	}
	if _, err := s.w.Write([]byte(b.String())); err != nil {
		return false
	}
	http.NewResponseController(s.w).Flush()
	s.events++
	return s.r.Context().Err() == nil
}

// tier is the service tier the call ran at, as OpenAI reports it: the one
// asked for, or "default" for "auto" and none (a project whose default tier
// is the standard one).
func (req *request) tier() string {
	switch req.ServiceTier {
	case "priority", "flex", "scale":
		return req.ServiceTier
	}
	return "default"
}

func (h *Handler) chat(w http.ResponseWriter, req *request, s *stream) {
	if len(req.Messages) == 0 {
		writeOpenAIError(w, http.StatusBadRequest, "invalid_request_error", "", "messages", "[] is too short - 'messages'")
		return
	}
	in := req.inputTokens()
	words, truncated := req.completion(in)
	finish := "stop"
	if truncated {
		finish = "length"
	}
	id := "chatcmpl-" + randomish(req.Model, fmt.Sprint(in), time.Now().String())
	created := h.now()
	out := req.outputTokens(words)
	usage := map[string]any{"prompt_tokens": in, "completion_tokens": out, "total_tokens": in + out,
		"prompt_tokens_details":     map[string]any{"cached_tokens": 0, "audio_tokens": 0},
		"completion_tokens_details": map[string]any{"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}
	if !req.Stream {
		writeJSON(w, http.StatusOK, map[string]any{
			"id": id, "object": "chat.completion", "created": created, "model": req.Model, "system_fingerprint": "fp_sim",
			"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": strings.Join(words, ""), "refusal": nil},
				"logprobs": nil, "finish_reason": finish}},
			"usage": req.usageOr(usage), "service_tier": req.tier(),
		})
		return
	}
	includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage && !s.fault.NoUsage
	chunk := func(delta map[string]any, finish any) map[string]any {
		c := map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": req.Model, "system_fingerprint": "fp_sim", "service_tier": req.tier(),
			"choices": []any{map[string]any{"index": 0, "delta": delta, "logprobs": nil, "finish_reason": finish}}}
		if includeUsage {
			c["usage"] = nil
		}
		return c
	}
	s.start()
	if !s.send("", chunk(map[string]any{"role": "assistant", "content": "", "refusal": nil}, nil)) {
		return
	}
	for _, wd := range words {
		if !s.send("", chunk(map[string]any{"content": wd}, nil)) {
			return
		}
	}
	if !s.send("", chunk(map[string]any{}, finish)) {
		return
	}
	if includeUsage {
		if !s.send("", map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": req.Model,
			"system_fingerprint": "fp_sim", "service_tier": req.tier(), "choices": []any{}, "usage": usage}) {
			return
		}
		if req.underReport && !s.send("", map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": req.Model,
			"system_fingerprint": "fp_sim", "choices": []any{}, "usage": map[string]any{"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}) {
			return
		}
	}
	s.send("", "[DONE]")
}

func (h *Handler) completions(w http.ResponseWriter, req *request, s *stream) {
	if len(req.Prompt) == 0 {
		writeOpenAIError(w, http.StatusBadRequest, "invalid_request_error", "", "prompt", "'prompt' is a required property")
		return
	}
	in := req.inputTokens()
	if _, ok := req.maxOutput(); !ok { // the legacy API defaults max_tokens to 16
		sixteen := int64(16)
		req.MaxTokens = &sixteen
	}
	words, truncated := req.completion(in)
	finish := "stop"
	if truncated {
		finish = "length"
	}
	id := "cmpl-" + randomish(req.Model, fmt.Sprint(in), time.Now().String())
	out := req.outputTokens(words)
	usage := map[string]any{"prompt_tokens": in, "completion_tokens": out, "total_tokens": in + out}
	if !req.Stream {
		writeJSON(w, http.StatusOK, map[string]any{"id": id, "object": "text_completion", "created": h.now(), "model": req.Model,
			"choices": []any{map[string]any{"text": strings.Join(words, ""), "index": 0, "logprobs": nil, "finish_reason": finish}}, "usage": req.usageOr(usage)})
		return
	}
	includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage && !s.fault.NoUsage
	s.start()
	for i, wd := range words {
		var fr any
		if i == len(words)-1 {
			fr = finish
		}
		c := map[string]any{"id": id, "object": "text_completion", "created": h.now(), "model": req.Model,
			"choices": []any{map[string]any{"text": wd, "index": 0, "logprobs": nil, "finish_reason": fr}}}
		if includeUsage {
			c["usage"] = nil
		}
		if !s.send("", c) {
			return
		}
	}
	if includeUsage {
		if !s.send("", map[string]any{"id": id, "object": "text_completion", "created": h.now(), "model": req.Model, "choices": []any{}, "usage": usage}) {
			return
		}
	}
	s.send("", "[DONE]")
}

func (h *Handler) responses(w http.ResponseWriter, req *request, s *stream) {
	if len(req.Input) == 0 {
		writeOpenAIError(w, http.StatusBadRequest, "invalid_request_error", "", "input", "Missing required parameter: 'input'.")
		return
	}
	in := req.inputTokens()
	words, truncated := req.completion(in)
	id := "resp_" + randomish(req.Model, fmt.Sprint(in), time.Now().String())
	msgID := "msg_" + randomish(id)
	out := req.outputTokens(words)
	status := "completed"
	var incomplete any
	if truncated {
		status, incomplete = "incomplete", map[string]any{"reason": "max_output_tokens"}
	}
	content := map[string]any{"type": "output_text", "text": strings.Join(words, ""), "annotations": []any{}, "logprobs": []any{}}
	item := map[string]any{"type": "message", "id": msgID, "status": "completed", "role": "assistant", "content": []any{content}}
	usage := map[string]any{"input_tokens": in, "input_tokens_details": map[string]any{"cached_tokens": 0},
		"output_tokens": out, "output_tokens_details": map[string]any{"reasoning_tokens": 0}, "total_tokens": in + out}
	resp := func(status string, output []any, usage any) map[string]any {
		return map[string]any{"id": id, "object": "response", "created_at": h.now(), "status": status, "model": req.Model,
			"output": output, "usage": usage, "error": nil, "incomplete_details": incomplete, "instructions": nil,
			"max_output_tokens": nil, "parallel_tool_calls": true, "temperature": 1.0, "top_p": 1.0, "tool_choice": "auto",
			"tools": []any{}, "text": map[string]any{"format": map[string]any{"type": "text"}}, "truncation": "disabled", "metadata": map[string]any{},
			"service_tier": req.tier()}
	}
	if !req.Stream {
		writeJSON(w, http.StatusOK, resp(status, []any{item}, req.usageOr(usage)))
		return
	}
	seq := 0
	ev := func(typ string, fields map[string]any) bool {
		fields["type"], fields["sequence_number"] = typ, seq
		seq++
		return s.send(typ, fields)
	}
	s.start()
	if !ev("response.created", map[string]any{"response": resp("in_progress", []any{}, nil)}) ||
		!ev("response.in_progress", map[string]any{"response": resp("in_progress", []any{}, nil)}) ||
		!ev("response.output_item.added", map[string]any{"output_index": 0, "item": map[string]any{"type": "message", "id": msgID, "status": "in_progress", "role": "assistant", "content": []any{}}}) ||
		!ev("response.content_part.added", map[string]any{"item_id": msgID, "output_index": 0, "content_index": 0, "part": map[string]any{"type": "output_text", "text": "", "annotations": []any{}}}) {
		return
	}
	for _, wd := range words {
		if !ev("response.output_text.delta", map[string]any{"item_id": msgID, "output_index": 0, "content_index": 0, "delta": wd, "logprobs": []any{}}) {
			return
		}
	}
	var final any = usage
	if s.fault.NoUsage {
		final = nil
	}
	terminal := "response.completed"
	if truncated {
		terminal = "response.incomplete"
	}
	_ = ev("response.output_text.done", map[string]any{"item_id": msgID, "output_index": 0, "content_index": 0, "text": content["text"], "logprobs": []any{}}) &&
		ev("response.content_part.done", map[string]any{"item_id": msgID, "output_index": 0, "content_index": 0, "part": content}) &&
		ev("response.output_item.done", map[string]any{"output_index": 0, "item": item}) &&
		ev(terminal, map[string]any{"response": resp(status, []any{item}, final)})
}

func (h *Handler) messages(w http.ResponseWriter, req *request, s *stream) {
	if req.MaxTokens == nil {
		writeAnthropicError(w, http.StatusBadRequest, "invalid_request_error", "max_tokens: Field required")
		return
	}
	if len(req.Messages) == 0 {
		writeAnthropicError(w, http.StatusBadRequest, "invalid_request_error", "messages: Field required")
		return
	}
	in := req.inputTokens()
	words, truncated := req.completion(in)
	stop := "end_turn"
	if truncated {
		stop = "max_tokens"
	}
	id := "msg_" + randomish(req.Model, fmt.Sprint(in), time.Now().String())
	out := req.outputTokens(words)
	if !req.Stream {
		writeJSON(w, http.StatusOK, map[string]any{"id": id, "type": "message", "role": "assistant", "model": req.Model,
			"content": []any{map[string]any{"type": "text", "text": strings.Join(words, "")}}, "stop_reason": stop, "stop_sequence": nil,
			"usage": req.usageOr(map[string]any{"input_tokens": in, "output_tokens": out, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0})})
		return
	}
	startUsage := map[string]any{"input_tokens": in, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
	endUsage := map[string]any{"output_tokens": out}
	if s.fault.NoUsage {
		startUsage, endUsage = nil, nil
	}
	s.start()
	msg := map[string]any{"id": id, "type": "message", "role": "assistant", "model": req.Model, "content": []any{},
		"stop_reason": nil, "stop_sequence": nil}
	if startUsage != nil {
		msg["usage"] = startUsage
	}
	if !s.send("message_start", map[string]any{"type": "message_start", "message": msg}) ||
		!s.send("content_block_start", map[string]any{"type": "content_block_start", "index": 0, "content_block": map[string]any{"type": "text", "text": ""}}) ||
		!s.send("ping", map[string]any{"type": "ping"}) {
		return
	}
	for _, wd := range words {
		if !s.send("content_block_delta", map[string]any{"type": "content_block_delta", "index": 0, "delta": map[string]any{"type": "text_delta", "text": wd}}) {
			return
		}
	}
	delta := map[string]any{"type": "message_delta", "delta": map[string]any{"stop_reason": stop, "stop_sequence": nil}}
	if endUsage != nil {
		delta["usage"] = endUsage
	}
	if !s.send("content_block_stop", map[string]any{"type": "content_block_stop", "index": 0}) || !s.send("message_delta", delta) {
		return
	}
	if req.underReport && !s.send("message_delta", map[string]any{"type": "message_delta", "delta": map[string]any{"stop_reason": stop, "stop_sequence": nil},
		"usage": map[string]any{"input_tokens": 1, "output_tokens": 1}}) {
		return
	}
	s.send("message_stop", map[string]any{"type": "message_stop"})
}

// countTokens answers POST /v1/messages/count_tokens as Anthropic does: the
// input tokens the same request would be billed for on /v1/messages.
func (h *Handler) countTokens(w http.ResponseWriter, req *request) {
	if len(req.Messages) == 0 {
		writeAnthropicError(w, http.StatusBadRequest, "invalid_request_error", "messages: Field required")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"input_tokens": req.inputTokens()})
}
