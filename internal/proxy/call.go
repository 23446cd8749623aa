package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/alert"
	"github.com/gatehouse-gw/gatehouse/internal/auth"
	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/httpx"
	"github.com/gatehouse-gw/gatehouse/internal/ledger"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
	"github.com/gatehouse-gw/gatehouse/internal/pricing"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
	"github.com/gatehouse-gw/gatehouse/internal/ratelimit"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

// Status recorded for a call whose caller went away before it ended (nginx's
// convention; never sent, since nobody is listening).
const statusClientClosed = 499

// call returns the handler for a generation endpoint: the request path.
func (h *Handler) call(ep provider.Endpoint) http.HandlerFunc {
	flavor := httpx.OpenAI
	if ep.Protocol == provider.TypeAnthropic {
		flavor = httpx.Anthropic
	}
	return func(w http.ResponseWriter, r *http.Request) {
		h.calls.Add(1)
		defer h.calls.Add(-1)
		start := h.now()
		r, ob := h.observe(r, ep.Name, start)
		rec := &usage.Record{ID: httpx.RequestID(r.Context()), Time: start.UTC(), Endpoint: ep.Name}
		ended := false
		end := &callEnd{}
		defer h.recordPanic(r, rec, start, &ended, end)
		var err error
		if ep == provider.CountTokens {
			err = h.serveCountTokens(w, r, rec)
		} else {
			err = h.serveCall(w, r, ep, rec, end)
		}
		rec.LatencyMillis = h.now().Sub(start).Milliseconds()
		if err != nil {
			var he *httpx.Error
			if errors.As(err, &he) {
				rec.Status, rec.ErrorCode = he.Status, he.Code
				if he.Code == "" { // an upstream refusal passed through as it came
					rec.ErrorCode = "upstream_rejected"
				}
			} else {
				rec.Status, rec.ErrorCode = http.StatusInternalServerError, "internal_error"
			}
			retryAdvice(err)
			httpx.Render(w, r, h.log, flavor, err)
		}
		tripped := false
		if rec.KeyID != "" { // authenticated calls only: nothing to attribute otherwise
			ended = true
			h.endCall(r, rec, end)
			if h.breaker != nil && h.breaker.Observe(r.Context(), rec.KeyID, rec.CostMicros) {
				tripped = true
				h.log.Warn("spend-velocity breaker tripped; key suspended", "key_id", rec.KeyID, "request_id", rec.ID)
			}
		}
		ob.end(r.Context(), rec, tripped)
	}
}

// callEnd is what a call's end entry settles: its hold (sequenced) and the
// money it is charged.
type callEnd struct {
	hold   *budget.Hold
	actual int64
}

