package proxy

import (
	"errors"
	"net/http"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/token"
)

// tokenChallenge adds to a 401 the WWW-Authenticate challenge that RFC 7235
// requires, in the scheme the caller should use: Bearer (RFC 6750 §3) or DPoP
// (RFC 9449 §7.1, with the proof algorithms accepted). The error is
// invalid_dpop_proof for a bad proof and invalid_token for every other bad
// credential; a request without any credential gets both challenges and no
// error code (RFC 6750 §3.1). Other errors, and 401s that already carry a
// challenge, pass unchanged.
func tokenChallenge(err error, scheme string) error {
	var e *httpx.Error
	if !errors.As(err, &e) || e.Status != http.StatusUnauthorized || e.Header.Get("WWW-Authenticate") != "" || e.Code == "unknown_certificate" {
		return err
	}
	if e.Header == nil {
		e.Header = http.Header{}
	}
	algs := `algs="` + strings.Join(token.ProofAlgs, " ") + `"`
	if e.Code == "missing_api_key" {
		e.Header.Add("WWW-Authenticate", `Bearer realm="gatehouse"`)
		e.Header.Add("WWW-Authenticate", `DPoP realm="gatehouse", `+algs)
		return err
	}
	code := "invalid_token"
	if e.Code == "invalid_dpop_proof" {
		code = e.Code
	}
	params := `realm="gatehouse", error="` + code + `", error_description="` + quotable(e.Message) + `"`
	if scheme == "DPoP" {
		e.Header.Set("WWW-Authenticate", "DPoP "+params+", "+algs)
	} else {
		e.Header.Set("WWW-Authenticate", "Bearer "+params)
	}
	return err
}

// quotable keeps what RFC 6750 §3 allows in error_description: printable
// ASCII but '"' and '\'.
func quotable(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '"':
			return '\''
		case r == '\\' || r < 0x20 || r > 0x7e:
			return -1
		}
		return r
	}, s)
}
