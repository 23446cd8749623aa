package ledger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Entry is one record on its way into the log.
type Entry struct {
	Data      []byte
	RequestID string
	Opens     bool // a call's start: remember it until its end
	Closes    bool // a call's end
}

// OpenCall is a call whose start record has no end record.
type OpenCall struct {
	RequestID string
	Start     []byte
}

// Store is what the ledger needs from storage.
type Store interface {
	// LedgerAppend appends entries at the end of the log in one transaction,
	// holding the log's lock; hashes computes, for the tree size found, the
	// stored hashes each entry adds (tlog.StoredHashes), reading older ones
	// through r. It returns the index of the first entry.
	LedgerAppend(ctx context.Context, instance string, entries []Entry, hashes func(size int64, r tlog.HashReader) ([][]tlog.Hash, error)) (int64, error)
	LedgerSize(ctx context.Context) (int64, error)
	LedgerHashes(ctx context.Context, idx []int64) ([]tlog.Hash, error)
	LedgerEntries(ctx context.Context, from, to int64) ([][]byte, error)
	LedgerFind(ctx context.Context, requestID string) ([]int64, error)
	LedgerSaveCheckpoint(ctx context.Context, size int64, signed []byte) error
	LedgerCheckpoint(ctx context.Context) (size int64, signed []byte, err error)
	LedgerAbandoned(ctx context.Context, self string, staleBefore time.Time) ([]OpenCall, error)
}

// ErrUnavailable wraps every failure to make a record durable: the caller must
// fail closed.
var ErrUnavailable = errors.New("ledger: unavailable")

// Log is the sequencer: one per gateway process. Appends from concurrent
// callers are gathered into one transaction (group commit); each caller returns
// once its record is durable.
type Log struct {
	store    Store
	instance string
	origin   string
	mu2      sync.RWMutex
	signers  []note.Signer // current first; every one signs each checkpoint
	vkeys    []string
	log      *slog.Logger
	now      func() time.Time

	// Interval is how often a new checkpoint is signed while the log grows.
	Interval time.Duration

	queue chan *pending

	mu      sync.RWMutex
	running bool
	cache   hashCache

	// Sink, when set, receives every committed record (exports).
	Sink func(data []byte)

	stats stats
}

type pending struct {
	e    Entry
	idx  int64
	done chan error
}

// MaxBatch is the most records one transaction appends.
const MaxBatch = 512

// New returns a Log. skey is the note signer key (see note.GenerateKey); its
// name is the log's origin.
func New(st Store, instance, skey string, log *slog.Logger) (*Log, error) {
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("ledger: signing key: %w", err)
	}
	l := &Log{store: st, instance: instance, origin: s.Name(), log: log, now: time.Now,
		Interval: time.Second, queue: make(chan *pending, 4*MaxBatch), cache: hashCache{m: map[int64]tlog.Hash{}}}
	if err := l.SetKeys([]string{skey}); err != nil {
		return nil, err
	}
	return l, nil
}

// SetKeys replaces the signing keys (rotation): every key signs each
// checkpoint, so a verifier that pinned the previous key keeps verifying
// during the overlap; the first is the one published at /log/key.
func (l *Log) SetKeys(skeys []string) error {
	var signers []note.Signer
	var vkeys []string
	for _, sk := range skeys {
		s, err := note.NewSigner(sk)
		if err != nil {
			return fmt.Errorf("ledger: signing key: %w", err)
		}
		if s.Name() != l.origin {
			return fmt.Errorf("ledger: signing key for %q, the log is %q", s.Name(), l.origin)
		}
		vk, err := VerifierKey(sk)
		if err != nil {
			return err
		}
		signers, vkeys = append(signers, s), append(vkeys, vk)
	}
	l.mu2.Lock()
	l.signers, l.vkeys = signers, vkeys
	l.mu2.Unlock()
	return nil
}

