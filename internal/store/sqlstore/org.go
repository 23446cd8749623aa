package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/store"
)

// CreateTeam implements org.Store.
func (s *DB) CreateTeam(ctx context.Context, t org.Team) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `INSERT INTO teams (id, name, max_key_age_seconds, created_at, version) VALUES (?, ?, ?, ?, 1)`,
			t.ID, t.Name, ageSeconds(t.MaxKeyAge), micros(t.CreatedAt)); err != nil {
			return err
		}
		return s.bumpConfig(ctx, tx) // the team's key age is request-path configuration
	})
}

// UpdateTeam implements org.Store. A team's maximum key age is part of the
// request-path configuration, so the change bumps its generation.
func (s *DB) UpdateTeam(ctx context.Context, t org.Team, version int64) (org.Team, error) {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `UPDATE teams SET name = ?, max_key_age_seconds = ?, version = version + 1
			WHERE id = ? AND (? = 0 OR version = ?)`, t.Name, ageSeconds(t.MaxKeyAge), t.ID, version, version)
		if err != nil {
			return err
		}
		if err := s.checkVersioned(ctx, tx, res, "teams", t.ID); err != nil {
			return err
		}
		return s.bumpConfig(ctx, tx)
	})
	if err != nil {
		return org.Team{}, err
	}
	return s.Team(ctx, t.ID)
}

func ageSeconds(a org.Age) int64 { return int64(time.Duration(a) / time.Second) }

// Team implements org.Store.
func (s *DB) Team(ctx context.Context, idOrName string) (org.Team, error) {
	var t org.Team
	var created, age int64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT id, name, max_key_age_seconds, created_at, version FROM teams WHERE id = ? OR name = ?`), idOrName, idOrName).
		Scan(&t.ID, &t.Name, &age, &created, &t.Version)
	if errors.Is(err, sql.ErrNoRows) {
		return org.Team{}, store.ErrNotFound
	}
	t.CreatedAt, t.MaxKeyAge = fromMicros(created), org.Age(time.Duration(age)*time.Second)
	return t, err
}

// ListTeams implements org.Store.
func (s *DB) ListTeams(ctx context.Context) ([]org.Team, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT id, name, max_key_age_seconds, created_at, version FROM teams ORDER BY name`))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []org.Team
	for rows.Next() {
		var t org.Team
		var created, age int64
		if err := rows.Scan(&t.ID, &t.Name, &age, &created, &t.Version); err != nil {
			return nil, err
		}
		t.CreatedAt, t.MaxKeyAge = fromMicros(created), org.Age(time.Duration(age)*time.Second)
		out = append(out, t)
	}
	return out, rows.Err()
}

// DeleteTeam implements org.Store. A team that a principal or key still names is
// in use.
func (s *DB) DeleteTeam(ctx context.Context, id string, version int64) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM principal_teams WHERE team_id = ?`), id).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return store.ErrInUse
		}
		res, err := s.exec(ctx, tx, `DELETE FROM teams WHERE id = ? AND (? = 0 OR version = ?)`, id, version, version)
		if err != nil {
			return err
		}
		return s.checkVersioned(ctx, tx, res, "teams", id)
	})
}

// CreatePrincipal implements org.Store. Every team must exist.
func (s *DB) CreatePrincipal(ctx context.Context, p org.Principal) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO principals (id, name, kind, roles, disabled, created_at, version) VALUES (?, ?, ?, ?, ?, ?, 1)`,
			p.ID, p.Name, string(p.Kind), toJSON(nonNil(p.Roles)), boolInt(p.Disabled), micros(p.CreatedAt))
		if err != nil {
			return err
		}
		return s.setTeams(ctx, tx, p.ID, p.Teams)
	})
}

