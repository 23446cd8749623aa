package config

import (
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// TestTokensIssuer: a non-URL issuer is a plain name; a URL issuer must be
// usable as an RFC 8414 issuer identifier.
func TestTokensIssuer(t *testing.T) {
	for iss, ok := range map[string]bool{
		"gatehouse":                        true,
		"https://gateway.example.com":      true,
		"https://gateway.example.com/":     true,
		"http://127.0.0.1:8080":            true,
		"https://gateway.example.com/gw":   true,
		"https://gateway.example.com?x=1":  false,
		"https://gateway.example.com/#top": false,
		"ftp://gateway.example.com":        false,
		"https://":                         false,
	} {
		c := Default()
		c.Tokens.Issuer = iss
		err := c.Validate()
		if ok != (err == nil) {
			t.Errorf("issuer %q: %v", iss, err)
		}
		if err != nil && !strings.Contains(err.Error(), "RFC 8414") {
			t.Errorf("issuer %q: unclear error %v", iss, err)
		}
	}
}

// TestDevAdminKeyShape: a --dev-admin-key that starts like a Gatehouse key must
// be a valid admin key; the error does not repeat it.
func TestDevAdminKeyShape(t *testing.T) {
	admin := string(vkey.Generate(vkey.KindAdmin))
	wrongEnd := "zz"
	if strings.HasSuffix(admin, wrongEnd) {
		wrongEnd = "yy"
	}
	for key, ok := range map[string]bool{
		admin:                                   true,
		"a-free-form-dev-key":                   true,
		"gka_notavalidkeyatallreally":           false,
		admin[:len(admin)-2] + wrongEnd:         false,
		string(vkey.Generate(vkey.KindVirtual)): false,
		"gk_" + strings.Repeat("a", 40):         false,
	} {
		c := Default()
		c.Dev, c.DevAdminKey = true, key
		err := c.Validate()
		if ok != (err == nil) {
			t.Errorf("dev admin key of shape %.6s…: %v", key, err)
		}
		if err != nil && strings.Contains(err.Error(), key) {
			t.Errorf("the error repeats the key: %v", err)
		}
	}
}
