package keyring

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func TestSealOpen(t *testing.T) {
	kr, err := New(key(1))
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("sk-upstream-secret")
	blob, err := kr.Seal(secret, []byte("row-1"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(blob, secret) {
		t.Fatal("plaintext visible in blob")
	}
	got, err := kr.Open(blob, []byte("row-1"))
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := kr.Open(blob, []byte("row-2")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open with other aad = %v, want ErrCorrupt", err)
	}
	for i := range blob {
		bad := bytes.Clone(blob)
		bad[i] ^= 1
		if _, err := kr.Open(bad, []byte("row-1")); err == nil {
			t.Fatalf("flipping byte %d went unnoticed", i)
		}
	}
	if _, err := kr.Open(blob[:len(blob)-1], []byte("row-1")); err == nil {
		t.Fatal("truncated blob opened")
	}
}

func TestRotation(t *testing.T) {
	old, _ := New(key(1))
	blob, _ := old.Seal([]byte("x"), nil)
	rotated, _ := New(key(2), key(1))
	if got, err := rotated.Open(blob, nil); err != nil || string(got) != "x" {
		t.Fatalf("old blob under rotated keyring: %q, %v", got, err)
	}
	fresh, _ := rotated.Seal([]byte("y"), nil)
	if _, err := old.Open(fresh, nil); !errors.Is(err, ErrUnknownKEK) {
		t.Fatalf("new blob under old keyring: %v, want ErrUnknownKEK", err)
	}
}

func TestLoadKEK(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "kek")
	noenv := func(string) string { return "" }
	k1, created, err := LoadKEK(path, noenv)
	if err != nil || !created || len(k1) != KeySize {
		t.Fatalf("first load: %d bytes, created=%v, %v", len(k1), created, err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	k2, created, err := LoadKEK(path, noenv)
	if err != nil || created || !bytes.Equal(k1, k2) {
		t.Fatalf("second load differs: created=%v err=%v", created, err)
	}
	os.Chmod(path, 0o644)
	if _, _, err := LoadKEK(path, noenv); err == nil {
		t.Fatal("world-readable key file accepted")
	}
	env := func(string) string { return "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=" }
	k3, _, err := LoadKEK(path, env)
	if err != nil || !bytes.Equal(k3, key(1)) {
		t.Fatalf("env KEK: %v", err)
	}
	if _, _, err := LoadKEK(path, func(string) string { return "short" }); err == nil {
		t.Fatal("bad env KEK accepted")
	}
}

func FuzzOpen(f *testing.F) {
	kr, _ := New(key(7))
	blob, _ := kr.Seal([]byte("hello"), []byte("a"))
	f.Add(blob)
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		pt, err := kr.Open(b, []byte("a"))
		if err == nil && !bytes.Equal(pt, []byte("hello")) {
			t.Fatalf("forged blob opened to %q", pt)
		}
	})
}

func TestKEKsFileAndEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kek")
	if err := WriteKEKs(path, [][]byte{key(3), key(1)}); err != nil {
		t.Fatal(err)
	}
	keys, _, err := LoadKEKs(path, func(string) string { return "" })
	if err != nil || len(keys) != 2 || !bytes.Equal(keys[0], key(3)) {
		t.Fatalf("file with two keys: %d, %v", len(keys), err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode().Perm())
	}
	env := "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=, AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
	keys, _, err = LoadKEKs(path, func(string) string { return env })
	if err != nil || len(keys) != 2 || !bytes.Equal(keys[1], key(1)) {
		t.Fatalf("env with two keys: %d, %v", len(keys), err)
	}
	kr, _ := New(keys...)
	old, _ := New(key(1))
	blob, _ := old.Seal([]byte("s"), nil)
	if pt, err := kr.Open(blob, nil); err != nil || string(pt) != "s" {
		t.Fatal("an older key no longer opens")
	}
}
