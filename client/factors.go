package client

import (
	"context"
	"time"
)

// Lockout is an attempt-limit counter: a user's factor, a login name or a
// source address, locked or with failures in its window.
type Lockout struct {
	Subject       string     `json:"subject"`
	Failures      int        `json:"failures"`
	WindowStart   time.Time  `json:"window_start"`
	LockedUntil   *time.Time `json:"locked_until,omitempty"`
	LockedAt      *time.Time `json:"locked_at,omitempty"`
	Locks         int        `json:"locks"`
	LastSource    string     `json:"last_source,omitempty"`
	LastUserAgent string     `json:"last_user_agent,omitempty"`
	UpdatedAt     time.Time  `json:"updated_at"`
	Locked        bool       `json:"locked"`
}

// Lockouts lists subjects that are locked or have failures now.
func (c *Client) Lockouts(ctx context.Context) ([]Lockout, error) {
	var out struct {
		Data []Lockout `json:"data"`
	}
	_, err := c.do(ctx, "GET", "/v1/lockouts", nil, nil, &out)
	return out.Data, err
}

// UnlockUser clears every attempt-limit counter of a user; it returns how many.
func (c *Client) UnlockUser(ctx context.Context, user string) (int64, error) {
	var out struct {
		Cleared int64 `json:"cleared"`
	}
	_, err := c.do(ctx, "DELETE", "/v1/principals/"+esc(user)+"/lockouts", nil, nil, &out)
	return out.Cleared, err
}

// ClearLockout clears one subject, such as "source:203.0.113.9".
func (c *Client) ClearLockout(ctx context.Context, subject string) (int64, error) {
	var out struct {
		Cleared int64 `json:"cleared"`
	}
	_, err := c.do(ctx, "DELETE", "/v1/lockouts/"+subject, nil, nil, &out)
	return out.Cleared, err
}

// ResetFactors removes a user's TOTP, recovery codes and passkeys and ends
// the user's sessions (an administrator's action).
func (c *Client) ResetFactors(ctx context.Context, user string) error {
	_, err := c.do(ctx, "POST", "/v1/principals/"+esc(user)+"/reset-factors", nil, map[string]string{}, nil)
	return err
}

// FactorProof is the fresh proof a change of one's own factors carries: the
// current TOTP code, a recovery code, or (users without a second factor) the
// password.
type FactorProof struct {
	Code         string `json:"code,omitempty"`
	RecoveryCode string `json:"recovery_code,omitempty"`
	Password     string `json:"password,omitempty"`
}

// EnrollTOTPWithProof starts TOTP enrolment (or replacement) with a proof.
func (c *Client) EnrollTOTPWithProof(ctx context.Context, p FactorProof) (secret, url string, err error) {
	var out struct {
		Secret string `json:"secret"`
		URL    string `json:"otpauth_url"`
	}
	_, err = c.do(ctx, "POST", "/v1/auth/totp/enroll", nil, p, &out)
	return out.Secret, out.URL, err
}

// RegenerateRecoveryCodes replaces the session user's recovery codes.
func (c *Client) RegenerateRecoveryCodes(ctx context.Context, p FactorProof) ([]string, error) {
	var out struct {
		Codes []string `json:"recovery_codes"`
	}
	_, err := c.do(ctx, "POST", "/v1/auth/recovery-codes", nil, p, &out)
	return out.Codes, err
}

// ChangePassword changes the session user's own password; p.Password is the
// current password.
func (c *Client) ChangePassword(ctx context.Context, newPassword string, p FactorProof) error {
	in := map[string]string{"new_password": newPassword, "current_password": p.Password, "code": p.Code, "recovery_code": p.RecoveryCode}
	_, err := c.do(ctx, "POST", "/v1/auth/password", nil, in, nil)
	return err
}
