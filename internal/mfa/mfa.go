// Package mfa is the second factor for humans: passwords hashed with argon2id,
// TOTP (RFC 6238, github.com/pquerna/otp) with replay protection, and
// recovery codes shown once and stored hashed. Gate bounds how many argon2id
// runs (64 MiB each) happen at once and, while logins wait, the share of the
// time a slot hashes (a duty cycle), and checks missing hashes against a
// dummy, so a login costs the same whether its user exists or not. Attempt limits on
// these secrets are package lockout's.
package mfa

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"golang.org/x/crypto/argon2"
)

// argon2id parameters: 64 MiB, 3 passes (RFC 9106's second recommended
// option) in one lane. One lane keeps a hash on one CPU: with two lanes,
// golang.org/x/crypto/argon2 fills them in parallel, and on a 2-CPU gateway
// one login took both CPUs from the data plane (its p99 rose 3-8x during a
// login flood). The memory and passes, which set an attacker's cost per
// guess, are unchanged; a login takes about twice as long. Hashes made with
// other parameters still verify, and a login rehashes them (NeedsRehash).
const (
	argonTime    = 3
	argonMemory  = 64 * 1024
	argonThreads = 1
	argonKeyLen  = 32
)

// NeedsRehash reports whether hash was made with other parameters than
// HashPassword uses now (so a successful login should replace it).
func NeedsRehash(hash string) bool {
	return !strings.HasPrefix(hash, fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$", argon2.Version, argonMemory, argonTime, argonThreads))
}

// MinPasswordLength is the shortest password accepted.
const MinPasswordLength = 12

// HashPassword returns a PHC-style argon2id string for pw.
func HashPassword(pw string) (string, error) {
	if len(pw) < MinPasswordLength {
		return "", fmt.Errorf("mfa: a password needs at least %d characters", MinPasswordLength)
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// CheckPassword compares pw with a hash from HashPassword in constant time.
func CheckPassword(hash, pw string) bool {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m > 1<<21 || t > 10 || p == 0 {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got := argon2.IDKey([]byte(pw), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// NewTOTP returns a new TOTP secret (base32) and its otpauth:// URL for
// authenticator apps.
func NewTOTP(issuer, account string) (secret, url string, err error) {
	k, err := totp.Generate(totp.GenerateOpts{Issuer: issuer, AccountName: account, Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		return "", "", err
	}
	return k.Secret(), k.URL(), nil
}

// ErrBadCode is returned for a wrong or replayed code.
var ErrBadCode = errors.New("mfa: wrong or already used code")

// CheckTOTP checks code at now, accepting one step of clock skew either way,
// and refuses any step not after lastStep (a code is good once). It returns the
// step used, to store as the new lastStep.
func CheckTOTP(secret, code string, now time.Time, lastStep int64) (int64, error) {
	code = strings.TrimSpace(code)
	if len(code) != 6 {
		return 0, ErrBadCode
	}
	for _, skew := range []int64{0, -1, 1} {
		t := now.Add(time.Duration(skew*30) * time.Second)
		step := t.Unix() / 30
		want, err := totp.GenerateCodeCustom(secret, t, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			return 0, ErrBadCode
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			if step <= lastStep {
				return 0, ErrBadCode
			}
			return step, nil
		}
	}
	return 0, ErrBadCode
}

// RecoveryCodes returns n fresh codes and their hashes (to store).
func RecoveryCodes(n int) (codes, hashes []string) {
	for range n {
		b := make([]byte, 8)
		rand.Read(b)
		c := hex.EncodeToString(b[:4]) + "-" + hex.EncodeToString(b[4:])
		codes = append(codes, c)
		hashes = append(hashes, HashRecoveryCode(c))
	}
	return codes, hashes
}

// HashRecoveryCode hashes a recovery code for storage (codes carry 64 bits
// from crypto/rand, so a fast hash suffices).
func HashRecoveryCode(c string) string {
	h := sha256.Sum256([]byte("gatehouse recovery\x00" + normalRecoveryCode(c)))
	return hex.EncodeToString(h[:])
}

// normalRecoveryCode is the form a recovery code is hashed in: lower case,
// and "1a2b3c4d-5e6f7a8b" however the user spaced or dashed it (copied from a
// password manager without the dash, read aloud in groups, with spaces).
func normalRecoveryCode(c string) string {
	c = strings.ToLower(strings.TrimSpace(c))
	bare := strings.NewReplacer("-", "", " ", "").Replace(c)
	if len(bare) == 16 && strings.Trim(bare, "0123456789abcdef") == "" {
		return bare[:8] + "-" + bare[8:]
	}
	return c
}

// Credentials are a user's login secrets, as stored.
type Credentials struct {
	PrincipalID  string
	PasswordHash string
	TOTPSealed   []byte // keyring blob of the active TOTP secret; nil: no TOTP
	PendingTOTP  []byte // enrolled, not yet confirmed
	LastStep     int64
	Recovery     []string // hashes of unused recovery codes
}

// Session is a login.
type Session struct {
	ID          string
	Hash        string // of the session token; the token is never stored
	PrincipalID string
	CreatedAt   time.Time
	ExpiresAt   time.Time
	MFAAt       *time.Time // when a second factor was last checked
	RevokedAt   *time.Time
}

// Store is what mfa needs from storage.
type Store interface {
	Credentials(ctx context.Context, principalID string) (Credentials, error)
	SetPassword(ctx context.Context, principalID, hash string) error
	SetPendingTOTP(ctx context.Context, principalID string, sealed []byte) error
	// ConfirmTOTP makes the pending secret active with fresh recovery codes.
	ConfirmTOTP(ctx context.Context, principalID string, recovery []string, step int64) error
	// UseTOTPStep records step as used; false if it (or a later one) was
	// used, or if the active secret is no longer sealed (the one the code was
	// checked against: a reset or a new authenticator came meanwhile).
	UseTOTPStep(ctx context.Context, principalID string, sealed []byte, step int64) (bool, error)
	// UseRecoveryCode removes a recovery code; false if it was not there.
	UseRecoveryCode(ctx context.Context, principalID, hash string) (bool, error)
	CreateSession(ctx context.Context, s Session) error
	SessionByHash(ctx context.Context, hash string) (Session, error)
	RevokeSession(ctx context.Context, id string, at time.Time) error
	RevokeSessions(ctx context.Context, principalID string, at time.Time) error
	// SessionMFA records a fresh second factor for a session.
	SessionMFA(ctx context.Context, id string, at time.Time) error
}

// Opener opens sealed secrets (package keyring).
type Opener interface {
	Open(blob, aad []byte) ([]byte, error)
}

// TOTPAAD binds a sealed TOTP secret to its user.
func TOTPAAD(principalID string) []byte { return []byte("totp/" + principalID) }

// Checker verifies a user's second factor: the current TOTP code (each good
// once, across replicas) or an unused recovery code.
type Checker struct {
	Store  Store
	Opener Opener
	Now    func() time.Time
}

// ErrNoTOTP: the user has no confirmed TOTP.
var ErrNoTOTP = errors.New("mfa: no TOTP enrolled")

// Check verifies code (or recovery) for principalID.
func (c Checker) Check(ctx context.Context, principalID, code, recovery string) error {
	cred, err := c.Store.Credentials(ctx, principalID)
	if err != nil || cred.TOTPSealed == nil {
		return ErrNoTOTP
	}
	if recovery != "" {
		ok, err := c.Store.UseRecoveryCode(ctx, principalID, HashRecoveryCode(recovery))
		if err != nil {
			return err
		}
		if !ok {
			return ErrBadCode
		}
		return nil
	}
	secret, err := c.Opener.Open(cred.TOTPSealed, TOTPAAD(principalID))
	if err != nil {
		return err
	}
	step, err := CheckTOTP(string(secret), code, c.Now(), cred.LastStep)
	if err != nil {
		return err
	}
	ok, err := c.Store.UseTOTPStep(ctx, principalID, cred.TOTPSealed, step)
	if err != nil {
		return err
	}
	if !ok {
		return ErrBadCode
	}
	return nil
}

// Passkey is a user's WebAuthn credential. Credential is the JSON of the
// go-webauthn Credential (public key, sign count, flags): nothing secret.
type Passkey struct {
	ID          string     `json:"id"` // base64url credential id
	PrincipalID string     `json:"principal_id"`
	Name        string     `json:"name"`
	Credential  []byte     `json:"-"`
	CreatedAt   time.Time  `json:"created_at"`
	LastUsedAt  *time.Time `json:"last_used_at,omitempty"`
}

// Ceremony is a WebAuthn registration or login in progress: the challenge
// and what the finish must match. It is used once.
type Ceremony struct {
	ID          string
	PrincipalID string
	Kind        string // "register" or "login"
	Data        []byte // JSON of the go-webauthn SessionData
	ExpiresAt   time.Time
}

// PasskeyStore keeps passkeys and ceremonies.
type PasskeyStore interface {
	AddPasskey(ctx context.Context, p Passkey) error
	Passkeys(ctx context.Context, principalID string) ([]Passkey, error)
	// UsePasskey stores the credential after a login (its sign count moves on).
	UsePasskey(ctx context.Context, id string, credential []byte, at time.Time) error
	DeletePasskey(ctx context.Context, principalID, id string) error
	PutCeremony(ctx context.Context, c Ceremony) error
	// TakeCeremony returns and deletes a ceremony: each is good once.
	TakeCeremony(ctx context.Context, id string) (Ceremony, error)
}
