// Package storage is Vigie's durable store, built on Badger.
//
// One Badger transaction per record holds the event, its subject index
// entry, its dedup key, its outbox entry and (optionally) the subject's
// encrypted traits, so an event acknowledged to a client is never lost and
// never stored without the outbox entry that publishes it. Concurrent Append
// calls are grouped into few transactions by a single committer goroutine,
// which is also the only goroutine that reads-then-writes events; that
// invariant is why Badger's conflict detection is switched off. Profile and
// segment writes (profiles.go) read-modify-write outside the committer and
// are serialized by in-process locks instead (so one process per data dir).
//
// Personal traits live in an identity vault: each subject has its own random
// data key, stored wrapped under the key-encryption key from the keyring,
// and traits are AES-256-GCM encrypted under it. ShredSubject physically
// drops the data key and the ciphertexts (every version), so no copy can be
// decrypted again. The key layout is documented in keys.go.
//
// Badger writes through memory maps, where running out of disk space is a
// SIGBUS, not an error. A free-space monitor (disk.go) therefore refuses,
// with ErrDiskFull, every write that grows the disk while less than
// Config.MinFreeBytes is free, and lets them through again by itself once
// space is back.
package storage

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// Config configures Open. The zero value of every optional field selects the
// documented default.
type Config struct {
	// Dir is the Badger directory; required unless InMemory.
	Dir string
	// InMemory keeps everything in memory (tests only).
	InMemory bool
	// SyncWrites fsyncs every commit group. Default false (Badger's
	// default): a process crash loses nothing that was committed (the write
	// already sits in the OS page cache / write-ahead log), but a machine or
	// power crash can lose the last writes. True: each commit group waits
	// for an fsync, so nothing acknowledged is lost even on power loss, at
	// the cost of latency and throughput (grouping amortizes it).
	SyncWrites bool
	// DedupWindow is how long a dedup key (Record.Dedup) is remembered.
	// Default 48h. Badger TTLs have one-second granularity.
	DedupWindow time.Duration
	// MaxOutbox is the outbox size at which Append returns ErrOutboxFull.
	// Default 1_000_000.
	MaxOutbox int64
	// MaxGroup is the maximum number of records per grouped commit.
	// Default 512.
	MaxGroup int
	// ValueThreshold is the value size from which Badger keeps values in
	// its value log rather than in the LSM tree. Default 256 bytes: event
	// bodies then stay out of the tree, so compactions do not rewrite
	// them and memtables hold more entries.
	ValueThreshold int64
	// VaultKey is the 32-byte key-encryption key (from the keyring) that
	// wraps per-subject data keys. Required. It is not retained: only the
	// AES-GCM instance built from it is.
	VaultKey []byte
	// Logger receives the store's and Badger's warnings and errors.
	// Default slog.Default().
	Logger *slog.Logger
	// ProfileTTL is how long a subject's profile lives after its last
	// update: PurgeExpired then deletes it with its segment exits (its
	// Badger TTL, a week later, is only a backstop). Default 395 days
	// (13 months).
	ProfileTTL time.Duration
	// MinFreeBytes is the free-space reserve: below it the writes that grow
	// the disk fail with ErrDiskFull (deletions and reads go on) and Open
	// refuses to start; writes resume by themselves once MinFreeBytes plus
	// an eighth is free again. Default DefaultMinFreeBytes (576 MiB, see
	// there why).
	MinFreeBytes int64
	// WatchDirs are further directories whose filesystems must keep
	// MinFreeBytes free: the embedded JetStream store, which shares the
	// disk. One that does not exist yet is measured at its nearest existing
	// parent (with the default FreeSpace).
	WatchDirs []string
	// FreeSpace returns the free bytes of the filesystem holding dir; it is
	// called for Dir (unless InMemory) and each of WatchDirs. Default
	// StatfsFree (statfs(2)). Tests inject their own.
	FreeSpace func(dir string) (uint64, error)
	// DiskCheckInterval is how often free space is measured. It is also
	// measured as soon as Append has written a quarter of the headroom
	// above MinFreeBytes (at least 1 MiB, at most 8 MiB) since the last
	// measurement. Default 1s.
	DiskCheckInterval time.Duration
	// Retention bounds what Badger's TTLs alone do not (see purge.go).
	Retention Retention
	// PurgeInterval is how often PurgeExpired runs by itself, the first
	// time right after Open. Default 0: never (the server sets a day).
	PurgeInterval time.Duration
	// PortableProfiles keeps each profile's idempotency markers inside the
	// profile (Profile.Events, Profile.Outcomes) instead of node-local
	// keys, so that a profile copied to another node (cluster mode:
	// ProfileValue, PutProfileValue) counts an event delivered again
	// there once. Default false (single node).
	PortableProfiles bool
	// SharedSegments (cluster mode) leaves segment sizes and the recent
	// changes log to FoldSegmentChanges, fed from the segments stream that
	// every node reads whole: a profile write then only queues its changes
	// for publication, so every node counts each published change once,
	// whichever node applied it. Default false (single node: the write
	// counts its changes itself).
	SharedSegments bool
	// OnProfileDelete, when set, is called after a profile of site and
	// subject was deleted (consent withdrawn, erasure, idle purge; site
	// "" for every site), whether or not this node held a copy: cluster
	// mode deletes the shared copy. reason is the EventId of the EXITED
	// changes the deletion records (DeleteProfile's reason, ReasonIdle),
	// "" for a deletion that records none (ShredSubject, EraseSubjects).
	// It runs with no lock of the store held, so it may write to it.
	OnProfileDelete func(ctx context.Context, site, subject, reason string)
	// SharedVault, when set (cluster mode), shares every vault write with
	// the other nodes: each write of a subject's traits (Append,
	// ReplaceTraits) commits the SharedVault's put of its sealed entry to
	// the outbox in the same transaction, each erasure (EraseSubjects,
	// ShredSubject) its delete, and ResolveTraits reads it when this
	// node's vault has none. Default nil (single node: the vault is
	// node-local, no shared read).
	SharedVault SharedVault
}

