package audit

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/httpx"
)

// Secret-scanning partner endpoint, in the format GitHub's secret scanning
// partner program uses (and other code hosts copy):
//
//	POST /secret-scanning/github
//	Github-Public-Key-Identifier: <key id>
//	Github-Public-Key-Signature: <base64 ASN.1 ECDSA P-256 signature of SHA-256(body)>
//
//	[{"token":"gk_…","type":"gatehouse_key","url":"https://…","source":"content"}]
//
// The answer lists each token's SHA-256 (never the token) with a label:
// true_positive when it is a Gatehouse key (revoked now if it was live),
// false_positive otherwise.

// PartnerPath is where the endpoint is served on the data plane.
const PartnerPath = "/secret-scanning/github"

// Header names of the partner program.
const (
	HeaderKeyID     = "Github-Public-Key-Identifier"
	HeaderSignature = "Github-Public-Key-Signature"
)

// PartnerMatch is one reported token.
type PartnerMatch struct {
	Token  string `json:"token"`
	Type   string `json:"type"`
	URL    string `json:"url"`
	Source string `json:"source"`
}

// PartnerLabel is the answer for one token.
type PartnerLabel struct {
	TokenHash string `json:"token_hash"`
	TokenType string `json:"token_type"`
	Label     string `json:"label"`
}

// repeatsPerMinute is how often one report (the same body) is served per
// minute: a code host sends a report once and retries it after a failure.
const repeatsPerMinute = 2

// maxPartnerBody bounds a report; maxPartnerMatches the tokens in it.
const (
	maxPartnerBody    = 1 << 20
	maxPartnerMatches = 1000
)

// VerifyPartnerSignature checks sig (base64 DER) over body with the key named
// by keyID.
func VerifyPartnerSignature(keys map[string]*ecdsa.PublicKey, keyID, sig string, body []byte) bool {
	pub, ok := keys[keyID]
	if !ok || sig == "" {
		return false
	}
	der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(sig))
	if err != nil {
		return false
	}
	sum := sha256.Sum256(body)
	return ecdsa.VerifyASN1(pub, sum[:], der)
}

// PartnerLimits bound the requests the partner endpoint serves: per source
// address (every request, before its body is read) and per public key (reports
// whose signature verified, before any key is looked up or revoked). Over a
// limit the answer is 429 with Retry-After. A zero limit or a nil Take leaves
// that limit off.
type PartnerLimits struct {
	// Take takes one request from the bucket key allowing perMinute: the rate
	// limiter's backend (Redis when configured, so replicas count together).
	// When it fails the request is admitted: the signature check still holds.
	Take func(ctx context.Context, key string, perMinute int64) (allowed bool, retryAfter time.Duration, err error)
	// Source names the caller's address bucket (an IPv6 caller's /64).
	Source    func(*http.Request) string
	PerSource int64 // requests per minute per source address
	PerKey    int64 // verified reports per minute per public key identifier
}

// take reports whether bucket key has room, and otherwise how long to wait
// (whole seconds, at least one).
func (l PartnerLimits) take(ctx context.Context, log *slog.Logger, key string, perMinute int64) (bool, time.Duration) {
	if l.Take == nil || perMinute <= 0 {
		return true, 0
	}
	ok, after, err := l.Take(ctx, key, perMinute)
	if err != nil {
		log.Warn("secret scanning: the rate limiter failed; the report is admitted", "err", err)
		return true, 0
	}
	if ok {
		return true, 0
	}
	return false, max(time.Second, (after + time.Second - 1).Truncate(time.Second))
}

// PartnerHandler serves the endpoint: the source address's limit is taken
// before the body is read, the signature is checked before the body is parsed,
// the key's limit is taken once the signature verified; matching live keys are
// revoked at once.
func (e *Engine) PartnerHandler(keys map[string]*ecdsa.PublicKey, log *slog.Logger, lim PartnerLimits) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fail := func(w http.ResponseWriter, r *http.Request, err error) {
		httpx.Render(w, r, log, httpx.OpenAI, err)
	}
	tooMany := func(w http.ResponseWriter, r *http.Request, after time.Duration, what string) {
		w.Header().Set("Retry-After", strconv.FormatInt(int64(after/time.Second), 10))
		fail(w, r, httpx.Errorf(http.StatusTooManyRequests, "rate_limit_exceeded", "Too many reports from this %s; retry after %d seconds.", what, int64(after/time.Second)))
	}
	return httpx.Middleware(log, func(*http.Request) httpx.Flavor { return httpx.OpenAI }, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if lim.Source != nil {
			if ok, after := lim.take(r.Context(), log, "partner:"+lim.Source(r), lim.PerSource); !ok {
				tooMany(w, r, after, "address")
				return
			}
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPartnerBody))
		if err != nil {
			fail(w, r, httpx.Errorf(http.StatusRequestEntityTooLarge, "body_too_large", "The report is larger than 1 MiB."))
			return
		}
		keyID := r.Header.Get(HeaderKeyID)
		if !VerifyPartnerSignature(keys, keyID, r.Header.Get(HeaderSignature), body) {
			fail(w, r, httpx.Errorf(http.StatusUnauthorized, "invalid_signature", "The report's signature does not verify against a configured public key."))
			return
		}
		// Counted only once verified: forged reports naming a key cannot use
		// up the code host's allowance. A report replayed verbatim (its
		// signature still verifies: it has no nonce or time) takes a place in
		// its own small bucket first, so whoever captured one report cannot
		// spend the code host's allowance with it either.
		if lim.PerKey > 0 {
			sum := sha256.Sum256(body)
			if ok, after := lim.take(r.Context(), log, "partnerreport:"+keyID+":"+hex.EncodeToString(sum[:]), repeatsPerMinute); !ok {
				tooMany(w, r, after, "report (it was just received)")
				return
			}
		}
		if ok, after := lim.take(r.Context(), log, "partnerkey:"+keyID, lim.PerKey); !ok {
			tooMany(w, r, after, "public key")
			return
		}
		var matches []PartnerMatch
		if err := json.Unmarshal(body, &matches); err != nil {
			fail(w, r, httpx.Errorf(http.StatusBadRequest, "invalid_json", "The report must be a JSON array of {token, type, url, source}."))
			return
		}
		if len(matches) > maxPartnerMatches {
			fail(w, r, httpx.Errorf(http.StatusRequestEntityTooLarge, "too_many_tokens", "At most %d tokens per report.", maxPartnerMatches))
			return
		}
		leaks := make([]Leak, len(matches))
		for i, m := range matches {
			src := m.URL
			if m.Source != "" {
				src += " (" + m.Source + ")"
			}
			leaks[i] = Leak{Secret: m.Token, Source: "secret scanning: " + src}
		}
		res, err := e.Leaked(r.Context(), leaks, true, SystemActor)
		if err != nil {
			fail(w, r, httpx.Errorf(http.StatusServiceUnavailable, "unavailable", "The report could not be processed; send it again.").WithCause(err))
			return
		}
		out := make([]PartnerLabel, len(matches))
		for i, m := range matches {
			sum := sha256.Sum256([]byte(m.Token))
			label := "false_positive"
			if res[i].KeyID != "" {
				label = "true_positive"
			}
			out[i] = PartnerLabel{TokenHash: hex.EncodeToString(sum[:]), TokenType: m.Type, Label: label}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	}))
}
