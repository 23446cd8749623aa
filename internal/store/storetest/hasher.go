package storetest

import (
	"golang.org/x/mod/sumdb/tlog"

	"github.com/gatehouse-gw/gatehouse/internal/ledger"
)

// Hasher is what the ledger's commit gives LedgerAppend: it computes a
// batch's stored hashes, from its own cache where it can and from the
// store's reader where it cannot (another replica appended, or a fresh
// Hasher). Like the ledger, it caches the hashes of the last call only once
// told that the append succeeded (Committed). Not safe for concurrent use.
type Hasher struct {
	known, last map[int64]tlog.Hash
}

// NewHasher returns a Hasher with an empty cache.
func NewHasher() *Hasher { return &Hasher{known: map[int64]tlog.Hash{}} }

// Committed caches the hashes of the last Hashes call: its batch is written.
func (h *Hasher) Committed() {
	for x, v := range h.last {
		h.known[x] = v
	}
}

// Hashes returns the stored hashes of kept, the entries from index start on;
// it has the signature of LedgerAppend's callback.
func (h *Hasher) Hashes(start int64, kept []ledger.Entry, r tlog.HashReader) ([][]tlog.Hash, error) {
	known := h.known
	computed := map[int64]tlog.Hash{}
	h.last = computed
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			if v, ok := computed[x]; ok {
				out[i] = v
			} else if v, ok := known[x]; ok {
				out[i] = v
			} else {
				got, err := r.ReadHashes([]int64{x})
				if err != nil {
					return nil, err
				}
				out[i] = got[0]
			}
		}
		return out, nil
	})
	all := make([][]tlog.Hash, len(kept))
	for i, e := range kept {
		n := start + int64(i)
		hs, err := tlog.StoredHashes(n, e.Data, reader)
		if err != nil {
			return nil, err
		}
		for j, v := range hs {
			computed[tlog.StoredHashCount(n)+int64(j)] = v
		}
		all[i] = hs
	}
	return all, nil
}
