package vkey

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"sync"
)

// Hasher turns keys into their stored form: hex(HMAC-SHA-256(secret, key)). The
// server secret lives outside the key table (encrypted under the key-encryption
// key), so a copy of the key table alone cannot be used to test guesses.
type Hasher struct {
	secret []byte
	// macs are keyed HMACs, reused: every call hashes its key, and a new
	// HMAC costs two extra SHA-256 blocks (the padded key) and a handful of
	// allocations. Each is Reset before use; none leaves Hash.
	macs sync.Pool
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
	m, _ := h.macs.Get().(hash.Hash)
	if m == nil {
		m = hmac.New(sha256.New, h.secret)
	}
	m.Reset()
	m.Write([]byte(s))
	var sum [sha256.Size]byte
	var out [2 * sha256.Size]byte
	hex.Encode(out[:], m.Sum(sum[:0]))
	m.Reset() // no trace of s stays in the pooled state
	h.macs.Put(m)
	return string(out[:])
}

// Equal compares two stored forms in constant time.
func Equal(a, b string) bool {
	return hmac.Equal([]byte(a), []byte(b))
}
