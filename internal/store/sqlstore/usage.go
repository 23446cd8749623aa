package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

const usageCols = `id, at, key_id, principal_id, team_id, endpoint, model, provider, stream, status, error_code,
	input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, cost_micros, priced, estimated, latency_ms, upstream_request_id, reasons, over_reservation`

const insertUsage = `INSERT INTO usage (` + usageCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

func usageArgs(r usage.Record) []any {
	return []any{r.ID, micros(r.Time), r.KeyID, r.PrincipalID, r.TeamID, r.Endpoint, r.Model, r.Provider, boolInt(r.Stream), r.Status, r.ErrorCode,
		r.Input, r.CachedInput, r.CacheWrite, r.Output, r.CostMicros, boolInt(r.Priced), boolInt(r.Estimated), r.LatencyMillis, r.UpstreamRequestID, toJSON(nonNil(r.Reasons)), boolInt(r.OverReservation)}
}

// InsertUsage implements usage.Store.
func (s *DB) InsertUsage(ctx context.Context, r usage.Record) error {
	_, err := s.hotExec(ctx, nil, insertUsage, usageArgs(r)...)
	return err
}

// InsertUsageBatch implements usage.BatchStore: all records in one
// transaction, through the statement cache.
func (s *DB) InsertUsageBatch(ctx context.Context, rs []usage.Record) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, r := range rs {
			if _, err := s.hotExec(ctx, tx, insertUsage, usageArgs(r)...); err != nil {
				return err
			}
		}
		return nil
	})
}

func usageWhere(q usage.Query) (string, []any) {
	where := `WHERE (? = '' OR key_id = ?) AND (? = '' OR principal_id = ?) AND (? = '' OR team_id = ?) AND (? = '' OR model = ?) AND at >= ? AND at < ?`
	since, until := int64(0), int64(1<<62)
	if !q.Since.IsZero() {
		since = micros(q.Since)
	}
	if !q.Until.IsZero() {
		until = micros(q.Until)
	}
	return where, []any{q.KeyID, q.KeyID, q.PrincipalID, q.PrincipalID, q.TeamID, q.TeamID, q.Model, q.Model, since, until}
}

// ListUsage implements usage.Store, newest first.
func (s *DB) ListUsage(ctx context.Context, q usage.Query) ([]usage.Record, error) {
	where, args := usageWhere(q)
	limit := q.Limit
	if limit <= 0 || limit > 10_000 {
		limit = 1000
	}
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+usageCols+` FROM usage `+where+fmt.Sprintf(` ORDER BY at DESC, id LIMIT %d`, limit)), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []usage.Record
	for rows.Next() {
		var r usage.Record
		var at int64
		var stream, priced, estimated, over int
		var reasons string
		if err := rows.Scan(&r.ID, &at, &r.KeyID, &r.PrincipalID, &r.TeamID, &r.Endpoint, &r.Model, &r.Provider, &stream, &r.Status, &r.ErrorCode,
			&r.Input, &r.CachedInput, &r.CacheWrite, &r.Output, &r.CostMicros, &priced, &estimated, &r.LatencyMillis, &r.UpstreamRequestID, &reasons, &over); err != nil {
			return nil, err
		}
		if err := fromJSON(reasons, &r.Reasons); err != nil {
			return nil, err
		}
		if len(r.Reasons) == 0 {
			r.Reasons = nil
		}
		r.Time, r.Stream, r.Priced, r.Estimated, r.OverReservation = fromMicros(at), stream != 0, priced != 0, estimated != 0, over != 0
		out = append(out, r)
	}
	return out, rows.Err()
}

// SummarizeUsage implements usage.Store.
func (s *DB) SummarizeUsage(ctx context.Context, q usage.Query, by usage.GroupBy) ([]usage.Summary, error) {
	var col string
	switch by {
	case usage.ByKey:
		col = "key_id"
	case usage.ByPrincipal:
		col = "principal_id"
	case usage.ByTeam:
		col = "team_id"
	case usage.ByModel:
		col = "model"
	case usage.ByDay:
		col = "(at / 86400000000)" // days since the epoch, UTC
	default:
		return nil, fmt.Errorf("usage: cannot group by %q", by)
	}
	where, args := usageWhere(q)
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+col+`, COUNT(*), SUM(input_tokens), SUM(cached_input_tokens), SUM(cache_write_tokens),
		SUM(output_tokens), SUM(cost_micros), SUM(estimated) FROM usage `+where+` GROUP BY `+col+` ORDER BY `+col), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []usage.Summary
	for rows.Next() {
		var sm usage.Summary
		var group any
		if err := rows.Scan(&group, &sm.Requests, &sm.Input, &sm.CachedInput, &sm.CacheWrite, &sm.Output, &sm.CostMicros, &sm.Estimated); err != nil {
			return nil, err
		}
		sm.Group = groupString(by, group)
		out = append(out, sm)
	}
	return out, rows.Err()
}

func groupString(by usage.GroupBy, v any) string {
	if by == usage.ByDay {
		var day int64
		switch d := v.(type) {
		case int64:
			day = d
		case float64:
			day = int64(d)
		}
		return fromMicros(day * 86_400_000_000).Format("2006-01-02")
	}
	switch g := v.(type) {
	case string:
		return g
	case []byte:
		return string(g)
	}
	return fmt.Sprint(v)
}
