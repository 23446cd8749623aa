package audit

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"

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

// PartnerHandler serves the endpoint: the signature is checked before the body
// is parsed; matching live keys are revoked at once.
func (e *Engine) PartnerHandler(keys map[string]*ecdsa.PublicKey, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fail := func(w http.ResponseWriter, r *http.Request, err error) {
		httpx.Render(w, r, log, httpx.OpenAI, err)
	}
	return httpx.Middleware(log, func(*http.Request) httpx.Flavor { return httpx.OpenAI }, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPartnerBody))
		if err != nil {
			fail(w, r, httpx.Errorf(http.StatusRequestEntityTooLarge, "body_too_large", "The report is larger than 1 MiB."))
			return
		}
		if !VerifyPartnerSignature(keys, r.Header.Get(HeaderKeyID), r.Header.Get(HeaderSignature), body) {
			fail(w, r, httpx.Errorf(http.StatusUnauthorized, "invalid_signature", "The report's signature does not verify against a configured public key."))
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
