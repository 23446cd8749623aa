package vkey

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
)

// Hasher turns keys into their stored form: hex(HMAC-SHA-256(secret, key)). The
// server secret lives outside the key table (encrypted under the key-encryption
// key), so a copy of the key table alone cannot be used to test guesses.
type Hasher struct {
	secret []byte
}

// NewHasher returns a Hasher with the given server secret, which must be at least
// 32 bytes.
func NewHasher(secret []byte) (*Hasher, error) {
	if len(secret) < 32 {
		return nil, errors.New("vkey: server secret shorter than 32 bytes")
	}
	return &Hasher{secret: append([]byte(nil), secret...)}, nil
}

// Hash returns the stored form of s.
func (h *Hasher) Hash(s Secret) string {
	m := hmac.New(sha256.New, h.secret)
	m.Write([]byte(s))
	return hex.EncodeToString(m.Sum(nil))
}

// Equal compares two stored forms in constant time.
func Equal(a, b string) bool {
	return hmac.Equal([]byte(a), []byte(b))
}
