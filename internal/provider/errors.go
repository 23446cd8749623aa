package provider

import (
	"encoding/json"
	"net/http"
)

// UpstreamError is an error response from an upstream, reduced to what may be
// shown to a caller: credential-shaped text is scrubbed from the message.
type UpstreamError struct {
	Status  int
	Type    string
	Code    string
	Param   string
	Message string
}

func (e *UpstreamError) Error() string {
	return "upstream error " + http.StatusText(e.Status) + ": " + e.Message
}

// ParseError reads an upstream error body of either protocol. It always returns
// an error value; fields it cannot read stay empty.
func ParseError(status int, body []byte) *UpstreamError {
	return parseError(status, body, scrub)
}

// ParseError reads an upstream error body as the package function does and
// also removes from every field any of the upstream's own keys, in full or in
// part (ScrubKeys): an upstream may echo the credential it was given.
func (u *Upstream) ParseError(status int, body []byte) *UpstreamError {
	return parseError(status, body, func(s string) string { return u.ScrubKeys(scrub(s)) })
}

func parseError(status int, body []byte, scrubFn func(string) string) *UpstreamError {
	// Fields are cut before scrubbing (bounded work) and after (bounded size).
	scrub := func(s string) string { return scrubFn(cutRunes(s, 4096)) }
	e := &UpstreamError{Status: status}
	var r struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &r) == nil && len(r.Error) > 0 {
		var d struct {
			Message string `json:"message"`
			Type    string `json:"type"`
			Code    any    `json:"code"`
			Param   any    `json:"param"`
		}
		if json.Unmarshal(r.Error, &d) == nil {
			e.Message, e.Type = scrub(d.Message), scrub(d.Type)
			if s, ok := d.Code.(string); ok {
				e.Code = scrub(s)
			}
			if s, ok := d.Param.(string); ok {
				e.Param = scrub(s)
			}
		} else {
			var s string
			if json.Unmarshal(r.Error, &s) == nil { // some servers send {"error": "text"}
				e.Message = scrub(s)
			}
		}
	}
	if len(e.Message) > 1000 {
		e.Message = cutRunes(e.Message, 1000) + "…"
	}
	return e
}