// VerifierKey derives the public verifier key text from a signer key text.
func VerifierKey(skey string) (string, error) {
	// skey: PRIVATE+KEY+<name>+<hash>+<base64(alg||key)>; the verifier key is
	// <name>+<hash>+<base64(alg||pub)>.
	s, err := note.NewSigner(skey)
	if err != nil {
		return "", fmt.Errorf("ledger: signing key: %w", err)
	}
	pub, err := publicKey(skey)
	if err != nil {
		return "", err
	}
	return note.NewEd25519VerifierKey(s.Name(), pub)
}

// Origin returns the log's origin line.
func (l *Log) Origin() string { return l.origin }

// Key returns the current checkpoint verifier key (note verifier-key text).
func (l *Log) Key() string {
	l.mu2.RLock()
	defer l.mu2.RUnlock()
	return l.vkeys[0]
}

// Keys returns every key that signs checkpoints, current first.
func (l *Log) Keys() []string {
	l.mu2.RLock()
	defer l.mu2.RUnlock()
	return append([]string(nil), l.vkeys...)
}

// Append makes r durable in the log and returns its index.
func (l *Log) Append(ctx context.Context, e Entry) (idx int64, err error) {
	start := l.now()
	defer func() { l.observeAppend(start, err) }()
	if len(e.Data) > MaxEntrySize {
		return 0, fmt.Errorf("%w: record of %d bytes", ErrUnavailable, len(e.Data))
	}
	l.mu.RLock()
	if !l.running {
		l.mu.RUnlock()
		idx, err := l.commit(ctx, []*pending{{e: e}})
		return idx, err
	}
	p := &pending{e: e, done: make(chan error, 1)}
	l.queue <- p
	l.mu.RUnlock()
	select {
	case err := <-p.done:
		return p.idx, err
	case <-ctx.Done():
		return 0, fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
	}
}

// commit appends a batch; it fills each pending's index.
func (l *Log) commit(ctx context.Context, batch []*pending) (int64, error) {
	entries := make([]Entry, len(batch))
	for i, p := range batch {
		entries[i] = p.e
	}
	var computed map[int64]tlog.Hash
	start, err := l.store.LedgerAppend(ctx, l.instance, entries, func(size int64, r tlog.HashReader) ([][]tlog.Hash, error) {
		computed = map[int64]tlog.Hash{}
		reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
			out := make([]tlog.Hash, len(idx))
			var missing []int64
			var missPos []int
			for i, x := range idx {
				if h, ok := computed[x]; ok {
					out[i] = h
				} else if h, ok := l.cache.get(x); ok {
					out[i] = h
				} else {
					missing, missPos = append(missing, x), append(missPos, i)
				}
			}
			if len(missing) > 0 {
				got, err := r.ReadHashes(missing)
				if err != nil {
					return nil, err
				}
				for j, i := range missPos {
					out[i] = got[j]
				}
			}
			return out, nil
		})
		all := make([][]tlog.Hash, len(entries))
		for i, e := range entries {
			n := size + int64(i)
			hs, err := tlog.StoredHashes(n, e.Data, reader)
			if err != nil {
				return nil, err
			}
			base := tlog.StoredHashCount(n)
			for j, h := range hs {
				computed[base+int64(j)] = h
			}
			all[i] = hs
		}
		return all, nil
	})
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	for x, h := range computed {
		l.cache.put(x, h)
	}
	for i, p := range batch {
		p.idx = start + int64(i)
	}
	if l.Sink != nil {
		for _, e := range entries {
			l.Sink(e.Data)
		}
	}
	return start, nil
}

