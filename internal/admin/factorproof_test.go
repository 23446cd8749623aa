package admin

import (
	"strings"
	"testing"
)

// TestProofOfCode: the one code a user types is read as the admin API reads
// codes: digits only are TOTP, anything else a recovery code, white space
// around it dropped, nothing typed no proof.
func TestProofOfCode(t *testing.T) {
	for in, want := range map[string]FactorProof{
		" 123456 \n":        {Code: "123456"},
		"12345":             {Code: "12345"}, // wrong length: still a TOTP attempt, refused as one
		"9f2c41aa-0b7de3f1": {RecoveryCode: "9f2c41aa-0b7de3f1"},
		"9f2c41aa0b7de3f1":  {RecoveryCode: "9f2c41aa0b7de3f1"}, // without its dash
		"1234567890123456":  {RecoveryCode: "1234567890123456"}, // a recovery code that happens to be all digits
		"123 456":           {RecoveryCode: "123 456"},
		"１２３４５６":            {RecoveryCode: "１２３４５６"}, // not ASCII digits
		"":                  {},
		" \t ":              {},
		`{"code":"123456"}`: {RecoveryCode: `{"code":"123456"}`},
	} {
		if got := ProofOfCode(in); got != want {
			t.Errorf("ProofOfCode(%q) = %+v, want %+v", in, got, want)
		}
	}
}

// FuzzProofOfCode: whatever is typed, at most one factor is claimed, it is
// the typed text without surrounding white space, a TOTP claim holds ASCII
// digits only, and no password is ever made up.
func FuzzProofOfCode(f *testing.F) {
	for _, s := range []string{"123456", "9f2c41aa-0b7de3f1", "", " 1 ", "\xff\xfe", "0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p := ProofOfCode(s)
		c := strings.TrimSpace(s)
		switch {
		case p.Password != "":
			t.Fatal("a password was made up")
		case c == "" && (p != FactorProof{}):
			t.Fatalf("no code, proof %+v", p)
		case c != "" && (p.Code == "") == (p.RecoveryCode == ""):
			t.Fatalf("%q: not exactly one factor: %+v", s, p)
		case p.Code != "" && (p.Code != c || strings.Trim(p.Code, "0123456789") != ""):
			t.Fatalf("%q: TOTP claim %q", s, p.Code)
		case p.RecoveryCode != "" && p.RecoveryCode != c:
			t.Fatalf("%q: recovery claim %q", s, p.RecoveryCode)
		}
	})
}