// Badger's file sizes, set by Open; DefaultMinFreeBytes is derived from
// them.
const (
	memTableSize     = 32 << 20
	numMemtables     = 3
	valueLogFileSize = 64 << 20
)

// Defaults applied by Open.
const (
	defaultDedupWindow = 48 * time.Hour
	defaultMaxOutbox   = 1_000_000
	defaultMaxGroup    = 512
	defaultProfileTTL  = 395 * 24 * time.Hour
	vlogGCInterval     = 5 * time.Minute
	vlogGCRatio        = 0.5
	queueLen           = 1024
)

// Store is an open Vigie store. Its methods are safe for concurrent use.
type Store struct {
	db    *badger.DB
	cfg   Config
	log   *slog.Logger
	vault cipher.AEAD // wraps data keys under Config.VaultKey
	disk  *diskMonitor

	// mu guards closed and the queue send against Close; every call that
	// uses the database holds it shared (see enter).
	mu     sync.RWMutex
	closed bool
	queue  chan *request

	// writeGate: ordinary writers hold it shared; ShredSubject holds it
	// exclusively while Badger blocks writes for DropPrefix.
	writeGate sync.RWMutex
	// ackMu serializes outbox deletions so outboxLen stays exact.
	ackMu sync.Mutex
	// pendMu guards pending, the outbox sequences committed and not yet
	// deleted (entries are added before their commit, see addPending).
	pendMu  sync.Mutex
	pending seqSet
	// prof serializes profile read-modify-writes (see profiles.go).
	prof profileLocks

	outboxLen   atomic.Int64 // committed outbox entries
	outboxInUse atomic.Int64 // records queued but not yet committed
	duplicates  atomic.Int64
	commits     atomic.Int64
	// auditSeq numbers audit entries of one millisecond (audit.go).
	auditSeq atomic.Uint64
	// nextPurge is when purgeLoop runs PurgeExpired next (Unix ms; 0:
	// not scheduled).
	nextPurge atomic.Int64

	signal chan struct{}
	stop   chan struct{}
	wg     sync.WaitGroup

	// seqMu guards nextSeq across the whole transaction that uses it, so
	// outbox entries are committed (and become visible) in sequence order:
	// the committer and update (outbox messages) both hold it.
	seqMu   sync.Mutex
	nextSeq uint64
	// Owned by the committer goroutine.
	arena []byte
	ents  []badger.Entry
}

