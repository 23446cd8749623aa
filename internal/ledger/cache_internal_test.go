package ledger

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"maps"
	mrand "math/rand/v2"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// readCountingStore keeps the log's hashes in memory and counts the hashes
// an append reads from it; only what Append uses is implemented.
type readCountingStore struct {
	Store
	hashes []tlog.Hash
	data   [][]byte
	size   int64
	reads  int
}

func (s *readCountingStore) LedgerAppend(_ context.Context, _ string, entries []Entry, hashes func(int64, []Entry, tlog.HashReader) ([][]tlog.Hash, error)) ([]int64, error) {
	hs, err := hashes(s.size, entries, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			s.reads++
			out[i] = s.hashes[x]
		}
		return out, nil
	}))
	if err != nil {
		return nil, err
	}
	idx := make([]int64, len(entries))
	for i := range entries {
		idx[i] = s.size
		s.size++
		s.data = append(s.data, entries[i].Data)
		s.hashes = append(s.hashes, hs[i]...)
	}
	return idx, nil
}

// TestHashCacheKeepsOnlyTheRightEdge: after each append the cache holds the
// roots of the tree's complete subtrees and nothing else (it once kept every
// hash computed, up to 65,536, ~4 MB under load), and a single writer's
// appends never read a hash from the store, which is what the cache is for.
func TestHashCacheKeepsOnlyTheRightEdge(t *testing.T) {
	skey, _, err := note.GenerateKey(rand.Reader, "test")
	if err != nil {
		t.Fatal(err)
	}
	st := &readCountingStore{}
	l, err := New(st, "i", skey, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 3000 {
		id := fmt.Sprint("r", i)
		if _, err := l.Append(ctx, Entry{Data: Record{Kind: KindAdmin, Time: time.Unix(1, 0), RequestID: id}.Marshal(), RequestID: id}); err != nil {
			t.Fatal(err)
		}
		n := int64(i + 1)
		l.cache.mu.Lock()
		got := len(l.cache.m)
		l.cache.mu.Unlock()
		if want := bitCount(n); got != want {
			t.Fatalf("tree size %d: cache holds %d hashes, want %d (one per complete subtree)", n, got, want)
		}
	}
	if st.reads != 0 {
		t.Fatalf("appends read %d hashes from the store, want 0: the cache lacks the right edge", st.reads)
	}
	// The hashes are still the tree's: its root from the store matches the
	// root computed from the kept right edge.
	want, err := tlog.TreeHash(st.size, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = st.hashes[x]
		}
		return out, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	got, err := tlog.TreeHash(st.size, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			h, ok := l.cache.get(x)
			if !ok {
				return nil, fmt.Errorf("hash %d not in the cache", x)
			}
			out[i] = h
		}
		return out, nil
	}))
	if err != nil || got != want {
		t.Fatalf("tree hash from the cache: %v, %v; want %v", got, err, want)
	}
}

func bitCount(n int64) int {
	c := 0
	for ; n != 0; n &= n - 1 {
		c++
	}
	return c
}

// TestHashCacheWithTwoWriters: two logs append by turns to one store, as two
// replicas do, in runs of different lengths; each reads from the store what
// the other wrote, and every stored hash is the one the records give.
func TestHashCacheWithTwoWriters(t *testing.T) {
	st := &readCountingStore{}
	var logs [2]*Log
	for i := range logs {
		skey, _, err := note.GenerateKey(rand.Reader, "test")
		if err != nil {
			t.Fatal(err)
		}
		if logs[i], err = New(st, "i", skey, slog.New(slog.DiscardHandler)); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	n := 0
	for turn := range 200 {
		l := logs[turn%2]
		for range turn%7 + 1 {
			id := fmt.Sprint("r", n)
			n++
			if _, err := l.Append(ctx, Entry{Data: Record{Kind: KindAdmin, Time: time.Unix(1, 0), RequestID: id}.Marshal(), RequestID: id}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if st.reads == 0 {
		t.Fatal("no hash read from the store: the logs did not see each other's records")
	}
	var want []tlog.Hash
	for i, d := range st.data {
		hs, err := tlog.StoredHashes(int64(i), d, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
			out := make([]tlog.Hash, len(idx))
			for j, x := range idx {
				out[j] = want[x]
			}
			return out, nil
		}))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, hs...)
	}
	if len(want) != len(st.hashes) {
		t.Fatalf("%d stored hashes, want %d", len(st.hashes), len(want))
	}
	for i := range want {
		if st.hashes[i] != want[i] {
			t.Fatalf("stored hash %d differs from the one its records give", i)
		}
	}
}

// BenchmarkAppendOneByOne appends one record per commit to a store in
// memory: what the hash cache costs where it is asked most often.
func BenchmarkAppendOneByOne(b *testing.B) {
	skey, _, err := note.GenerateKey(rand.Reader, "test")
	if err != nil {
		b.Fatal(err)
	}
	l, err := New(&readCountingStore{}, "i", skey, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	data := Record{Kind: KindAdmin, Time: time.Unix(1, 0), RequestID: "r"}.Marshal()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Append(ctx, Entry{Data: data}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestHashCacheKeepProperty: keep over random tree sizes (growing by any
// step, and shrinking, which no store does but which must not make the
// cache lie) and random partial knowledge of this commit's hashes: the
// cache holds only roots of the tree's complete subtrees, each with the
// value at its index, and every root that computed or the cache before
// held.
func TestHashCacheKeepProperty(t *testing.T) {
	truth := func(x int64) tlog.Hash { // any fixed value per index
		var h tlog.Hash
		for i := range 8 {
			h[i] = byte(x >> (8 * i))
		}
		h[31] = 0x5a
		return h
	}
	roots := func(n int64) map[int64]bool {
		out := map[int64]bool{}
		for level := 0; n>>level != 0; level++ {
			if n>>level&1 == 1 {
				out[tlog.StoredHashIndex(level, n>>level-1)] = true
			}
		}
		return out
	}
	rng := mrand.New(mrand.NewPCG(1, 2))
	c := hashCache{m: map[int64]tlog.Hash{}}
	n := int64(0)
	for step := range 5000 {
		prev := maps.Clone(c.m)
		switch rng.IntN(10) {
		case 0:
			n = max(1, n-rng.Int64N(100)) // shrinking
		case 1:
			n += rng.Int64N(1 << 20)
		default:
			n += 1 + rng.Int64N(5)
		}
		computed := map[int64]tlog.Hash{}
		want := roots(n)
		for x := range want {
			if rng.IntN(3) > 0 {
				computed[x] = truth(x)
			}
		}
		for range 5 { // hashes of this commit that are not roots
			x := rng.Int64N(tlog.StoredHashCount(n))
			computed[x] = truth(x)
		}
		c.keep(n, computed)
		for x, h := range c.m {
			if !want[x] {
				t.Fatalf("step %d, size %d: the cache holds %d, not a root of the tree", step, n, x)
			}
			if h != truth(x) {
				t.Fatalf("step %d, size %d: the cache holds a wrong hash at %d", step, n, x)
			}
		}
		for x := range want {
			_, inC := computed[x]
			_, inPrev := prev[x]
			if h, ok := c.get(x); (inC || inPrev) && (!ok || h != truth(x)) {
				t.Fatalf("step %d, size %d: root %d known but not kept", step, n, x)
			}
		}
	}
}
