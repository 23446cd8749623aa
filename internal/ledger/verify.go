package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// Source is a log to verify: a gateway's URL or its store.
type Source interface {
	Checkpoint(ctx context.Context) ([]byte, error)
	Entries(ctx context.Context, from, to int64) ([][]byte, error)
	// LeafHashes returns the stored leaf hashes [from, to), to locate a
	// difference once the root does not match.
	LeafHashes(ctx context.Context, from, to int64) ([]tlog.Hash, error)
}

// State is what a verifier remembers between runs: the last checkpoint it
// verified. A later log must contain that tree, unchanged.
type State struct {
	Origin      string    `json:"origin"`
	Size        int64     `json:"size"`
	Hash        tlog.Hash `json:"hash"`
	Checkpoint  string    `json:"checkpoint"`
	VerifierKey string    `json:"verifier_key"`
	VerifiedAt  time.Time `json:"verified_at"`
}

// LoadState reads a state file; a missing file is no state.
func LoadState(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	return &s, nil
}

// Save writes the state file atomically.
func (s *State) Save(path string) error {
	b, _ := json.MarshalIndent(s, "", "  ")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Report is what a successful verification saw.
type Report struct {
	Origin       string         `json:"origin"`
	Size         int64          `json:"size"`
	Root         tlog.Hash      `json:"root"`
	PreviousSize int64          `json:"previous_size"`
	Kinds        map[string]int `json:"kinds"`
	OpenCalls    int            `json:"open_calls"` // starts without an end (calls in flight at the checkpoint)
}

// Verify checks the log in src against its signed checkpoint: the signature
// (with vkey), every record (canonical, known schema), every leaf and the root,
// and, with prev, that the log still contains the tree verified before (no
// rewrite, no fork, no truncation). progress, when set, is called as records
// are read.
func Verify(ctx context.Context, src Source, vkey string, prev *State, progress func(done, total int64)) (Report, *State, error) {
	signed, err := src.Checkpoint(ctx)
	if err != nil {
		return Report{}, nil, fmt.Errorf("reading the checkpoint: %w", err)
	}
	c, err := OpenCheckpoint(signed, vkey)
	if err != nil {
		return Report{}, nil, err
	}
	rep := Report{Origin: c.Origin, Size: c.Size, Root: c.Hash, Kinds: map[string]int{}}
	if prev != nil {
		rep.PreviousSize = prev.Size
		if prev.Origin != c.Origin {
			return rep, nil, fmt.Errorf("the checkpoint is for log %q, the state file for %q", c.Origin, prev.Origin)
		}
		if c.Size < prev.Size {
			return rep, nil, fmt.Errorf("TRUNCATED: the log has %d records; it had %d when last verified", c.Size, prev.Size)
		}
	}

	// Recompute every stored hash from the records, in memory.
	hashes := make([]tlog.Hash, 0, tlog.StoredHashCount(c.Size))
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			if x < 0 || x >= int64(len(hashes)) {
				return nil, fmt.Errorf("hash %d not computed", x)
			}
			out[i] = hashes[x]
		}
		return out, nil
	})
	open := map[string]bool{}
	const chunk = 1 << TileHeight
	for from := int64(0); from < c.Size; from += chunk {
		to := min(from+chunk, c.Size)
		entries, err := src.Entries(ctx, from, to)
		if err != nil {
			return rep, nil, fmt.Errorf("reading records %d-%d: %w", from, to-1, err)
		}
		if int64(len(entries)) != to-from {
			return rep, nil, fmt.Errorf("MISSING RECORDS: %d of records %d-%d are there", len(entries), from, to-1)
		}
		for i, e := range entries {
			n := from + int64(i)
			r, err := ParseRecord(e)
			if err != nil {
				return rep, nil, fmt.Errorf("record %d: %w", n, err)
			}
			rep.Kinds[r.Kind]++
			switch r.Kind {
			case KindCallStart:
				open[r.RequestID] = true
			case KindCallEnd:
				delete(open, r.RequestID)
			}
			hs, err := tlog.StoredHashes(n, e, reader)
			if err != nil {
				return rep, nil, err
			}
			hashes = append(hashes, hs...)
		}
		if progress != nil {
			progress(to, c.Size)
		}
	}
	rep.OpenCalls = len(open)
	root, err := tlog.TreeHash(c.Size, reader)
	if err != nil {
		return rep, nil, err
	}
	if root != c.Hash {
		where := locate(ctx, src, hashes, c.Size)
		return rep, nil, fmt.Errorf("TAMPERED: the records do not hash to the signed root of %d records (a record was changed, removed, inserted or reordered)%s", c.Size, where)
	}
	if prev != nil && prev.Size > 0 {
		old, err := tlog.TreeHash(prev.Size, reader)
		if err != nil {
			return rep, nil, err
		}
		if old != prev.Hash {
			return rep, nil, fmt.Errorf("FORKED: the first %d records are not the ones verified on %s; the log was rewritten", prev.Size, prev.VerifiedAt.Format(time.RFC3339))
		}
	}
	return rep, &State{Origin: c.Origin, Size: c.Size, Hash: c.Hash, Checkpoint: string(signed), VerifierKey: vkey, VerifiedAt: time.Now().UTC()}, nil
}

