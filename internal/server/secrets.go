package server

import (
	"context"
	"encoding/json"
	"fmt"
)

// secretAAD binds a server secret, sealed under the KEK, to its name: a blob
// moved to another name does not open.
func secretAAD(name string) []byte { return []byte("server-secret/" + name) }

// signingKeys reads the server secret name: a sealed JSON list of signing
// keys, current first, never empty. A store error is prefixed with comp,
// a list that does not open or parse with what.
func signingKeys[K any](ctx context.Context, s *Server, name, comp, what string) ([]K, error) {
	stored, err := s.db.Secret(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", comp, err)
	}
	raw, err := s.keyring.Open(stored, secretAAD(name))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	var keys []K
	if err := json.Unmarshal(raw, &keys); err != nil || len(keys) == 0 {
		return nil, fmt.Errorf("%s: corrupt", what)
	}
	return keys, nil
}

// sealKeys seals a list of signing keys, current first, for the server
// secret name.
func (s *Server) sealKeys(name string, keys any) ([]byte, error) {
	b, _ := json.Marshal(keys)
	return s.keyring.Seal(b, secretAAD(name))
}
