package console

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/gatehouse-gw/gatehouse/internal/admin"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
)

type obj = map[string]any

var funcs = template.FuncMap{
	"usd": func(v any) string {
		m, _ := v.(float64)
		if m > 0 && m < 10_000 { // under a cent: show the micro-dollars
			return fmt.Sprintf("$%.6f", m/1e6)
		}
		return fmt.Sprintf("$%.2f", m/1e6)
	},
	"pct": func(a, b any) int {
		x, _ := a.(float64)
		y, _ := b.(float64)
		if y <= 0 {
			return 0
		}
		return min(int(x*100/y), 100)
	},
	"when": func(v any) string {
		s, _ := v.(string)
		if s == "" {
			return "—"
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return s
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	"join": func(v any) string {
		l, _ := v.([]any)
		if len(l) == 0 {
			return "all"
		}
		var out []string
		for _, x := range l {
			out = append(out, fmt.Sprint(x))
		}
		return strings.Join(out, ", ")
	},
	"str": func(v any) string {
		if v == nil {
			return ""
		}
		return fmt.Sprint(v)
	},
}

func (h *Handler) routes() {
	m := h.mux
	m.HandleFunc("GET /console/{$}", h.authed(h.overview))
	m.HandleFunc("GET /console", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/console/", http.StatusMovedPermanently)
	})
	m.HandleFunc("GET /console/login", h.loginPage)
	m.HandleFunc("POST /console/login", h.login)
	if h.oidc != nil {
		m.HandleFunc("GET /console/login/oidc", h.oidcStart)
		m.HandleFunc("GET /console/login/oidc/callback", h.oidcCallback)
	}
	m.HandleFunc("POST /console/login/passkey/begin", h.passkeyLoginBegin)
	m.HandleFunc("POST /console/login/passkey/finish/{ceremony}", h.passkeyLoginFinish)
	m.HandleFunc("POST /console/logout", h.authed(h.logout))
	m.HandleFunc("GET /console/keys", h.authed(h.keys))
	m.HandleFunc("POST /console/keys", h.authed(h.createKey))
	m.HandleFunc("POST /console/keys/{id}/{action}", h.authed(h.keyAction))
	m.HandleFunc("GET /console/people", h.authed(h.people))
	m.HandleFunc("GET /console/budgets", h.authed(h.budgets))
	m.HandleFunc("GET /console/usage", h.authed(h.usage))
	m.HandleFunc("GET /console/policies", h.authed(h.policies))
	m.HandleFunc("POST /console/policies/{action}", h.authed(h.policyAction))
	m.HandleFunc("GET /console/log", h.authed(h.logPage))
	h.auditRoutes()
	m.HandleFunc("GET /console/providers", h.authed(h.providers))
	m.HandleFunc("POST /console/providers/{id}/keys", h.authed(h.addUpstreamKey))
	m.HandleFunc("POST /console/providers/{id}/keys/{key}/delete", h.authed(h.deleteUpstreamKey))
	m.HandleFunc("GET /console/account", h.authed(h.account))
	m.HandleFunc("POST /console/passkeys/register/begin", h.authed(h.passkeyRegisterBegin))
	m.HandleFunc("POST /console/passkeys/register/finish/{ceremony}", h.authed(h.passkeyRegisterFinish))
	m.HandleFunc("POST /console/step-up", h.authed(h.stepUp))
	m.HandleFunc("/console/", func(w http.ResponseWriter, r *http.Request) {
		h.render(w, http.StatusNotFound, "error.html", page{Title: "Not found", Error: "There is no console page at " + r.URL.Path + "."})
	})
}

// Sign-in.

func (h *Handler) loginPage(w http.ResponseWriter, r *http.Request) {
	if h.current(r) != nil {
		http.Redirect(w, r, "/console/", http.StatusSeeOther)
		return
	}
	h.render(w, 200, "login.html", page{Title: "Sign in", Passkeys: h.d.Passkeys, Data: obj{"Next": safeNext(r.URL.Query().Get("next"))}})
}

// safeNext keeps a post-sign-in redirect inside the console: a path on this
// site under /console/, never another host (//evil, /\\evil, https://…).
func safeNext(n string) string {
	u, err := url.Parse(n)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || strings.ContainsAny(n, "\\\r\n") ||
		!strings.HasPrefix(u.Path, "/console/") || !strings.HasPrefix(path.Clean(u.Path)+"/", "/console/") {
		return "/console/"
	}
	return u.RequestURI()
}

func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		h.render(w, http.StatusForbidden, "login.html", page{Title: "Sign in", Passkeys: h.d.Passkeys, Error: "Sign-in must come from the console's own page."})
		return
	}
	user, next := strings.TrimSpace(r.PostFormValue("user")), safeNext(r.PostFormValue("next"))
	var out struct {
		Session        string `json:"session"`
		Principal      string `json:"principal_id"`
		EnrollmentOnly bool   `json:"enrollment_only"`
	}
	proof := admin.ProofOfCode(r.PostFormValue("code")) // an authenticator code or a recovery code
	err := h.call(r.Context(), r, nil, "POST", "/v1/auth/login", obj{"user": user, "password": r.PostFormValue("password"), "code": proof.Code, "recovery_code": proof.RecoveryCode}, &out)
	var ae *apiError
	switch {
	case errors.As(err, &ae) && ae.Code == "mfa_required":
		h.render(w, http.StatusUnauthorized, "login.html", page{Title: "Sign in", Passkeys: h.d.Passkeys, Error: "This account has a second factor: enter the 6-digit code from your authenticator app, or one of your recovery codes.",
			Data: obj{"User": user, "Next": next, "NeedCode": true}})
		return
	case err != nil:
		msg := "Wrong user, password or code."
		if ae != nil && ae.Status != http.StatusUnauthorized {
			msg = ae.Message
		}
		h.render(w, http.StatusUnauthorized, "login.html", page{Title: "Sign in", Passkeys: h.d.Passkeys, Error: msg, Data: obj{"User": user, "Next": next}})
		return
	case out.EnrollmentOnly:
		// require_mfa and no second factor yet: the API's session may only
		// enrol one, which the console does not offer; keep nothing open.
		h.call(r.Context(), r, &session{token: out.Session}, "POST", "/v1/auth/logout", nil, nil)
		h.render(w, http.StatusForbidden, "login.html", page{Title: "Sign in", Passkeys: h.d.Passkeys, Error: errEnrolFirst, Data: obj{"User": user, "Next": next}})
		return
	}
	if err := h.startSession(w, r, out.Session, user, out.Principal); err != nil {
		h.render(w, http.StatusServiceUnavailable, "login.html", page{Title: "Sign in", Passkeys: h.d.Passkeys, Error: errSessionNotKept, Data: obj{"User": user, "Next": next}})
		return
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// errEnrolFirst is what a user without a second factor sees under
// require_mfa: the console signs in only with one.
const errEnrolFirst = "This gateway requires a second factor and your account has none yet, so the console cannot sign you in. " +
	"Enrol an authenticator app with the command line (gatehouse login --user NAME --password-stdin, then gatehouse users totp-enroll --password-stdin, " +
	"then gatehouse users totp-confirm CODE), " +
	"or ask an administrator to, then sign in here with the code."

// errSessionNotKept is what a user sees when the sign-in was right but the
// console could not store its session (the database is unreachable): the
// sign-in was ended, nothing is signed in, and trying again is the remedy.
const errSessionNotKept = "Your sign-in was accepted, but the console could not keep the session (its database did not answer), so you are not signed in. Try again in a moment; if it persists, tell the gateway's operator."

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func jsonError(w http.ResponseWriter, err error) {
	status, msg := http.StatusInternalServerError, "The request failed."
	var ae *apiError
	if errors.As(err, &ae) {
		status, msg = ae.Status, ae.Message
	}
	writeJSON(w, status, obj{"error": msg})
}

func (h *Handler) passkeyLoginBegin(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		writeJSON(w, http.StatusForbidden, obj{"error": "cross-origin request refused"})
		return
	}
	var in struct {
		User string `json:"user"`
	}
	json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&in)
	var out json.RawMessage
	if err := h.call(r.Context(), r, nil, "POST", "/v1/auth/passkeys/login", obj{"user": in.User}, &out); err != nil {
		jsonError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(out)
}

