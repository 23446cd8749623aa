package ledger

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// GenerateKey returns a new Ed25519 signer key for a log of the given origin.
func GenerateKey(origin string) (skey string, err error) {
	skey, _, err = note.GenerateKey(rand.Reader, origin)
	return skey, err
}

// publicKey extracts the Ed25519 public key from a note signer key text
// ("PRIVATE+KEY+<name>+<hash>+<base64(0x01 || seed)>").
func publicKey(skey string) (ed25519.PublicKey, error) {
	parts := strings.SplitN(skey, "+", 5) // the base64 key itself may contain '+'
	if len(parts) != 5 {
		return nil, errors.New("ledger: malformed signing key")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return nil, errors.New("ledger: malformed signing key")
	}
	return ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey), nil
}
