// Package vkey implements Gatehouse's credentials: the virtual keys that callers
// present on the data plane and the admin keys of the admin API.
//
// # Format
//
// A key is a prefix, a secret and a checksum, all in base62:
//
//	gk_  <32 base62 chars of secret>  <6 base62 chars of CRC32>
//	gka_ <32 base62 chars of secret>  <6 base62 chars of CRC32>
//
// The checksum is CRC-32 (IEEE) of prefix+secret, written as six base62 digits, in
// the manner of GitHub's token format: a scanner can recognise a leaked key with no
// false positives, and the gateway refuses a mistyped or forged key before any store
// lookup. The 32 secret characters carry about 190 bits from crypto/rand.
//
// Keys are never stored. The store keeps HMAC-SHA-256(server secret, key); see Hasher.
// A Secret redacts itself when printed or logged.
package vkey

import (
	"crypto/rand"
	"errors"
	"hash/crc32"
	"log/slog"
	"strings"
)

// Kind tells a data-plane key from an admin key.
type Kind string

const (
	KindVirtual Kind = "virtual" // gk_: data plane
	KindAdmin   Kind = "admin"   // gka_: admin API
)

// Prefix returns the key prefix of k.
func (k Kind) Prefix() string {
	if k == KindAdmin {
		return "gka_"
	}
	return "gk_"
}

const (
	secretLen   = 32
	checksumLen = 6
	alphabet    = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

// Errors returned by Parse. None of them contains the key.
var (
	ErrMalformed = errors.New("vkey: malformed key")
	ErrChecksum  = errors.New("vkey: key checksum mismatch")
)

// Secret is a whole key as the caller presents it. It never prints itself.
type Secret string

// String redacts the secret.
func (Secret) String() string { return "[REDACTED]" }

// GoString redacts the secret under %#v.
func (Secret) GoString() string { return "[REDACTED]" }

// LogValue redacts the secret in slog output.
func (Secret) LogValue() slog.Value { return slog.StringValue("[REDACTED]") }

// MarshalText redacts the secret wherever it is encoded by accident.
func (Secret) MarshalText() ([]byte, error) { return []byte("[REDACTED]"), nil }

// Reveal returns the key itself, for the one response that shows it to its owner.
func (s Secret) Reveal() string { return string(s) }

// Hint returns the prefix and the first four characters of the secret, enough for
// a person to tell keys apart and far too little to guess one.
func (s Secret) Hint() string {
	k, _, ok := split(string(s))
	if !ok {
		return ""
	}
	return string(s)[:len(k.Prefix())+4] + "…"
}

// Generate returns a new key of kind k.
func Generate(k Kind) Secret {
	var b strings.Builder
	p := k.Prefix()
	b.Grow(len(p) + secretLen + checksumLen)
	b.WriteString(p)
	b.WriteString(randomBase62(secretLen))
	b.WriteString(encodeChecksum(crc32.ChecksumIEEE([]byte(b.String()))))
	return Secret(b.String())
}

// Parse checks the shape and checksum of s and returns its kind. It does no store
// lookup and runs in time independent of where a bad checksum differs.
func Parse(s string) (Kind, Secret, error) {
	kind, body, ok := split(s)
	if !ok {
		return "", "", ErrMalformed
	}
	if len(body) != secretLen+checksumLen {
		return "", "", ErrMalformed
	}
	for i := 0; i < len(body); i++ {
		if strings.IndexByte(alphabet, body[i]) < 0 {
			return "", "", ErrMalformed
		}
	}
	want := encodeChecksum(crc32.ChecksumIEEE([]byte(s[:len(s)-checksumLen])))
	if want != body[secretLen:] {
		return "", "", ErrChecksum
	}
	return kind, Secret(s), nil
}

// LooksLikeKey reports whether s has a Gatehouse key prefix, so that callers can
// tell "not a Gatehouse key" (perhaps a token) from "a bad Gatehouse key".
func LooksLikeKey(s string) bool {
	_, _, ok := split(s)
	return ok
}

func split(s string) (Kind, string, bool) {
	switch {
	case strings.HasPrefix(s, "gka_"):
		return KindAdmin, s[4:], true
	case strings.HasPrefix(s, "gk_"):
		return KindVirtual, s[3:], true
	}
	return "", "", false
}

func encodeChecksum(c uint32) string {
	var out [checksumLen]byte
	for i := checksumLen - 1; i >= 0; i-- {
		out[i] = alphabet[c%62]
		c /= 62
	}
	return string(out[:])
}

// randomBase62 draws n characters uniformly from the alphabet by rejection
// sampling, so no character is more likely than another.
func randomBase62(n int) string {
	out := make([]byte, 0, n)
	var buf [64]byte
	for len(out) < n {
		rand.Read(buf[:]) // never returns an error (Go 1.24+); it crashes instead
		for _, c := range buf {
			if c >= 248 { // 248 = 4*62: keep the draw uniform
				continue
			}
			out = append(out, alphabet[c%62])
			if len(out) == n {
				break
			}
		}
	}
	return string(out)
}

// NewID returns a random identifier with a readable prefix, e.g. NewID("key") =
// "key_3kT9…". Identifiers are not secrets.
func NewID(prefix string) string {
	return prefix + "_" + randomBase62(20)
}