func (s *DB) setTeams(ctx context.Context, tx *sql.Tx, id string, teams []string) error {
	if _, err := s.exec(ctx, tx, `DELETE FROM principal_teams WHERE principal_id = ?`, id); err != nil {
		return err
	}
	for _, t := range teams {
		if _, err := s.exec(ctx, tx, `INSERT INTO principal_teams (principal_id, team_id) VALUES (?, ?)`, id, t); err != nil {
			if errors.Is(err, store.ErrInUse) { // FK violation: the team does not exist
				return store.ErrNotFound
			}
			return err
		}
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

const principalCols = `id, name, kind, roles, disabled, created_at, version`

func (s *DB) scanPrincipals(ctx context.Context, rows *sql.Rows) ([]org.Principal, error) {
	defer rows.Close()
	var out []org.Principal
	for rows.Next() {
		var p org.Principal
		var kind, roles string
		var disabled int
		var created int64
		if err := rows.Scan(&p.ID, &p.Name, &kind, &roles, &disabled, &created, &p.Version); err != nil {
			return nil, err
		}
		p.Kind, p.Disabled, p.CreatedAt = org.Kind(kind), disabled != 0, fromMicros(created)
		if err := fromJSON(roles, &p.Roles); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()
	for i := range out {
		teams, err := s.teamsOf(ctx, out[i].ID)
		if err != nil {
			return nil, err
		}
		out[i].Teams = teams
	}
	return out, nil
}

func (s *DB) teamsOf(ctx context.Context, id string) ([]string, error) {
	return s.queryStrings(ctx, []string{}, `SELECT team_id FROM principal_teams WHERE principal_id = ? ORDER BY team_id`, id) // an empty list, not nil, when none
}

// Principal implements org.Store.
func (s *DB) Principal(ctx context.Context, idOrName string) (org.Principal, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+principalCols+` FROM principals WHERE id = ? OR name = ?`), idOrName, idOrName)
	if err != nil {
		return org.Principal{}, err
	}
	ps, err := s.scanPrincipals(ctx, rows)
	if err != nil {
		return org.Principal{}, err
	}
	if len(ps) == 0 {
		return org.Principal{}, store.ErrNotFound
	}
	return ps[0], nil
}

// ListPrincipals implements org.Store; teamID "" lists all.
func (s *DB) ListPrincipals(ctx context.Context, teamID string) ([]org.Principal, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+principalCols+` FROM principals
		WHERE ? = '' OR id IN (SELECT principal_id FROM principal_teams WHERE team_id = ?) ORDER BY name`), teamID, teamID)
	if err != nil {
		return nil, err
	}
	return s.scanPrincipals(ctx, rows)
}

// UpdatePrincipal implements org.Store: name, teams, roles and disabled change.
func (s *DB) UpdatePrincipal(ctx context.Context, p org.Principal, version int64) (org.Principal, error) {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `UPDATE principals SET name = ?, roles = ?, disabled = ?, version = version + 1
			WHERE id = ? AND (? = 0 OR version = ?)`,
			p.Name, toJSON(nonNil(p.Roles)), boolInt(p.Disabled), p.ID, version, version)
		if err != nil {
			return err
		}
		if err := s.checkVersioned(ctx, tx, res, "principals", p.ID); err != nil {
			return err
		}
		return s.setTeams(ctx, tx, p.ID, p.Teams)
	})
	if err != nil {
		return org.Principal{}, err
	}
	return s.Principal(ctx, p.ID)
}

// DeletePrincipal implements org.Store. A principal that still owns keys is in use.
func (s *DB) DeletePrincipal(ctx context.Context, id string, version int64) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM keys WHERE principal_id = ?`), id).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return store.ErrInUse
		}
		if _, err := s.exec(ctx, tx, `DELETE FROM principal_teams WHERE principal_id = ?`, id); err != nil {
			return err
		}
		res, err := s.exec(ctx, tx, `DELETE FROM principals WHERE id = ? AND (? = 0 OR version = ?)`, id, version, version)
		if err != nil {
			return err
		}
		return s.checkVersioned(ctx, tx, res, "principals", id)
	})
}
