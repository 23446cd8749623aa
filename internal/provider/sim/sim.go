// Package sim is a simulated LLM provider: an http.Handler that speaks the
// OpenAI API (chat completions, completions, embeddings, responses, models) and
// the Anthropic Messages API, in JSON and SSE, with usage that grows with the
// input and never exceeds the requested maximum output.
//
// Gatehouse routes to it when no real provider is configured, so that a fresh
// install answers at once; tests use it, through providertest, as the fake
// upstream, and inject faults (latency, errors, cut streams, missing usage)
// with SetFault. Output is deterministic for a given request.
package sim

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/httpx"
)

// Models are the models the simulator lists. It answers for any model name.
var Models = []string{"sim-small", "sim-large", "gpt-4o", "gpt-4o-mini", "text-embedding-3-small", "claude-sonnet-4-5", "claude-haiku-4-5"}

// Fault makes the simulator misbehave on purpose.
type Fault struct {
	Status     int           // answer every request with this error status (0: no error)
	Latency    time.Duration // wait before answering
	ChunkDelay time.Duration // wait between stream events
	CutAfter   int           // drop the connection after this many stream events (0: never)
	NoUsage    bool          // report no usage (usage null in JSON, none in streams)
	// UnderReport reports usage so that a gateway taking it at its word
	// meters less than was billed: negative counts in JSON; in streams the
	// real report followed by a smaller one (a second OpenAI usage chunk, a
	// second Anthropic message_delta).
	UnderReport bool
	Hostile     bool            // read and bill like a non-Go upstream (hostile.go)
	OverReport  int64           // hostile mode: bill and report this many output tokens more than the cap allows
	Gate        <-chan struct{} // hold every answer until this closes (tests: all calls in flight at once)
	// RetryAfter and RetryAfterMs are sent with a Status error as the
	// Retry-After and retry-after-ms headers.
	RetryAfter, RetryAfterMs string
	// EchoKey answers 400 with the credential it was given quoted in full in
	// every field of the error (a careless or hostile upstream).
	EchoKey bool
	// Redirect answers every generation request with a 307 to this URL.
	Redirect string
}

// Handler is the simulated provider.
type Handler struct {
	apiKey string // when set, requests must carry it (or one of keys)

	mu    sync.Mutex
	fault Fault
	keys  []string // SetKeys: the accepted keys, replacing apiKey

	Calls atomic.Int64 // requests received on generation endpoints
	bills []Bill       // hostile mode: what each call was billed
	clock func() time.Time
}

// New returns a simulator; apiKey "" accepts any credential.
func New(apiKey string) *Handler {
	return &Handler{apiKey: apiKey, clock: time.Now}
}

// SetKeys replaces the accepted credentials (an upstream rotating its keys).
func (h *Handler) SetKeys(keys ...string) {
	h.mu.Lock()
	h.keys = keys
	h.mu.Unlock()
}

// Bills returns what the simulator billed in hostile mode, call by call.
func (h *Handler) Bills() []Bill {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Bill(nil), h.bills...)
}

func (h *Handler) addBill(b Bill) {
	h.mu.Lock()
	h.bills = append(h.bills, b)
	h.mu.Unlock()
}

// SetFault sets the misbehaviour for requests from now on.
func (h *Handler) SetFault(f Fault) {
	h.mu.Lock()
	h.fault = f
	h.mu.Unlock()
}

