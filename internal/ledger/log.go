package ledger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/gatehouse-gw/gatehouse/internal/budget"
	"github.com/gatehouse-gw/gatehouse/internal/usage"
)

// Entry is one record on its way into the log.
type Entry struct {
	Data      []byte
	RequestID string // Append replaces it by the record's own request id
	Opens     bool   // a call's start: remember it until its end
	Closes    bool   // a call's end

	// Hold (with Opens) is the call's budget hold, made durable in the same
	// transaction as the start record; a hold a hard budget cannot cover is
	// refused by the store and the start is not appended.
	Hold *Hold
	// Settle (with Closes) settles the call's hold in the end record's
	// transaction; Usage is its usage row, stored there too.
	Settle *Settlement
	Usage  *usage.Record
	// NothingAtStake (with Closes) marks the end of a call that had nothing
	// at stake: no start record was sent, nothing held, charged or sent
	// upstream (a refused call). While the store is unreachable, such
	// entries past Log.MaxDeferredRefusals waiting are counted into summary
	// records (KindCallSummary) instead of kept, and final with
	// ErrAggregated; the usage row one carries is then not stored.
	NothingAtStake bool
	// Done, when set, is called once by the sequencer when the entry is
	// final: committed (nil), refused, dropped as already closed, counted
	// into a summary (ErrAggregated), or given up at shutdown. A kept
	// (deferred) entry is final only once written. It runs on the
	// sequencer's goroutine, in commit order: keep it short.
	Done func(err error)

	made []byte // Data as Record.Entry made it: canonical, not parsed again
}

// requestID returns the request id of e's record, parsing and checking Data
// unless Record.Entry made it.
func (e *Entry) requestID() (string, error) {
	if len(e.made) > 0 && len(e.made) == len(e.Data) && &e.made[0] == &e.Data[0] {
		return e.RequestID, nil
	}
	rec, err := ParseRecord(e.Data)
	if err != nil {
		return "", err
	}
	return rec.RequestID, nil
}

// Hold is a call's budget hold, carried by its start entry.
type Hold struct {
	Reservation budget.Reservation
	// Set by the store in the batch that commits the entry: the refusal of a
	// hard budget that cannot cover the hold (then nothing of the entry is
	// written), or the counters of its budgets after the hold.
	Refused *budget.InsufficientError
	Spends  []budget.Spend
}

// Settlement settles a call's hold, carried by its end entry.
type Settlement struct {
	ID     string // the reservation (request) id
	Actual int64  // micros charged; negative: the hold's own amount
	// Set by the store: whether the hold was still there to settle (a sweep
	// or an earlier attempt may have settled it), and its budgets' counters
	// after settling.
	Settled bool
	Spends  []budget.Spend
}

// OpenCall is a call whose start record has no end record.
type OpenCall struct {
	RequestID string
	Start     []byte
}

