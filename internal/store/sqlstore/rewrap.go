package sqlstore

import (
	"context"
	"database/sql"

	"github.com/gatehouse-gw/gatehouse/internal/mfa"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
)

// Rewrap passes every sealed blob in the store, with the associated data it
// was sealed with, through rewrap and stores the result, in one transaction
// (all or nothing). It returns how many blobs it rewrote.
func (s *DB) Rewrap(ctx context.Context, rewrap func(blob, aad []byte) ([]byte, error)) (int, error) {
	n := 0
	err := s.tx(ctx, func(tx *sql.Tx) error {
		type item struct {
			id   string
			blob []byte
		}
		read := func(q string) ([]item, error) {
			rows, err := tx.QueryContext(ctx, s.q(q))
			if err != nil {
				return nil, err
			}
			defer rows.Close()
			var out []item
			for rows.Next() {
				var it item
				if err := rows.Scan(&it.id, &it.blob); err != nil {
					return nil, err
				}
				out = append(out, it)
			}
			return out, rows.Err()
		}
		groups := []struct {
			query, update string
			aad           func(id string) []byte
		}{
			{`SELECT name, sealed FROM secrets`, `UPDATE secrets SET sealed = ? WHERE name = ?`, func(id string) []byte { return []byte("server-secret/" + id) }},
			{`SELECT id, sealed FROM provider_keys`, `UPDATE provider_keys SET sealed = ? WHERE id = ?`, provider.SealAAD},
			{`SELECT principal_id, totp_sealed FROM user_credentials WHERE totp_sealed IS NOT NULL`, `UPDATE user_credentials SET totp_sealed = ? WHERE principal_id = ?`, mfa.TOTPAAD},
			{`SELECT principal_id, totp_pending_sealed FROM user_credentials WHERE totp_pending_sealed IS NOT NULL`, `UPDATE user_credentials SET totp_pending_sealed = ? WHERE principal_id = ?`, mfa.TOTPAAD},
		}
		for _, g := range groups {
			items, err := read(g.query)
			if err != nil {
				return err
			}
			for _, it := range items {
				b, err := rewrap(it.blob, g.aad(it.id))
				if err != nil {
					return err
				}
				if _, err := s.exec(ctx, tx, g.update, b, it.id); err != nil {
					return err
				}
				n++
			}
		}
		return s.bumpConfig(ctx, tx)
	})
	return n, err
}