func (h *Handler) serveCall(w http.ResponseWriter, r *http.Request, ep provider.Endpoint, rec *usage.Record, end *callEnd) (err error) {
	var out outcome

	// Front half (authenticate … rate limits): prepare.go, shared with count_tokens.
	p, err := h.prepare(w, r, ep, route{action: ep.Name}, rec)
	if err != nil {
		return err
	}
	caller, body, call, up, price, priced := p.caller, p.body, p.call, p.up, p.price, p.priced
	ob := observationOf(r.Context())
	if ticket := p.ticket; ticket != nil {
		defer ticket.Release(r.Context())
		defer func() { ticket.Settle(context.WithoutCancel(r.Context()), rec.Input+rec.Output) }()
	}

	// Budgets: hold the worst case before anything goes upstream; settle after.
	_, endReserve := ob.phase(r.Context(), PhaseReserve)
	hold, worst, body, err := h.reserve(r.Context(), ep, &call, body,
		budget.Call{KeyID: caller.Key.ID, PrincipalID: caller.Principal.ID, TeamID: rec.TeamID, Model: call.Model}, price, priced, rec.ID)
	endReserve.done(err)
	if err != nil {
		return err
	}
	if hold != nil {
		ob.hold(hold.Amount())
	}
	defer func() {
		// Charged ≥ billed: what the call is charged, held or not.
		held := worst.cost
		if hold != nil {
			held = hold.Amount()
		}
		rec.CostMicros, rec.OverReservation = settlement(out, rec.CostMicros, held, hold != nil)
		rec.Estimated = rec.Estimated || out.unmetered()
		if rec.OverReservation {
			h.overReservation(rec, held)
		}
		switch {
		case hold.Sequenced():
			// The settlement rides the call's end entry (writeEnd).
			end.hold, end.actual = hold, rec.CostMicros
			hold.Abandon() // a no-op once the start entry was final
		case hold != nil:
			hold.Settle(r.Context(), rec.CostMicros)
		}
	}()

	upBody, strip, err := requestUsage(ep, call, body)
	if err != nil {
		return httpx.Errorf(http.StatusBadRequest, "invalid_json", "We could not parse the JSON body of your request.").WithCause(err)
	}

	// Write-ahead: the start record is durable before anything goes upstream;
	// if it cannot be written, the call fails closed.
	_, endLedger := ob.phase(r.Context(), PhaseLedger)
	err = h.writeStart(r, rec, upBody, hold) // the hash of the bytes the upstream gets
	endLedger.done(err)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(r.Context(), h.opt.UpstreamTimeout)
	defer cancel()
	ctx, endUpstream := ob.phase(ctx, PhaseUpstream)
	defer func() { endUpstream.done(err) }()
	resp, err := h.roundTrip(ctx, r, up, ep, upBody, &out.sent)
	if err != nil {
		return h.upstreamFailure(r, err)
	}
	defer resp.Body.Close()
	out.refused = resp.StatusCode >= 400
	rec.UpstreamRequestID = firstHeader(resp.Header, "X-Request-Id", "Request-Id")

	if resp.StatusCode >= 400 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return upstreamError(up, ep, resp, b)
	}

	var tokens usage.Tokens
	var estimated bool
	var tier string
	if call.Stream && isEventStream(resp.Header.Get("Content-Type")) {
		tokens, estimated, tier, err = h.relayStream(w, r, ctx, cancel, ep, resp, strip, estimateInput(body), rec)
	} else {
		tokens, estimated, tier, err = h.relayJSON(w, r, ep, resp, estimateInput(body), rec)
	}
	out.metered = !estimated
	rec.Tokens, rec.Estimated = tokens, estimated
	if priced {
		rec.CostMicros = price.Cost(tokens)
		mult, known := tierMultiple(call.Shape.Priority, tier)
		// A tier billed at a premium the price table does not carry is
		// charged at the premium (charged ≥ billed); one the gateway cannot
		// price leaves the usage unpriced: the whole hold is charged.
		rec.CostMicros = satMul(rec.CostMicros, mult)
		out.metered = out.metered && known
	}
	return err
}

// tierMultiple is what a call is charged per its price, given the service
// tier its response reports: a standard tier 1×, "priority" 2× (the premium
// the worst case assumes), none reported the tier the hold assumed (priority
// when the call named no cheaper tier: the project's default may be
// priority); known is false for a tier the gateway cannot price ("fast").
func tierMultiple(heldPriority bool, reported string) (mult int64, known bool) {
	switch provider.TierRank(reported) {
	case 0:
		if heldPriority {
			return 2, true
		}
		return 1, true
	case 1:
		return 1, true
	case 2:
		return 2, true
	}
	return 1, false
}

