package ledger

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/alert"
)

// Exporter copies committed records to SIEMs: a JSON-lines file and/or a
// webhook (batches of JSON lines, signed like alerts). It never blocks the log:
// when its queue is full, records are dropped from the export (never from the
// log) and counted in the log line.
type Exporter struct {
	file    *os.File
	url     string
	secret  []byte
	log     *slog.Logger
	queue   chan []byte
	dropped int
	client  *http.Client
}

// NewExporter opens the export file (append, 0600) when path is set.
func NewExporter(path, url string, secret []byte, log *slog.Logger) (*Exporter, error) {
	e := &Exporter{url: url, secret: secret, log: log, queue: make(chan []byte, 8192), client: &http.Client{Timeout: 10 * time.Second}}
	if path != "" {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("ledger export: %w", err)
		}
		e.file = f
	}
	return e, nil
}

// Enabled reports whether anything is exported.
func (e *Exporter) Enabled() bool { return e.file != nil || e.url != "" }

// Add queues a record.
func (e *Exporter) Add(data []byte) {
	select {
	case e.queue <- data:
	default:
		e.dropped++
	}
}

// Run writes queued records until ctx ends, then drains and closes.
func (e *Exporter) Run(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var batch [][]byte
	flush := func() {
		if len(batch) == 0 {
			return
		}
		var b bytes.Buffer
		for _, r := range batch {
			b.Write(r)
			b.WriteByte('\n')
		}
		if e.file != nil {
			if _, err := e.file.Write(b.Bytes()); err != nil {
				e.log.Error("ledger export: writing the file failed", "err", err)
			}
		}
		if e.url != "" {
			e.post(ctx, b.Bytes())
		}
		batch = batch[:0]
		if e.dropped > 0 {
			e.log.Warn("ledger export: queue full; records left out of the export (they are in the log)", "dropped", e.dropped)
			e.dropped = 0
		}
	}
	for {
		select {
		case r := <-e.queue:
			batch = append(batch, r)
			if len(batch) >= 1000 {
				flush()
			}
		case <-t.C:
			flush()
		case <-ctx.Done():
			for {
				select {
				case r := <-e.queue:
					batch = append(batch, r)
					continue
				default:
				}
				break
			}
			ctx = context.WithoutCancel(ctx)
			flush()
			if e.file != nil {
				e.file.Close()
			}
			return nil
		}
	}
}

func (e *Exporter) post(ctx context.Context, body []byte) {
	ts := time.Now().Unix()
	req, err := http.NewRequestWithContext(ctx, "POST", e.url, bytes.NewReader(body))
	if err != nil {
		e.log.Error("ledger export: bad webhook URL", "err", err)
		return
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("X-Gatehouse-Timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("X-Gatehouse-Signature", alert.Sign(e.secret, ts, body))
	resp, err := e.client.Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode < 300 {
			return
		}
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	e.log.Warn("ledger export: webhook delivery failed", "err", err)
}
