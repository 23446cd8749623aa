package proxy

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
)

// Call is what the gateway needs to know of a request body, read once,
// strictly (see body.go): every later decision and rewrite works on it.
type Call struct {
	Model        string
	Stream       bool
	IncludeUsage bool   // the caller asked for OpenAI's usage chunk
	HasStreamOpt bool   // stream_options present in the body
	MaxOutput    *int64 // the endpoint's own output cap (capFields), per generation
	Choices      int64  // generations billed per prompt: n, or best_of on completions; 1 elsewhere
	Prompts      int64  // completions: prompts in the batch; 1 elsewhere
	Shape        Shape  // what the input holds (worstcase.go)
	// Betas are the Anthropic betas the call asks for: the betas body
	// field, and (set by prepare) every anthropic-beta header value.
	Betas []string
	// Version is the anthropic-version header an Anthropic call forwards
	// (set by prepare).
	Version string

	body object // the body as read
}

// MaxModelBytes bounds the model name: longer ones are refused.
const MaxModelBytes = 256

// allCaps are the output-cap fields of the APIs the gateway serves.
var allCaps = []string{"max_tokens", "max_completion_tokens", "max_output_tokens"}

// capFields are the output-cap fields ep defines, as its API does: chat has
// max_completion_tokens and the legacy max_tokens; completions and messages
// max_tokens; responses max_output_tokens; embeddings none.
func capFields(ep provider.Endpoint) []string {
	switch ep.Name {
	case provider.Chat.Name:
		return []string{"max_completion_tokens", "max_tokens"}
	case provider.Completions.Name, provider.Messages.Name:
		return []string{"max_tokens"}
	case provider.Responses.Name:
		return []string{"max_output_tokens"}
	}
	return nil
}

func badRequest(code, param, format string, args ...any) *httpx.Error {
	e := httpx.Errorf(http.StatusBadRequest, code, format, args...)
	if param != "" {
		e = e.WithParam(param)
	}
	return e
}

// ParseCall reads the fields the gateway needs from a request body of ep,
// refusing what the upstream would refuse for shape alone and what two
// parsers could read differently: duplicate names at any depth, invalid
// UTF-8, fold variants of governed names, output caps the endpoint does not
// define or that disagree.
func ParseCall(ep provider.Endpoint, body []byte) (Call, error) {
	o, err := readObject(body)
	if err != nil {
		return Call{}, err
	}
	if err := checkVariants(o, governed, ""); err != nil {
		return Call{}, err
	}
	c := Call{body: o, Choices: 1, Prompts: 1}
	mv, ok := o.get("model")
	if !ok || isNull(mv) {
		return Call{}, badRequest("missing_model", "model", "You must provide a model parameter.")
	}
	if mv.Kind() != '"' {
		return Call{}, badRequest("invalid_model", "model", "The model parameter must be a non-empty string.")
	}
	m, _ := jsontext.AppendUnquote(nil, mv)
	c.Model = string(m)
	switch {
	case c.Model == "":
		return Call{}, badRequest("invalid_model", "model", "The model parameter must be a non-empty string.")
	case len(c.Model) > MaxModelBytes:
		return Call{}, badRequest("invalid_model", "model", "The model name is longer than %d bytes.", MaxModelBytes)
	}
	if c.Stream, err = boolField(o, "stream"); err != nil {
		return Call{}, err
	}
	if c.Stream && !ep.Streams {
		return Call{}, badRequest("stream_unsupported", "stream", "The %s endpoint does not stream.", ep.Name)
	}
	if so, ok := o.get("stream_options"); ok { // even null: the rewrite must not add a duplicate member
		c.HasStreamOpt = true
		if !isNull(so) {
			sub, err := readObject(so)
			if err != nil || so.Kind() != '{' {
				return Call{}, badRequest("invalid_type", "stream_options", "Invalid type for 'stream_options': expected an object.")
			}
			if err := checkVariants(sub, []string{"include_usage"}, " in 'stream_options'"); err != nil {
				return Call{}, err
			}
			if c.IncludeUsage, err = boolField(sub, "include_usage"); err != nil {
				return Call{}, badRequest("invalid_type", "stream_options.include_usage", "Invalid type for 'stream_options.include_usage': expected a boolean.")
			}
		}
	}
	if ep.Protocol == provider.TypeAnthropic {
		if c.Betas, err = bodyBetas(o); err != nil {
			return Call{}, err
		}
	}
	if err := c.readCaps(ep); err != nil {
		return Call{}, err
	}
	if err := c.readMultipliers(ep); err != nil {
		return Call{}, err
	}
	if c.Shape, err = analyze(ep, o); err != nil {
		return Call{}, err
	}
	if a := c.Shape.ambiguous; a != "" {
		return Call{}, badRequest("ambiguous_field", a,
			"The field %s could be read as '%s' by a case-insensitive parser; field names are case-sensitive.", quoteName(a), c.Shape.ambiguousAs)
	}
	return c, nil
}