// Run sequences appends and signs checkpoints until ctx ends; then it drains
// the queue and signs a final checkpoint.
func (l *Log) Run(ctx context.Context) error {
	l.mu.Lock()
	l.running = true
	l.mu.Unlock()
	t := time.NewTicker(l.Interval)
	defer t.Stop()
	batch := make([]*pending, 0, MaxBatch)
	for {
		select {
		case p := <-l.queue:
			batch = append(batch[:0], p)
		fill:
			for len(batch) < MaxBatch {
				select {
				case p := <-l.queue:
					batch = append(batch, p)
				default:
					break fill
				}
			}
			_, err := l.commit(context.WithoutCancel(ctx), batch)
			for _, p := range batch {
				p.done <- err
			}
		case <-t.C:
			if err := l.SignCheckpoint(ctx); err != nil && ctx.Err() == nil {
				l.log.Warn("ledger: signing a checkpoint failed", "err", err)
			}
		case <-ctx.Done():
			l.mu.Lock()
			l.running = false
			l.mu.Unlock()
			final := context.WithoutCancel(ctx)
			for {
				select {
				case p := <-l.queue:
					_, err := l.commit(final, []*pending{p})
					p.done <- err
					continue
				default:
				}
				break
			}
			if err := l.SignCheckpoint(final); err != nil {
				l.log.Error("ledger: final checkpoint failed", "err", err)
			}
			return nil
		}
	}
}

// SignCheckpoint signs and stores a checkpoint of the current tree, if it grew
// since the last one.
func (l *Log) SignCheckpoint(ctx context.Context) error { return l.signCheckpoint(ctx, false) }

// Resign signs the current tree again, grown or not (after a key rotation, so
// that the checkpoint carries the new key's signature at once).
func (l *Log) Resign(ctx context.Context) error { return l.signCheckpoint(ctx, true) }

func (l *Log) signCheckpoint(ctx context.Context, force bool) error {
	size, err := l.store.LedgerSize(ctx)
	if err != nil {
		return err
	}
	last, _, err := l.store.LedgerCheckpoint(ctx)
	if err == nil && last >= size && size > 0 && !force {
		return nil
	}
	root, err := tlog.TreeHash(size, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) { return l.store.LedgerHashes(ctx, idx) }))
	if err != nil {
		return err
	}
	l.mu2.RLock()
	signers := l.signers
	l.mu2.RUnlock()
	signed, err := Sign(Checkpoint{Origin: l.origin, Size: size, Hash: root}, signers...)
	if err != nil {
		return err
	}
	if err := l.store.LedgerSaveCheckpoint(ctx, size, signed); err != nil {
		return err
	}
	l.markSigned()
	return nil
}

// Recover closes calls whose start record has no end: all of other instances'
// when exclusive (one gateway on the embedded store), else those of instances
// silent since staleBefore. Each gets an end record with status "incomplete".
func (l *Log) Recover(ctx context.Context, exclusive bool, staleBefore time.Time) (int, error) {
	if exclusive {
		staleBefore = l.now().Add(100 * 365 * 24 * time.Hour)
	}
	open, err := l.store.LedgerAbandoned(ctx, l.instance, staleBefore)
	if err != nil {
		return 0, err
	}
	for _, oc := range open {
		start, err := ParseRecord(oc.Start)
		if err != nil {
			return 0, fmt.Errorf("ledger: recover %s: %w", oc.RequestID, err)
		}
		end := Record{Kind: KindCallEnd, Time: l.now(), RequestID: oc.RequestID, PrincipalID: start.PrincipalID, KeyID: start.KeyID,
			TeamID: start.TeamID, Endpoint: start.Endpoint, Model: start.Model, Provider: start.Provider, Stream: start.Stream,
			Decision: start.Decision, ErrorCode: "incomplete", Detail: "the gateway stopped before the call ended; closed on recovery"}
		if _, err := l.Append(ctx, Entry{Data: end.Marshal(), RequestID: oc.RequestID, Closes: true}); err != nil {
			return 0, err
		}
	}
	if len(open) > 0 {
		l.log.Warn("ledger: closed calls left open by a stopped gateway", "calls", len(open))
	}
	return len(open), nil
}

// hashCache keeps recent stored hashes: they never change once written, and
// appends read the right edge of the tree again and again.
type hashCache struct {
	mu sync.Mutex
	m  map[int64]tlog.Hash
}

func (c *hashCache) get(i int64) (tlog.Hash, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.m[i]
	return h, ok
}

func (c *hashCache) put(i int64, h tlog.Hash) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) > 1<<16 {
		clear(c.m)
	}
	c.m[i] = h
}
