package sso_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/sso"
	"github.com/gatehouse-gw/gatehouse/internal/sso/ssotest"
)

func config(issuer string) sso.Config {
	return sso.Config{Issuer: issuer, ClientID: "gatehouse", Groups: []sso.Group{
		{Group: "ml", Teams: []string{"research"}, Roles: []string{"member"}},
		{Group: "platform", Teams: []string{"ops", "research"}, Roles: []string{"admin"}},
		{Group: "auditors", Roles: []string{"auditor"}}, // roles alone: only with a team from another group
	}}
}

func TestVerify(t *testing.T) {
	idp := ssotest.New(t)
	v := sso.NewVerifier(config(idp.URL), nil, nil)
	ctx := context.Background()
	authTime := time.Now().Add(-time.Minute).Truncate(time.Second)
	cases := []struct {
		name    string
		token   string
		want    sso.Identity
		wantErr string
		noAcc   bool
	}{
		{name: "member", token: idp.Mint(t, "gatehouse", map[string]any{"sub": "u1", "email": "ada@example.com", "groups": []string{"ml"}}, time.Minute),
			want: sso.Identity{Subject: "u1", Username: "ada@example.com", Groups: []string{"ml"}, Teams: []string{"research"}, Roles: []string{"member"}}},
		{name: "two groups merge", token: idp.Mint(t, "gatehouse", map[string]any{"sub": "u2", "email": "bo@example.com", "groups": []string{"ml", "platform", "other"}}, time.Minute),
			want: sso.Identity{Subject: "u2", Username: "bo@example.com", Groups: []string{"ml", "platform", "other"}, Teams: []string{"ops", "research"}, Roles: []string{"admin", "member"}}},
		{name: "mfa from amr and auth_time", token: idp.Mint(t, "gatehouse", map[string]any{"sub": "u3", "email": "cy@example.com", "groups": "ml", "amr": []string{"pwd", "otp"}, "auth_time": authTime.Unix()}, time.Minute),
			want: sso.Identity{Subject: "u3", Username: "cy@example.com", Groups: []string{"ml"}, Teams: []string{"research"}, Roles: []string{"member"}, MFAAt: &authTime}},
		{name: "password alone is not mfa", token: idp.Mint(t, "gatehouse", map[string]any{"sub": "u4", "email": "di@example.com", "groups": []string{"ml"}, "amr": []string{"pwd"}}, time.Minute),
			want: sso.Identity{Subject: "u4", Username: "di@example.com", Groups: []string{"ml"}, Teams: []string{"research"}, Roles: []string{"member"}}},
		{name: "no mapped group", token: idp.Mint(t, "gatehouse", map[string]any{"sub": "u5", "email": "ed@example.com", "groups": []string{"sales"}}, time.Minute), noAcc: true},
		{name: "roles but no team", token: idp.Mint(t, "gatehouse", map[string]any{"sub": "u9", "email": "ha@example.com", "groups": []string{"auditors"}}, time.Minute), noAcc: true},
		{name: "no groups", token: idp.Mint(t, "gatehouse", map[string]any{"sub": "u6", "email": "fi@example.com"}, time.Minute), noAcc: true},
		{name: "no email", token: idp.Mint(t, "gatehouse", map[string]any{"sub": "u7", "groups": []string{"ml"}}, time.Minute), wantErr: `no "email" claim`},
		{name: "unverified email", token: idp.Mint(t, "gatehouse", map[string]any{"sub": "u8", "email": "gu@example.com", "email_verified": false, "groups": []string{"ml"}}, time.Minute), wantErr: "not verified"},
		{name: "another audience", token: idp.Mint(t, "other-app", map[string]any{"sub": "u1", "email": "ada@example.com", "groups": []string{"ml"}}, time.Minute), wantErr: "audience"},
		{name: "expired", token: idp.Mint(t, "gatehouse", map[string]any{"sub": "u1", "email": "ada@example.com", "groups": []string{"ml"}}, -time.Minute), wantErr: "expired"},
		{name: "garbage", token: "not.a.jwt", wantErr: "malformed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := v.Verify(ctx, c.token)
			switch {
			case c.noAcc:
				if !errors.Is(err, sso.ErrNoAccess) {
					t.Fatalf("err = %v, want ErrNoAccess", err)
				}
			case c.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, c.wantErr)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if got.Subject != c.want.Subject || got.Username != c.want.Username || !slices.Equal(got.Groups, c.want.Groups) ||
					!slices.Equal(got.Teams, c.want.Teams) || !slices.Equal(got.Roles, c.want.Roles) ||
					(got.MFAAt == nil) != (c.want.MFAAt == nil) || (got.MFAAt != nil && !got.MFAAt.Equal(*c.want.MFAAt)) {
					t.Fatalf("identity = %+v, want %+v", got, c.want)
				}
			}
		})
	}
}

// TestVerifyForgedKey: a token signed by another key with the issuer's name is
// refused.
func TestVerifyForgedKey(t *testing.T) {
	idp, evil := ssotest.New(t), ssotest.New(t)
	v := sso.NewVerifier(config(idp.URL), nil, nil)
	forged := evil.Mint(t, "gatehouse", map[string]any{"sub": "u1", "email": "ada@example.com", "groups": []string{"platform"}}, time.Minute)
	if _, err := v.Verify(context.Background(), forged); err == nil {
		t.Fatal("a token from another issuer was accepted")
	}
}

// TestProviderDown: an unreachable provider is ErrUnavailable, and discovery
// is retried on the next call.
func TestProviderDown(t *testing.T) {
	v := sso.NewVerifier(config("http://127.0.0.1:1"), nil, nil)
	if _, err := v.Verify(context.Background(), "x.y.z"); !errors.Is(err, sso.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg sso.Config
		ok  bool
	}{
		{sso.Config{}, true},
		{config("https://idp"), true},
		{sso.Config{Issuer: "https://idp", Groups: config("").Groups}, false},
		{sso.Config{Issuer: "https://idp", ClientID: "c"}, false},
		{sso.Config{Issuer: "https://idp", ClientID: "c", Groups: []sso.Group{{Group: "g"}}}, false},
	} {
		if err := c.cfg.Validate(); (err == nil) != c.ok {
			t.Errorf("Validate(%+v) = %v, want ok=%v", c.cfg, err, c.ok)
		}
	}
}

func FuzzIdentityClaims(f *testing.F) {
	idp := ssotest.New(f)
	v := sso.NewVerifier(config(idp.URL), nil, nil)
	f.Add("x.y.z")
	f.Add(idp.Mint(f, "gatehouse", map[string]any{"sub": "u1", "email": "ada@example.com", "groups": []string{"ml"}}, time.Hour))
	f.Fuzz(func(t *testing.T, raw string) {
		id, err := v.Verify(context.Background(), raw)
		if err == nil && (id.Username == "" || len(id.Teams)+len(id.Roles) == 0) {
			t.Fatalf("accepted %q as %+v", raw, id)
		}
	})
}