// Open opens (or creates) the store and starts its goroutines: the
// committer that groups Append calls into transactions, the periodic
// value-log GC and the free-space monitor. This is the one constructor in
// Vigie that starts work; Close stops them. When the free space is already
// below MinFreeBytes it returns an error wrapping ErrDiskFull without
// opening Badger.
func Open(cfg Config) (*Store, error) {
	if cfg.Dir == "" && !cfg.InMemory {
		return nil, fmt.Errorf("%w: Dir is required", ErrInvalidConfig)
	}
	if len(cfg.VaultKey) != 32 {
		return nil, fmt.Errorf("%w: VaultKey must be 32 bytes", ErrInvalidConfig)
	}
	if cfg.DedupWindow <= 0 {
		cfg.DedupWindow = defaultDedupWindow
	}
	if cfg.MaxOutbox <= 0 {
		cfg.MaxOutbox = defaultMaxOutbox
	}
	if cfg.ValueThreshold <= 0 {
		cfg.ValueThreshold = 256
	}
	if cfg.MaxGroup <= 0 {
		cfg.MaxGroup = defaultMaxGroup
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ProfileTTL <= 0 {
		cfg.ProfileTTL = defaultProfileTTL
	}
	if cfg.MinFreeBytes <= 0 {
		cfg.MinFreeBytes = DefaultMinFreeBytes
	}
	if cfg.FreeSpace == nil {
		cfg.FreeSpace = StatfsFree
	}
	if cfg.DiskCheckInterval <= 0 {
		cfg.DiskCheckInterval = defaultDiskCheckInterval
	}
	cfg.Retention = cfg.Retention.withDefaults()
	block, err := aes.NewCipher(cfg.VaultKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	vault, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	cfg.VaultKey = nil

	// Badger must not map a file on a disk already short of space: a
	// write into the map would be a SIGBUS, not an error.
	disk := newDiskMonitor(&cfg)
	if disk.enabled() {
		if err := disk.first(); err != nil {
			return nil, err
		}
	}

	dir := cfg.Dir
	if cfg.InMemory {
		dir = ""
	}
	opts := badger.DefaultOptions(dir).
		WithInMemory(cfg.InMemory).
		WithSyncWrites(cfg.SyncWrites).
		WithLogger(slogAdapter{cfg.Logger}).
		WithNumMemtables(numMemtables).
		WithValueThreshold(cfg.ValueThreshold).
		WithMemTableSize(memTableSize).
		WithBlockCacheSize(32 << 20).
		WithIndexCacheSize(16 << 20).
		WithNumCompactors(2).
		WithValueLogFileSize(valueLogFileSize).
		// No block compression: Badger builds each table in memory, and
		// with compression its pooled builder allocators (up to 8, kept at
		// up to 400 MB each) grew the heap to 1.4 GB after 1.5M events and
		// 4 GB after 5M under sustained ingest. Without it the anonymous
		// memory stays near 230 MB at 5M events (disk grows instead).
		WithCompression(options.None).
		WithDetectConflicts(false). // single read-modify-write goroutine
		WithMetricsEnabled(false)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("storage: open badger: %w", err)
	}
	s := &Store{
		db:     db,
		cfg:    cfg,
		log:    cfg.Logger,
		vault:  vault,
		disk:   disk,
		queue:  make(chan *request, queueLen),
		signal: make(chan struct{}, 1),
		stop:   make(chan struct{}),
	}
	if err := s.recoverOutbox(); err != nil {
		_ = db.Close()
		return nil, err
	}
	s.wg.Add(1)
	go s.commitLoop()
	if !cfg.InMemory {
		s.wg.Add(1)
		go s.gcLoop()
	}
	if disk.enabled() {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			disk.run(s.stop)
		}()
	}
	if cfg.PurgeInterval > 0 {
		// Set before the loop starts, so that NextPurge (and the
		// outlook) never reads zero for a purge that runs.
		first := time.Now()
		s.nextPurge.Store(first.UnixMilli())
		s.wg.Add(1)
		go s.purgeLoop(first, cfg.PurgeInterval)
	}
	return s, nil
}

// Close stops accepting Appends, lets the committer commit everything
// already queued, stops the GC goroutine and closes Badger. It is
// idempotent; later calls return nil.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.queue)
	close(s.stop)
	s.mu.Unlock()
	s.wg.Wait()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("storage: close badger: %w", err)
	}
	return nil
}

// DB returns the underlying Badger database, for tests and tools that need
// raw access (for example scanning every version).
func (s *Store) DB() *badger.DB { return s.db }

// ScanAllVersions calls fn with a copy of the key and value of every version
// of every key Badger still holds, including deleted and expired versions
// not yet compacted away. It exists so privacy tests can prove that erased
// data is gone. It stops at the first error fn returns.
func (s *Store) ScanAllVersions(fn func(key, value []byte) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	return s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.AllVersions = true
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			v, err := item.ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("storage: scan value: %w", err)
			}
			if err := fn(item.KeyCopy(nil), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// enter read-locks s.mu for a call that uses the database, so Close waits
// for it; it returns ErrClosed (unlocked) after Close. Callers must
// s.mu.RUnlock() and must not call enter again while holding it.
func (s *Store) enter() error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

// gcLoop runs value-log GC every vlogGCInterval until Close.
func (s *Store) gcLoop() {
	defer s.wg.Done()
	t := time.NewTicker(vlogGCInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.runValueLogGC()
		}
	}
}

// runValueLogGC rewrites value-log files until Badger finds nothing more
// worth rewriting.
func (s *Store) runValueLogGC() {
	for {
		select {
		case <-s.stop:
			return
		default:
		}
		err := s.db.RunValueLogGC(vlogGCRatio)
		if err == nil {
			continue
		}
		if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
			s.log.Warn("storage: value log GC failed", "err", err)
		}
		return
	}
}

// slogAdapter routes Badger's warnings and errors to slog. Badger's Info
// and Debug messages are dropped: some of them quote keys (DropPrefix logs
// the subject prefix), and keys hold pseudonyms that must not reach logs.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Errorf(f string, args ...any) {
	a.log(slog.LevelError, f, args)
}
func (a slogAdapter) Warningf(f string, args ...any) {
	a.log(slog.LevelWarn, f, args)
}
func (a slogAdapter) Infof(string, ...any)  {}
func (a slogAdapter) Debugf(string, ...any) {}

func (a slogAdapter) log(level slog.Level, f string, args []any) {
	if !a.l.Enabled(context.Background(), level) {
		return
	}
	a.l.Log(context.Background(), level, "badger: "+trimNL(fmt.Sprintf(f, args...)))
}

func trimNL(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	return s
}