func (h *Handler) currentFault() Fault {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.fault
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	countTokens := strings.HasSuffix(r.URL.Path, "/v1/messages/count_tokens")
	anthropic := strings.HasSuffix(r.URL.Path, "/v1/messages") || countTokens
	w.Header().Set("x-request-id", "sim-"+randomish(r.URL.Path, h.clock().String()))
	if !h.authorized(r, anthropic) {
		if anthropic {
			writeAnthropicError(w, http.StatusUnauthorized, "authentication_error", "invalid x-api-key")
		} else {
			writeOpenAIError(w, http.StatusUnauthorized, "invalid_request_error", "invalid_api_key", "",
				"Incorrect API key provided: "+maskKey(bearer(r))+". You can find your API key at https://platform.openai.com/account/api-keys.")
		}
		return
	}
	if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/models") {
		h.models(w)
		return
	}
	if r.Method != http.MethodPost {
		writeOpenAIError(w, http.StatusNotFound, "invalid_request_error", "unknown_url", "", "Unknown request URL: "+r.Method+" "+r.URL.Path)
		return
	}
	h.Calls.Add(1)
	f := h.currentFault()
	wait := func() bool { // the fault's latency and gate; false: the caller left
		if f.Latency > 0 {
			select {
			case <-time.After(f.Latency):
			case <-r.Context().Done():
				return false
			}
		}
		if f.Gate != nil {
			select {
			case <-f.Gate:
			case <-r.Context().Done():
				return false
			}
		}
		return true
	}
	if f.Redirect != "" {
		http.Redirect(w, r, f.Redirect, http.StatusTemporaryRedirect)
		return
	}
	if f.EchoKey {
		k := bearer(r)
		if anthropic {
			k = r.Header.Get("x-api-key")
		}
		writeJSON(w, http.StatusBadRequest, map[string]any{"type": "error", "request_id": "echo",
			"error": map[string]any{"type": "invalid_request_error " + k, "message": "you sent " + k, "code": k, "param": k}})
		return
	}
	if f.Status != 0 {
		if !wait() {
			return
		}
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		if f.RetryAfterMs != "" {
			w.Header().Set("retry-after-ms", f.RetryAfterMs)
		}
		if anthropic {
			writeAnthropicError(w, f.Status, anthropicErrorType(f.Status), "simulated failure")
		} else {
			writeOpenAIError(w, f.Status, openAIErrorType(f.Status), "", "", "simulated failure")
		}
		return
	}
	var req request
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 32<<20))
	if err == nil && f.Hostile {
		err = decodeLastWins(raw, &req)
	} else if err == nil {
		err = json.NewDecoder(bytes.NewReader(raw)).Decode(&req)
	}
	req.endpoint, req.hostile, req.noUsage, req.underReport = endpointOf(r.URL.Path), f.Hostile, f.NoUsage, f.UnderReport
	if err != nil {
		if anthropic {
			writeAnthropicError(w, http.StatusBadRequest, "invalid_request_error", "invalid JSON body")
		} else {
			writeOpenAIError(w, http.StatusBadRequest, "invalid_request_error", "", "", "We could not parse the JSON body of your request.")
		}
		return
	}
	if req.Model == "" {
		if anthropic {
			writeAnthropicError(w, http.StatusBadRequest, "invalid_request_error", "model: Field required")
		} else {
			writeOpenAIError(w, http.StatusBadRequest, "invalid_request_error", "", "model", "you must provide a model parameter")
		}
		return
	}
	if f.Hostile && req.endpoint != "embeddings" && !countTokens {
		// The upstream has the request: it bills it, whether or not the
		// caller is still there for the answer.
		b := req.bill()
		b.Background = req.Background && req.endpoint == "responses"
		b.Output += f.OverReport
		req.billed = &b
		h.addBill(b)
	}
	if !wait() {
		return
	}
	s := &stream{w: w, r: r, fault: f}
	if f.Hostile && req.Background && req.endpoint == "responses" {
		// Like OpenAI: answer at once, bill the run later, in full.
		writeJSON(w, http.StatusOK, map[string]any{"id": "resp_" + randomish(req.Model, h.clock().String()), "object": "response",
			"created_at": h.now(), "status": "queued", "background": true, "model": req.Model, "output": []any{}, "usage": nil})
		return
	}
	switch {
	case countTokens:
		h.countTokens(w, &req)
	case anthropic:
		h.messages(w, &req, s)
	case strings.HasSuffix(r.URL.Path, "/chat/completions"):
		h.chat(w, &req, s)
	case strings.HasSuffix(r.URL.Path, "/completions"):
		h.completions(w, &req, s)
	case strings.HasSuffix(r.URL.Path, "/embeddings"):
		h.embeddings(w, &req)
	case strings.HasSuffix(r.URL.Path, "/responses"):
		h.responses(w, &req, s)
	default:
		writeOpenAIError(w, http.StatusNotFound, "invalid_request_error", "unknown_url", "", "Unknown request URL: POST "+r.URL.Path)
	}
}