func (h *Handler) passkeyLoginFinish(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		writeJSON(w, http.StatusForbidden, obj{"error": "cross-origin request refused"})
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	var out struct {
		Session   string `json:"session"`
		Principal string `json:"principal_id"`
	}
	if err := h.call(r.Context(), r, nil, "POST", "/v1/auth/passkeys/login/"+url.PathEscape(r.PathValue("ceremony")), json.RawMessage(body), &out); err != nil {
		jsonError(w, err)
		return
	}
	var p struct {
		Name string `json:"name"`
	}
	h.call(r.Context(), r, &session{token: out.Session}, "GET", "/v1/principals/"+url.PathEscape(out.Principal), nil, &p)
	if err := h.startSession(w, r, out.Session, p.Name, out.Principal); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, obj{"error": errSessionNotKept})
		return
	}
	writeJSON(w, 200, obj{"next": "/console/"})
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request, s *session) error {
	h.call(r.Context(), r, s, "POST", "/v1/auth/logout", nil, nil)
	h.endSession(w, r)
	http.Redirect(w, r, "/console/login", http.StatusSeeOther)
	return nil
}

// Pages.

func (h *Handler) list(r *http.Request, s *session, path string) ([]obj, error) {
	var out struct {
		Data []obj `json:"data"`
	}
	err := h.call(r.Context(), r, s, "GET", path, nil, &out)
	return out.Data, err
}

