// Package console is the web console on the admin listener (/console/):
// server-rendered pages (html/template, embedded with go:embed) and a little
// JavaScript for the copy button and passkeys.
//
// The console holds no authority of its own. Signing in creates an admin API
// login session (password + TOTP, or a passkey); the console keeps that
// session's token on the server, keyed by a random cookie, and performs every
// read and action by calling the admin API handler in process with it, so
// every action is the same Cedar-decided admin action as from the CLI, and is
// recorded the same way. A sensitive action the policies refuse without a
// recent second factor (step_up_required) prompts for a TOTP code in the page
// and is then replayed.
//
// Security: the cookie is HttpOnly, SameSite=Strict, Secure and __Host-
// prefixed when served over TLS; every state-changing request needs the
// session's CSRF token (form field or X-CSRF-Token header, compared in
// constant time) and a same-origin Origin or Sec-Fetch-Site; responses carry
// a strict Content-Security-Policy (no inline script or style), no-store
// caching and frame denial. Sessions end after IdleTimeout without a request
// and AbsoluteTimeout after sign-in, on logout, or when the admin session
// ends. Console sessions live in this process's memory: a restart or another
// replica asks to sign in again. Provider keys are never displayed.
package console

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/sso"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// CSP is the Content-Security-Policy of every console response: scripts and
// styles only from the console's own files, nothing inline, no framing.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Deps are the console's collaborators.
type Deps struct {
	// API is the admin API's handler; the console calls it in process.
	API http.Handler
	Log *slog.Logger
	Now func() time.Time
	// IdleTimeout ends a session without requests (default 30m);
	// AbsoluteTimeout ends it after sign-in whatever happens (default 8h).
	IdleTimeout     time.Duration
	AbsoluteTimeout time.Duration
	// Passkeys shows passkey sign-in and registration (webauthn configured).
	Passkeys bool
	// OIDC offers single sign-on through the organisation's identity
	// provider when enabled (oidc_login); OIDCClient reaches the provider
	// (nil: a client with a 10 s timeout).
	OIDC       sso.Config
	OIDCClient *http.Client
	// TrustProxyHeaders takes X-Forwarded-Proto: https from a TLS-terminating
	// proxy in front of the admin listener as TLS (Secure cookies).
	TrustProxyHeaders bool
}

// Handler serves the console under /console/.
type Handler struct {
	d    Deps
	mux  *http.ServeMux
	tmpl *template.Template
	oidc *oidcFlow // nil without oidc_login

	mu       sync.Mutex
	sessions map[string]*session
}

type session struct {
	token     string // the admin API session token (gks_…); never sent to the browser
	csrf      string
	user      string
	principal string
	created   time.Time
	seen      time.Time
}

// New returns the console.
func New(d Deps) *Handler {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.IdleTimeout <= 0 {
		d.IdleTimeout = 30 * time.Minute
	}
	if d.AbsoluteTimeout <= 0 {
		d.AbsoluteTimeout = 8 * time.Hour
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{d: d, mux: http.NewServeMux(), sessions: map[string]*session{}}
	if d.OIDC.Enabled() {
		h.oidc = newOIDCFlow(d.OIDC, d.OIDCClient)
	}
	h.tmpl = template.Must(template.New("").Funcs(funcs).ParseFS(templateFS, "templates/*.html"))
	static, _ := fs.Sub(staticFS, "static")
	h.mux.Handle("GET /console/static/", http.StripPrefix("/console/static/", http.FileServerFS(static)))
	h.routes()
	return h
}

// ServeHTTP sets the security headers and serves the console.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", CSP)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	if !strings.HasPrefix(r.URL.Path, "/console/static/") {
		hd.Set("Cache-Control", "no-store")
	}
	h.mux.ServeHTTP(w, r)
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// secure reports whether the browser reached the console over TLS.
func (h *Handler) secure(r *http.Request) bool {
	return r.TLS != nil || (h.d.TrustProxyHeaders && r.Header.Get("X-Forwarded-Proto") == "https")
}

// origin is the scheme and host the browser reached the admin listener at
// (the console is served there, next to the admin API and the log).
func (h *Handler) origin(r *http.Request) string {
	scheme := "http"
	if h.secure(r) {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// shellSafeHost reports whether host (a Host header) can be shown inside a
// command to copy into a shell: a name or address and a port, nothing else.
func shellSafeHost(host string) bool {
	if host == "" || len(host) > 255 {
		return false
	}
	for _, c := range host {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', strings.ContainsRune(".-:[]", c):
		default:
			return false
		}
	}
	return true
}

func (h *Handler) cookieName(r *http.Request) string {
	if h.secure(r) {
		return "__Host-gatehouse-console"
	}
	return "gatehouse-console"
}

// startSession stores a console session for an admin session token and sets
// its cookie.
func (h *Handler) startSession(w http.ResponseWriter, r *http.Request, token, user, principal string) {
	id := randomToken()
	now := h.d.Now()
	h.mu.Lock()
	for k, s := range h.sessions { // forget sessions that ended without a goodbye
		if now.Sub(s.seen) >= h.d.IdleTimeout || now.Sub(s.created) >= h.d.AbsoluteTimeout {
			delete(h.sessions, k)
		}
	}
	h.sessions[id] = &session{token: token, csrf: randomToken(), user: user, principal: principal, created: now, seen: now}
	h.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: h.cookieName(r), Value: id, Path: "/", HttpOnly: true, Secure: h.secure(r),
		SameSite: http.SameSiteStrictMode, MaxAge: int(h.d.AbsoluteTimeout.Seconds())})
}

