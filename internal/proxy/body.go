package proxy

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/gatehouse-gw/gatehouse/internal/httpx"
)

// One reading of the body: the gateway decides on exactly the JSON the
// upstream will read. The body is read with JSON v2 semantics (names are
// case-sensitive, a duplicate name at any depth and invalid UTF-8 are errors),
// so an upstream that keeps the first duplicate, the last, or folds case
// cannot read a different request from the one that was checked.

// member is one top-level member of a request body.
type member struct {
	name  string
	value jsontext.Value
}

// object is a request body read strictly: its top-level members in order.
type object []member

// maxNameInMessage bounds a member name quoted in an error message.
const maxNameInMessage = 64

// decoders are reused: a jsontext.Decoder is large, and every call reads a
// body (and its stream_options, thinking) with one; so is the reader it
// reads from.
var decoders = sync.Pool{New: func() any {
	rd := bytes.NewReader(nil)
	return &decoder{rd: rd, dec: jsontext.NewDecoder(rd)}
}}

type decoder struct {
	rd  *bytes.Reader
	dec *jsontext.Decoder
}

// readObject reads body as one JSON object, strictly. Member values are
// slices of body, not copies.
func readObject(body []byte) (object, error) {
	d := decoders.Get().(*decoder)
	d.rd.Reset(body)
	dec := d.dec
	dec.Reset(d.rd)
	defer func() {
		d.rd.Reset(nil) // drop the body
		dec.Reset(d.rd)
		decoders.Put(d)
	}()
	tok, err := dec.ReadToken()
	if err != nil {
		return nil, bodyError(err)
	}
	if tok.Kind() != '{' {
		return nil, httpx.Errorf(http.StatusBadRequest, "invalid_json", "The request body must be a JSON object.")
	}
	var o object
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken()
		if err != nil {
			return nil, bodyError(err)
		}
		name := tok.String() // before the next read voids tok
		v, err := dec.ReadValue()
		if err != nil {
			return nil, bodyError(err)
		}
		end := dec.InputOffset()
		if start := end - int64(len(v)); start >= 0 && bytes.Equal(body[start:end], v) {
			v = jsontext.Value(body[start:end:end]) // the bytes as sent, without a copy
		} else {
			v = v.Clone()
		}
		o = append(o, member{name: name, value: v})
	}
	if _, err := dec.ReadToken(); err != nil {
		return nil, bodyError(err)
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return nil, httpx.Errorf(http.StatusBadRequest, "invalid_json", "We could not parse the JSON body of your request: data after the object.")
	}
	return o, nil
}

// bodyError explains a strict-reading failure, naming where it happened.
func bodyError(err error) error {
	var se *jsontext.SyntacticError
	where := ""
	if errors.As(err, &se) && se.JSONPointer != "" {
		where = " at " + quoteName(string(se.JSONPointer))
	}
	switch {
	case errors.Is(err, jsontext.ErrDuplicateName):
		name := ""
		if se != nil {
			name = se.JSONPointer.LastToken()
		}
		return httpx.Errorf(http.StatusBadRequest, "duplicate_field",
			"The request body names the field %s twice%s; every field may appear once.", quoteName(name), where).WithParam(clip(name))
	case strings.Contains(err.Error(), "UTF-8"):
		return httpx.Errorf(http.StatusBadRequest, "invalid_utf8", "The request body is not valid UTF-8%s.", where)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return httpx.Errorf(http.StatusBadRequest, "invalid_json", "We could not parse the JSON body of your request: unexpected end of input.")
	case se != nil:
		return httpx.Errorf(http.StatusBadRequest, "invalid_json", "We could not parse the JSON body of your request: syntax error at byte %d.", se.ByteOffset)
	}
	return httpx.Errorf(http.StatusBadRequest, "invalid_json", "We could not parse the JSON body of your request.")
}

// clip bounds s for an error message, on a rune boundary.
func clip(s string) string {
	if len(s) <= maxNameInMessage {
		return s
	}
	s = s[:maxNameInMessage]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}

func quoteName(s string) string { return "'" + clip(s) + "'" }

// get returns the value of the member called name (exactly), if present.
func (o object) get(name string) (jsontext.Value, bool) {
	for _, m := range o {
		if m.name == name {
			return m.value, true
		}
	}
	return nil, false
}

// set replaces the member called name, in place, or appends it.
func (o object) set(name string, v jsontext.Value) object {
	for i, m := range o {
		if m.name == name {
			o2 := append(object(nil), o...)
			o2[i].value = v
			return o2
		}
	}
	return append(append(object(nil), o...), member{name, v})
}

