package mfa

import (
	"context"
	"encoding/base64"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestDummyHashCostsARealCheck: the dummy parses with the parameters of real
// hashes, so a check against it runs argon2id in full.
func TestDummyHashCostsARealCheck(t *testing.T) {
	real, _ := HashPassword("correct horse battery staple")
	rp, dp := strings.Split(real, "$"), strings.Split(dummyHash, "$")
	if len(dp) != 6 || dp[1] != rp[1] || dp[2] != rp[2] || dp[3] != rp[3] {
		t.Fatalf("dummy %q does not match the parameters of %q", dummyHash, real)
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(dp[4])
	key, err2 := base64.RawStdEncoding.DecodeString(dp[5])
	if err1 != nil || err2 != nil || len(salt) != 16 || len(key) != argonKeyLen {
		t.Fatalf("dummy salt %d key %d: %v %v", len(salt), len(key), err1, err2)
	}
}

// TestGate: the gate is sized to memory, checks a missing hash against the
// dummy (never a match), and refuses with ErrBusy when no slot frees in time.
func TestGate(t *testing.T) {
	if n, want := NewGate(256<<20, time.Second).Slots(), max(1, min(4, (runtime.GOMAXPROCS(0)-1)/argonThreads)); n != want {
		t.Fatalf("256 MiB on %d CPUs: %d slots, want %d", runtime.GOMAXPROCS(0), n, want)
	}
	if n := NewGate(1, time.Second).Slots(); n != 1 {
		t.Fatalf("tiny: %d slots, want 1", n)
	}
	g := NewGate(HashMemory, 10*time.Millisecond)
	ctx := context.Background()
	h, err := g.Hash(ctx, "correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := g.Check(ctx, h, "correct horse battery staple"); !ok || err != nil {
		t.Fatalf("right password: %v %v", ok, err)
	}
	if ok, err := g.Check(ctx, "", "correct horse battery staple"); ok || err != nil {
		t.Fatalf("no hash: %v %v", ok, err)
	}
	if err := g.acquire(ctx); err != nil { // hold the only slot
		t.Fatal(err)
	}
	if _, err := g.Check(ctx, h, "correct horse battery staple"); !errors.Is(err, ErrBusy) {
		t.Fatalf("full gate: %v", err)
	}
	if _, err := g.Hash(ctx, "correct horse battery staple"); !errors.Is(err, ErrBusy) {
		t.Fatalf("full gate, hash: %v", err)
	}
	g.release()
	if ok, err := g.Check(ctx, h, "correct horse battery staple"); !ok || err != nil {
		t.Fatalf("after release: %v %v", ok, err)
	}
}
