package sim

import (
	"bytes"
	"encoding/json"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Hostile mode (Fault.Hostile) makes the simulator an upstream that a
// gateway must not be able to fool or be fooled by: it reads JSON as most
// non-Go servers do (names case-sensitive, the LAST of duplicate names wins,
// invalid UTF-8 tolerated), and bills like OpenAI and Anthropic do: every
// generation runs to its cap (n choices, best_of candidates, every prompt of
// a completions batch), images cost tokens, a background response answers
// at once with usage null and is billed in full. Each call's bill is kept
// (Bills) so tests can compare what the gateway charged with what the
// upstream would have billed.

// Bill is what the simulator billed for one call, as it read the request.
type Bill struct {
	Endpoint   string // chat, completions, responses, messages, embeddings
	Model      string
	Stream     bool
	Background bool
	Cap        int64 // the output cap it honoured per generation; -1: none
	Choices    int64 // generations billed per prompt (n, best_of)
	Prompts    int64
	Input      int64 // tokens
	Output     int64 // tokens
}

// hostileImageTokens is what the hostile upstream bills per image part.
const hostileImageTokens = 1000

// hostileDefaultOutput is how long a generation without a cap runs.
const hostileDefaultOutput = 4096

// decodeLastWins decodes body into v the way a case-sensitive parser that
// keeps the last duplicate does.
func decodeLastWins(body []byte, v any) error {
	dec := jsontext.NewDecoder(bytes.NewReader(body), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	tree, err := readTree(dec)
	if err != nil {
		return err
	}
	canon, err := json.Marshal(tree)
	if err != nil {
		return err
	}
	return jsonv2.Unmarshal(canon, v, jsonv2.RejectUnknownMembers(false)) // names match exactly
}

func readTree(dec *jsontext.Decoder) (any, error) {
	tok, err := dec.ReadToken()
	if err != nil {
		return nil, err
	}
	switch tok.Kind() {
	case '{':
		m := map[string]any{}
		for dec.PeekKind() != '}' {
			k, err := dec.ReadToken()
			if err != nil {
				return nil, err
			}
			name := k.String()
			v, err := readTree(dec)
			if err != nil {
				return nil, err
			}
			m[name] = v // the last duplicate wins
		}
		_, err := dec.ReadToken()
		return m, err
	case '[':
		var a []any
		for dec.PeekKind() != ']' {
			v, err := readTree(dec)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		_, err := dec.ReadToken()
		return a, err
	case '"':
		return tok.String(), nil
	case '0':
		return json.Number(tok.String()), nil
	case 't':
		return true, nil
	case 'f':
		return false, nil
	}
	return nil, nil
}

// hostileCap is the output cap the endpoint's API defines, as a strict
// upstream reads it: chat max_completion_tokens (or the legacy max_tokens),
// completions and messages max_tokens, responses max_output_tokens.
func (req *request) hostileCap() (int64, bool) {
	var p *int64
	switch req.endpoint {
	case "chat":
		p = req.MaxCompletionTokens
		if p == nil {
			p = req.MaxTokens
		}
	case "completions", "messages":
		p = req.MaxTokens
	case "responses":
		p = req.MaxOutputTokens
	}
	if p == nil {
		return 0, false
	}
	return max(*p, 0), true
}

// generations is how many outputs the upstream bills for per call.
func (req *request) generations() (choices, prompts int64) {
	choices, prompts = 1, 1
	if req.endpoint == "chat" || req.endpoint == "completions" {
		choices = max(int64(req.N), 1)
	}
	if req.endpoint == "completions" {
		if req.BestOf != nil {
			choices = max(choices, *req.BestOf)
		}
		var batch []json.RawMessage
		if json.Unmarshal(req.Prompt, &batch) == nil && len(batch) > 0 {
			if c := bytes.TrimSpace(batch[0]); len(c) > 0 && (c[0] == '"' || c[0] == '[') {
				prompts = int64(len(batch))
			}
		}
	}
	return choices, prompts
}

// countImages counts image parts in a JSON value, by structure.
func countImages(raw json.RawMessage) int64 {
	var v any
	if len(raw) == 0 || json.Unmarshal(raw, &v) != nil {
		return 0
	}
	var n int64
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			switch t, _ := x["type"].(string); t {
			case "image_url", "input_image", "image", "computer_screenshot":
				n++
				return
			}
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	return n
}

// bill computes the call's bill as the hostile upstream reads it.
func (req *request) bill() Bill {
	b := Bill{Endpoint: req.endpoint, Model: req.Model, Stream: req.Stream, Background: req.Background, Cap: -1}
	b.Input = req.inputTokens()
	if req.endpoint == "embeddings" {
		return b
	}
	b.Choices, b.Prompts = req.generations()
	per := int64(hostileDefaultOutput)
	if req.endpoint == "completions" {
		per = 16 // the legacy API's default max_tokens
	}
	if c, ok := req.hostileCap(); ok {
		b.Cap, per = c, c
	}
	b.Output = per * b.Choices * b.Prompts
	return b
}

func endpointOf(path string) string {
	for _, e := range []string{"chat/completions", "completions", "embeddings", "responses", "messages"} {
		if strings.HasSuffix(path, "/"+e) {
			return strings.TrimSuffix(e, "/completions")
		}
	}
	return ""
}

// HostileBill is what the hostile upstream bills for body sent to path (an
// endpoint path such as /chat/completions), as it reads the body.
func HostileBill(path string, body []byte) (Bill, error) {
	var req request
	if err := decodeLastWins(body, &req); err != nil {
		return Bill{}, err
	}
	req.endpoint, req.hostile = endpointOf(path), true
	b := req.bill()
	b.Background = req.Background && req.endpoint == "responses"
	return b, nil
}
