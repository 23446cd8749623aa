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
// ends. Console sessions and OIDC sign-ins in flight live in a sessionstore.Store
// (the gateway's database), shared by every replica; at rest it holds only
// hashes of the cookie values and the admin session token sealed with a key
// derived from the cookie (sessions.go). Provider keys are never displayed.
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
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/console/sessionstore"
	"github.com/gatehouse-gw/gatehouse/internal/sso"
	"github.com/gatehouse-gw/gatehouse/internal/store"
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
	// Sessions keeps console sessions and OIDC sign-ins for every replica
	// (nil: this process's memory, for a console built alone).
	Sessions sessionstore.Store
	// Throttle limits unauthenticated requests that cost the store a write
	// (starting an OIDC sign-in) per source address: false with how long to
	// wait when over (nil: no limit). The admin API's login throttle.
	Throttle func(r *http.Request) (ok bool, retryAfter time.Duration)
}

// Handler serves the console under /console/.
type Handler struct {
	d    Deps
	mux  *http.ServeMux
	tmpl *template.Template
	oidc *oidcFlow // nil without oidc_login
}

// session is a live console session for one request.
type session struct {
	token     string // the admin API session token (gks_…); never sent to the browser
	csrf      string
	user      string
	principal string
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
	if d.Sessions == nil {
		d.Sessions = sessionstore.NewMemory()
	}
	h := &Handler{d: d, mux: http.NewServeMux()}
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

// storeTimeout bounds every session-store call (fail closed when it passes).
const storeTimeout = 5 * time.Second

func storeCtx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(r.Context()), storeTimeout)
}

// startSession stores a console session for an admin session token and sets
// its cookie. When the store cannot keep it, no cookie is set and the admin
// session is ended (it would be unreachable).
func (h *Handler) startSession(w http.ResponseWriter, r *http.Request, token, user, principal string) error {
	id := randomToken()
	now := h.d.Now()
	ctx, cancel := storeCtx(r)
	defer cancel()
	// Forget sessions that ended without a goodbye; a failure here only delays it.
	if _, err := h.d.Sessions.SweepConsoleSessions(ctx, now.Add(-h.d.IdleTimeout), now.Add(-h.d.AbsoluteTimeout)); err != nil {
		h.d.Log.Warn("console: sweeping ended sessions failed", "err", err)
	}
	idHash := sessionIDHash(id)
	sealed, err := seal(id, labelSealToken, idHash, []byte(token))
	if err == nil {
		err = h.d.Sessions.CreateConsoleSession(ctx, sessionstore.Session{IDHash: idHash, SealedToken: sealed, User: user, PrincipalID: principal, Created: now, Seen: now})
	}
	if err != nil {
		h.d.Log.Error("console: the session could not be stored; the sign-in is void", "err", err)
		h.call(ctx, r, &session{token: token}, "POST", "/v1/auth/logout", nil, nil)
		return fmt.Errorf("console: store session: %w", err)
	}
	http.SetCookie(w, &http.Cookie{Name: h.cookieName(r), Value: id, Path: "/", HttpOnly: true, Secure: h.secure(r),
		SameSite: http.SameSiteStrictMode, MaxAge: int(h.d.AbsoluteTimeout.Seconds())})
	return nil
}

// current returns the request's live session, or nil.
func (h *Handler) current(r *http.Request) *session {
	s, _ := h.lookup(r)
	return s
}

// lookup returns the request's live session (nil when there is none or it
// ended), touching it; an error when the store cannot answer.
func (h *Handler) lookup(r *http.Request) (*session, error) {
	c, err := r.Cookie(h.cookieName(r))
	if err != nil || c.Value == "" || len(c.Value) > 128 {
		return nil, nil
	}
	now := h.d.Now()
	ctx, cancel := storeCtx(r)
	defer cancel()
	idHash := sessionIDHash(c.Value)
	st, err := h.d.Sessions.TouchConsoleSession(ctx, idHash, now, now.Add(-h.d.IdleTimeout), now.Add(-h.d.AbsoluteTimeout))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		h.d.Log.Error("console: the session store cannot be read", "err", err)
		return nil, err
	}
	token, err := unseal(c.Value, labelSealToken, idHash, st.SealedToken)
	if err != nil { // a row that does not open with its own cookie is not this session
		h.d.Log.Warn("console: a stored session did not open with its cookie; ended")
		h.d.Sessions.DeleteConsoleSession(ctx, idHash)
		return nil, nil
	}
	return &session{token: string(token), csrf: csrfFor(c.Value), user: st.User, principal: st.PrincipalID}, nil
}

func (h *Handler) endSession(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(h.cookieName(r)); err == nil && c.Value != "" {
		ctx, cancel := storeCtx(r)
		if err := h.d.Sessions.DeleteConsoleSession(ctx, sessionIDHash(c.Value)); err != nil {
			h.d.Log.Error("console: a session could not be deleted (it ends at its timeout)", "err", err)
		}
		cancel()
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
		s, err := h.lookup(r)
		if err != nil {
			h.render(w, http.StatusServiceUnavailable, "error.html", page{Title: "Unavailable",
				Error: "The console cannot reach its session store; try again shortly."})
			return
		}
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
			if errors.As(err, &ae) && sessionEnded(ae) {
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

// sessionEnded reports whether the admin API refused a call because the
// session's admin token ended (logged out elsewhere, expired, revoked): the
// console session ends with it.
func sessionEnded(ae *apiError) bool {
	return ae.Code == "invalid_session" || ae.Code == "session_expired" || ae.Code == "session_revoked"
}

func (h *Handler) page(s *session, nav, title string, data map[string]any) page {
	return page{Title: title, Nav: nav, User: s.user, CSRF: s.csrf, Passkeys: h.d.Passkeys, Data: data}
}
