package server

import (
	"context"
	"path/filepath"

	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/store/postgres"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// openDB opens the store cfg names with its pool and deadlines.
func openDB(ctx context.Context, cfg config.Config) (*sqlstore.DB, error) {
	st := cfg.Store
	if cfg.Database != "" {
		return postgres.OpenWith(ctx, cfg.Database, postgres.Options{MaxOpenConns: st.MaxOpenConns, MaxIdleConns: st.MaxIdleConns,
			ConnMaxLifetime: st.ConnMaxLifetime.D(), ConnectTimeout: st.ConnectTimeout.D(), StatementTimeout: st.StatementTimeout.D(),
			StatementCache: st.StatementCache})
	}
	return sqlite.OpenWith(ctx, filepath.Join(cfg.DataDir, sqlite.FileName), sqlite.Options{BusyTimeout: st.StatementTimeout.D(),
		MaxOpenConns: st.MaxOpenConns, Wrap: cfg.WrapSQLite})
}
