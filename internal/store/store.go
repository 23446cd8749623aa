// Package store holds what every storage backend shares: the sentinel errors that
// domain packages test for, and the rules of optimistic concurrency.
//
// Domain packages (vkey, org, provider, usage, …) each declare the small
// interface they need; the backends in store/sqlite and store/postgres implement
// all of them over one shared SQL core (store/sqlstore), and store/storetest is
// the conformance suite that runs against every backend.
//
// Every mutable row carries a version that increments on each write. Writes that
// name an expected version fail with ErrConflict when the row has moved on; the
// admin API exposes the version as an ETag.
package store

import "errors"

var (
	// ErrNotFound: no row with that identity.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: the row's version is not the one the caller expected.
	ErrConflict = errors.New("store: version conflict")
	// ErrExists: a row with that unique name or identity already exists.
	ErrExists = errors.New("store: already exists")
	// ErrInUse: the row is referenced by others and cannot be removed.
	ErrInUse = errors.New("store: in use")
	// ErrFenced: another replica declared this gateway instance gone and took
	// over its leftovers; the instance must start a new epoch before it admits
	// calls again.
	ErrFenced = errors.New("store: instance fenced")
)

// AnyVersion, passed as an expected version, skips the concurrency check.
const AnyVersion int64 = 0
