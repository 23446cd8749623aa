package sqlstore

import (
	"context"
	"database/sql"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/pricing"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
	"github.com/gatehouse-gw/gatehouse/internal/store"
)

// CreateProvider implements provider.Store, with the keys in p.Keys.
func (s *DB) CreateProvider(ctx context.Context, p provider.Provider) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO providers (id, name, type, base_url, models, created_at, version) VALUES (?, ?, ?, ?, ?, ?, 1)`,
			p.ID, p.Name, string(p.Type), p.BaseURL, toJSON(p.Models), micros(p.CreatedAt))
		if err != nil {
			return err
		}
		for _, k := range p.Keys {
			if err := s.insertProviderKey(ctx, tx, p.ID, k); err != nil {
				return err
			}
		}
		return s.bumpConfig(ctx, tx)
	})
}

func (s *DB) insertProviderKey(ctx context.Context, tx *sql.Tx, providerID string, k provider.UpstreamKey) error {
	_, err := s.exec(ctx, tx, `INSERT INTO provider_keys (id, provider_id, sealed, created_at) VALUES (?, ?, ?, ?)`,
		k.ID, providerID, k.Sealed, micros(k.CreatedAt))
	return err
}

// Provider implements provider.Store.
func (s *DB) Provider(ctx context.Context, idOrName string) (provider.Provider, error) {
	ps, err := s.providers(ctx, `WHERE id = ? OR name = ?`, idOrName, idOrName)
	if err != nil {
		return provider.Provider{}, err
	}
	if len(ps) == 0 {
		return provider.Provider{}, store.ErrNotFound
	}
	return ps[0], nil
}

// ListProviders implements provider.Store.
func (s *DB) ListProviders(ctx context.Context) ([]provider.Provider, error) {
	return s.providers(ctx, ``)
}

func (s *DB) providers(ctx context.Context, where string, args ...any) ([]provider.Provider, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT id, name, type, base_url, models, created_at, version FROM providers `+where+` ORDER BY name`), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []provider.Provider
	for rows.Next() {
		var p provider.Provider
		var typ, models string
		var created int64
		if err := rows.Scan(&p.ID, &p.Name, &typ, &p.BaseURL, &models, &created, &p.Version); err != nil {
			return nil, err
		}
		p.Type, p.CreatedAt = provider.Type(typ), fromMicros(created)
		if err := fromJSON(models, &p.Models); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()
	for i := range out {
		keys, err := s.providerKeys(ctx, out[i].ID)
		if err != nil {
			return nil, err
		}
		out[i].Keys = keys
	}
	return out, nil
}

func (s *DB) providerKeys(ctx context.Context, providerID string) ([]provider.UpstreamKey, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT id, sealed, created_at FROM provider_keys WHERE provider_id = ? ORDER BY created_at, id`), providerID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	keys := []provider.UpstreamKey{}
	for rows.Next() {
		var k provider.UpstreamKey
		var created int64
		if err := rows.Scan(&k.ID, &k.Sealed, &created); err != nil {
			return nil, err
		}
		k.CreatedAt = fromMicros(created)
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// DeleteProvider implements provider.Store; its keys go with it.
func (s *DB) DeleteProvider(ctx context.Context, id string, version int64) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `DELETE FROM provider_keys WHERE provider_id = ?`, id); err != nil {
			return err
		}
		res, err := s.exec(ctx, tx, `DELETE FROM providers WHERE id = ? AND (? = 0 OR version = ?)`, id, version, version)
		if err != nil {
			return err
		}
		if err := s.checkVersioned(ctx, tx, res, "providers", id); err != nil {
			return err
		}
		return s.bumpConfig(ctx, tx)
	})
}

// AddProviderKey implements provider.Store.
func (s *DB) AddProviderKey(ctx context.Context, providerID string, k provider.UpstreamKey) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `UPDATE providers SET version = version + 1 WHERE id = ?`, providerID)
		if err != nil {
			return err
		}
		if err := oneRow(res); err != nil {
			return err
		}
		if err := s.insertProviderKey(ctx, tx, providerID, k); err != nil {
			return err
		}
		return s.bumpConfig(ctx, tx)
	})
}

// DeleteProviderKey implements provider.Store.
func (s *DB) DeleteProviderKey(ctx context.Context, providerID, keyID string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `DELETE FROM provider_keys WHERE provider_id = ? AND id = ?`, providerID, keyID)
		if err != nil {
			return err
		}
		if err := oneRow(res); err != nil {
			return err
		}
		if _, err := s.exec(ctx, tx, `UPDATE providers SET version = version + 1 WHERE id = ?`, providerID); err != nil {
			return err
		}
		return s.bumpConfig(ctx, tx)
	})
}

// ListPrices implements pricing.Store: the operator's overrides.
func (s *DB) ListPrices(ctx context.Context) ([]pricing.Price, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT model, input, cached_input, cache_write, output, max_output, updated_at,
		long_above, long_input, long_cached_input, long_cache_write, long_output FROM prices ORDER BY model`))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []pricing.Price
	for rows.Next() {
		var p pricing.Price
		var updated int64
		t := &p.LongContext
		if err := rows.Scan(&p.Model, &p.Input, &p.CachedInput, &p.CacheWrite, &p.Output, &p.MaxOutput, &updated,
			&t.Above, &t.Input, &t.CachedInput, &t.CacheWrite, &t.Output); err != nil {
			return nil, err
		}
		p.UpdatedAt, p.Source = fromMicros(updated), "override"
		out = append(out, p)
	}
	return out, rows.Err()
}

// SetPrice implements pricing.Store (insert or replace).
func (s *DB) SetPrice(ctx context.Context, p pricing.Price) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `DELETE FROM prices WHERE model = ?`, p.Model); err != nil {
			return err
		}
		t := p.LongContext
		if _, err := s.exec(ctx, tx, `INSERT INTO prices (model, input, cached_input, cache_write, output, max_output, updated_at,
			long_above, long_input, long_cached_input, long_cache_write, long_output) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			p.Model, p.Input, p.CachedInput, p.CacheWrite, p.Output, p.MaxOutput, micros(time.Now()),
			t.Above, t.Input, t.CachedInput, t.CacheWrite, t.Output); err != nil {
			return err
		}
		return s.bumpConfig(ctx, tx)
	})
}

// DeletePrice implements pricing.Store.
func (s *DB) DeletePrice(ctx context.Context, model string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `DELETE FROM prices WHERE model = ?`, model)
		if err != nil {
			return err
		}
		if err := oneRow(res); err != nil {
			return err
		}
		return s.bumpConfig(ctx, tx)
	})
}
