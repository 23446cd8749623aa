package console

// Console sessions and OIDC sign-ins in flight are kept in a sessionstore.Store that
// every replica shares (the gateway's database), so a browser behind a load
// balancer without sticky sessions stays signed in whichever replica answers,
// and an identity provider's callback may land on any replica.
//
// Nothing in the store lets its reader act as a user:
//
//   - a session row is keyed by SHA-256 of the cookie value, never the value;
//   - the admin API session token it names is sealed (AES-256-GCM) with a key
//     derived from the cookie value, so it opens only for a request that holds
//     the cookie; the row's hash is the additional data (rows cannot be swapped);
//   - the CSRF token is derived from the cookie value (HMAC) and not stored;
//   - an OIDC sign-in row is keyed by SHA-256 of its state, holds SHA-256 of
//     its browser binding, and its PKCE verifier sealed with a key derived from
//     that binding.
//
// Expiry is enforced by the store's statements, in one step with the read:
// TouchConsoleSession moves the row's idle clock only while it is live, so two
// replicas cannot keep a session alive past its timeouts; TakeOIDCLogin deletes
// the row it returns, so a state is redeemed once across all replicas. Expired
// rows are swept on every sign-in (no background loop).

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
)

// Domain separation of what is derived from a cookie value.
const (
	labelSessionID = "gatehouse console session id v1"
	labelStateID   = "gatehouse console oidc state v1"
	labelBinding   = "gatehouse console oidc binding v1"
	labelSealToken = "gatehouse console session token v1"
	labelSealPKCE  = "gatehouse console oidc verifier v1"
	labelCSRF      = "gatehouse console csrf v1"
)

func labelledHash(label, v string) []byte {
	h := sha256.New()
	h.Write([]byte(label))
	h.Write([]byte{0})
	h.Write([]byte(v))
	return h.Sum(nil)
}

func sessionIDHash(cookie string) []byte { return labelledHash(labelSessionID, cookie) }
func stateHash(state string) []byte      { return labelledHash(labelStateID, state) }
func bindingHash(binding string) []byte  { return labelledHash(labelBinding, binding) }

// csrfFor derives a session's CSRF token from its cookie value.
func csrfFor(cookie string) string {
	m := hmac.New(sha256.New, []byte(cookie))
	m.Write([]byte(labelCSRF))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func aeadFor(secret, label string) (cipher.AEAD, error) {
	key, err := hkdf.Key(sha256.New, []byte(secret), nil, label, 32)
	if err != nil {
		return nil, err
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// seal encrypts plain with a key derived from secret; ad binds it to its row.
func seal(secret, label string, ad, plain []byte) ([]byte, error) {
	a, err := aeadFor(secret, label)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, a.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return a.Seal(nonce, nonce, plain, ad), nil
}

var errUnseal = errors.New("console: sealed value does not open")

func unseal(secret, label string, ad, sealed []byte) ([]byte, error) {
	a, err := aeadFor(secret, label)
	if err != nil {
		return nil, err
	}
	if len(sealed) < a.NonceSize() {
		return nil, errUnseal
	}
	out, err := a.Open(nil, sealed[:a.NonceSize()], sealed[a.NonceSize():], ad)
	if err != nil {
		return nil, errUnseal
	}
	return out, nil
}
