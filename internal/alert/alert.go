// Package alert delivers operator alerts (budget thresholds, tripped
// breakers): always as a log line, and to a webhook when one is configured.
//
// Webhook bodies are JSON. Each carries X-Gatehouse-Timestamp (unix seconds) and
// X-Gatehouse-Signature: "sha256=" + hex(HMAC-SHA-256(secret, timestamp + "." +
// body)), so a receiver can verify origin and reject replays (compare the
// timestamp with its clock). Delivery is asynchronous with retries and never
// blocks a request; Run drains the queue on shutdown.
package alert

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// Alert is one event for operators.
type Alert struct {
	Kind    string         `json:"kind"` // "budget_threshold", "breaker_tripped", …
	Time    time.Time      `json:"time"`
	Message string         `json:"message"`
	Details map[string]any `json:"details,omitempty"`
}

// Sink delivers alerts.
type Sink struct {
	url    string
	secret []byte
	client *http.Client
	log    *slog.Logger
	queue  chan Alert
}

// New returns a sink posting to url (none when ""), signed with secret.
func New(url string, secret []byte, log *slog.Logger) *Sink {
	return &Sink{url: url, secret: secret, log: log, client: &http.Client{Timeout: 10 * time.Second}, queue: make(chan Alert, 1024)}
}

// Send logs a and queues it for the webhook. It never blocks: when the queue
// is full the alert is logged as dropped.
func (s *Sink) Send(a Alert) {
	if a.Time.IsZero() {
		a.Time = time.Now().UTC()
	}
	s.log.Warn("alert: "+a.Message, "kind", a.Kind, "details", a.Details)
	if s == nil || s.url == "" {
		return
	}
	select {
	case s.queue <- a:
	default:
		s.log.Error("alert webhook queue full; alert not delivered", "kind", a.Kind)
	}
}

// Run delivers queued alerts until ctx ends, then tries what is left once.
func (s *Sink) Run(ctx context.Context) error {
	for {
		select {
		case a := <-s.queue:
			s.deliver(ctx, a, 3)
		case <-ctx.Done():
			for {
				select {
				case a := <-s.queue:
					dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
					s.deliver(dctx, a, 1)
					cancel()
				default:
					return nil
				}
			}
		}
	}
}

// Sign returns the signature header value for body at timestamp ts.
func Sign(secret []byte, ts int64, body []byte) string {
	m := hmac.New(sha256.New, secret)
	fmt.Fprintf(m, "%d.", ts)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a signature header in constant time.
func Verify(secret []byte, ts int64, body []byte, sig string) bool {
	return hmac.Equal([]byte(Sign(secret, ts, body)), []byte(sig))
}

func (s *Sink) deliver(ctx context.Context, a Alert, attempts int) {
	body, _ := json.Marshal(a)
	for i := range attempts {
		if i > 0 {
			select {
			case <-time.After(time.Duration(i) * time.Second):
			case <-ctx.Done():
				return
			}
		}
		ts := time.Now().Unix()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
		if err != nil {
			s.log.Error("alert webhook: bad URL", "err", err)
			return
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "gatehouse-alerts")
		req.Header.Set("X-Gatehouse-Timestamp", strconv.FormatInt(ts, 10))
		req.Header.Set("X-Gatehouse-Signature", Sign(s.secret, ts, body))
		resp, err := s.client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 300 {
				return
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		s.log.Warn("alert webhook delivery failed", "kind", a.Kind, "attempt", i+1, "err", err)
	}
}
