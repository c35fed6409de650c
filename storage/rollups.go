package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// RollupKind names one family of rollup values (plugins/rollup). The values
// are opaque to the store; the key layout is in keys.go.
type RollupKind uint8

// Rollup kinds. The index of a RollupHour or RollupDecisions value counts
// whole UTC hours since the Unix epoch, that of a RollupDay value whole UTC
// days.
const (
	// RollupHour is the aggregate of one site's events in one hour.
	RollupHour RollupKind = iota + 1
	// RollupDay is the aggregate of one site's events in one day.
	RollupDay
	// RollupDecisions holds one site's ingestion decision counters (kept
	// pseudonymous, anonymous or dropped, and why) for one hour.
	RollupDecisions
)

// maxRollupValue bounds one rollup value.
const maxRollupValue = 16 << 20

// valid reports whether k is a known kind.
func (k RollupKind) valid() bool { return k >= RollupHour && k <= RollupDecisions }

// RollupEntry is one rollup value to write or delete.
type RollupEntry struct {
	Kind RollupKind
	// Site may be empty (decision counters of requests rejected before a
	// site was known); it may not contain \x00.
	Site  string
	Index uint32
	// Part distinguishes several values of one (Kind, Site, Index): 0 is
	// the bucket itself, later parts hold changes written after it (see
	// keys.go). ScanRollups returns them in part order.
	Part uint64
	// Delete removes the value instead of writing one.
	Delete bool
	// Value replaces the stored value (at most 16 MiB).
	Value []byte
	// ExpiresAt is when Badger drops the value, rounded up to the second;
	// zero keeps it forever. Rollups expire a fixed time after the end of
	// their hour or day, so rewriting one does not extend its life.
	ExpiresAt time.Time
}

// RollupMark is a rollup consumer's position, written with the rollups it
// covers: every stream message up to Seq of the stream incarnation Epoch is
// included in the committed rollups.
type RollupMark struct {
	// Name identifies the consumer (its durable name).
	Name string
	// Epoch identifies the stream incarnation (a recreated stream numbers
	// its messages from 1 again).
	Epoch uint64
	// Seq is the last stream sequence included.
	Seq uint64
}

// validRollup checks the key parts of a rollup kind and site.
func validRollup(kind RollupKind, site string) error {
	if !kind.valid() {
		return fmt.Errorf("%w: unknown rollup kind %d", ErrInvalidKey, kind)
	}
	return validName("site", site)
}

// PutRollups writes (or deletes) entries in order and, when mark is not
// nil, the consumer mark, in as few transactions as Badger allows, the mark
// in the last one: once
// PutRollups returns nil everything is committed; after an error (or a
// crash) a prefix of entries may be committed but the mark is not. Callers
// that need exactly-once counting therefore keep their own per-value marks
// inside the values (plugins/rollup does).
func (s *Store) PutRollups(ctx context.Context, entries []RollupEntry, mark *RollupMark) error {
	for i := range entries {
		e := &entries[i]
		if err := validRollup(e.Kind, e.Site); err != nil {
			return err
		}
		if len(e.Value) > maxRollupValue {
			return fmt.Errorf("%w: rollup value larger than %d bytes", ErrInvalidRecord, maxRollupValue)
		}
	}
	if mark != nil {
		if mark.Name == "" {
			return fmt.Errorf("%w: empty rollup mark name", ErrInvalidKey)
		}
		if err := validName("rollup mark", mark.Name); err != nil {
			return err
		}
	}
	if len(entries) == 0 && mark == nil {
		return nil
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.disk.room(); err != nil {
		return fmt.Errorf("storage: put rollups: %w", err)
	}
	s.writeGate.RLock()
	defer s.writeGate.RUnlock()

	written := 0
	txn := s.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	set := func(e *badger.Entry, del bool) error {
		op := func() error {
			if del {
				return txn.Delete(e.Key)
			}
			return txn.SetEntry(e)
		}
		err := op()
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err := txn.Commit(); err != nil {
				return err
			}
			txn = s.db.NewTransaction(true)
			err = op()
		}
		if err == nil {
			written += len(e.Key) + len(e.Value) + entryOverhead
		}
		return err
	}
	for i := range entries {
		e := &entries[i]
		be := badger.NewEntry(rollupKey(e.Kind, e.Site, e.Index, e.Part), e.Value)
		if !e.ExpiresAt.IsZero() {
			be.ExpiresAt = expiresAt(e.ExpiresAt)
		}
		if err := set(be, e.Delete); err != nil {
			return fmt.Errorf("storage: put rollups: %w", err)
		}
	}
	if mark != nil {
		v := binary.BigEndian.AppendUint64(make([]byte, 0, 16), mark.Epoch)
		v = binary.BigEndian.AppendUint64(v, mark.Seq)
		if err := set(badger.NewEntry(rollupMarkKey(mark.Name), v), false); err != nil {
			return fmt.Errorf("storage: put rollups: %w", err)
		}
	}
	if err := txn.Commit(); err != nil {
		return fmt.Errorf("storage: put rollups: %w", err)
	}
	s.disk.wrote(int64(written))
	return nil
}

