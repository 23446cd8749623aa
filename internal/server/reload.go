package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/config"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
	"github.com/gatehouse-gw/gatehouse/internal/pricing"
	"github.com/gatehouse-gw/gatehouse/internal/provider"
	"github.com/gatehouse-gw/gatehouse/internal/store"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// Reload rebuilds the request-path snapshot from the store and swaps it in.
func (s *Server) Reload(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	gen, err := s.db.ConfigVersion(ctx)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	ps, err := s.db.ListProviders(ctx)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	var ups []*provider.Upstream
	for _, p := range ps {
		keys := make([]provider.APIKey, 0, len(p.Keys))
		for _, k := range p.Keys {
			b, err := s.keyring.Open(k.Sealed, provider.SealAAD(k.ID))
			if err != nil {
				return fmt.Errorf("reload: provider %s key %s: %w", p.Name, k.ID, err)
			}
			keys = append(keys, provider.APIKey(b))
		}
		ups = append(ups, provider.NewUpstream(p, keys, s.client))
	}
	simURL := "http://" + s.simLn.Addr().String()
	fallback := map[provider.Type]*provider.Upstream{
		provider.TypeOpenAI:    provider.NewUpstream(provider.Provider{Name: "simulated", Type: provider.TypeOpenAI, BaseURL: simURL + "/v1"}, nil, s.client),
		provider.TypeAnthropic: provider.NewUpstream(provider.Provider{Name: "simulated", Type: provider.TypeAnthropic, BaseURL: simURL}, nil, s.client),
	}
	overrides, err := s.db.ListPrices(ctx)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	budgets, err := s.db.ListBudgets(ctx)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	limits, err := s.db.ListLimits(ctx)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	files, pver := policy.Defaults(), int64(0)
	if v, err := s.db.PolicyVersion(ctx, 0); err == nil {
		files, pver = v.Files, v.Version
	} else if !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("reload: %w", err)
	}
	if s.cfg.StepUpMaxAge > 0 {
		files = maps.Clone(files)
		files[policy.StepUpFile] = policy.StepUpPolicy(s.cfg.StepUpMaxAge.D())
	}
	policies, err := policy.Compile(files)
	if err != nil {
		return fmt.Errorf("reload: policy version %d does not compile: %w", pver, err)
	}
	if s.tokens != nil {
		jtis, cutoffs, err := s.db.TokenRevocations(ctx, time.Now())
		if err != nil {
			return fmt.Errorf("reload: %w", err)
		}
		s.tokens.Revocations(jtis, cutoffs)
		seeds, err := s.tokenSeeds(ctx)
		if err != nil {
			return fmt.Errorf("reload: %w", err)
		}
		if err := s.tokens.SetKeys(seeds); err != nil {
			return fmt.Errorf("reload: %w", err)
		}
	}
	if s.ledger != nil {
		keys, err := s.ledgerKeys(ctx)
		if err != nil {
			return fmt.Errorf("reload: %w", err)
		}
		if err := s.ledger.SetKeys(keys); err != nil {
			return fmt.Errorf("reload: %w", err)
		}
	}
	teams, err := s.db.ListTeams(ctx)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	ages := make(map[string]time.Duration)
	for _, t := range teams {
		if t.MaxKeyAge > 0 {
			ages[t.ID] = time.Duration(t.MaxKeyAge)
		}
	}
	prev := s.snap.Load()
	s.snap.Store(&config.Snapshot{Generation: gen, Router: provider.NewRouter(ups, fallback), Prices: pricing.NewTable(pricing.Defaults(), overrides), Budgets: budgets, Limits: limits, Policies: policies, PolicyVer: pver, TeamKeyAges: ages})
	if prev == nil || prev.Generation != gen {
		mode := "providers"
		if len(ups) == 0 {
			mode = "simulated provider (no provider configured)"
		}
		s.log.Info("configuration loaded", "generation", gen, "providers", len(ups), "routing", mode, "price_overrides", len(overrides))
	}
	return nil
}

// teamKeyAge returns a team's own maximum key age (0: none).
func (s *Server) teamKeyAge(teamID string) time.Duration {
	if snap := s.snap.Load(); snap != nil {
		return snap.TeamKeyAges[teamID]
	}
	return 0
}

// keyMaxAge returns the maximum age of a key of the team: the stricter of the
// organisation's and the team's.
func (s *Server) keyMaxAge(teamID string) time.Duration {
	return vkey.MinAge(s.cfg.Keys.MaxAge.D(), s.teamKeyAge(teamID))
}

// Snapshot returns the current snapshot.
func (s *Server) Snapshot() *config.Snapshot { return s.snap.Load() }

func (s *Server) budgetList() []budget.Budget { return s.snap.Load().Budgets }

// pollConfig reloads the snapshot when another replica changed providers or
// prices.
func (s *Server) pollConfig(ctx context.Context) {
	t := time.NewTicker(s.cfg.ConfigPollInterval.D())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			gen, err := s.db.ConfigVersion(ctx)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("config poll failed", "err", err)
				}
				continue
			}
			if cur := s.snap.Load(); cur == nil || cur.Generation != gen {
				if err := s.Reload(ctx); err != nil {
					s.log.Error("config reload failed; keeping the previous snapshot", "err", err)
				}
			}
		}
	}
}
