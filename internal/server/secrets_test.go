package server

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/keyring"
	"github.com/gatehouse-gw/gatehouse/internal/store"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
)

// sealingServer is a Server with what signingKeys and sealKeys use: a
// fresh SQLite store and a keyring.
func sealingServer(t *testing.T) *Server {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "gh.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	kr, err := keyring.New(keyring.NewKEK())
	if err != nil {
		t.Fatal(err)
	}
	return &Server{db: db, keyring: kr}
}

// TestSigningKeysSealedByName: a list of signing keys reads back as sealed,
// current first; a missing list is the store's ErrNotFound (recordOffline
// relies on it); an empty list, or one sealed for another secret's name,
// is refused with the list's name.
func TestSigningKeysSealedByName(t *testing.T) {
	ctx := context.Background()
	s := sealingServer(t)
	read := func() ([]string, error) {
		return signingKeys[string](ctx, s, ledgerKeysSecret, "ledger", "ledger signing keys")
	}
	put := func(name string, keys []string) {
		t.Helper()
		sealed, err := s.sealKeys(name, keys)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.db.SetSecret(ctx, ledgerKeysSecret, sealed); err != nil {
			t.Fatal(err)
		}
	}

	if _, err := read(); !errors.Is(err, store.ErrNotFound) || !strings.HasPrefix(err.Error(), "ledger: ") {
		t.Fatalf("no list: %v, want ledger: ... ErrNotFound", err)
	}
	put(ledgerKeysSecret, []string{"new", "old"})
	if got, err := read(); err != nil || !slices.Equal(got, []string{"new", "old"}) {
		t.Fatalf("read %q, %v; want [new old]", got, err)
	}
	put(ledgerKeysSecret, []string{})
	if _, err := read(); err == nil || err.Error() != "ledger signing keys: corrupt" {
		t.Fatalf("empty list: %v, want ledger signing keys: corrupt", err)
	}
	put(tokenKeysSecret, []string{"k"}) // sealed for the token keys, stored as the ledger's
	if _, err := read(); err == nil || !strings.HasPrefix(err.Error(), "ledger signing keys: ") || strings.HasSuffix(err.Error(), "corrupt") {
		t.Fatalf("a list sealed for another name: %v, want it not to open", err)
	}
}

// TestSigningKeysTruncatedNullAndOldAAD: a sealed list cut short does not
// open, a sealed JSON null is refused as corrupt, and a list sealed as main
// did before signingKeys (AAD "server-secret/" + name) still opens.
func TestSigningKeysTruncatedNullAndOldAAD(t *testing.T) {
	ctx := context.Background()
	s := sealingServer(t)
	read := func() ([]string, error) {
		return signingKeys[string](ctx, s, tokenKeysSecret, "tokens", "token signing keys")
	}
	set := func(b []byte) {
		t.Helper()
		if err := s.db.SetSecret(ctx, tokenKeysSecret, b); err != nil {
			t.Fatal(err)
		}
	}
	sealed, err := s.sealKeys(tokenKeysSecret, []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, len(sealed) / 2, len(sealed) - 1} {
		set(sealed[:n])
		if got, err := read(); err == nil {
			t.Fatalf("a sealed list cut to %d of %d bytes read as %q", n, len(sealed), got)
		}
	}
	null, err := s.keyring.Seal([]byte("null"), []byte("server-secret/"+tokenKeysSecret))
	if err != nil {
		t.Fatal(err)
	}
	set(null)
	if _, err := read(); err == nil || err.Error() != "token signing keys: corrupt" {
		t.Fatalf("a sealed null: %v, want token signing keys: corrupt", err)
	}
	old, err := s.keyring.Seal([]byte(`["x","y"]`), []byte("server-secret/"+tokenKeysSecret))
	if err != nil {
		t.Fatal(err)
	}
	set(old)
	if got, err := read(); err != nil || !slices.Equal(got, []string{"x", "y"}) {
		t.Fatalf("a list sealed with the pre-refactor AAD read %q, %v", got, err)
	}
}