// readCaps reads the output cap: one field per endpoint as its API defines;
// any other cap field is refused rather than ignored (an upstream might honour
// it), and chat's two fields must agree when both are given.
func (c *Call) readCaps(ep provider.Endpoint) error {
	own := capFields(ep)
	for _, f := range allCaps {
		v, ok := c.body.get(f)
		if !ok || slices.Contains(own, f) {
			continue
		}
		if ep.Output && !isNull(v) || !ep.Output {
			return badRequest("unsupported_parameter", f, "The %s endpoint does not take '%s'; its output cap is %s.", ep.Name, f, capNames(own))
		}
	}
	for _, f := range own {
		n, ok, err := intField(c.body, f)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if n < 1 { // an upstream might read 0 as "no cap"
			return badRequest("invalid_value", f, "Invalid value for '%s': it must be at least 1.", f)
		}
		if c.MaxOutput != nil && *c.MaxOutput != n {
			return badRequest("conflicting_parameters", f, "'%s' and '%s' disagree (%d and %d); give one.", own[0], f, *c.MaxOutput, n)
		}
		c.MaxOutput = &n
	}
	if ep.Name == provider.Messages.Name && c.MaxOutput == nil {
		return badRequest("missing_max_tokens", "max_tokens", "max_tokens: Field required.")
	}
	return nil
}

func capNames(fs []string) string {
	if len(fs) == 0 {
		return "none"
	}
	return "'" + strings.Join(fs, "' or '") + "'"
}

// readMultipliers reads how many generations a call is billed for: n choices
// (chat, completions), best_of candidates (completions bills best_of of them),
// one per prompt of a completions batch.
func (c *Call) readMultipliers(ep provider.Endpoint) error {
	n, hasN, err := intField(c.body, "n")
	if err != nil {
		return err
	}
	bestOf, hasBestOf, err := intField(c.body, "best_of")
	if err != nil {
		return err
	}
	takesN := ep.Name == provider.Chat.Name || ep.Name == provider.Completions.Name
	switch {
	case hasN && !takesN:
		return badRequest("unsupported_parameter", "n", "The %s endpoint does not take 'n'.", ep.Name)
	case hasBestOf && ep.Name != provider.Completions.Name:
		return badRequest("unsupported_parameter", "best_of", "The %s endpoint does not take 'best_of'.", ep.Name)
	}
	if hasN {
		c.Choices = max(n, 1)
	}
	if hasBestOf {
		c.Choices = max(c.Choices, bestOf)
	}
	if ep.Name == provider.Completions.Name {
		c.Prompts = promptCount(c.body)
	}
	return nil
}

// promptCount is the number of prompts in a completions request: a string or
// a token array is one, an array of strings or token arrays is a batch.
func promptCount(o object) int64 {
	v, ok := o.get("prompt")
	if !ok || v.Kind() != '[' {
		return 1
	}
	var items []jsontext.Value
	if jsonv2.Unmarshal(v, &items) != nil || len(items) == 0 {
		return 1
	}
	if items[0].Kind() == '0' { // one prompt as token ids
		return 1
	}
	return int64(len(items))
}

