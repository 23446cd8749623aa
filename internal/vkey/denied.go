package vkey

// Denied is the error for a known key that may not be used: it wraps
// ErrRevoked, ErrExpired, ErrSuspended or ErrRotated (errors.Is still
// matches them) and names the key by id — never its secret — so that the
// refusal can be attributed in the ledger. Its message is the wrapped one.
type Denied struct {
	KeyID, PrincipalID string
	Err                error
}

func (d *Denied) Error() string { return d.Err.Error() }
func (d *Denied) Unwrap() error { return d.Err }
