package mfa

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
	"golang.org/x/crypto/argon2"
)

func TestPassword(t *testing.T) {
	if _, err := HashPassword("short"); err == nil {
		t.Fatal("a short password was accepted")
	}
	h, err := HashPassword("correct horse battery staple")
	if err != nil || !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=3,p=1$") {
		t.Fatalf("hash %q, %v", h, err)
	}
	if !CheckPassword(h, "correct horse battery staple") || CheckPassword(h, "correct horse battery stapLe") || CheckPassword("garbage", "x") {
		t.Fatal("CheckPassword is wrong")
	}
	h2, _ := HashPassword("correct horse battery staple")
	if h == h2 {
		t.Fatal("no salt")
	}
	if NeedsRehash(h) {
		t.Fatal("a fresh hash needs rehashing")
	}
	// A two-lane hash of an earlier version still verifies, and needs rehashing.
	salt := []byte("0123456789abcdef")
	old := "$argon2id$v=19$m=65536,t=3,p=2$" + base64.RawStdEncoding.EncodeToString(salt) + "$" +
		base64.RawStdEncoding.EncodeToString(argon2.IDKey([]byte("correct horse battery staple"), salt, 3, 64*1024, 2, 32))
	if !CheckPassword(old, "correct horse battery staple") {
		t.Fatal("a two-lane hash no longer verifies")
	}
	if !NeedsRehash(old) || !NeedsRehash("") || !NeedsRehash("$argon2id$v=19$m=65536,t=3,p=1") {
		t.Fatal("NeedsRehash misses other parameters")
	}
}

func TestTOTPWindowAndReplay(t *testing.T) {
	secret, url, err := NewTOTP("Gatehouse", "alice")
	if err != nil || !strings.HasPrefix(url, "otpauth://totp/Gatehouse:alice") {
		t.Fatalf("%q %v", url, err)
	}
	now := time.Unix(1_800_000_015, 0)
	code := func(at time.Time) string { c, _ := totp.GenerateCode(secret, at); return c }
	step, err := CheckTOTP(secret, code(now), now, 0)
	if err != nil || step != now.Unix()/30 {
		t.Fatalf("current code: %d %v", step, err)
	}
	if _, err := CheckTOTP(secret, code(now), now, step); err != ErrBadCode {
		t.Fatal("a code was accepted twice")
	}
	if _, err := CheckTOTP(secret, code(now.Add(30*time.Second)), now, step); err != nil {
		t.Fatalf("one step of skew ahead: %v", err)
	}
	if _, err := CheckTOTP(secret, code(now.Add(-30*time.Second)), now, 0); err != nil {
		t.Fatalf("one step of skew behind: %v", err)
	}
	if _, err := CheckTOTP(secret, code(now.Add(90*time.Second)), now, 0); err != ErrBadCode {
		t.Fatal("three steps ahead accepted")
	}
	for _, bad := range []string{"", "12345", "1234567", "abcdef"} {
		if _, err := CheckTOTP(secret, bad, now, 0); err != ErrBadCode {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestRecoveryCodes(t *testing.T) {
	codes, hashes := RecoveryCodes(10)
	seen := map[string]bool{}
	for i, c := range codes {
		if seen[c] || HashRecoveryCode(strings.ToUpper(" "+c+" ")) != hashes[i] {
			t.Fatalf("code %q", c)
		}
		seen[c] = true
	}
}

// TestRecoveryCodeHoweverTyped: a recovery code matches without its dash, in
// upper case, or in spaced groups; another code does not.
func TestRecoveryCodeHoweverTyped(t *testing.T) {
	codes, hashes := RecoveryCodes(1)
	c := codes[0]
	for _, typed := range []string{c, strings.ToUpper(c), strings.ReplaceAll(c, "-", ""), " " + c[:4] + " " + c[4:8] + " " + c[9:13] + " " + c[13:] + " "} {
		if HashRecoveryCode(typed) != hashes[0] {
			t.Errorf("%q does not match %q", typed, c)
		}
	}
	other, _ := RecoveryCodes(1)
	if HashRecoveryCode(other[0]) == hashes[0] || HashRecoveryCode(c[:15]) == hashes[0] {
		t.Error("another code matched")
	}
}