func (h *Handler) authorized(r *http.Request, anthropic bool) bool {
	h.mu.Lock()
	keys := h.keys
	h.mu.Unlock()
	if keys == nil {
		if h.apiKey == "" {
			return true
		}
		keys = []string{h.apiKey}
	}
	got := bearer(r)
	if anthropic {
		got = r.Header.Get("x-api-key")
	}
	ok := false
	for _, k := range keys {
		ok = ok || subtle.ConstantTimeCompare([]byte(got), []byte(k)) == 1
	}
	return ok
}

func bearer(r *http.Request) string {
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
}

// maskKey shows a key the way OpenAI's 401 message does: enough to leak part of
// it, which is why the gateway scrubs upstream messages.
func maskKey(k string) string {
	if len(k) < 8 {
		return "***"
	}
	return k[:6] + "*********" + k[len(k)-4:]
}

// request is the union of the request fields the simulator reads.
type request struct {
	Model               string          `json:"model"`
	Messages            []message       `json:"messages"`
	System              json.RawMessage `json:"system"`
	Prompt              json.RawMessage `json:"prompt"`
	Input               json.RawMessage `json:"input"`
	Instructions        string          `json:"instructions"`
	MaxTokens           *int64          `json:"max_tokens"`
	MaxCompletionTokens *int64          `json:"max_completion_tokens"`
	MaxOutputTokens     *int64          `json:"max_output_tokens"`
	Stream              bool            `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	N              int    `json:"n"`
	BestOf         *int64 `json:"best_of"`
	Background     bool   `json:"background"`
	ServiceTier    string `json:"service_tier"`
	Dimensions     int    `json:"dimensions"`
	EncodingFormat string `json:"encoding_format"`

	endpoint    string // chat, completions, embeddings, responses, messages
	hostile     bool   // Fault.Hostile
	noUsage     bool   // Fault.NoUsage
	underReport bool   // Fault.UnderReport
	billed      *Bill  // hostile mode: this call's bill, once generated
}

type message struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// text returns every piece of text in a JSON value: strings, and the "text" or
// "content" of objects, recursively.
func text(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return ""
	}
	var b strings.Builder
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			b.WriteString(x)
			b.WriteByte(' ')
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			walk(x["text"])
			walk(x["content"])
		case float64:
			b.WriteString("t ") // a token id in a token array
		}
	}
	walk(v)
	return b.String()
}

// outputTokens is the output usage to report for words generated.
func (req *request) outputTokens(words []string) int64 {
	if req.billed != nil {
		return req.billed.Output
	}
	return int64(len(words))
}

// usageOr returns usage, or nil when the fault withholds it.
func (req *request) usageOr(usage any) any {
	if req.noUsage {
		return nil
	}
	if req.underReport {
		return negated(usage)
	}
	return usage
}

// negated is usage with every count negative.
func negated(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = negated(e)
		}
		return m
	case int:
		return -x - 1
	case int64:
		return -x - 1
	}
	return v
}

// countTokens approximates a tokenizer: one token per four bytes, rounded up.
func countTokens(s string) int64 { return int64((len(s) + 3) / 4) }

// inputTokens counts the prompt the way chat formats do: content plus a few
// tokens of framing per message.
func (req *request) inputTokens() int64 {
	n := int64(3) + countTokens(text(req.System)) + countTokens(text(req.Prompt)) + countTokens(text(req.Input)) + countTokens(req.Instructions)
	for _, m := range req.Messages {
		n += 4 + countTokens(text(m.Content))
		if req.hostile {
			n += countImages(m.Content) * hostileImageTokens
		}
	}
	if req.hostile {
		n += countImages(req.Input) * hostileImageTokens
	}
	return n
}

func (req *request) maxOutput() (int64, bool) {
	if req.hostile {
		return req.hostileCap()
	}
	for _, p := range []*int64{req.MaxCompletionTokens, req.MaxTokens, req.MaxOutputTokens} {
		if p != nil {
			return max(*p, 0), true
		}
	}
	return 0, false
}

var vocabulary = strings.Fields("Gatehouse answers from the simulated provider with words that stand in for a real model and count as one token each while the gateway meters usage keeps budgets and records every call")

// completion returns the output tokens for req and whether they stopped at the
// caller's limit.
func (req *request) completion(input int64) (words []string, truncated bool) {
	want := min(12+input/4, 256)
	if limit, ok := req.maxOutput(); ok && limit < want {
		want, truncated = limit, true
	}
	if b := req.billed; b != nil { // every generation runs to its cap; a few words stand for it
		want, truncated = min(max(b.Output/max(b.Choices*b.Prompts, 1), 0), 256), b.Cap >= 0
	}
	seed := sha256.Sum256([]byte(req.Model + text(req.Input) + fmt.Sprint(input)))
	start := int(binary.BigEndian.Uint16(seed[:2])) % len(vocabulary)
	words = make([]string, want)
	for i := range words {
		w := vocabulary[(start+i)%len(vocabulary)]
		if i > 0 {
			w = " " + w
		}
		words[i] = w
	}
	return words, truncated
}

func (h *Handler) now() int64 { return h.clock().Unix() }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeOpenAIError(w http.ResponseWriter, status int, typ, code, param, msg string) {
	e := map[string]any{"message": msg, "type": typ, "param": nil, "code": nil}
	if code != "" {
		e["code"] = code
	}
	if param != "" {
		e["param"] = param
	}
	writeJSON(w, status, map[string]any{"error": e})
}

func writeAnthropicError(w http.ResponseWriter, status int, typ, msg string) {
	writeJSON(w, status, map[string]any{"type": "error", "error": map[string]any{"type": typ, "message": msg}, "request_id": w.Header().Get("x-request-id")})
}

func openAIErrorType(status int) string {
	if status >= 500 {
		return "server_error"
	}
	if status == http.StatusTooManyRequests {
		return "rate_limit_exceeded"
	}
	return "invalid_request_error"
}

// anthropicErrorType is Anthropic's error type for a status: the same table
// the gateway renders with.
func anthropicErrorType(status int) string { return httpx.AnthropicType(status) }

func randomish(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "|")))
	return base64.RawURLEncoding.EncodeToString(h[:12])
}

func (h *Handler) models(w http.ResponseWriter) {
	data := make([]map[string]any, len(Models))
	for i, m := range Models {
		data[i] = map[string]any{"id": m, "object": "model", "created": 1700000000, "owned_by": "gatehouse-sim"}
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

func (h *Handler) embeddings(w http.ResponseWriter, req *request) {
	var inputs []string
	var raw any
	json.Unmarshal(req.Input, &raw)
	switch x := raw.(type) {
	case string:
		inputs = []string{x}
	case []any:
		if len(x) > 0 {
			if _, isNum := x[0].(float64); isNum { // one token array
				inputs = []string{text(req.Input)}
				break
			}
		}
		for _, e := range x {
			b, _ := json.Marshal(e)
			inputs = append(inputs, text(b))
		}
	}
	if len(inputs) == 0 {
		writeOpenAIError(w, http.StatusBadRequest, "invalid_request_error", "", "input", "'input' is a required property")
		return
	}
	dims := req.Dimensions
	if dims <= 0 || dims > 3072 {
		dims = 16
	}
	var tokens int64
	data := make([]map[string]any, len(inputs))
	for i, in := range inputs {
		tokens += countTokens(in)
		vec := make([]float32, dims)
		seed := sha256.Sum256([]byte(in))
		var norm float64
		for j := range vec {
			b := seed[j%32] ^ byte(j)
			vec[j] = float32(b)/255 - 0.5
			norm += float64(vec[j]) * float64(vec[j])
		}
		for j := range vec {
			vec[j] /= float32(math.Sqrt(norm) + 1e-9)
		}
		var emb any = vec
		if req.EncodingFormat == "base64" {
			buf := make([]byte, 4*dims)
			for j, f := range vec {
				binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(f))
			}
			emb = base64.StdEncoding.EncodeToString(buf)
		}
		data[i] = map[string]any{"object": "embedding", "index": i, "embedding": emb}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"object": "list", "data": data, "model": req.Model,
		"usage": map[string]any{"prompt_tokens": tokens, "total_tokens": tokens},
	})
}
