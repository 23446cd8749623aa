package mfa_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/gatehouse-gw/gatehouse/internal/mfa"
	"github.com/gatehouse-gw/gatehouse/internal/org"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/store/sqlstore"
)

// plain "seals" nothing: the tests store TOTP secrets as they are.
type plain struct{}

func (plain) Open(blob, _ []byte) ([]byte, error) { return blob, nil }

// changing is the store with a change of the user's TOTP landing while a
// check is in flight: after the check read the credentials, before it marks
// the code's step used.
type changing struct {
	*sqlstore.DB
	change func()
}

func (c *changing) Credentials(ctx context.Context, id string) (mfa.Credentials, error) {
	cred, err := c.DB.Credentials(ctx, id)
	if c.change != nil {
		c.change()
		c.change = nil
	}
	return cred, err
}

// TestTOTPCheckInFlightAcrossAFactorChange is the attack "keep sending codes
// from the stolen phone while the administrator resets the user's factors
// (or the user enrols a new phone)": a check that read the old secret before
// the change and marks its step used after it must fail; the code belongs to
// an authenticator that no longer counts.
func TestTOTPCheckInFlightAcrossAFactorChange(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	for _, tc := range []struct {
		name   string
		change func(db *sqlstore.DB, id string) error
	}{
		{"reset", func(db *sqlstore.DB, id string) error { return db.ResetFactors(ctx, id) }},
		{"new authenticator", func(db *sqlstore.DB, id string) error {
			secret, _, err := mfa.NewTOTP("gatehouse", "bob")
			if err != nil {
				return err
			}
			if err := db.SetPendingTOTP(ctx, id, []byte(secret)); err != nil {
				return err
			}
			return db.ConfirmTOTP(ctx, id, nil, now.Unix()/30-1) // confirmed with the previous step's code
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "g.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			if err := db.CreatePrincipal(ctx, org.Principal{ID: "prn_bob", Name: "bob", Kind: org.KindUser, CreatedAt: now.UTC(), Version: 1}); err != nil {
				t.Fatal(err)
			}
			stolen, _, err := mfa.NewTOTP("gatehouse", "bob")
			if err != nil {
				t.Fatal(err)
			}
			if err := db.SetPendingTOTP(ctx, "prn_bob", []byte(stolen)); err != nil {
				t.Fatal(err)
			}
			if err := db.ConfirmTOTP(ctx, "prn_bob", nil, now.Unix()/30-2); err != nil {
				t.Fatal(err)
			}
			st := &changing{DB: db}
			c := mfa.Checker{Store: st, Opener: plain{}, Now: func() time.Time { return now }}
			code, err := totp.GenerateCode(stolen, now)
			if err != nil {
				t.Fatal(err)
			}
			st.change = func() {
				if err := tc.change(db, "prn_bob"); err != nil {
					t.Error(err)
				}
			}
			if err := c.Check(ctx, "prn_bob", code, ""); err == nil {
				t.Fatal("a code of the replaced authenticator, checked across the change, was accepted")
			}
		})
	}
}