// denialScan bounds the records the overview reads to count denials.
const denialScan = 5000

func (h *Handler) overview(w http.ResponseWriter, r *http.Request, s *session) error {
	spend, err := h.list(r, s, "/v1/spend")
	if err != nil {
		return err
	}
	since := h.d.Now().UTC().Add(-24 * time.Hour).Format(time.RFC3339)
	var sum struct {
		Data []obj `json:"data"`
	}
	if err := h.call(r.Context(), r, s, "GET", "/v1/usage/summary?group_by=model&since="+url.QueryEscape(since), nil, &sum); err != nil {
		return err
	}
	calls, cost := 0.0, 0.0
	for _, m := range sum.Data {
		c, _ := m["requests"].(float64)
		k, _ := m["cost_micros"].(float64)
		calls, cost = calls+c, cost+k
	}
	keys, err := h.list(r, s, "/v1/keys")
	if err != nil {
		return err
	}
	states := map[string]int{}
	for _, k := range keys {
		states[fmt.Sprint(k["state"])]++
	}
	// Denials: calls refused after authentication (policy, scope, budget,
	// rate limit), counted from the last 24 hours' records, at most denialScan.
	denials, capped := 0, false
	if recs, err := h.list(r, s, "/v1/usage?limit="+strconv.Itoa(denialScan)+"&since="+url.QueryEscape(since)); err == nil {
		for _, rec := range recs {
			if st, _ := rec["status"].(float64); st == http.StatusForbidden || st == http.StatusTooManyRequests {
				denials++
			}
		}
		capped = len(recs) >= denialScan
	}
	openFindings := -1 // -1: audits are not on this gateway, or not readable
	if fs, err := h.list(r, s, "/v1/findings?state=open"); err == nil {
		openFindings = len(fs)
	}
	var cp []byte
	logStatus := "no checkpoint signed yet"
	if err := h.call(r.Context(), r, nil, "GET", "/log/checkpoint", nil, &cp); err == nil {
		if c, err := ledger.ParseCheckpoint(string(cp)); err == nil {
			logStatus = fmt.Sprintf("%d records, signed checkpoint of %s", c.Size, c.Origin)
		}
	}
	h.render(w, 200, "overview.html", h.page(s, "overview", "Overview", obj{"Spend": spend, "Calls": calls, "Cost": cost, "ByModel": sum.Data, "States": states, "Log": logStatus,
		"Denials": denials, "DenialsCapped": capped, "OpenFindings": openFindings}))
	return nil
}

