package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/store"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// bootstrap creates the first admin credential when none exists, and in dev
// mode a ready data-plane key too.
func (s *Server) bootstrap(ctx context.Context) error {
	admins, err := s.db.ListKeys(ctx, vkey.Filter{Kind: vkey.KindAdmin})
	if err != nil {
		return err
	}
	if len(admins) > 0 && !s.cfg.Dev {
		return nil
	}
	if err := s.createAdminKey(ctx, "bootstrap admin key"); err != nil {
		return err
	}
	if !s.cfg.Dev {
		return nil
	}
	return s.createDevKey(ctx)
}

// createAdminKey makes an admin key for the principal "admin" in team
// "default", creating both when missing, and keeps the secret in s.Bootstrap.
func (s *Server) createAdminKey(ctx context.Context, name string) error {
	now := time.Now().UTC()
	team, err := s.db.Team(ctx, "default")
	if errors.Is(err, store.ErrNotFound) {
		team = org.Team{ID: vkey.NewID("team"), Name: "default", CreatedAt: now, Version: 1}
		err = s.db.CreateTeam(ctx, team)
	}
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	p, err := s.db.Principal(ctx, "admin")
	if errors.Is(err, store.ErrNotFound) {
		p = org.Principal{ID: vkey.NewID("prn"), Name: "admin", Kind: org.KindUser, Teams: []string{team.ID}, Roles: []string{"admin"}, CreatedAt: now, Version: 1}
		err = s.db.CreatePrincipal(ctx, p)
	}
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	secret := vkey.Generate(vkey.KindAdmin)
	if s.cfg.DevAdminKey != "" {
		secret = vkey.Secret(s.cfg.DevAdminKey)
	}
	k := vkey.Key{ID: vkey.NewID("key"), Kind: vkey.KindAdmin, Name: name, Hash: s.verifier.Hasher().Hash(secret),
		Hint: secret.Hint(), PrincipalID: p.ID, TeamID: team.ID, CreatedAt: now, Version: 1}
	if k.Hint == "" {
		k.Hint = "dev key"
	}
	if err := s.db.CreateKey(ctx, k); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	s.Bootstrap.AdminKey, s.Bootstrap.AdminKeyID = secret.Reveal(), k.ID
	s.log.Info("created an admin key", "name", name, "key_id", k.ID, "principal", p.Name)
	return nil
}

// createDevKey makes, in dev mode, a principal "dev" with a data-plane key.
func (s *Server) createDevKey(ctx context.Context) error {
	now := time.Now().UTC()
	team, err := s.db.Team(ctx, "default")
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	dev := org.Principal{ID: vkey.NewID("prn"), Name: "dev", Kind: org.KindServiceAccount, Teams: []string{team.ID}, Roles: []string{"member"}, CreatedAt: now, Version: 1}
	if err := s.db.CreatePrincipal(ctx, dev); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	vs := vkey.Generate(vkey.KindVirtual)
	vk := vkey.Key{ID: vkey.NewID("key"), Kind: vkey.KindVirtual, Name: "dev key", Hash: s.verifier.Hasher().Hash(vs), Hint: vs.Hint(),
		PrincipalID: dev.ID, TeamID: team.ID, CreatedAt: now, Version: 1}
	if err := s.db.CreateKey(ctx, vk); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	s.Bootstrap.VirtualKey = vs.Reveal()
	return nil
}