// writeStart appends the call's start record. Strings from the caller go in
// as they came: Record.Marshal makes them valid UTF-8 and bounds them.
func (h *Handler) writeStart(r *http.Request, rec *usage.Record, body []byte, hold *budget.Hold) error {
	if h.ledger == nil {
		return nil
	}
	rec.StartTried = true
	sum := sha256.Sum256(body)
	start := ledger.Record{Kind: ledger.KindCallStart, Time: rec.Time, RequestID: rec.ID, PrincipalID: rec.PrincipalID, KeyID: rec.KeyID,
		TeamID: rec.TeamID, SourceIP: h.sourceAddr(r).String(), UserAgent: r.UserAgent(), Endpoint: rec.Endpoint,
		Model: rec.Model, Provider: rec.Provider, Stream: rec.Stream, Decision: "allow", Reasons: rec.Reasons, BodySHA256: hex.EncodeToString(sum[:])}
	e := start.Entry()
	e.Opens = true
	if hold.Sequenced() {
		// The hold is made durable with the start record, in one batch.
		lh := &ledger.Hold{Reservation: hold.Reservation()}
		e.Hold, e.Done = lh, func(err error) { hold.Started(lh.Spends, err) }
	}
	if _, err := h.ledger.Append(r.Context(), e); err != nil {
		var ie *budget.InsufficientError
		if errors.As(err, &ie) && hold != nil {
			// The store refused what memory admitted (another replica spent,
			// a limit was lowered): nothing was written, the call fails.
			return insufficient(hold.Refusal(ie), hold.Amount())
		}
		return httpx.Errorf(http.StatusServiceUnavailable, "ledger_unavailable",
			"The audit log cannot record this call, so it was not made; try again shortly.").WithCause(err)
	}
	rec.Started = true
	return nil
}

// endCall writes the call's end: the end record with the settlement of its
// hold and its usage row in one sequencer entry, or (without a ledger) the
// usage row alone.
func (h *Handler) endCall(r *http.Request, rec *usage.Record, end *callEnd) {
	rides := h.writeEnd(r, rec, end)
	h.record(r.Context(), rec, !rides)
}