// expiresAt converts t to Badger's ExpiresAt (Unix seconds), rounded up.
func expiresAt(t time.Time) uint64 {
	sec := t.Unix()
	if t.Nanosecond() > 0 {
		sec++
	}
	if sec < 1 {
		sec = 1 // 0 would mean "never"
	}
	return uint64(sec)
}

// Rollup returns a copy of the value of one rollup's part 0, or
// ErrNotFound when it is absent or expired.
func (s *Store) Rollup(ctx context.Context, kind RollupKind, site string, index uint32) ([]byte, error) {
	if err := validRollup(kind, site); err != nil {
		return nil, err
	}
	v, err := s.getValue(ctx, "rollup", rollupKey(kind, site, index, 0))
	if err != nil {
		return nil, err
	}
	return v, nil
}

// ScanRollups calls fn, in (index, part) order, for every live rollup
// part of kind and site with from <= index < to. value is only valid
// during the call. It stops at the first error fn returns and returns it.
func (s *Store) ScanRollups(ctx context.Context, kind RollupKind, site string, from, to uint32, fn func(index uint32, part uint64, value []byte) error) error {
	if err := validRollup(kind, site); err != nil {
		return err
	}
	if from >= to {
		return nil
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	prefix := rollupSitePrefix(kind, site)
	start := rollupKey(kind, site, from, 0)
	return s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(start); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			idx, part, ok := parseRollupIndex(item.Key(), prefix)
			if !ok {
				continue
			}
			if idx >= to {
				return nil
			}
			var ferr error
			if err := item.Value(func(v []byte) error {
				ferr = fn(idx, part, v)
				return nil
			}); err != nil {
				return fmt.Errorf("storage: scan rollups: %w", err)
			}
			if ferr != nil {
				return ferr
			}
		}
		return nil
	})
}

// ReadRollupMark returns the mark last written under name by PutRollups;
// a mark never written is the zero RollupMark (with Name set) and no error.
func (s *Store) ReadRollupMark(ctx context.Context, name string) (RollupMark, error) {
	if name == "" {
		return RollupMark{}, fmt.Errorf("%w: empty rollup mark name", ErrInvalidKey)
	}
	if err := validName("rollup mark", name); err != nil {
		return RollupMark{}, err
	}
	m := RollupMark{Name: name}
	v, err := s.getValue(ctx, "rollup mark", rollupMarkKey(name))
	if errors.Is(err, ErrNotFound) {
		return m, nil
	}
	if err != nil {
		return RollupMark{}, err
	}
	if len(v) != 16 {
		return RollupMark{}, fmt.Errorf("storage: rollup mark %q: %w", name, ErrCorrupt)
	}
	m.Epoch = binary.BigEndian.Uint64(v)
	m.Seq = binary.BigEndian.Uint64(v[8:])
	return m, nil
}
