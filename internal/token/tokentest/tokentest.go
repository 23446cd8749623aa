// Package tokentest makes DPoP proofs (RFC 9449) for tests, with a fresh key
// for any algorithm Gatehouse accepts. "Ed25519" proofs (RFC 9864) are built by
// hand from the RFC's rules, the others with go-jose; none of it shares code
// with the verifier in package token. It does not import package token, so
// that token's own tests can use it.
package tokentest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// ProofKey is a client's proof-of-possession key.
type ProofKey struct {
	Alg  string
	priv crypto.Signer
}

// NewProofKey returns a fresh key for alg: Ed25519, EdDSA, ES256, ES384,
// ES512, RS256, PS256 (and the other RS/PS sizes).
func NewProofKey(alg string) (*ProofKey, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case "Ed25519", "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ES512":
		priv, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		return nil, fmt.Errorf("tokentest: no key for alg %q", alg)
	}
	if err != nil {
		return nil, err
	}
	return &ProofKey{Alg: alg, priv: priv}, nil
}

// Proof signs a DPoP proof for a request of method to htu at iat, bound to
// accessToken when it is not "" (ath = BASE64URL(SHA-256(token))).
func (k *ProofKey) Proof(method, htu, accessToken string, iat time.Time) (string, error) {
	c := map[string]any{"jti": randomID(), "htm": method, "htu": htu, "iat": iat.Unix()}
	if accessToken != "" {
		h := sha256.Sum256([]byte(accessToken))
		c["ath"] = base64.RawURLEncoding.EncodeToString(h[:])
	}
	return k.Sign(c)
}

// Sign signs claims as a DPoP proof (typ dpop+jwt, the public key as jwk).
func (k *ProofKey) Sign(claims map[string]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	if k.Alg == "Ed25519" {
		// RFC 9864 §2.2 with RFC 8037: an OKP JWK and an Ed25519 signature
		// over the ASCII of BASE64URL(header) "." BASE64URL(payload).
		pub := k.priv.Public().(ed25519.PublicKey)
		hb, _ := json.Marshal(map[string]any{"typ": "dpop+jwt", "alg": "Ed25519",
			"jwk": map[string]string{"kty": "OKP", "crv": "Ed25519", "x": base64.RawURLEncoding.EncodeToString(pub)}})
		input := base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(payload)
		sig := ed25519.Sign(k.priv.(ed25519.PrivateKey), []byte(input))
		return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(k.Alg), Key: k.priv},
		(&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
	if err != nil {
		return "", err
	}
	jws, err := s.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

// Thumbprint is the RFC 7638 SHA-256 thumbprint of the public key, base64url:
// what a token bound to this key carries as cnf.jkt.
func (k *ProofKey) Thumbprint() string {
	tp, err := (&jose.JSONWebKey{Key: k.priv.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}

func randomID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
