// Package keyring protects secrets at rest with envelope encryption.
//
// Each secret is sealed with its own random 256-bit data key (AES-256-GCM); the
// data key is sealed with the key-encryption key (KEK, also AES-256-GCM), which
// never enters the database: it comes from a file created 0600 on first start or
// from the GATEHOUSE_KEK environment variable. A sealed blob names the KEK by id,
// so KEKs can rotate: a Keyring opens blobs under any KEK it holds and seals
// under the current one.
//
// Blob layout (all lengths in bytes):
//
//	1  version (1)
//	1  n = len(kek id)
//	n  kek id
//	12 nonce of the wrapped data key
//	48 wrapped data key (32 + 16 tag)
//	12 nonce of the payload
//	*  payload ciphertext + 16 tag
//
// Callers pass associated data (such as "provider-key/<id>") that binds a blob to
// its row: a blob copied onto another row fails to open.
package keyring

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// KeySize is the size of a KEK and of each data key.
const KeySize = 32

const blobVersion = 1

// Errors from Open.
var (
	ErrUnknownKEK = errors.New("keyring: blob sealed under a key-encryption key this keyring does not hold")
	ErrCorrupt    = errors.New("keyring: blob corrupt or bound to other data")
)

// Keyring seals and opens secrets. It is safe for concurrent use.
type Keyring struct {
	current string
	keks    map[string]cipher.AEAD
}

// New returns a Keyring whose current KEK is keks[0]; the others can still open.
func New(keks ...[]byte) (*Keyring, error) {
	if len(keks) == 0 {
		return nil, errors.New("keyring: no key-encryption key")
	}
	kr := &Keyring{keks: make(map[string]cipher.AEAD)}
	for i, k := range keks {
		if len(k) != KeySize {
			return nil, fmt.Errorf("keyring: key-encryption key is %d bytes, want %d", len(k), KeySize)
		}
		aead, err := newAEAD(k)
		if err != nil {
			return nil, err
		}
		id := KEKID(k)
		kr.keks[id] = aead
		if i == 0 {
			kr.current = id
		}
	}
	return kr, nil
}

// KEKID names a KEK without revealing it: the first 8 bytes of SHA-256 over a
// domain-separated input, in hex.
func KEKID(kek []byte) string {
	h := sha256.Sum256(append([]byte("gatehouse kek id\x00"), kek...))
	return hex.EncodeToString(h[:8])
}

// CurrentID returns the id of the KEK that Seal uses.
func (kr *Keyring) CurrentID() string { return kr.current }

func newAEAD(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// Seal encrypts plaintext bound to aad.
func (kr *Keyring) Seal(plaintext, aad []byte) ([]byte, error) {
	dek := make([]byte, KeySize)
	rand.Read(dek)
	payload, err := newAEAD(dek)
	if err != nil {
		return nil, err
	}
	kek := kr.keks[kr.current]
	out := make([]byte, 0, 2+len(kr.current)+12+48+12+len(plaintext)+16)
	out = append(out, blobVersion, byte(len(kr.current)))
	out = append(out, kr.current...)
	header := len(out)
	n1 := make([]byte, 12)
	rand.Read(n1)
	out = append(out, n1...)
	out = kek.Seal(out, n1, dek, out[:header])
	n2 := make([]byte, 12)
	rand.Read(n2)
	out = append(out, n2...)
	out = payload.Seal(out, n2, plaintext, aad)
	clear(dek)
	return out, nil
}

// Open decrypts a blob made by Seal with the same aad.
func (kr *Keyring) Open(blob, aad []byte) ([]byte, error) {
	if len(blob) < 2 || blob[0] != blobVersion {
		return nil, ErrCorrupt
	}
	n := int(blob[1])
	header := 2 + n
	if len(blob) < header+12+48+12+16 {
		return nil, ErrCorrupt
	}
	kek, ok := kr.keks[string(blob[2:header])]
	if !ok {
		return nil, ErrUnknownKEK
	}
	rest := blob[header:]
	dek, err := kek.Open(nil, rest[:12], rest[12:60], blob[:header])
	if err != nil {
		return nil, ErrCorrupt
	}
	defer clear(dek)
	payload, err := newAEAD(dek)
	if err != nil {
		return nil, ErrCorrupt
	}
	pt, err := payload.Open(nil, rest[60:72], rest[72:], aad)
	if err != nil {
		return nil, ErrCorrupt
	}
	return pt, nil
}

// EnvKEK is the environment variable that can carry the KEK (base64 or hex of 32
// bytes). When set, it wins over the file.
const EnvKEK = "GATEHOUSE_KEK"

// LoadKEK returns the current KEK; see LoadKEKs.
func LoadKEK(path string, getenv func(string) string) (kek []byte, created bool, err error) {
	keys, created, err := LoadKEKs(path, getenv)
	if err != nil {
		return nil, false, err
	}
	return keys[0], created, nil
}

// LoadKEKs returns the KEKs from the environment (comma-separated) or from
// path (one a line), the current one first and older ones after (they still
// open what they sealed, during a rotation). It creates the file with a fresh
// key and mode 0600 when neither exists, and refuses a file that others can read.
func LoadKEKs(path string, getenv func(string) string) (keys [][]byte, created bool, err error) {
	if v := strings.TrimSpace(getenv(EnvKEK)); v != "" {
		for _, part := range strings.Split(v, ",") {
			k, err := decodeKEK(strings.TrimSpace(part))
			if err != nil {
				return nil, false, fmt.Errorf("keyring: %s: %w", EnvKEK, err)
			}
			keys = append(keys, k)
		}
		return keys, false, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		k := make([]byte, KeySize)
		rand.Read(k)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, false, fmt.Errorf("keyring: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, false, fmt.Errorf("keyring: create key file: %w", err)
		}
		_, werr := f.WriteString(base64.StdEncoding.EncodeToString(k) + "\n")
		if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
			return nil, false, fmt.Errorf("keyring: write key file: %w", err)
		}
		return [][]byte{k}, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("keyring: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, false, fmt.Errorf("keyring: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, false, fmt.Errorf("keyring: key file %s is readable by others (mode %v); chmod 600 it", path, fi.Mode().Perm())
	}
	for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, err := decodeKEK(strings.TrimSpace(line))
		if err != nil {
			return nil, false, fmt.Errorf("keyring: key file %s line %d: %w", path, i+1, err)
		}
		keys = append(keys, k)
	}
	return keys, false, nil
}

// WriteKEKs replaces the key file at path with keys (current first), atomically,
// mode 0600.
func WriteKEKs(path string, keys [][]byte) error {
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(base64.StdEncoding.EncodeToString(k) + "\n")
	}
	tmp := path + ".new"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	_, werr := f.WriteString(b.String())
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	return os.Rename(tmp, path)
}

// NewKEK returns a fresh key-encryption key.
func NewKEK() []byte {
	k := make([]byte, KeySize)
	rand.Read(k)
	return k
}

func decodeKEK(s string) ([]byte, error) {
	if k, err := base64.StdEncoding.DecodeString(s); err == nil && len(k) == KeySize {
		return k, nil
	}
	if k, err := hex.DecodeString(s); err == nil && len(k) == KeySize {
		return k, nil
	}
	return nil, fmt.Errorf("want %d bytes in base64 or hex", KeySize)
}