// current returns the request's live session, or nil; it ends expired ones.
func (h *Handler) current(r *http.Request) *session {
	c, err := r.Cookie(h.cookieName(r))
	if err != nil || c.Value == "" {
		return nil
	}
	now := h.d.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.sessions[c.Value]
	if s == nil {
		return nil
	}
	if now.Sub(s.seen) >= h.d.IdleTimeout || now.Sub(s.created) >= h.d.AbsoluteTimeout {
		delete(h.sessions, c.Value)
		return nil
	}
	s.seen = now
	return s
}

func (h *Handler) endSession(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(h.cookieName(r)); err == nil {
		h.mu.Lock()
		delete(h.sessions, c.Value)
		h.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: h.cookieName(r), Value: "", Path: "/", HttpOnly: true, Secure: h.secure(r), SameSite: http.SameSiteStrictMode, MaxAge: -1})
}

// sameOrigin refuses cross-site state changes: the browser's Sec-Fetch-Site
// or Origin must name this site.
func sameOrigin(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" {
		return s == "same-origin"
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return false
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// checkCSRF verifies a state-changing request: same origin, and the session's
// token in the form or the X-CSRF-Token header.
func checkCSRF(r *http.Request, s *session) bool {
	if !sameOrigin(r) {
		return false
	}
	if s == nil {
		return true // before sign-in there is no session to ride on
	}
	got := r.Header.Get("X-CSRF-Token")
	if got == "" {
		got = r.PostFormValue("csrf")
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) == 1
}

// apiError is an admin API error answer.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string { return e.Message }

// call performs an admin API request in process with the session's token and
// decodes a JSON answer into out (when not nil).
func (h *Handler) call(ctx context.Context, r *http.Request, s *session, method, path string, in, out any) error {
	var body io.Reader = http.NoBody // a handler may read the body of any request
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, path, body)
	if err != nil {
		return err
	}
	req.RemoteAddr, req.Host = r.RemoteAddr, r.Host
	req.Header.Set("User-Agent", "gatehouse-console "+r.UserAgent())
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if s != nil {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	if v, ok := ctx.Value(ifMatchKey{}).(string); ok {
		req.Header.Set("If-Match", v)
	}
	rec := newRecorder()
	h.d.API.ServeHTTP(rec, req)
	if rec.status >= 400 {
		var e struct {
			Error struct {
				Message string `json:"message"`
				Code    string `json:"code"`
			} `json:"error"`
		}
		json.Unmarshal(rec.body.Bytes(), &e)
		if e.Error.Message == "" {
			e.Error.Message = strings.TrimSpace(rec.body.String())
		}
		return &apiError{Status: rec.status, Code: e.Error.Code, Message: e.Error.Message}
	}
	if out == nil {
		return nil
	}
	if b, ok := out.(*[]byte); ok {
		*b = rec.body.Bytes()
		return nil
	}
	if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
		return fmt.Errorf("console: %s %s: %w", method, path, err)
	}
	return nil
}

// recorder is a minimal http.ResponseWriter that keeps an answer in memory.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newRecorder() *recorder { return &recorder{header: http.Header{}} }

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = 200
	}
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(s int) {
	if r.status == 0 {
		r.status = s
	}
}

// page is what every template gets.
type page struct {
	Title    string
	Nav      string
	User     string
	CSRF     string
	Passkeys bool
	OIDC     bool
	Flash    string
	Error    string
	Data     map[string]any
}

func (h *Handler) render(w http.ResponseWriter, status int, name string, p page) {
	p.OIDC = h.oidc != nil
	var buf bytes.Buffer
	if err := h.tmpl.ExecuteTemplate(&buf, name, p); err != nil {
		h.d.Log.Error("console: rendering failed", "template", name, "err", err)
		http.Error(w, "The page could not be rendered.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// handler is a console page or action for a signed-in user.
type handler func(w http.ResponseWriter, r *http.Request, s *session) error

// authed wraps a handler: no session → the sign-in page; POST → CSRF check;
// an admin session that ended → signed out.
func (h *Handler) authed(fn handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := h.current(r)
		if s == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/console/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			h.render(w, http.StatusUnauthorized, "login.html", page{Title: "Sign in", Passkeys: h.d.Passkeys, Error: "Your session has ended; sign in again."})
			return
		}
		if r.Method != http.MethodGet && !checkCSRF(r, s) {
			h.d.Log.Warn("console: a state-changing request without a valid CSRF token or from another origin was refused", "path", r.URL.Path)
			h.render(w, http.StatusForbidden, "error.html", page{Title: "Refused", User: s.user, CSRF: s.csrf,
				Error: "This request did not come from a console page (missing or wrong CSRF token, or another origin), so it was refused. Reload the page and try again."})
			return
		}
		if err := fn(w, r, s); err != nil {
			var ae *apiError
			if errors.As(err, &ae) && (ae.Code == "invalid_session" || ae.Code == "session_expired" || ae.Code == "session_revoked") {
				h.endSession(w, r)
				http.Redirect(w, r, "/console/login", http.StatusSeeOther)
				return
			}
			status, msg := http.StatusInternalServerError, "Something went wrong; the details are in the gateway's log."
			if ae != nil {
				status, msg = ae.Status, ae.Message
			} else {
				h.d.Log.Error("console: page failed", "path", r.URL.Path, "err", err)
			}
			h.render(w, status, "error.html", page{Title: "Error", User: s.user, CSRF: s.csrf, Error: msg})
		}
	}
}

func (h *Handler) page(s *session, nav, title string, data map[string]any) page {
	return page{Title: title, Nav: nav, User: s.user, CSRF: s.csrf, Passkeys: h.d.Passkeys, Data: data}
}
