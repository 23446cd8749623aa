package ledger

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/alert"
)

// lines renders records from index first as JSON lines, each record with its
// index added as the first field: {"log_index":N, followed by the record's
// bytes after its opening brace (the record is recovered exactly by removing
// that prefix). It stops at maxBytes, after at least one record.
//
// A record that is not one JSON object with fields on one line (the log only
// takes canonical records, so only a store altered behind the log's back
// holds one) is not copied raw: a newline in it would end the line and let
// the rest pass as a line of its own, with whatever log_index it claims. It
// is exported as {"log_index":N,"unparsed_record":"<base64 of its bytes>"};
// bad is the index of the first such record, -1 when none.
func (e *Exporter) lines(first int64, recs [][]byte, maxBytes int) (body []byte, n int, bad int64) {
	var b bytes.Buffer
	bad = -1
	for i, r := range recs {
		if n > 0 && b.Len()+len(r)+32 > maxBytes {
			break
		}
		idx := first + int64(i)
		b.WriteString(`{"log_index":`)
		b.WriteString(strconv.FormatInt(idx, 10))
		if oneLineObject(r) {
			b.WriteByte(',')
			b.Write(r[1:])
		} else {
			if bad < 0 {
				bad = idx
			}
			b.WriteString(`,"unparsed_record":"`)
			b.WriteString(base64.StdEncoding.EncodeToString(r))
			b.WriteString(`"}`)
		}
		b.WriteByte('\n')
		n++
	}
	return b.Bytes(), n, bad
}

// oneLineObject reports whether r is a JSON object with at least one field
// and no line break anywhere (JSON allows them between tokens).
func oneLineObject(r []byte) bool {
	return len(r) > 2 && r[0] == '{' && r[1] == '"' && r[len(r)-1] == '}' &&
		bytes.IndexByte(r, '\n') < 0 && bytes.IndexByte(r, '\r') < 0 && json.Valid(r)
}

// exportFile is the file target: appended to, fsynced, and reopened at its
// path when it was moved away (log rotation).
type exportFile struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

func openExportFile(path string) (*exportFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	return &exportFile{path: path, f: f}, nil
}

func (x *exportFile) close() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.f.Close()
}

// current returns the open file, reopened first when the path no longer
// names it: logrotate (or a person) renamed or removed it. Records written
// to the old file before the move are in the old file, the rest in the new:
// nothing is lost across the two.
func (x *exportFile) current() (*os.File, bool, error) {
	pfi, err := os.Stat(x.path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	if err == nil {
		hfi, err := x.f.Stat()
		if err != nil {
			return nil, false, err
		}
		if os.SameFile(pfi, hfi) {
			return x.f, false, nil
		}
	}
	f, err := os.OpenFile(x.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false, err
	}
	// The new name must survive a crash as the records' fsync does.
	if d, err := os.Open(filepath.Dir(x.path)); err == nil {
		d.Sync()
		d.Close()
	}
	x.f.Close()
	x.f = f
	return f, true, nil
}

// writeFile appends body and fsyncs; on failure it cuts the file back to its
// size before, so a retry does not leave a torn line behind.
func (e *Exporter) writeFile(_ context.Context, _ int64, _ int, body []byte) error {
	x := e.file
	x.mu.Lock()
	defer x.mu.Unlock()
	f, reopened, err := x.current()
	if err != nil {
		return fmt.Errorf("export file: %w", err)
	}
	if reopened {
		e.log.Info("ledger export: the export file was moved away (rotated); writing to a new one at its path", "path", x.path)
	}
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("export file: %w", err)
	}
	if _, err := f.Write(body); err != nil {
		f.Truncate(fi.Size())
		return fmt.Errorf("export file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Truncate(fi.Size())
		return fmt.Errorf("export file: %w", err)
	}
	return nil
}

// statusError is a webhook's answer other than 2xx.
type statusError struct{ code int }

func (s *statusError) Error() string {
	if s.code/100 == 3 {
		// Not the Location: it may carry a credential, and it is not ours.
		return fmt.Sprintf("the webhook answered %d, a redirect: not followed (the records go to the configured URL only), so not delivered", s.code)
	}
	return fmt.Sprintf("the webhook answered %d", s.code)
}

// post delivers body to the webhook, signed as alerts are; X-Gatehouse-Log-Index
// and X-Gatehouse-Log-Count name the range. Only a 2xx answer delivers; a
// redirect is not followed. The answer's body is not read (a huge or
// trickling body costs nothing), and ctx bounds the whole exchange.
func (e *Exporter) post(ctx context.Context, first int64, n int, body []byte) error {
	ts := time.Now().Unix()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.opt.Webhook, bytes.NewReader(body))
	if err != nil {
		return errors.New("webhook: the URL is not usable")
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("X-Gatehouse-Timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("X-Gatehouse-Signature", alert.Sign(e.opt.Secret, ts, body))
	req.Header.Set("X-Gatehouse-Log-Index", strconv.FormatInt(first, 10))
	req.Header.Set("X-Gatehouse-Log-Count", strconv.Itoa(n))
	resp, err := e.opt.Client.Do(req)
	if err != nil {
		// The URL may carry a credential: log the cause, not the URL.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("webhook: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return &statusError{code: resp.StatusCode}
	}
	return nil
}