// locate compares recomputed leaf hashes with the source's stored ones and
// names the first record that differs, when the source can tell.
func locate(ctx context.Context, src Source, hashes []tlog.Hash, size int64) string {
	const chunk = 1 << TileHeight
	for from := int64(0); from < size; from += chunk {
		to := min(from+chunk, size)
		stored, err := src.LeafHashes(ctx, from, to)
		if err != nil || int64(len(stored)) != to-from {
			return ""
		}
		for i, h := range stored {
			n := from + int64(i)
			if hashes[tlog.StoredHashIndex(0, n)] != h {
				return fmt.Sprintf("; the first record that differs from the stored tree is %d", n)
			}
		}
	}
	return "; the records match the stored leaf hashes, so the stored tree itself was altered"
}

// StoreSource reads a log straight from a store (gatehouse audit verify --data-dir).
type StoreSource struct{ Store Store }

// Checkpoint implements Source.
func (s StoreSource) Checkpoint(ctx context.Context) ([]byte, error) {
	_, b, err := s.Store.LedgerCheckpoint(ctx)
	return b, err
}

// Entries implements Source.
func (s StoreSource) Entries(ctx context.Context, from, to int64) ([][]byte, error) {
	return s.Store.LedgerEntries(ctx, from, to)
}

// LeafHashes implements Source.
func (s StoreSource) LeafHashes(ctx context.Context, from, to int64) ([]tlog.Hash, error) {
	idx := make([]int64, 0, to-from)
	for n := from; n < to; n++ {
		idx = append(idx, tlog.StoredHashIndex(0, n))
	}
	return s.Store.LedgerHashes(ctx, idx)
}

// HTTPSource reads a log served in the tlog-tiles layout (base ends in /log).
type HTTPSource struct {
	Base   string
	Client *http.Client
}

func (h HTTPSource) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", strings.TrimRight(h.Base, "/")+"/"+path, nil)
	if err != nil {
		return nil, err
	}
	c := h.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return b, nil
}

// Checkpoint implements Source.
func (h HTTPSource) Checkpoint(ctx context.Context) ([]byte, error) { return h.get(ctx, "checkpoint") }

func tileFor(level int, from, to int64) tlog.Tile {
	return tlog.Tile{H: TileHeight, L: level, N: from >> TileHeight, W: int(to - from)}
}

// Entries implements Source; from is a multiple of 256 and to-from ≤ 256.
func (h HTTPSource) Entries(ctx context.Context, from, to int64) ([][]byte, error) {
	b, err := h.get(ctx, TilePath(tileFor(-1, from, to)))
	if err != nil {
		return nil, err
	}
	return ParseBundle(b)
}

// LeafHashes implements Source.
func (h HTTPSource) LeafHashes(ctx context.Context, from, to int64) ([]tlog.Hash, error) {
	b, err := h.get(ctx, TilePath(tileFor(0, from, to)))
	if err != nil || len(b) != int(to-from)*tlog.HashSize {
		return nil, errors.New("leaf tile unavailable")
	}
	out := make([]tlog.Hash, to-from)
	for i := range out {
		copy(out[i][:], b[i*tlog.HashSize:])
	}
	return out, nil
}
