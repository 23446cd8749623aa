package server

import (
	"context"
	"fmt"

	"github.com/gatehouse-gw/gatehouse/internal/token"
)

// Token signing keys are a sealed JSON list of Ed25519 seeds, current first;
// the previous one keeps verifying after a rotation.
const tokenKeysSecret = "token_signing_keys"

// openTokens loads the token signing keys (sealed under the KEK; created on
// first start).
func (s *Server) openTokens(ctx context.Context) (*token.Issuer, error) {
	sealed, err := s.sealKeys(tokenKeysSecret, [][]byte{token.NewKey()})
	if err != nil {
		return nil, err
	}
	if _, err := s.db.PutSecretIfAbsent(ctx, tokenKeysSecret, sealed); err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	seeds, err := s.tokenSeeds(ctx)
	if err != nil {
		return nil, err
	}
	iss, err := token.New(seeds[0], s.cfg.Tokens.Issuer, s.cfg.Tokens.Issuer, seeds[1:]...)
	if err != nil {
		return nil, err
	}
	iss.TTL = s.cfg.Tokens.TTL.D()
	return iss, nil
}

func (s *Server) tokenSeeds(ctx context.Context) ([][]byte, error) {
	return signingKeys[[]byte](ctx, s, tokenKeysSecret, "tokens", "token signing keys")
}

// RotateTokenKey makes a new token signing key current; the previous one keeps
// verifying (and stays in the JWKS) until the next rotation, so rotate at most
// once per token lifetime. It returns the new key id.
func (s *Server) RotateTokenKey(ctx context.Context) (string, error) {
	seeds, err := s.tokenSeeds(ctx)
	if err != nil {
		return "", err
	}
	sealed, err := s.sealKeys(tokenKeysSecret, [][]byte{token.NewKey(), seeds[0]})
	if err != nil {
		return "", err
	}
	if err := s.db.SetSecret(ctx, tokenKeysSecret, sealed); err != nil {
		return "", err
	}
	if err := s.Reload(ctx); err != nil {
		return "", err
	}
	kid := s.tokens.JWKS().Keys[0].KeyID
	s.log.Warn("token signing key rotated", "kid", kid)
	return kid, nil
}

// Tokens returns the token issuer.
func (s *Server) Tokens() *token.Issuer { return s.tokens }
