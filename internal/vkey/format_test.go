package vkey

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

func TestGenerateParse(t *testing.T) {
	for _, kind := range []Kind{KindVirtual, KindAdmin} {
		s := Generate(kind)
		raw := s.Reveal()
		if !strings.HasPrefix(raw, kind.Prefix()) {
			t.Fatalf("%s key %q lacks prefix %q", kind, raw, kind.Prefix())
		}
		if got := len(raw) - len(kind.Prefix()); got != secretLen+checksumLen {
			t.Fatalf("body length = %d, want %d", got, secretLen+checksumLen)
		}
		k, p, err := Parse(raw)
		if err != nil || k != kind || p != s {
			t.Fatalf("Parse(%s key) = %v, %v, %v", kind, k, p == s, err)
		}
	}
}

func TestParseRejects(t *testing.T) {
	good := Generate(KindVirtual).Reveal()
	flip := []byte(good)
	if flip[5] == 'a' {
		flip[5] = 'b'
	} else {
		flip[5] = 'a'
	}
	tests := []struct {
		name, in string
		want     error
	}{
		{"empty", "", ErrMalformed},
		{"openai key", "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789", ErrMalformed},
		{"short", good[:len(good)-1], ErrMalformed},
		{"long", good + "A", ErrMalformed},
		{"bad char", good[:10] + "-" + good[11:], ErrMalformed},
		{"one char changed", string(flip), ErrChecksum},
		{"kind swapped", "gka_" + good[3:], ErrChecksum},
	}
	for _, tt := range tests {
		if _, _, err := Parse(tt.in); !errors.Is(err, tt.want) {
			t.Errorf("%s: Parse = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestSecretRedacts(t *testing.T) {
	s := Generate(KindVirtual)
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("x", "key", s)
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %s %#v %q", s, s, s, s), b.String()} {
		if strings.Contains(out, s.Reveal()) {
			t.Fatalf("secret leaked into %q", out)
		}
	}
	if h := s.Hint(); !strings.HasPrefix(s.Reveal(), strings.TrimSuffix(h, "…")) || len(h) > 12 {
		t.Fatalf("Hint = %q", h)
	}
}

func TestRandomUniformAlphabet(t *testing.T) {
	seen := map[byte]int{}
	for range 200 {
		for _, c := range []byte(randomBase62(62)) {
			seen[c]++
		}
	}
	if len(seen) != 62 {
		t.Fatalf("saw %d distinct characters, want 62", len(seen))
	}
}

func TestHasher(t *testing.T) {
	if _, err := NewHasher(make([]byte, 31)); err == nil {
		t.Fatal("short secret accepted")
	}
	h1, _ := NewHasher([]byte(strings.Repeat("a", 32)))
	h2, _ := NewHasher([]byte(strings.Repeat("b", 32)))
	s := Generate(KindVirtual)
	if h1.Hash(s) == h2.Hash(s) {
		t.Fatal("hash does not depend on the server secret")
	}
	if !Equal(h1.Hash(s), h1.Hash(s)) || strings.Contains(h1.Hash(s), s.Reveal()) {
		t.Fatal("hash not stable or leaks key")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Generate(KindVirtual).Reveal())
	f.Add(Generate(KindAdmin).Reveal())
	f.Add("gk_")
	f.Add("gka_0000000000000000000000000000000000000")
	f.Fuzz(func(t *testing.T, s string) {
		kind, secret, err := Parse(s)
		if err != nil {
			if secret != "" || kind != "" {
				t.Fatalf("error with result: %q %q", kind, secret)
			}
			return
		}
		// Anything accepted must be well formed and round-trip its checksum.
		if secret.Reveal() != s || !strings.HasPrefix(s, kind.Prefix()) {
			t.Fatalf("accepted %q as %q", s, kind)
		}
		if len(s) != len(kind.Prefix())+secretLen+checksumLen {
			t.Fatalf("accepted wrong length %d", len(s))
		}
	})
}

// TestHasherIsHMAC: Hash is hex(HMAC-SHA-256(secret, key)) on every use of
// its reused HMACs, from many goroutines at once, whatever was hashed before
// (a longer key, a shorter one).
func TestHasherIsHMAC(t *testing.T) {
	secret := []byte(strings.Repeat("s", 40))
	h, _ := NewHasher(secret)
	want := func(s Secret) string {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(s))
		return hex.EncodeToString(m.Sum(nil))
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				s := Secret(strings.Repeat("k", (g*200+i)%97))
				if got := h.Hash(s); got != want(s) {
					t.Errorf("Hash(%d bytes) = %s, want %s", len(s), got, want(s))
					return
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkHash: every call hashes its key once (go test -bench Hash -benchmem ./internal/vkey/).
func BenchmarkHash(b *testing.B) {
	h, _ := NewHasher([]byte(strings.Repeat("s", 32)))
	s := Generate(KindVirtual)
	b.ReportAllocs()
	for b.Loop() {
		h.Hash(s)
	}
}
