// Package httpx renders errors in the caller's API shape and holds the HTTP
// middleware every listener shares: request ids, panic recovery, access logs.
//
// Handlers return errors; Render is the one place that turns them into
// responses. The public message goes to the caller with the request id; the
// cause goes only to the log.
package httpx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// Flavor is the error shape of an API.
type Flavor int

const (
	OpenAI    Flavor = iota // {"error":{"message","type","param","code"}}
	Anthropic               // {"type":"error","error":{"type","message"},"request_id"}
)

// Error is an error with a status and a public message.
type Error struct {
	Status  int
	Type    string // OpenAI error type; Anthropic's is derived from Status
	Code    string
	Param   string
	Message string // safe to show
	Cause   error  // logged, never shown
	Header  http.Header
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return e.Message + ": " + e.Cause.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Cause }

// Errorf returns an *Error with a formatted public message.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Type: openAIType(status), Code: code, Message: fmt.Sprintf(format, args...)}
}

// WithCause attaches a cause for the log.
func (e *Error) WithCause(err error) *Error { e.Cause = err; return e }

// WithParam names the offending parameter.
func (e *Error) WithParam(p string) *Error { e.Param = p; return e }

func openAIType(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "invalid_request_error"
	case status == http.StatusForbidden:
		return "permission_error"
	case status == http.StatusNotFound:
		return "invalid_request_error"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status >= 500:
		return "server_error"
	}
	return "invalid_request_error"
}

// AnthropicType maps a status to Anthropic's error type.
func AnthropicType(status int) string {
	switch status {
	case 400, 405, 422:
		return "invalid_request_error"
	case 401:
		return "authentication_error"
	case 403:
		return "permission_error"
	case 404:
		return "not_found_error"
	case 413:
		return "request_too_large"
	case 429:
		return "rate_limit_error"
	case 529, 503:
		return "overloaded_error"
	case 504:
		return "timeout_error"
	}
	return "api_error"
}

type ctxKey int

const requestIDKey ctxKey = 0

// RequestID returns the id of the request in ctx.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// NewRequestID returns "req_" + 32 hex digits: the time in milliseconds since
// the Unix epoch (48 bits, as in UUIDv7 and ULID), then 80 bits from
// crypto/rand. The time comes first so that ids made later sort later: the
// store's indexes keyed by request id (the usage rows, the log's index by
// request, ledger_closed) then take new rows at their right edge, one page per
// batch, instead of dirtying a random leaf page per call (issue #12). The
// random part keeps ids unguessable; the time part tells a caller no more
// than when it made the call.
func NewRequestID() string {
	return newRequestID(time.Now())
}

func newRequestID(now time.Time) string {
	var b [16]byte
	ms := uint64(now.UnixMilli())
	for i := range 6 {
		b[i] = byte(ms >> (40 - 8*i))
	}
	rand.Read(b[6:])
	var out [4 + 32]byte
	copy(out[:], "req_")
	hex.Encode(out[4:], b[:])
	return string(out[:])
}

// Render writes err in flavor's shape. An error that is not an *Error is a 500
// whose cause is logged and not shown.
func Render(w http.ResponseWriter, r *http.Request, log *slog.Logger, flavor Flavor, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Status: http.StatusInternalServerError, Type: "server_error", Message: "internal error", Cause: err}
	}
	id := RequestID(r.Context())
	level := slog.LevelInfo
	if e.Status >= 500 {
		level = slog.LevelError
	}
	log.LogAttrs(r.Context(), level, "request failed", slog.String("request_id", id), slog.Int("status", e.Status),
		slog.String("code", e.Code), slog.String("message", e.Message), slog.Any("cause", e.Cause))
	for k, v := range e.Header {
		w.Header()[k] = v
	}
	if e.Status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		// A store or log that is unavailable: clients (and the official SDKs)
		// back off and retry.
		w.Header().Set("Retry-After", "2")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	msg := e.Message
	if id != "" && flavor == OpenAI {
		msg += " (request id " + id + ")"
	}
	var body any
	switch flavor {
	case Anthropic:
		body = map[string]any{"type": "error", "error": map[string]any{"type": AnthropicType(e.Status), "message": msg}, "request_id": id}
	default:
		typ := e.Type
		if typ == "" {
			typ = openAIType(e.Status)
		}
		body = map[string]any{"error": map[string]any{"message": msg, "type": typ, "param": nullable(e.Param), "code": nullable(e.Code)}}
	}
	json.NewEncoder(w).Encode(body)
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Middleware gives every request an id (response headers x-request-id and, for
// Anthropic clients, request-id), recovers panics into a 500 in the API's
// shape, and writes one access-log line.
func Middleware(log *slog.Logger, flavorOf func(*http.Request) Flavor, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := NewRequestID()
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey, id))
		w.Header().Set("X-Request-Id", id) // canonical: Set allocates no other form
		flavor := flavorOf(r)
		if flavor == Anthropic {
			w.Header().Set("Request-Id", id)
		}
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				log.Error("panic in handler", "request_id", id, "panic", fmt.Sprint(v))
				if !sw.wrote {
					Render(sw, r, log, flavor, &Error{Status: 500, Message: "internal error"})
				}
			}
			log.LogAttrs(r.Context(), slog.LevelInfo, "http", slog.String("request_id", id), slog.String("method", r.Method),
				slog.String("path", r.URL.Path), slog.Int("status", sw.status), slog.Duration("duration", time.Since(start)))
		}()
		next.ServeHTTP(sw, r)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer (Flush).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
