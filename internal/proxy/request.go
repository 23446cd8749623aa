package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
)

// Call is what the gateway needs to know of a request body.
type Call struct {
	Model        string
	Stream       bool
	IncludeUsage bool   // the caller asked for OpenAI's usage chunk
	HasStreamOpt bool   // stream_options present in the body
	MaxOutput    *int64 // max_tokens, max_completion_tokens or max_output_tokens
}

// ParseCall reads the fields the gateway needs from a request body of ep,
// refusing what the upstream would refuse for shape alone.
func ParseCall(ep provider.Endpoint, body []byte) (Call, error) {
	var raw struct {
		Model               json.RawMessage `json:"model"`
		Stream              *bool           `json:"stream"`
		StreamOptions       json.RawMessage `json:"stream_options"`
		MaxTokens           *int64          `json:"max_tokens"`
		MaxCompletionTokens *int64          `json:"max_completion_tokens"`
		MaxOutputTokens     *int64          `json:"max_output_tokens"`
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return Call{}, httpx.Errorf(http.StatusBadRequest, "invalid_json", "The request body must be a JSON object.")
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return Call{}, httpx.Errorf(http.StatusBadRequest, "invalid_type", "Invalid type for '%s': expected %s.", typeErr.Field, typeErr.Type.String()).WithParam(typeErr.Field)
		}
		return Call{}, httpx.Errorf(http.StatusBadRequest, "invalid_json", "We could not parse the JSON body of your request: %s.", jsonProblem(err))
	}
	var c Call
	if len(raw.Model) == 0 || string(raw.Model) == "null" {
		return Call{}, httpx.Errorf(http.StatusBadRequest, "missing_model", "You must provide a model parameter.").WithParam("model")
	}
	if err := json.Unmarshal(raw.Model, &c.Model); err != nil || c.Model == "" {
		return Call{}, httpx.Errorf(http.StatusBadRequest, "invalid_model", "The model parameter must be a non-empty string.").WithParam("model")
	}
	if raw.Stream != nil {
		c.Stream = *raw.Stream
	}
	if c.Stream && !ep.Streams {
		return Call{}, httpx.Errorf(http.StatusBadRequest, "stream_unsupported", "The %s endpoint does not stream.", ep.Name).WithParam("stream")
	}
	if len(raw.StreamOptions) > 0 { // even null: the rewrite must not add a duplicate member
		c.HasStreamOpt = true
		var so struct {
			IncludeUsage bool `json:"include_usage"`
		}
		if json.Unmarshal(raw.StreamOptions, &so) != nil {
			return Call{}, httpx.Errorf(http.StatusBadRequest, "invalid_type", "Invalid type for 'stream_options': expected an object.").WithParam("stream_options")
		}
		c.IncludeUsage = so.IncludeUsage
	}
	for _, p := range []*int64{raw.MaxCompletionTokens, raw.MaxTokens, raw.MaxOutputTokens} {
		if p != nil {
			if *p < 0 {
				return Call{}, httpx.Errorf(http.StatusBadRequest, "invalid_value", "The maximum output tokens must not be negative.")
			}
			c.MaxOutput = p
			break
		}
	}
	return c, nil
}

func jsonProblem(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end of input"
	}
	return "invalid JSON"
}

// requestUsage returns the body to send upstream. For OpenAI chat and
// completions streams it asks for the usage chunk (stream_options.include_usage)
// and reports strip=true when the caller did not ask, so the gateway can meter
// the stream and still give the caller exactly what it asked for.
func requestUsage(ep provider.Endpoint, c Call, body []byte) (out []byte, strip bool, err error) {
	if !c.Stream || c.IncludeUsage || (ep != provider.Chat && ep != provider.Completions) {
		return body, false, nil
	}
	if !c.HasStreamOpt {
		// Insert the member right after the opening brace: the body is a valid
		// object (ParseCall), so this stays valid and avoids re-encoding it.
		i := bytes.IndexByte(body, '{')
		out = make([]byte, 0, len(body)+40)
		out = append(out, body[:i+1]...)
		out = append(out, `"stream_options":{"include_usage":true}`...)
		rest := bytes.TrimLeft(body[i+1:], " \t\r\n")
		if len(rest) > 0 && rest[0] != '}' {
			out = append(out, ',')
		}
		return append(out, body[i+1:]...), true, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, false, err
	}
	var so map[string]json.RawMessage
	json.Unmarshal(m["stream_options"], &so)
	if so == nil {
		so = map[string]json.RawMessage{}
	}
	so["include_usage"] = json.RawMessage("true")
	m["stream_options"], _ = json.Marshal(so)
	out, err = json.Marshal(m)
	return out, true, err
}

// readBody reads at most max bytes of the request body; more is a 413.
func readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	if r.ContentLength > max {
		return nil, httpx.Errorf(http.StatusRequestEntityTooLarge, "request_too_large", "The request body is larger than the gateway's limit of %d bytes.", max)
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, httpx.Errorf(http.StatusRequestEntityTooLarge, "request_too_large", "The request body is larger than the gateway's limit of %d bytes.", max)
	}
	if err != nil {
		return nil, httpx.Errorf(http.StatusBadRequest, "invalid_body", "The request body could not be read.").WithCause(err)
	}
	return b, nil
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
