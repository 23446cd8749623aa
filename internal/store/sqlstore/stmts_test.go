package sqlstore

import (
	"slices"
	"testing"
)

func TestChunksArePowersOfTwoSummingToN(t *testing.T) {
	shapes := map[int]bool{}
	for n := 0; n <= 3*maxChunk+5; n++ {
		cs := chunks(n)
		sum := 0
		for i, c := range cs {
			if c <= 0 || c > maxChunk || c&(c-1) != 0 {
				t.Fatalf("chunks(%d) = %v: %d is not a power of two in (0, %d]", n, cs, c, maxChunk)
			}
			if i > 0 && c > cs[i-1] {
				t.Fatalf("chunks(%d) = %v: not largest first", n, cs)
			}
			shapes[c] = true
			sum += c
		}
		if sum != n {
			t.Fatalf("chunks(%d) = %v sums to %d", n, cs, sum)
		}
		if n < maxChunk && len(cs) > 8 {
			t.Fatalf("chunks(%d) = %v: more than 8 statements below maxChunk", n, cs)
		}
	}
	if len(shapes) != 9 { // 1, 2, 4, …, 256
		t.Fatalf("%d distinct sizes, want 9", len(shapes))
	}
}

func TestPadInKeepsTheSetAndTakesFewShapes(t *testing.T) {
	shapes := map[int]bool{}
	for n := 1; n <= 100; n++ {
		var args []any
		for i := range n {
			args = append(args, int64(i*7))
		}
		orig := slices.Clone(args)
		got := padIn(args)
		shapes[len(got)] = true
		if len(got) < n || len(got) >= 2*n && n > 1 || len(got)&(len(got)-1) != 0 {
			t.Fatalf("padIn(%d args) has %d", n, len(got))
		}
		if !slices.Equal(got[:n], orig) {
			t.Fatalf("padIn changed the arguments: %v", got[:n])
		}
		for _, a := range got[n:] {
			if !slices.Contains(orig, a) {
				t.Fatalf("padIn added %v, not one of the arguments", a)
			}
		}
	}
	if len(shapes) != 8 { // 1, 2, 4, …, 128
		t.Fatalf("%d shapes for 1..100 arguments, want 8", len(shapes))
	}
}