// requestUsage returns the body to send upstream. For OpenAI chat and
// completions streams it asks for the usage chunk (stream_options.include_usage)
// and reports strip=true when the caller did not ask, so the gateway can meter
// the stream and still give the caller exactly what it asked for. The rewrite
// keeps every other member's bytes as they were read.
func requestUsage(ep provider.Endpoint, c Call, body []byte) (out []byte, strip bool, err error) {
	if !c.Stream || c.IncludeUsage || (ep != provider.Chat && ep != provider.Completions) {
		return body, false, nil
	}
	o := c.body
	if o == nil {
		if o, err = readObject(body); err != nil {
			return nil, false, err
		}
	}
	so := object{{name: "include_usage", value: jsontext.Value("true")}}
	if v, ok := o.get("stream_options"); ok && !isNull(v) {
		sub, err := readObject(v)
		if err != nil {
			return nil, false, err
		}
		so = sub.set("include_usage", jsontext.Value("true"))
	}
	return o.set("stream_options", so.marshal()).marshal(), true, nil
}

// readBody reads at most max bytes of the request body; more is a 413.
func readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	if r.ContentLength > max {
		return nil, httpx.Errorf(http.StatusRequestEntityTooLarge, "request_too_large", "The request body is larger than the gateway's limit of %d bytes.", max)
	}
	b, err := readAll(http.MaxBytesReader(w, r.Body, max), r.ContentLength)
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, httpx.Errorf(http.StatusRequestEntityTooLarge, "request_too_large", "The request body is larger than the gateway's limit of %d bytes.", max)
	}
	if err != nil {
		return nil, httpx.Errorf(http.StatusBadRequest, "invalid_body", "The request body could not be read.").WithCause(err)
	}
	return b, nil
}

// maxPresized bounds the buffer readAll sizes from a declared length before
// any byte arrived: a caller that declares 16 MiB and sends nothing holds no
// more than this.
const maxPresized = 64 << 10

// readAll is io.ReadAll with the first buffer sized from the length the
// caller declared (bounded by maxPresized): a body is read into one
// allocation of its size, not a series of doublings from 512 bytes.
func readAll(rd io.Reader, declared int64) ([]byte, error) {
	n := int64(512)
	if declared >= 0 {
		n = min(declared, maxPresized) + 1 // +1: room to see EOF without growing
	}
	b := make([]byte, 0, n)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		k, err := rd.Read(b[len(b):cap(b)])
		b = b[:len(b)+k]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// estimateInput is the input-token count used when the upstream reports none:
// an upper bound (see InputUpperBound), so spend is never under-counted.
func estimateInput(body []byte) int64 { return InputUpperBound(body) }

func writeModelList(w http.ResponseWriter, r *http.Request, ids []string) {
	w.Header().Set("Content-Type", "application/json")
	if r.Header.Get("anthropic-version") != "" {
		data := make([]map[string]any, len(ids))
		for i, id := range ids {
			data[i] = map[string]any{"type": "model", "id": id, "display_name": id, "created_at": "2025-01-01T00:00:00Z"}
		}
		resp := map[string]any{"data": data, "has_more": false, "first_id": nil, "last_id": nil}
		if len(ids) > 0 {
			resp["first_id"], resp["last_id"] = ids[0], ids[len(ids)-1]
		}
		json.NewEncoder(w).Encode(resp)
		return
	}
	data := make([]map[string]any, len(ids))
	for i, id := range ids {
		data[i] = map[string]any{"id": id, "object": "model", "created": 1700000000, "owned_by": "gatehouse"}
	}
	json.NewEncoder(w).Encode(map[string]any{"object": "list", "data": data})
}

func writeModel(w http.ResponseWriter, r *http.Request, id string) {
	w.Header().Set("Content-Type", "application/json")
	if r.Header.Get("anthropic-version") != "" {
		json.NewEncoder(w).Encode(map[string]any{"type": "model", "id": id, "display_name": id, "created_at": "2025-01-01T00:00:00Z"})
		return
	}
	json.NewEncoder(w).Encode(map[string]any{"id": id, "object": "model", "created": 1700000000, "owned_by": "gatehouse"})
}