// marshal writes o back out: every value exactly as it was read, member
// names quoted canonically, so the upstream reads what was checked.
func (o object) marshal() []byte {
	n := 2
	for _, m := range o {
		n += len(m.name) + len(m.value) + 4
	}
	b := make([]byte, 0, n)
	b = append(b, '{')
	for i, m := range o {
		if i > 0 {
			b = append(b, ',')
		}
		b, _ = jsontext.AppendQuote(b, m.name)
		b = append(b, ':')
		b = append(b, m.value...)
	}
	return append(b, '}')
}

// isNull reports whether v is the JSON literal null.
func isNull(v jsontext.Value) bool { return v.Kind() == 'n' }

// governed are the top-level fields whose value changes what a call costs or
// what it may reach. A member that is not one of them but reads as one to a
// case-folding parser ("Model", "ſtream", "MAX_TOKENS", "max-tokens") is
// refused: the gateway reads names exactly, an upstream might not.
var governed = []string{
	"model", "stream", "stream_options", "n", "best_of",
	"max_tokens", "max_completion_tokens", "max_output_tokens",
	"background", "tools", "tool_choice", "functions", "function_call",
	"input", "messages", "prompt", "system", "instructions", "suffix",
	"service_tier", "previous_response_id", "conversation", "store",
	"reasoning", "reasoning_effort", "thinking", "prediction", "modalities", "audio",
	"web_search_options", "mcp_servers", "container", "max_tool_calls", "include",
	"truncation", "echo", "logprobs", "top_logprobs", "context_management", "betas", "speed",
	"inference_geo", "fallbacks", "thread", "cache_control",
}

// foldKey is name as a case-folding, separator-ignoring parser might see it:
// without '_', '-', spaces, control and invisible format characters (a C
// parser stops at "model\u0000"; a lax one trims "model ").
func foldKey(name string) string {
	return strings.Map(func(r rune) rune {
		if r == '_' || r == '-' || unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return -1
		}
		return r
	}, name)
}

// foldedNames caches foldKey of the names the gateway checks variants of,
// which are fixed: folding them again for every member of every body was most
// of the strict reading's allocations.
var foldedNames = func() map[string]string {
	m := map[string]string{}
	for _, names := range [][]string{governed, contentNames, {"include_usage", "type", "budget_tokens"}} {
		for _, g := range names {
			m[g] = foldKey(g)
		}
	}
	return m
}()

func foldedName(g string) string {
	if k, ok := foldedNames[g]; ok {
		return k
	}
	return foldKey(g)
}

// foldVariant returns the governed field name is a variant of, or "".
func foldVariant(name string, names []string) string {
	for _, g := range names {
		if name == g {
			return ""
		}
	}
	k := foldKey(name)
	for _, g := range names {
		if strings.EqualFold(k, foldedName(g)) {
			return g
		}
	}
	return ""
}

// checkVariants refuses members of o that are fold variants of names.
func checkVariants(o object, names []string, where string) error {
	for _, m := range o {
		if g := foldVariant(m.name, names); g != "" {
			return httpx.Errorf(http.StatusBadRequest, "ambiguous_field",
				"The field %s%s is not '%s' but could be read as it by a case-insensitive parser; field names are case-sensitive, use '%s'.",
				quoteName(m.name), where, g, g).WithParam(clip(m.name))
		}
	}
	return nil
}

// intField reads the member name of o as a non-negative integer; ok is false
// when it is absent or null.
func intField(o object, name string) (n int64, ok bool, err error) {
	v, present := o.get(name)
	if !present || isNull(v) {
		return 0, false, nil
	}
	n, perr := strconv.ParseInt(string(v), 10, 64)
	if v.Kind() != '0' || perr != nil {
		return 0, false, httpx.Errorf(http.StatusBadRequest, "invalid_type", "Invalid type for '%s': expected an integer.", name).WithParam(name)
	}
	if n < 0 {
		return 0, false, httpx.Errorf(http.StatusBadRequest, "invalid_value", "Invalid value for '%s': it must not be negative.", name).WithParam(name)
	}
	return n, true, nil
}

// boolField reads the member name of o as a boolean; absent or null is false.
func boolField(o object, name string) (bool, error) {
	v, ok := o.get(name)
	if !ok || isNull(v) {
		return false, nil
	}
	switch v.Kind() {
	case 't':
		return true, nil
	case 'f':
		return false, nil
	}
	return false, httpx.Errorf(http.StatusBadRequest, "invalid_type", "Invalid type for '%s': expected a boolean.", name).WithParam(name)
}