// Store is what the ledger needs from storage.
type Store interface {
	// LedgerAppend appends entries at the end of the log in one transaction,
	// holding the log's lock. An entry that Closes a request already closed is
	// dropped (at most one end record per request, enforced by the store).
	// hashes computes, for the tree size found, the stored hashes each
	// appended entry adds (tlog.StoredHashes), reading older ones through r.
	// It returns each entry's index, -1 for a dropped one.
	LedgerAppend(ctx context.Context, instance string, entries []Entry, hashes func(size int64, appended []Entry, r tlog.HashReader) ([][]tlog.Hash, error)) ([]int64, error)
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

// ErrDeferred (wrapping ErrUnavailable) is returned for a closing entry that
// could not be written now: the sequencer keeps it in memory and retries it,
// in order, until the store takes it.
var ErrDeferred = fmt.Errorf("%w: the store is unreachable; the end record is kept and retried", ErrUnavailable)

// errGone finishes a start whose caller stopped waiting before its batch.
var errGone = fmt.Errorf("%w: the caller stopped waiting", ErrUnavailable)

// ErrAlreadyClosed is returned for a closing entry whose request already has
// an end record (written by recovery, or by an earlier attempt that committed
// without its caller learning so): the log keeps exactly one.
var ErrAlreadyClosed = errors.New("ledger: the call already has an end record")

// Log is the sequencer: one per gateway process. Appends from concurrent
// callers are gathered into one transaction (group commit); each caller returns
// once its record is durable.
type Log struct {
	store    Store
	instance func() string
	origin   string
	mu2      sync.RWMutex
	signers  []note.Signer // current first; every one signs each checkpoint
	vkeys    []string
	log      *slog.Logger
	now      func() time.Time

	// Interval is how often a new checkpoint is signed while the log grows.
	Interval time.Duration
	// CommitTimeout bounds one batch's transaction (default 5 s): a stuck
	// store fails the batch instead of holding every caller.
	CommitTimeout time.Duration
	// Linger is how long a batch may wait for more entries before it
	// commits, and Calls, when set, how many calls are in progress (the
	// proxy's count). A batch waits only while more calls are in progress
	// than it holds entries, so a lone caller never waits, and it commits as
	// soon as every call in progress has an entry in it. Larger batches cost
	// less per entry (one commit, one sync, the same statements), as
	// Tessera's batchMaxAge trades a little latency for them. Set both
	// before Run.
	Linger time.Duration
	Calls  func() int
	// LagWait is how long a batch that holds only lagging end records
	// (Enqueue: nobody waits for their commit) may wait for an entry
	// somebody waits on (a call's start), to share its commit instead of
	// making that entry wait behind a commit and sync of its own; such an
	// entry ends the wait at once. At one connection a call's lagging end
	// is queued just before the next call's start: without the wait the
	// start waits for two syncs. Default DefaultLinger; 0 commits at once.
	// Set before Run.
	LagWait time.Duration
	// Gate, when set, must return nil for a call's start to be appended: a
	// fenced instance (package instance) admits nothing.
	Gate func() error

	// MaxDeferredRefusals bounds the end records of refused calls
	// (Entry.NothingAtStake) kept one by one while the store is
	// unreachable; further ones are counted into summary records, one per
	// key × error code × minute (summary.go). Default
	// DefaultMaxDeferredRefusals; 0 keeps none one by one. Set before Run.
	MaxDeferredRefusals int

	// retry holds closing entries whose commit failed, oldest first, and
	// the summaries of refusals counted since; only Run touches it, and
	// keptRefusals, buckets (the summaries waiting, by bucket) and
	// aggregating (a warning was logged for this outage).
	retry           []*pending
	retryCount      atomic.Int64
	keptRefusals    int
	buckets         map[summaryKey]*pending
	aggregating     bool
	aggregatedCalls atomic.Int64
	inFlight        atomic.Int64 // unix nanoseconds a commit started; 0 when idle

	queue chan *pending

	mu      sync.RWMutex
	running bool
	cache   hashCache

	// Sink, when set, receives every record this log appended, as far as
	// the store's answer tells (tests probe the commit path with it; a
	// commit whose answer was lost is not seen here).
	Sink func(data []byte)
	// Committed, when set, is called after a batch that appended records
	// (Exporter.Notify, which reads the records from the store): a hint
	// only, it must not block.
	Committed func()

	stats stats

	commitSem chan struct{} // one commit at a time
}

type pending struct {
	e        Entry
	idx      int64
	done     chan error  // buffered, one answer
	answered bool        // only the goroutine committing p touches it
	lagging  bool        // queued by Enqueue: nobody waits for the commit
	finished bool        // Done was called; as answered
	gone     atomic.Bool // a start whose caller stopped waiting: skip it if not yet committing
	sum      *summary    // a summary of refused calls: e is made from it at each commit
}

// MaxBatch is the most records one transaction appends.
const MaxBatch = 512

// DefaultLinger is Log.Linger's default.
const DefaultLinger = time.Millisecond

// New returns a Log. skey is the note signer key (see note.GenerateKey); its
// name is the log's origin.
func New(st Store, instance, skey string, log *slog.Logger) (*Log, error) {
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("ledger: signing key: %w", err)
	}
	l := &Log{store: st, instance: func() string { return instance }, origin: s.Name(), log: log, now: time.Now,
		Interval: time.Second, Linger: DefaultLinger, LagWait: DefaultLinger, CommitTimeout: 5 * time.Second, MaxDeferredRefusals: DefaultMaxDeferredRefusals, queue: make(chan *pending, 4*MaxBatch), commitSem: make(chan struct{}, 1), cache: hashCache{m: map[int64]tlog.Hash{}}}
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

// SetInstance makes id name the instance that owns the calls this log
// opens from now on (its epoch changes when it was fenced).
func (l *Log) SetInstance(id func() string) { l.instance = id }

// Append makes r durable in the log and returns its index. It refuses data
// that is not a canonical record (build records with Record.Marshal, which
// always gives one), so that the log never holds a record its verifier would
// refuse. A closing entry
// that cannot be written now returns ErrDeferred and is retried by Run; one
// whose request is already closed returns ErrAlreadyClosed.
func (l *Log) Append(ctx context.Context, e Entry) (idx int64, err error) {
	start := l.now()
	defer func() { l.observeAppend(start, err) }()
	queued := false
	if e.Done != nil {
		// An entry that never reached the sequencer is final here.
		defer func() {
			if !queued {
				e.Done(err)
			}
		}()
	}
	if len(e.Data) > MaxEntrySize {
		return 0, fmt.Errorf("%w: record of %d bytes", ErrUnavailable, len(e.Data))
	}
	id, err := e.requestID()
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	// The stored request id is the record's (bounded, valid UTF-8), so no
	// entry can carry bytes that make its store refuse a whole batch.
	e.RequestID = id
	if e.Opens && l.Gate != nil {
		if err := l.Gate(); err != nil {
			return 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	// Waiting is bounded by CommitTimeout, whatever the caller's context: a
	// stuck store fails the call instead of holding it. A start abandoned so
	// may still commit later; the call's end record (Closes) closes it.
	p := &pending{e: e, done: make(chan error, 1)}
	timer := time.NewTimer(l.CommitTimeout)
	defer timer.Stop()
	var tick *time.Timer
	for !queued {
		l.mu.RLock()
		if !l.running {
			l.mu.RUnlock()
			queued = true
			for _, f := range l.commit(ctx, []*pending{p}) { // no Run to retry it
				f.final(-1, fmt.Errorf("%w: the store did not take the record", ErrUnavailable))
			}
			return p.idx, <-p.done
		}
		select {
		case l.queue <- p:
			queued = true
			l.mu.RUnlock()
			continue
		default:
		}
		// While the queue is full, let go of the run lock now and then, so
		// that a stopping Run can take it and drain (as Enqueue does).
		if tick == nil {
			tick = time.NewTimer(50 * time.Millisecond)
			defer tick.Stop()
		} else {
			tick.Reset(50 * time.Millisecond)
		}
		select {
		case l.queue <- p:
			queued = true
			l.mu.RUnlock()
		case <-tick.C:
			l.mu.RUnlock()
		case <-timer.C:
			l.mu.RUnlock()
			return 0, fmt.Errorf("%w: the sequencer's queue is full", ErrUnavailable)
		case <-ctx.Done():
			l.mu.RUnlock()
			return 0, fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
		}
	}
	// A closing entry given up on here is not dropped: the sequencer still
	// commits it (or keeps it for the store's return), so its caller hears
	// ErrDeferred and answers as the record says.
	waitErr := ErrUnavailable
	if e.Closes {
		waitErr = ErrDeferred
	}
	select {
	case err := <-p.done:
		return p.idx, err
	case <-timer.C:
		p.gone.Store(!e.Closes)
		return 0, fmt.Errorf("%w: no commit within %v", waitErr, l.CommitTimeout)
	case <-ctx.Done():
		p.gone.Store(!e.Closes)
		return 0, fmt.Errorf("%w: %v", waitErr, ctx.Err())
	}
}

// Enqueue hands a closing entry to the sequencer and returns without waiting
// for its commit: the call's end may lag (its hold is durable already and is
// charged in full if the end is lost, docs/design/one-write-per-phase.md).
// It never drops the entry: while the queue is full it waits (back-pressure);
// when the sequencer is not running it commits the entry itself. The entry's
// Done tells when it is final.
func (l *Log) Enqueue(ctx context.Context, e Entry) error {
	fail := func(err error) error {
		if e.Done != nil {
			e.Done(err)
		}
		return err
	}
	if !e.Closes {
		return fail(fmt.Errorf("%w: only end records may lag", ErrUnavailable))
	}
	if len(e.Data) > MaxEntrySize {
		return fail(fmt.Errorf("%w: record of %d bytes", ErrUnavailable, len(e.Data)))
	}
	id, err := e.requestID()
	if err != nil {
		return fail(fmt.Errorf("%w: %w", ErrUnavailable, err))
	}
	e.RequestID = id
	p := &pending{e: e, done: make(chan error, 1), lagging: true}
	var t *time.Timer
	for {
		l.mu.RLock()
		if !l.running {
			l.mu.RUnlock()
			for _, f := range l.commit(ctx, []*pending{p}) {
				f.final(-1, fmt.Errorf("%w: the store did not take the record", ErrUnavailable))
			}
			return <-p.done
		}
		select {
		case l.queue <- p:
			l.mu.RUnlock()
			return nil
		default:
		}
		// Full: wait, but let go of the lock now and then so that a
		// stopping Run can take it and drain.
		if t == nil {
			t = time.NewTimer(50 * time.Millisecond)
			defer t.Stop()
		} else {
			t.Reset(50 * time.Millisecond)
		}
		select {
		case l.queue <- p:
			l.mu.RUnlock()
			return nil
		case <-t.C:
			l.mu.RUnlock()
		}
	}
}

// commit appends a batch under CommitTimeout and answers every pending
// (index and error), except the closing entries that failed: it returns
// those, for the caller to keep (or fail) and answer.
func (l *Log) commit(ctx context.Context, batch []*pending) (failed []*pending) {
	ctx, cancel := context.WithTimeout(ctx, l.CommitTimeout)
	defer cancel()
	entries := make([]Entry, len(batch))
	for i, p := range batch {
		if p.sum != nil {
			p.e = p.sum.entry() // the counts as they are now
		}
		entries[i] = p.e
	}
	// One commit at a time: the sequencer's batches are serial anyway, but
	// entries committed alone (no Run, or Run stopping) would otherwise
	// contend for the store's write lock; SQLite's busy handler is not
	// fair, and under load some of them waited past its timeout and failed.
	select {
	case l.commitSem <- struct{}{}:
		defer func() { <-l.commitSem }()
	case <-ctx.Done():
		return l.failBatch(batch, fmt.Errorf("waiting for another commit: %w", ctx.Err()))
	}
	// In flight from here: a commit waiting for its turn is not in the
	// store, and one that gave up waiting must not clear the mark of the
	// one that is (Ready would call a stuck store healthy).
	l.inFlight.Store(time.Now().UnixNano())
	defer l.inFlight.Store(0)
	var computed map[int64]tlog.Hash
	var appended []Entry
	var appendedAt int64
	idx, err := l.store.LedgerAppend(ctx, l.instance(), entries, func(size int64, kept []Entry, r tlog.HashReader) ([][]tlog.Hash, error) {
		computed, appended, appendedAt = map[int64]tlog.Hash{}, kept, size
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
		all := make([][]tlog.Hash, len(kept))
		for i, e := range kept {
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
	if err == nil && len(idx) != len(batch) { // a faulty Store: fail closed, do not index past idx
		err = fmt.Errorf("ledger: the store answered %d indexes for %d entries", len(idx), len(batch))
	}
	if err != nil {
		return l.failBatch(batch, err)
	}
	// The callback's last call describes what was written only when the
	// store called it on the attempt that committed: a store may call it
	// on an attempt it then abandons (a refused guess, a retried
	// transaction) and commit nothing on the next, which does not call it.
	// Those hashes belong to records never written (another replica's may
	// be at their indexes): neither cached nor exported.
	written, first := 0, int64(-1)
	for _, x := range idx {
		if x >= 0 {
			if written == 0 {
				first = x
			}
			written++
		}
	}
	if written != len(appended) || written > 0 && first != appendedAt {
		computed, appended = nil, nil
	}
	if computed != nil {
		l.cache.keep(appendedAt+int64(len(appended)), computed)
	}
	for i, p := range batch {
		switch {
		case idx[i] >= 0:
			p.final(idx[i], nil)
		case p.e.Hold != nil && p.e.Hold.Refused != nil:
			p.final(-1, p.e.Hold.Refused)
		default:
			p.final(-1, ErrAlreadyClosed)
		}
	}
	if l.Sink != nil {
		for _, e := range appended {
			l.Sink(e.Data)
		}
	}
	if l.Committed != nil && written > 0 {
		l.Committed()
	}
	return nil
}

// failBatch answers a batch of which nothing was appended: starts and admin
// records fail (their callers fail closed); end records and summaries are
// returned, to be kept and retried (answered by the caller of commit).
func (l *Log) failBatch(batch []*pending, err error) (failed []*pending) {
	for _, p := range batch {
		if p.e.Closes || p.sum != nil {
			failed = append(failed, p)
		} else {
			p.final(-1, fmt.Errorf("%w: %v", ErrUnavailable, err))
		}
	}
	return failed
}

// reply answers p's caller once; later answers (a retried entry whose caller
// got ErrDeferred) are dropped.
func (p *pending) reply(idx int64, err error) {
	if p.answered {
		return
	}
	p.idx, p.answered = idx, true
	p.done <- err
}

// final answers p's caller (if not answered yet) and tells the entry's Done
// that the entry is final, once.
func (p *pending) final(idx int64, err error) {
	// Done first: the caller, once answered, sees what Done recorded.
	if p.e.Done != nil && !p.finished {
		p.finished = true
		p.e.Done(err)
	}
	p.reply(idx, err)
}

// Run sequences appends and signs checkpoints until ctx ends; then it drains
// the queue and signs a final checkpoint. End records whose commit failed are
// retried with backoff (at most a second apart), before any newer entry and in
// their original order, so a call's end is never written before an older one.
// End records of refused calls past MaxDeferredRefusals are counted into
// summaries instead, which wait in the place of their first call (summary.go).
func (l *Log) Run(ctx context.Context) error {
	l.mu.Lock()
	l.running = true
	l.mu.Unlock()
	t := time.NewTicker(l.Interval)
	defer t.Stop()
	retryT := time.NewTimer(time.Hour)
	retryT.Stop()
	backoff := 50 * time.Millisecond
	batch := make([]*pending, 0, MaxBatch)
	waitT := time.NewTimer(time.Hour) // gather's, reused
	waitT.Stop()
	// run commits batch; rest is what waits behind it (retried later, in
	// order, behind what failed again), so that the count of waiting
	// records never drops to zero in between.
	run := func(batch, rest []*pending) (ok bool) {
		failed := l.commit(context.WithoutCancel(ctx), batch)
		if len(failed) == 0 {
			if len(l.retry) > 0 {
				l.log.Info("ledger: the store is back; deferred end records written")
			}
			l.written(batch)
			l.setRetry(rest)
			backoff = 50 * time.Millisecond
		} else {
			if len(l.retry) == 0 {
				l.log.Warn("ledger: the store is unreachable; keeping end records in memory and retrying", "records", len(failed))
			}
			// Refusals past the bound are counted into summaries here.
			l.setRetry(append(failed, rest...))
			retryT.Reset(backoff)
			backoff = min(2*backoff, time.Second)
		}
		for _, p := range failed { // after the count: a caller sees itself counted
			p.reply(-1, ErrDeferred)
		}
		return len(failed) == 0
	}
	for {
		select {
		case p := <-l.queue:
			if len(l.retry) > 0 {
				// The store was unreachable at the last try: end records
				// queue behind the older ones. Anything else (a start) tries
				// the store now, behind the waiting end records, with
				// whatever else is queued; a start whose caller gave up is
				// skipped.
				switch {
				case p.e.Closes:
					l.keep(p) // or counted into a summary, past the bound
					l.retryCount.Store(int64(len(l.retry)))
					p.reply(-1, ErrDeferred)
				case p.gone.Load():
					p.final(-1, errGone)
				case len(l.retry) >= MaxBatch:
					p.final(-1, fmt.Errorf("%w: the store is unreachable", ErrUnavailable))
				default:
					batch = append(append(batch[:0], l.retry...), p)
					batch = l.fill(batch)
					run(batch, nil)
				}
				continue
			}
			if p.gone.Load() {
				p.final(-1, errGone)
				continue
			}
			batch = l.linger(ctx, waitT, l.lagWait(ctx, waitT, l.fill(append(batch[:0], p))))
			run(batch, nil)
		case <-retryT.C:
			n := min(len(l.retry), MaxBatch)
			batch = append(batch[:0], l.retry[:n]...)
			rest := append([]*pending(nil), l.retry[n:]...)
			if run(batch, rest) && len(rest) > 0 {
				retryT.Reset(0)
			}
		case <-t.C:
			if err := l.signBounded(ctx); err != nil && ctx.Err() == nil {
				l.log.Warn("ledger: signing a checkpoint failed", "err", err)
			}
		case <-ctx.Done():
			l.mu.Lock()
			l.running = false
			l.mu.Unlock()
			final := context.WithoutCancel(ctx)
			giveUp := func(failed []*pending) {
				var summarized int64
				for _, f := range failed {
					f.final(-1, fmt.Errorf("%w: the store did not take the record", ErrUnavailable))
					if f.sum != nil {
						summarized += f.sum.count
					}
				}
				if len(failed) > 0 {
					l.log.Error("ledger: end records could not be written before stopping; recovery closes their calls and charges their holds in full", "records", len(failed), "refused_calls_in_lost_summaries", summarized)
				}
			}
			for len(l.retry) > 0 {
				n := min(len(l.retry), MaxBatch)
				giveUp(l.commit(final, l.retry[:n]))
				l.retry = l.retry[n:]
			}
			l.retryCount.Store(0)
			l.retry, l.buckets, l.keptRefusals = nil, nil, 0
			// Drain what is queued (lagging end entries among it), in batches.
			for {
				select {
				case p := <-l.queue:
					batch = l.fill(append(batch[:0], p))
					giveUp(l.commit(final, batch))
					continue
				default:
				}
				break
			}
			if err := l.signBounded(final); err != nil {
				l.log.Error("ledger: final checkpoint failed", "err", err)
			}
			return nil
		}
	}
}

// fill adds queued entries to batch, up to MaxBatch; starts whose caller
// already gave up are skipped (their calls failed closed).
func (l *Log) fill(batch []*pending) []*pending {
	for len(batch) < MaxBatch {
		select {
		case p := <-l.queue:
			if !p.gone.Load() {
				batch = append(batch, p)
			} else {
				p.final(-1, errGone)
			}
		default:
			return batch
		}
	}
	return batch
}

// linger is the wait for more calls' entries: while more calls are in
// progress than batch holds entries, it adds entries that arrive within
// Linger, up to MaxBatch. Without a calls hint it never waits.
func (l *Log) linger(ctx context.Context, t *time.Timer, batch []*pending) []*pending {
	if l.Calls == nil {
		return batch
	}
	return l.gather(ctx, t, l.Linger, batch, func(b []*pending) bool { return len(b) < min(l.Calls(), MaxBatch) })
}

// lagWait is the wait for a start behind lagging end records: while batch
// holds only lagging end records (nobody waits for their commit), it adds
// entries that arrive within LagWait; the first one somebody waits on (a
// call's start) ends the wait and shares the batch's commit (FIFO: behind
// the end records). The end records lag anyway (Enqueue); what is gained is
// one commit and sync fewer ahead of that entry.
func (l *Log) lagWait(ctx context.Context, t *time.Timer, batch []*pending) []*pending {
	checked := 0 // batch[:checked] is known to lag: each entry is looked at once
	return l.gather(ctx, t, l.LagWait, batch, func(b []*pending) bool {
		for ; checked < len(b); checked++ {
			if !b[checked].lagging {
				return false
			}
		}
		return true
	})
}

// gather is the one batch wait: while more(batch) holds and batch is not
// full, it adds the entries that arrive within d (with whatever is queued
// behind each, fill), skipping starts whose caller gave up. It returns at
// once when d <= 0 or more(batch) does not hold, and early when ctx ends
// (Run then drains). t is Run's timer, reused: a timer per batch would be
// garbage at one connection.
func (l *Log) gather(ctx context.Context, t *time.Timer, d time.Duration, batch []*pending, more func([]*pending) bool) []*pending {
	if d <= 0 || len(batch) >= MaxBatch || !more(batch) {
		return batch
	}
	t.Reset(d)
	defer t.Stop()
	for len(batch) < MaxBatch && more(batch) {
		select {
		case p := <-l.queue:
			if p.gone.Load() {
				p.final(-1, errGone)
				continue
			}
			batch = l.fill(append(batch, p))
		case <-t.C:
			return batch
		case <-ctx.Done():
			return batch
		}
	}
	return batch
}

// CarriesCalls reports that the log's store makes a call's hold durable with
// its start record and its settlement and usage row with its end record
// (Entry.Hold, Settle, Usage): it does, whatever the backend, since every
// backend implements Store with sqlstore.
func (l *Log) CarriesCalls() bool { return true }

// Running reports whether Run is sequencing appends.
func (l *Log) Running() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.running
}

// Ready reports whether the sequencer is healthy: no commit stuck for longer
// than a second and no end record waiting for the store.
func (l *Log) Ready() error {
	if t := l.inFlight.Load(); t != 0 && time.Since(time.Unix(0, t)) > time.Second {
		return fmt.Errorf("ledger: a commit has been waiting on the store for %v", time.Since(time.Unix(0, t)).Round(time.Millisecond))
	}
	if n := l.retryCount.Load(); n > 0 {
		return fmt.Errorf("ledger: %d end records wait for the store", n)
	}
	return nil
}

// Deferred returns how many end records wait for the store.
func (l *Log) Deferred() int { return int(l.retryCount.Load()) }

// signBounded signs a checkpoint within CommitTimeout: the sequencer must
// not hang on a stuck store between batches.
func (l *Log) signBounded(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, l.CommitTimeout)
	defer cancel()
	return l.SignCheckpoint(ctx)
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
	open, err := l.store.LedgerAbandoned(ctx, l.instance(), staleBefore)
	if err != nil {
		return 0, err
	}
	for _, oc := range open {
		start, err := ParseRecord(oc.Start)
		if err != nil {
			// A start record written before records were bounded may not
			// parse canonically; close it all the same, by request id.
			l.log.Warn("ledger: closing a call whose start record does not parse", "request_id", oc.RequestID, "err", err)
			start = Record{}
		}
		end := Record{Kind: KindCallEnd, Time: l.now(), RequestID: oc.RequestID, PrincipalID: start.PrincipalID, KeyID: start.KeyID,
			TeamID: start.TeamID, Endpoint: start.Endpoint, Model: start.Model, Provider: start.Provider, Stream: start.Stream,
			Decision: start.Decision, ErrorCode: "incomplete", Detail: "the gateway stopped before the call ended; closed on recovery"}
		if _, err := l.Append(ctx, Entry{Data: end.Marshal(), RequestID: oc.RequestID, Closes: true}); err != nil && !errors.Is(err, ErrAlreadyClosed) {
			return 0, err
		}
	}
	if len(open) > 0 {
		l.log.Warn("ledger: closed calls left open by a stopped gateway", "calls", len(open))
	}
	return len(open), nil
}

// hashCache keeps the stored hashes the next append reads: the roots of
// the tree's complete subtrees, one per set bit of its size (at most 63).
// tlog.StoredHashes for record n reads only the left siblings it completes,
// which are such roots of the tree of size n, so a single writer's appends
// read nothing from the store. A hash never changes once written, so the
// cache stays right when another replica appends: what it then lacks is
// read from the store. Keeping every computed hash instead (up to 65,536,
// ~4 MB under load) held memory that no append reads again.
type hashCache struct {
	mu    sync.Mutex
	m     map[int64]tlog.Hash
	spare map[int64]tlog.Hash // keep's next m, reused: no allocation per commit
}

func (c *hashCache) get(i int64) (tlog.Hash, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.m[i]
	return h, ok
}

// keep replaces the cache with the subtree roots of the tree of size n,
// taken from computed (this commit's hashes) or from what it held.
func (c *hashCache) keep(n int64, computed map[int64]tlog.Hash) {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := c.spare
	if next == nil {
		next = make(map[int64]tlog.Hash, bits.OnesCount64(uint64(n)))
	}
	for level := 0; n>>level != 0; level++ {
		if n>>level&1 == 0 {
			continue
		}
		x := tlog.StoredHashIndex(level, n>>level-1)
		if h, ok := computed[x]; ok {
			next[x] = h
		} else if h, ok := c.m[x]; ok {
			next[x] = h
		}
	}
	clear(c.m)
	c.m, c.spare = next, c.m
}
