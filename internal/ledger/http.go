package ledger

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"
)

// TileHeight is the C2SP tlog-tiles tile height: 2^8 = 256 hashes a tile.
const TileHeight = 8

// Handler serves the log read-only, in the C2SP tlog-tiles layout, under
// /log/:
//
//	/log/checkpoint               the latest signed checkpoint
//	/log/key                      the current checkpoint verifier key (note vkey text)
//	/log/keys                     every key that signs checkpoints, one a line (during a rotation)
//	/log/tile/<L>/<N>[.p/<W>]     hash tiles
//	/log/tile/entries/<N>[.p/<W>] entry bundles (also /log/entries/…)
//	/log/proof/<index>            an inclusion proof against the latest checkpoint (JSON)
//	/log/find/<request id>        the indexes of a request's records (JSON)
func (l *Log) Handler() http.Handler {
	mux := http.NewServeMux()
	l.routes(mux.HandleFunc)
	return mux
}

// Routes returns the patterns Handler serves (for the OpenAPI document's test).
func Routes() []string {
	var out []string
	(&Log{}).routes(func(p string, _ func(http.ResponseWriter, *http.Request)) { out = append(out, p) })
	return out
}

func (l *Log) routes(handle func(string, func(http.ResponseWriter, *http.Request))) {
	mux := struct {
		HandleFunc func(string, func(http.ResponseWriter, *http.Request))
	}{handle}
	mux.HandleFunc("GET /log/checkpoint", l.serveCheckpoint)
	mux.HandleFunc("GET /log/key", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, l.Key())
	})
	mux.HandleFunc("GET /log/keys", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		for _, k := range l.Keys() {
			fmt.Fprintln(w, k)
		}
	})
	mux.HandleFunc("GET /log/tile/", l.serveTile)
	mux.HandleFunc("GET /log/entries/", func(w http.ResponseWriter, r *http.Request) {
		l.serveEntries(w, r, strings.TrimPrefix(r.URL.Path, "/log/entries/"))
	})
	mux.HandleFunc("GET /log/proof/{index}", l.serveProof)
	mux.HandleFunc("GET /log/find/{request}", l.serveFind)
}

func (l *Log) serveCheckpoint(w http.ResponseWriter, r *http.Request) {
	_, signed, err := l.store.LedgerCheckpoint(r.Context())
	if err != nil {
		http.Error(w, "no checkpoint yet", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(signed)
}

// TilePath returns the C2SP path of a tile ("tile/0/x001/234.p/5"); level -1
// is the entry bundle ("tile/entries/…").
func TilePath(t tlog.Tile) string {
	p := t.Path() // x/mod's sumdb layout: tile/8/<L>/… and tile/8/data/…
	p = strings.Replace(p, "tile/8/data/", "tile/entries/", 1)
	return strings.Replace(p, "tile/8/", "tile/", 1)
}

// parseTilePath is the inverse of TilePath.
func parseTilePath(path string) (tlog.Tile, error) {
	if rest, ok := strings.CutPrefix(path, "tile/entries/"); ok {
		return tlog.ParseTilePath("tile/8/data/" + rest)
	}
	if rest, ok := strings.CutPrefix(path, "tile/"); ok {
		return tlog.ParseTilePath("tile/8/" + rest)
	}
	return tlog.Tile{}, errors.New("not a tile path")
}

func (l *Log) serveTile(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/log/")
	if strings.HasPrefix(path, "tile/entries/") {
		l.serveEntries(w, r, strings.TrimPrefix(path, "tile/entries/"))
		return
	}
	t, err := parseTilePath(path)
	if err != nil || t.L < 0 {
		http.Error(w, "bad tile path", http.StatusNotFound)
		return
	}
	size, err := l.store.LedgerSize(r.Context())
	if err != nil {
		http.Error(w, "log unavailable", http.StatusServiceUnavailable)
		return
	}
	// The tile must lie within the tree: its last hash exists.
	last := (t.N*(1<<TileHeight) + int64(t.W)) << (uint(t.L) * TileHeight)
	if last > size {
		http.Error(w, "tile beyond the tree", http.StatusNotFound)
		return
	}
	data, err := tlog.ReadTileData(t, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) { return l.store.LedgerHashes(r.Context(), idx) }))
	if err != nil {
		http.Error(w, "tile unavailable", http.StatusNotFound)
		return
	}
	if t.W == 1<<TileHeight {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(data)
}

func (l *Log) serveEntries(w http.ResponseWriter, r *http.Request, rest string) {
	t, err := tlog.ParseTilePath("tile/8/data/" + rest)
	if err != nil {
		http.Error(w, "bad entries path", http.StatusNotFound)
		return
	}
	from := t.N << TileHeight
	to := from + int64(t.W)
	size, err := l.store.LedgerSize(r.Context())
	if err != nil || to > size {
		http.Error(w, "entries beyond the tree", http.StatusNotFound)
		return
	}
	entries, err := l.store.LedgerEntries(r.Context(), from, to)
	if err != nil {
		http.Error(w, "entries unavailable", http.StatusServiceUnavailable)
		return
	}
	if t.W == 1<<TileHeight {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(bundle(entries))
}

// Proof is an inclusion proof of one record against a checkpoint.
type Proof struct {
	Index      int64       `json:"index"`
	Record     string      `json:"record"` // the record, as stored
	LeafHash   tlog.Hash   `json:"leaf_hash"`
	TreeSize   int64       `json:"tree_size"`
	Checkpoint string      `json:"checkpoint"` // signed note
	Proof      []tlog.Hash `json:"proof"`
}

// ProveIndex returns record i with its inclusion proof in the latest checkpoint.
func (l *Log) ProveIndex(r *http.Request, i int64) (Proof, error) {
	ctx := r.Context()
	size, signed, err := l.store.LedgerCheckpoint(ctx)
	if err != nil {
		return Proof{}, errors.New("no checkpoint yet")
	}
	if i < 0 || i >= size {
		return Proof{}, fmt.Errorf("record %d is not in the latest checkpoint (size %d); try again after the next", i, size)
	}
	entries, err := l.store.LedgerEntries(ctx, i, i+1)
	if err != nil || len(entries) != 1 {
		return Proof{}, fmt.Errorf("record %d unavailable", i)
	}
	p, err := tlog.ProveRecord(size, i, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) { return l.store.LedgerHashes(ctx, idx) }))
	if err != nil {
		return Proof{}, err
	}
	return Proof{Index: i, Record: string(entries[0]), LeafHash: tlog.RecordHash(entries[0]), TreeSize: size, Checkpoint: string(signed), Proof: p}, nil
}

func (l *Log) serveProof(w http.ResponseWriter, r *http.Request) {
	i, err := strconv.ParseInt(r.PathValue("index"), 10, 64)
	if err != nil {
		http.Error(w, "bad index", http.StatusBadRequest)
		return
	}
	p, err := l.ProveIndex(r, i)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(p)
}

func (l *Log) serveFind(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("request")
	var idx []int64
	var err error
	// An id no record can hold (not UTF-8, NUL, too long) finds nothing,
	// without asking a store that may refuse the bytes.
	if b, cut := Bound(id, FieldBound("request_id")); !cut && b == id && !strings.ContainsRune(id, 0) {
		idx, err = l.store.LedgerFind(r.Context(), id)
	}
	if err != nil {
		http.Error(w, "log unavailable", http.StatusServiceUnavailable)
		return
	}
	if idx == nil {
		idx = []int64{}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"request_id": id, "indexes": idx})
}