// writeEnd appends the call's end record: the outcome of a call that had a
// start record, or the refusal of an authenticated call that never started.
// The settlement of a sequenced hold and the usage row ride it; it reports
// whether the usage row did.
func (h *Handler) writeEnd(r *http.Request, rec *usage.Record, ce *callEnd) (usageRides bool) {
	if h.ledger == nil {
		return false
	}
	decision := "allow"
	if !rec.Started {
		decision = "deny"
	}
	endRec := ledger.Record{Kind: ledger.KindCallEnd, Time: h.now(), RequestID: rec.ID, PrincipalID: rec.PrincipalID, KeyID: rec.KeyID,
		TeamID: rec.TeamID, Endpoint: rec.Endpoint, Model: rec.Model, Provider: rec.Provider, Stream: rec.Stream, Decision: decision,
		Reasons: rec.Reasons, Status: rec.Status, ErrorCode: rec.ErrorCode, InputTokens: rec.Input, CachedInputTokens: rec.CachedInput, OutputTokens: rec.Output,
		CostMicros: rec.CostMicros, Estimated: rec.Estimated, LatencyMillis: rec.LatencyMillis, UpstreamRequestID: rec.UpstreamRequestID}
	if !rec.Started {
		endRec.SourceIP, endRec.UserAgent = h.sourceAddr(r).String(), r.UserAgent()
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	// Every end record closes its request (the log keeps one per request), also
	// when the start failed: a start that committed after its caller gave up
	// is closed here instead of staying open.
	e := endRec.Entry()
	e.Closes = true
	// A call refused before its start record was sent, with no hold and no
	// charge, has nothing at stake: during a long store outage its end may
	// be counted into a summary record instead of kept in memory (a flood
	// of refused calls must not grow the sequencer's retry queue).
	e.NothingAtStake = !rec.StartTried && ce.hold == nil && rec.CostMicros == 0
	if h.rec != nil && h.seq != nil {
		u := forStore(*rec)
		e.Usage, usageRides = &u, true
	}
	if hold := ce.hold; hold != nil {
		st := &ledger.Settlement{ID: rec.ID, Actual: max(ce.actual, 0)}
		e.Settle = st
		e.Done = func(err error) {
			if err == nil || errors.Is(err, ledger.ErrAlreadyClosed) {
				hold.Settled(st.Settled, st.Spends)
				return
			}
			// The end entry is lost for good: the hold leaves the live set,
			// so this instance's sweep (budget.Ledger.RecoverOwn) charges it
			// in full instead of it staying reserved until a restart.
			hold.Settled(false, nil)
		}
	}
	if h.seq != nil && h.opt.LagEnd {
		// The end lags: queued (back-pressure when the queue is full, never
		// dropped), committed by the sequencer after the handler returns.
		if err := h.seq.Enqueue(ctx, e); err != nil {
			h.log.Error("ledger: end record not written", "request_id", rec.ID, "err", err)
			return false // not queued: the usage row goes to the usage writer
		}
		return usageRides
	}
	if _, err := h.ledger.Append(ctx, e); err != nil && !errors.Is(err, ledger.ErrDeferred) && !errors.Is(err, ledger.ErrAlreadyClosed) {
		// The call is over; its start record stays open and recovery closes
		// it; its hold, if any, is charged in full. The usage row goes to
		// the usage writer: if the entry still commits late, the row's id
		// keeps one of the two.
		h.log.Error("ledger: end record not written", "request_id", rec.ID, "err", err)
		return false
	}
	return usageRides
}

// decide asks the policies in force about a call. budget_remaining_micros is
// -1: budgets are checked after policies, by reservation.
func (h *Handler) decide(r *http.Request, c auth.Caller, snap *config.Snapshot, action, model, provider string, call Call, worstCost int64) policy.Decision {
	var maxTokens int64
	if call.MaxOutput != nil {
		maxTokens = *call.MaxOutput
	}
	return snap.Policies.Decide(policy.Call{
		Principal: policy.FromOrg(c.Principal), Action: action, Model: model, Provider: provider, Stream: call.Stream,
		MaxTokens: maxTokens, InputTokens: 0, EstimatedCostMicros: worstCost, BudgetRemaining: -1,
		SourceIP: h.sourceAddr(r), Time: h.now().In(h.zone), KeyAgeDays: int64(h.now().Sub(c.Key.CreatedAt).Hours() / 24),
		MFAAgeSeconds: mfaAgeOf(c, h.now()), PoPBound: c.PoP,
	})
}

func mfaAgeOf(c auth.Caller, now time.Time) int64 {
	if c.MFAAt == 0 {
		return -1
	}
	return max(now.Unix()-c.MFAAt, 0)
}

// policyDenied names the deciding policies (never their text).
func policyDenied(d policy.Decision) error {
	msg := "No policy permits this call (default deny)."
	switch {
	case len(d.Errors) > 0:
		msg = "Denied: policy " + strings.Join(d.Errors, ", ") + " could not be evaluated (evaluation errors deny)."
	case len(d.Reasons) > 0:
		msg = "Denied by policy " + strings.Join(d.Reasons, ", ") + "."
	}
	return httpx.Errorf(http.StatusForbidden, "policy_denied", "%s", msg)
}

// admit applies the rate limits of the caller's key, principal and team.
func (h *Handler) admit(r *http.Request, id, keyID, principalID, teamID string, c Call, body []byte) (*ratelimit.Ticket, error) {
	if h.limiter == nil {
		return nil, nil
	}
	tokens := int64(len(body)+3) / 4 // as providers estimate for TPM: prompt size plus the output cap of every generation
	if c.MaxOutput != nil {
		tokens = satAdd(tokens, satMul(*c.MaxOutput, satMul(max(c.Choices, 1), max(c.Prompts, 1))))
	}
	t, err := h.limiter.Admit(r.Context(), id, ratelimit.Call{KeyID: keyID, PrincipalID: principalID, TeamID: teamID}, tokens)
	var ref *ratelimit.Refusal
	switch {
	case errors.As(err, &ref):
		kind := "requests"
		if strings.Contains(ref.What, "tokens") {
			kind = "tokens"
		}
		e := httpx.Errorf(http.StatusTooManyRequests, "rate_limit_exceeded",
			"Rate limit reached for %s on %s %s. Please try again in %s.", ref.What, ref.Limit.Scope, ref.Limit.ScopeID, ratelimit.FormatReset(ref.RetryAfter))
		e.Type, e.Header = kind, ref.Headers
		return nil, e
	case err != nil:
		return nil, httpx.Errorf(http.StatusServiceUnavailable, "rate_limit_unavailable", "Rate limits cannot be checked right now; try again shortly.").WithCause(err)
	}
	return t, nil
}

// overReservation tells operators that an upstream reported more than the
// gateway reserved for a call: a worst-case bound was wrong somewhere.
func (h *Handler) overReservation(rec *usage.Record, held int64) {
	h.log.Error("upstream reported more than was reserved; charged as reported", "request_id", rec.ID, "key_id", rec.KeyID,
		"model", rec.Model, "endpoint", rec.Endpoint, "reserved_micros", held, "charged_micros", rec.CostMicros)
	if h.alerts != nil {
		h.alerts.Send(alert.Alert{Kind: "over_reservation",
			Message: fmt.Sprintf("call %s on key %s cost %s, more than the %s reserved for it", rec.ID, rec.KeyID, pricing.FormatUSD(rec.CostMicros), pricing.FormatUSD(held)),
			Details: map[string]any{"request_id": rec.ID, "key_id": rec.KeyID, "model": rec.Model, "endpoint": rec.Endpoint,
				"reserved_micros": held, "charged_micros": rec.CostMicros}})
	}
}

// outcome is what the settlement of a call depends on.
type outcome struct {
	sent    bool // the request reached the upstream, which may bill it from then on
	refused bool // the upstream answered with an error status: nothing billed
	metered bool // the upstream reported the usage of the whole call
}

// unmetered reports whether the upstream may have billed a call whose usage
// it did not report: no usage in the answer (background, a stripped or
// missing usage object, JSON or SSE), or the call ended early after the
// request left (the caller hung up at any point, the upstream failed
// mid-answer, timed out or cut the connection).
func (o outcome) unmetered() bool { return o.sent && !o.refused && !o.metered }

// settlement is what a finished call is charged, given its metered cost and
// what was held for it (the worst case, when no budget held anything):
// nothing when the upstream never got the request or refused it; the metered
// cost when the upstream reported usage, even above the hold (over is then
// true: a bound was wrong, and the excess is charged, never forgiven); the
// whole hold when usage is missing, since the upstream may have billed up to
// the worst case, and no more: a local count (one token per byte of output)
// is a looser bound than the hold, whose output cap the upstream honours.
func settlement(o outcome, metered, held int64, hasHold bool) (charged int64, over bool) {
	switch {
	case !o.sent || o.refused:
		return 0, false
	case o.metered:
		return metered, hasHold && metered > held
	}
	return held, false
}

// roundTrip sends the call upstream under ctx, with the caller headers of r
// the protocol passes on. A connection failure, a refused credential, a 429
// or a 5xx is retried on the provider's next key (up to three attempts),
// which is safe because nothing has reached the caller yet.
//
// sent becomes true once a request was written to the upstream in full: from
// then on the upstream may bill it, so a connection failure after that is
// not retried (a second attempt could be billed on top of the first).
func (h *Handler) roundTrip(ctx context.Context, r *http.Request, up *provider.Upstream, ep provider.Endpoint, body []byte, sent *bool) (*http.Response, error) {
	attempts := min(max(up.KeyCount(), 1), 3)
	slot := up.NextSlot()
	ob := observationOf(ctx)
	var lastErr error
	for i := 1; i <= attempts; i++ {
		if i > 1 {
			select {
			case <-time.After(provider.RetryDelay(i - 1)):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		// The trace goes into the context the request is built with (not a
		// copy of the request made afterwards).
		var wrote atomic.Bool
		tctx := httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			WroteRequest: func(info httptrace.WroteRequestInfo) { wrote.Store(info.Err == nil) },
		})
		req, err := up.NewRequest(tctx, r, ep, body, slot+uint64(i-1))
		if err != nil {
			return nil, err
		}
		ob.inject(ctx, req.Header)
		resp, err := up.Client.Do(req)
		status := 0
		if err == nil {
			status = resp.StatusCode
			if err = redirected(resp); err != nil {
				return nil, err
			}
		}
		if wrote.Load() && (err != nil || status < 400) {
			*sent = true
		}
		if i == attempts || !provider.Retryable(status, err) || ctx.Err() != nil || (err != nil && wrote.Load()) {
			return resp, err
		}
		if err == nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		h.log.Warn("upstream attempt failed; retrying on next key", "request_id", httpx.RequestID(ctx),
			"provider", up.Name, "attempt", i, "status", status, "err", err)
		lastErr = err
	}
	return nil, lastErr
}

func (h *Handler) upstreamFailure(r *http.Request, err error) error {
	var he *httpx.Error
	switch {
	case errors.As(err, &he):
		return he
	case r.Context().Err() != nil && errors.Is(r.Context().Err(), context.Canceled):
		return httpx.Errorf(statusClientClosed, "client_closed", "The client closed the request.").WithCause(err)
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return httpx.Errorf(http.StatusGatewayTimeout, "upstream_timeout", "The upstream provider did not answer in time.").WithCause(err)
	}
	return httpx.Errorf(http.StatusBadGateway, "upstream_unreachable", "The upstream provider could not be reached.").WithCause(err)
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

func firstHeader(h http.Header, names ...string) string {
	for _, n := range names {
		if v := h.Get(n); v != "" {
			return v
		}
	}
	return ""
}

// copyResponseHeaders passes the upstream headers that describe the body.
// Header names here and on the request path are written canonically: a
// lookup or a Set with a name in another case allocates its canonical form on
// every call.
func copyResponseHeaders(w http.ResponseWriter, resp *http.Response) {
	for _, k := range []string{"Content-Type", "Openai-Processing-Ms", "Openai-Model"} {
		if v := resp.Header.Get(k); v != "" {
			w.Header().Set(k, v)
		}
	}
}

// answers are buffers for upstream JSON answers, reused: an answer is read
// whole (to meter it before relaying it), written to the caller, and not
// referenced after (usage and the model name are decoded into copies).
var answers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledAnswer bounds the buffers kept for reuse: a rare large answer
// does not stay pinned in memory.
const maxPooledAnswer = 64 << 10

// readAnswer reads at most limit+1 bytes of an upstream answer into buf,
// growing it once when the upstream declared the answer's length (bounded, so
// that a declared length allocates nothing before the bytes arrive).
func readAnswer(buf *bytes.Buffer, body io.Reader, declared, limit int64) error {
	if declared > 0 {
		// ReadFrom wants MinRead bytes free before each read, EOF included.
		buf.Grow(int(min(declared, limit, maxPooledAnswer)) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(io.LimitReader(body, limit+1))
	return err
}

func (h *Handler) relayJSON(w http.ResponseWriter, r *http.Request, ep provider.Endpoint, resp *http.Response, inputEstimate int64, rec *usage.Record) (usage.Tokens, bool, string, error) {
	buf := answers.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= maxPooledAnswer {
			buf.Reset()
			answers.Put(buf)
		}
	}()
	err := readAnswer(buf, resp.Body, resp.ContentLength, h.opt.MaxResponseBytes)
	b := buf.Bytes()
	if err != nil {
		return usage.Tokens{Input: inputEstimate}, true, "", httpx.Errorf(http.StatusBadGateway, "upstream_error", "The upstream response could not be read.").WithCause(err)
	}
	if int64(len(b)) > h.opt.MaxResponseBytes {
		return usage.Tokens{Input: inputEstimate}, true, "", httpx.Errorf(http.StatusBadGateway, "upstream_response_too_large", "The upstream response exceeded the gateway's limit.")
	}
	tokens, _, model, tier, ok := provider.ParseUsageTier(ep, b)
	observationOf(r.Context()).responseModel(model)
	estimated := !ok
	if !ok {
		tokens = usage.Tokens{Input: inputEstimate}
	}
	copyResponseHeaders(w, resp)
	// A known length and a flush deliver the whole answer before the usage
	// record is written.
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(resp.StatusCode)
	rec.Status = resp.StatusCode
	if _, err := w.Write(b); err != nil {
		rec.Status, rec.ErrorCode = statusClientClosed, "client_closed"
	}
	http.NewResponseController(w).Flush()
	return tokens, estimated, tier, nil
}

// relayStream forwards SSE events one by one, flushing each, while the meter
// reads usage out of them. A silent upstream is cut after StreamIdleTimeout; a
// broken upstream stream ends with an error event in the API's own shape; a
// caller that goes away cancels the upstream call at once.
func (h *Handler) relayStream(w http.ResponseWriter, r *http.Request, ctx context.Context, cancel context.CancelFunc,
	ep provider.Endpoint, resp *http.Response, strip bool, inputEstimate int64, rec *usage.Record) (usage.Tokens, bool, string, error) {
	meter := provider.NewMeter(ep)
	meter.StripUsage = strip
	var idled atomic.Bool
	idle := time.AfterFunc(h.opt.StreamIdleTimeout, func() { idled.Store(true); cancel() })
	defer idle.Stop()

	copyResponseHeaders(w, resp)
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	rc.Flush()
	rec.Status = http.StatusOK

	sse := provider.NewSSEReader(resp.Body, 8<<20)
	for {
		ev, err := sse.Next()
		if err != nil {
			if meter.Done() {
				// The stream was complete; a caller that hangs up after the
				// terminal event (SDKs do) did not cut anything short.
				break
			}
			if r.Context().Err() != nil {
				rec.Status, rec.ErrorCode = statusClientClosed, "client_closed"
				break
			}
			code, msg := "upstream_stream_broken", "The upstream provider's stream broke off."
			if idled.Load() {
				code, msg = "upstream_timeout", "The upstream provider's stream went silent."
			} else if errors.Is(err, io.EOF) {
				code, msg = "upstream_stream_incomplete", "The upstream provider's stream ended early."
			}
			rec.Status, rec.ErrorCode = http.StatusBadGateway, code
			h.log.Warn("upstream stream failed", "request_id", rec.ID, "provider", rec.Provider, "code", code, "err", err)
			writeStreamError(w, ep, rec.ID, code, msg)
			rc.Flush()
			break
		}
		idle.Reset(h.opt.StreamIdleTimeout)
		if !meter.Observe(ev) {
			continue
		}
		observationOf(r.Context()).firstEvent()
		if _, err := w.Write(ev.Raw); err != nil {
			rec.Status, rec.ErrorCode = statusClientClosed, "client_closed"
			cancel()
			break
		}
		if err := rc.Flush(); err != nil {
			rec.Status, rec.ErrorCode = statusClientClosed, "client_closed"
			cancel()
			break
		}
	}
	observationOf(r.Context()).responseModel(meter.ResponseModel())
	t, est := meter.Usage(inputEstimate)
	return t, est, meter.ServiceTier(), nil
}

// writeStreamError ends a stream with an error the SDKs surface: OpenAI's
// `data: {"error":…}` or Anthropic's `event: error`.
func writeStreamError(w io.Writer, ep provider.Endpoint, id, code, msg string) {
	msg += " (request id " + id + ")"
	if ep.Protocol == provider.TypeAnthropic {
		fmt.Fprintf(w, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":%q}}\n\n", msg)
		return
	}
	fmt.Fprintf(w, "data: {\"error\":{\"message\":%q,\"type\":\"server_error\",\"param\":null,\"code\":%q}}\n\n", msg, code)
}

// record stores the usage record, outliving the caller's connection.
func (h *Handler) record(ctx context.Context, rec *usage.Record, store bool) {
	if h.rec == nil {
		return
	}
	if store {
		// A deadline (a timer) only for the store's write; the row usually
		// rides the end entry, and then only the log line is written here.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if err := h.rec.Record(sctx, forStore(*rec)); err != nil {
			h.log.Error("recording usage failed", "request_id", rec.ID, "err", err)
		}
		cancel()
	}
	h.log.LogAttrs(ctx, slog.LevelInfo, "call", slog.String("request_id", rec.ID), slog.String("key_id", rec.KeyID),
		slog.String("model", rec.Model), slog.String("provider", rec.Provider), slog.Bool("stream", rec.Stream),
		slog.Int("status", rec.Status), slog.Int64("input_tokens", rec.Input), slog.Int64("output_tokens", rec.Output),
		slog.Int64("cost_micros", rec.CostMicros), slog.Bool("estimated", rec.Estimated), slog.Int64("latency_ms", rec.LatencyMillis))
}

// isEventStream reports whether a Content-Type names server-sent events;
// media types are case-insensitive (RFC 9110 §8.3.1), so an upstream's
// "Text/Event-Stream" is relayed and metered as a stream too.
func isEventStream(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "text/event-stream"
}
