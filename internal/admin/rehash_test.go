package admin

import (
	"context"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/gatehouse-gw/gatehouse/internal/mfa"
	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// TestLoginUpgradesOldHash: a password hashed with two argon2id lanes (the
// parameters before one lane kept hashing on one CPU) still logs in, and
// that login replaces the hash with one of the current parameters, which
// logs in too; a wrong password changes nothing.
func TestLoginUpgradesOldHash(t *testing.T) {
	ctx := context.Background()
	db := openStore(t)
	if err := db.CreatePrincipal(ctx, org.Principal{ID: "prn_old", Name: "old", Kind: org.KindUser, CreatedAt: time.Now().UTC(), Version: 1}); err != nil {
		t.Fatal(err)
	}
	salt := []byte("0123456789abcdef")
	old := "$argon2id$v=19$m=65536,t=3,p=2$" + base64.RawStdEncoding.EncodeToString(salt) + "$" +
		base64.RawStdEncoding.EncodeToString(argon2.IDKey([]byte("correct horse battery staple"), salt, 3, 64*1024, 2, 32))
	if err := db.SetPassword(ctx, "prn_old", old); err != nil {
		t.Fatal(err)
	}
	hasher, err := vkey.NewHasher([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	h := New(Deps{Store: db, Passwords: mfa.NewGate(mfa.HashMemory, 5*time.Second, 100), Verifier: vkey.NewVerifier(db, hasher, vkey.VerifierOptions{}),
		Log: slog.New(slog.DiscardHandler)})
	login := func(pw string) int {
		req := httptest.NewRequest("POST", "/v1/auth/login", strings.NewReader(`{"user":"old","password":"`+pw+`"}`))
		req.RemoteAddr = "192.0.2.1:1234"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	stored := func() string {
		c, err := db.Credentials(ctx, "prn_old")
		if err != nil {
			t.Fatal(err)
		}
		return c.PasswordHash
	}
	if s := login("a wrong password guess"); s != http.StatusUnauthorized || stored() != old {
		t.Fatalf("wrong password: %d, hash changed %v", s, stored() != old)
	}
	if s := login("correct horse battery staple"); s != http.StatusOK {
		t.Fatalf("right password, old hash: %d", s)
	}
	if nh := stored(); nh == old || mfa.NeedsRehash(nh) || !mfa.CheckPassword(nh, "correct horse battery staple") {
		t.Fatalf("after the login the hash is %q", nh)
	}
	if s := login("correct horse battery staple"); s != http.StatusOK {
		t.Fatalf("right password, new hash: %d", s)
	}
}