func (h *Handler) keys(w http.ResponseWriter, r *http.Request, s *session) error {
	q := url.Values{"include_revoked": {"true"}}
	for _, f := range []string{"team", "principal"} {
		if v := r.URL.Query().Get(f); v != "" {
			q.Set(f, v)
		}
	}
	keys, err := h.list(r, s, "/v1/keys?"+q.Encode())
	if err != nil {
		return err
	}
	if st := r.URL.Query().Get("state"); st != "" {
		keys = slices.DeleteFunc(keys, func(k obj) bool { return k["state"] != st })
	}
	principals, _ := h.list(r, s, "/v1/principals")
	teams, _ := h.list(r, s, "/v1/teams")
	// Each key's own budgets and rate limits, shown beside it (a reader
	// without budgets.read or limits.read simply sees none).
	budgets, _ := h.list(r, s, "/v1/budgets")
	limits, _ := h.list(r, s, "/v1/limits")
	for _, k := range keys {
		id := str(k["id"])
		for _, b := range budgets {
			if str(b["scope"]) == "key" && str(b["scope_id"]) == id {
				k["budgets"] = append(asList(k["budgets"]), b)
			}
		}
		for _, l := range limits {
			if str(l["scope"]) == "key" && str(l["scope_id"]) == id {
				k["limits"] = l
			}
		}
	}
	h.render(w, 200, "keys.html", h.page(s, "keys", "Keys", obj{"Keys": keys, "Principals": principals, "Teams": teams,
		"Filter": obj{"team": r.URL.Query().Get("team"), "principal": r.URL.Query().Get("principal"), "state": r.URL.Query().Get("state")}}))
	return nil
}

// asList is v as a list of objects (nil for none).
func asList(v any) []obj {
	l, _ := v.([]obj)
	return l
}

func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' })
}

func (h *Handler) createKey(w http.ResponseWriter, r *http.Request, s *session) error {
	in := obj{"principal": r.PostFormValue("principal"), "name": r.PostFormValue("name"),
		"scope": obj{"models": splitList(r.PostFormValue("models")), "endpoints": splitList(r.PostFormValue("endpoints"))}}
	if v := r.PostFormValue("team"); v != "" {
		in["team"] = v
	}
	if v := r.PostFormValue("expires_in"); v != "" {
		in["expires_in"] = v
	}
	if r.PostFormValue("admin") == "on" {
		in["kind"] = "admin"
	}
	var created obj
	if err := h.call(r.Context(), r, s, "POST", "/v1/keys", in, &created); err != nil {
		return h.stepUpOr(w, r, s, err)
	}
	h.render(w, http.StatusCreated, "secret.html", h.page(s, "keys", "Key created", obj{"Key": created, "What": "created"}))
	return nil
}

func (h *Handler) keyAction(w http.ResponseWriter, r *http.Request, s *session) error {
	id, action := url.PathEscape(r.PathValue("id")), r.PathValue("action")
	switch action {
	case "revoke", "reinstate":
		if err := h.call(r.Context(), r, s, "POST", "/v1/keys/"+id+"/"+action, nil, nil); err != nil {
			return h.stepUpOr(w, r, s, err)
		}
	case "rotate":
		var rotated obj
		if err := h.call(r.Context(), r, s, "POST", "/v1/keys/"+id+"/rotate", obj{"grace": r.PostFormValue("grace")}, &rotated); err != nil {
			return h.stepUpOr(w, r, s, err)
		}
		h.render(w, 200, "secret.html", h.page(s, "keys", "Key rotated", obj{"Key": rotated, "What": "rotated"}))
		return nil
	default:
		return &apiError{Status: http.StatusNotFound, Message: "Unknown key action " + action + "."}
	}
	http.Redirect(w, r, "/console/keys", http.StatusSeeOther)
	return nil
}

func (h *Handler) people(w http.ResponseWriter, r *http.Request, s *session) error {
	principals, err := h.list(r, s, "/v1/principals")
	if err != nil {
		return err
	}
	teams, err := h.list(r, s, "/v1/teams")
	if err != nil {
		return err
	}
	h.render(w, 200, "people.html", h.page(s, "people", "Principals and teams", obj{"Principals": principals, "Teams": teams}))
	return nil
}

func (h *Handler) budgets(w http.ResponseWriter, r *http.Request, s *session) error {
	spend, err := h.list(r, s, "/v1/spend")
	if err != nil {
		return err
	}
	h.render(w, 200, "budgets.html", h.page(s, "budgets", "Budgets", obj{"Budgets": spend}))
	return nil
}

func (h *Handler) usage(w http.ResponseWriter, r *http.Request, s *session) error {
	q := url.Values{}
	for _, f := range []string{"key", "principal", "team", "model", "since", "until"} {
		if v := r.URL.Query().Get(f); v != "" {
			q.Set(f, v)
		}
	}
	by := r.URL.Query().Get("group_by")
	if by == "" {
		by = "day"
	}
	recs, err := h.list(r, s, "/v1/usage?limit=500&"+q.Encode())
	if err != nil {
		return err
	}
	if r.URL.Query().Get("format") == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="gatehouse-usage.csv"`)
		cw := csv.NewWriter(w)
		cols := []string{"request_id", "time", "key_id", "principal_id", "team_id", "endpoint", "model", "provider", "status", "input_tokens", "output_tokens", "cost_micros", "estimated"}
		cw.Write(cols)
		for _, rec := range recs {
			row := make([]string, len(cols))
			for i, c := range cols {
				row[i] = csvSafe(fmt.Sprint(orEmpty(rec[c])))
			}
			cw.Write(row)
		}
		cw.Flush()
		return nil
	}
	q.Set("group_by", by)
	var sum struct {
		Data []obj `json:"data"`
	}
	if err := h.call(r.Context(), r, s, "GET", "/v1/usage/summary?"+q.Encode(), nil, &sum); err != nil {
		return err
	}
	maxCost := 0.0
	for _, g := range sum.Data {
		if c, _ := g["cost_micros"].(float64); c > maxCost {
			maxCost = c
		}
	}
	if by == "day" {
		sort.Slice(sum.Data, func(i, j int) bool { return fmt.Sprint(sum.Data[i]["group"]) < fmt.Sprint(sum.Data[j]["group"]) })
	}
	q.Del("group_by")
	h.render(w, 200, "usage.html", h.page(s, "usage", "Usage", obj{"Records": recs, "Summary": sum.Data, "Max": maxCost, "GroupBy": by,
		"Query": q.Encode(), "Filter": obj{"key": q.Get("key"), "principal": q.Get("principal"), "team": q.Get("team"), "model": q.Get("model")}}))
	return nil
}

func orEmpty(v any) any {
	if v == nil {
		return ""
	}
	return v
}

// csvSafe stops a spreadsheet from running a cell as a formula (CSV injection).
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		if _, err := strconv.ParseFloat(s, 64); err != nil {
			return "'" + s
		}
	}
	return s
}

func (h *Handler) policies(w http.ResponseWriter, r *http.Request, s *session) error {
	var cur struct {
		Version int64             `json:"version"`
		Files   map[string]string `json:"files"`
		Note    string            `json:"note"`
	}
	if err := h.call(r.Context(), r, s, "GET", "/v1/policies", nil, &cur); err != nil {
		return err
	}
	history, err := h.list(r, s, "/v1/policies/history")
	if err != nil {
		return err
	}
	names := make([]string, 0, len(cur.Files))
	for n := range cur.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	var files []obj
	for _, n := range names {
		files = append(files, obj{"Name": n, "Text": cur.Files[n]})
	}
	edit := r.URL.Query().Get("file") // the file the form edits: ?file=, else the first
	if _, ok := cur.Files[edit]; !ok && len(names) > 0 {
		edit = names[0]
	}
	h.render(w, 200, "policies.html", h.page(s, "policies", "Policies", obj{"Version": cur.Version, "Note": cur.Note, "Files": files, "History": history,
		"EditName": edit, "EditText": cur.Files[edit]}))
	return nil
}

func (h *Handler) policyAction(w http.ResponseWriter, r *http.Request, s *session) error {
	switch r.PathValue("action") {
	case "validate", "apply", "whatif":
		name := strings.TrimSpace(r.PostFormValue("file"))
		if name == "" {
			name = "policies.cedar"
		}
		var cur struct {
			Files map[string]string `json:"files"`
		}
		if err := h.call(r.Context(), r, s, "GET", "/v1/policies", nil, &cur); err != nil {
			return err
		}
		if cur.Files == nil {
			cur.Files = map[string]string{}
		}
		cur.Files[name] = r.PostFormValue("text")
		if r.PathValue("action") == "whatif" {
			var res obj
			if err := h.call(r.Context(), r, s, "POST", "/v1/policies/whatif", obj{"files": cur.Files}, &res); err != nil {
				return err
			}
			h.render(w, 200, "whatif.html", h.page(s, "policies", "What if", obj{"Result": res, "File": name, "Text": r.PostFormValue("text"), "Note": r.PostFormValue("note")}))
			return nil
		}
		path := "/v1/policies/validate"
		method := "POST"
		if r.PathValue("action") == "apply" {
			path, method = "/v1/policies", "PUT"
		}
		if err := h.call(r.Context(), r, s, method, path, obj{"files": cur.Files, "note": r.PostFormValue("note")}, nil); err != nil {
			return h.stepUpOr(w, r, s, err)
		}
		if r.PathValue("action") == "validate" {
			h.render(w, 200, "error.html", h.page(s, "policies", "Valid", obj{"Message": "The policies validate against the schema."}))
			return nil
		}
	case "rollback":
		v, _ := strconv.ParseInt(r.PostFormValue("version"), 10, 64)
		if err := h.call(r.Context(), r, s, "POST", "/v1/policies/rollback", obj{"version": v}, nil); err != nil {
			return h.stepUpOr(w, r, s, err)
		}
	default:
		return &apiError{Status: http.StatusNotFound, Message: "Unknown policy action."}
	}
	http.Redirect(w, r, "/console/policies", http.StatusSeeOther)
	return nil
}

// logRecord is a ledger record with the outcome of checking its proof.
type logRecord struct {
	Index    int64
	Record   string
	Fields   obj
	TreeSize int64
	Root     string
	Verified bool
	Problem  string
}

// logPage finds a request's records in the ledger and checks each one's
// inclusion proof against the latest signed checkpoint, whose signature is
// checked with the log's verifier key: the checks `gatehouse audit show` makes.
func (h *Handler) logPage(w http.ResponseWriter, r *http.Request, s *session) error {
	reqID := strings.TrimSpace(r.URL.Query().Get("request"))
	data := obj{"Request": reqID, "LogURL": "http://ADMIN/log"}
	if shellSafeHost(r.Host) { // the address this page was reached at, where the log is served
		data["LogURL"] = h.origin(r) + "/log"
	}
	var key []byte
	if err := h.call(r.Context(), r, nil, "GET", "/log/key", nil, &key); err == nil {
		data["Key"] = strings.TrimSpace(string(key))
	}
	var cp []byte
	if err := h.call(r.Context(), r, nil, "GET", "/log/checkpoint", nil, &cp); err == nil {
		if c, err := ledger.OpenCheckpoint(cp, strings.TrimSpace(string(key))); err == nil {
			data["Checkpoint"] = obj{"Size": c.Size, "Root": c.Hash.String(), "Origin": c.Origin, "Signed": true}
		} else {
			data["CheckpointProblem"] = err.Error()
		}
	}
	if reqID != "" {
		var found struct {
			Indexes []int64 `json:"indexes"`
		}
		if err := h.call(r.Context(), r, nil, "GET", "/log/find/"+url.PathEscape(reqID), nil, &found); err != nil {
			return err
		}
		var recs []logRecord
		for _, i := range found.Indexes {
			recs = append(recs, h.proveRecord(r, i, strings.TrimSpace(string(key))))
		}
		data["Records"] = recs
	}
	recent, _ := h.list(r, s, "/v1/usage?limit=20")
	data["Recent"] = recent
	h.render(w, 200, "log.html", h.page(s, "log", "Audit log", data))
	return nil
}

func (h *Handler) proveRecord(r *http.Request, i int64, key string) logRecord {
	out := logRecord{Index: i}
	var raw []byte
	if err := h.call(r.Context(), r, nil, "GET", fmt.Sprintf("/log/proof/%d", i), nil, &raw); err != nil {
		out.Problem = "no proof: " + err.Error()
		return out
	}
	var p ledger.Proof
	if err := json.Unmarshal(raw, &p); err != nil {
		out.Problem = "the proof is malformed"
		return out
	}
	out.Record = p.Record
	json.Unmarshal([]byte(p.Record), &out.Fields)
	c, err := ledger.OpenCheckpoint([]byte(p.Checkpoint), key)
	if err != nil {
		out.Problem = "the checkpoint's signature does not verify: " + err.Error()
		return out
	}
	out.TreeSize, out.Root = c.Size, c.Hash.String()
	if err := tlog.CheckRecord(p.Proof, c.Size, c.Hash, p.Index, tlog.RecordHash([]byte(p.Record))); err != nil || p.Index != i {
		out.Problem = "the inclusion proof FAILED"
		return out
	}
	out.Verified = true
	return out
}

func (h *Handler) providers(w http.ResponseWriter, r *http.Request, s *session) error {
	return h.providersWith(w, r, s, 200, "")
}

func (h *Handler) providersWith(w http.ResponseWriter, r *http.Request, s *session, status int, problem string) error {
	ps, err := h.list(r, s, "/v1/providers")
	if err != nil {
		return err
	}
	for _, p := range ps { // never display keys: their ids and ages only (the API sends no more)
		keys, _ := p["keys"].([]any)
		var view []obj
		for _, k := range keys {
			if m, ok := k.(obj); ok {
				view = append(view, obj{"id": m["id"], "created_at": m["created_at"]})
			}
		}
		p["keys"] = view
	}
	pg := h.page(s, "providers", "Providers", obj{"Providers": ps})
	pg.Error = problem
	h.render(w, status, "providers.html", pg)
	return nil
}

// addUpstreamKey adds a provider key. The key is never rendered back, not
// even into a step-up prompt: a code given with the form steps up first, and
// without one a refused request asks for the key and the code again.
func (h *Handler) addUpstreamKey(w http.ResponseWriter, r *http.Request, s *session) error {
	id := url.PathEscape(r.PathValue("id"))
	if code := strings.TrimSpace(r.PostFormValue("code")); code != "" {
		if err := h.call(r.Context(), r, s, "POST", "/v1/auth/step-up", admin.ProofOfCode(code), nil); err != nil {
			var ae *apiError
			switch {
			case !errors.As(err, &ae) || ae.Status >= 500 || sessionEnded(ae):
				return err // the session ended, or the API failed: not the code's fault
			case ae.Code == "invalid_code":
				return h.providersWith(w, r, s, http.StatusUnauthorized, "The code (authenticator or recovery) was wrong or already used; the key was not added.")
			}
			return h.providersWith(w, r, s, ae.Status, ae.Message+" The key was not added.") // locked out, too many tries, …
		}
	}
	err := h.call(r.Context(), r, s, "POST", "/v1/providers/"+id+"/keys", obj{"key": r.PostFormValue("upstream_key")}, nil)
	var ae *apiError
	switch {
	case errors.As(err, &ae) && ae.Code == "step_up_required":
		return h.providersWith(w, r, s, http.StatusForbidden, "Adding an upstream key needs a recent second factor: enter the key again with your authenticator code.")
	case err != nil:
		return err
	}
	http.Redirect(w, r, "/console/providers", http.StatusSeeOther)
	return nil
}

func (h *Handler) deleteUpstreamKey(w http.ResponseWriter, r *http.Request, s *session) error {
	path := "/v1/providers/" + url.PathEscape(r.PathValue("id")) + "/keys/" + url.PathEscape(r.PathValue("key"))
	if err := h.call(r.Context(), r, s, "DELETE", path, nil, nil); err != nil {
		return h.stepUpOr(w, r, s, err)
	}
	http.Redirect(w, r, "/console/providers", http.StatusSeeOther)
	return nil
}

func (h *Handler) account(w http.ResponseWriter, r *http.Request, s *session) error {
	keys, err := h.list(r, s, "/v1/auth/passkeys")
	var ae *apiError
	if err != nil && !(errors.As(err, &ae) && ae.Status < 500) {
		return err
	}
	h.render(w, 200, "account.html", h.page(s, "account", "Your account", obj{"Passkeys": keys}))
	return nil
}

func (h *Handler) passkeyRegisterBegin(w http.ResponseWriter, r *http.Request, s *session) error {
	// Adding a factor needs a fresh proof with one the user has: the current
	// authenticator code or a recovery code, read as the admin API reads it
	// (admin.ProofOfCode) and passed on in its shape.
	var in struct {
		Code string `json:"code"`
	}
	json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&in)
	proof := admin.ProofOfCode(in.Code)
	var out json.RawMessage
	if err := h.call(r.Context(), r, s, "POST", "/v1/auth/passkeys/register", proof, &out); err != nil {
		jsonError(w, err)
		return nil
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(out)
	return nil
}

func (h *Handler) passkeyRegisterFinish(w http.ResponseWriter, r *http.Request, s *session) error {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	path := "/v1/auth/passkeys/register/" + url.PathEscape(r.PathValue("ceremony")) + "?name=" + url.QueryEscape(r.URL.Query().Get("name"))
	var out json.RawMessage
	if err := h.call(r.Context(), r, s, "POST", path, json.RawMessage(body), &out); err != nil {
		jsonError(w, err)
		return nil
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	w.Write(out)
	return nil
}

// Step-up.

// stepUpOr turns a step_up_required refusal into the step-up prompt, which
// carries the refused form so it can be replayed; other errors pass.
func (h *Handler) stepUpOr(w http.ResponseWriter, r *http.Request, s *session, err error) error {
	var ae *apiError
	if !errors.As(err, &ae) || ae.Code != "step_up_required" {
		return err
	}
	var fields []obj
	for k, vs := range r.PostForm {
		if k == "csrf" {
			continue
		}
		for _, v := range vs {
			fields = append(fields, obj{"Name": k, "Value": v})
		}
	}
	sort.Slice(fields, func(i, j int) bool { return fields[i]["Name"].(string) < fields[j]["Name"].(string) })
	h.render(w, http.StatusForbidden, "stepup.html", h.page(s, "", "Confirm it is you", obj{"Then": r.URL.Path, "Fields": fields,
		"Reason": "This is a sensitive action: the policies ask for a second factor from the last few minutes."}))
	return nil
}

func (h *Handler) stepUp(w http.ResponseWriter, r *http.Request, s *session) error {
	then := r.PostFormValue("then")
	if !strings.HasPrefix(then, "/console/") || strings.HasPrefix(then, "/console/step-up") {
		return &apiError{Status: http.StatusBadRequest, Message: "Nothing to continue with."}
	}
	if err := h.call(r.Context(), r, s, "POST", "/v1/auth/step-up", admin.ProofOfCode(r.PostFormValue("code")), nil); err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.Status < 500 && !sessionEnded(ae) {
			var fields []obj
			for k, vs := range r.PostForm {
				if k == "csrf" || k == "code" || k == "then" {
					continue
				}
				for _, v := range vs {
					fields = append(fields, obj{"Name": strings.TrimPrefix(k, "f_"), "Value": v})
				}
			}
			p := h.page(s, "", "Confirm it is you", obj{"Then": then, "Fields": fields, "Reason": "That code was wrong or already used; enter the current one."})
			p.Error = ae.Message
			h.render(w, http.StatusUnauthorized, "stepup.html", p)
			return nil
		}
		return err
	}
	// Replay the refused action with its original fields.
	form := url.Values{"csrf": {s.csrf}}
	for k, vs := range r.PostForm {
		if name, ok := strings.CutPrefix(k, "f_"); ok {
			form[name] = vs
		}
	}
	replay, _ := http.NewRequestWithContext(r.Context(), "POST", then, strings.NewReader(form.Encode()))
	replay.Header = r.Header.Clone()
	replay.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	replay.RemoteAddr, replay.Host, replay.TLS = r.RemoteAddr, r.Host, r.TLS
	h.mux.ServeHTTP(w, replay)
	return nil
}
