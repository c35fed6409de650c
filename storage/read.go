package storage

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Default and maximum page sizes for Events.
const (
	defaultPage = 100
	maxPage     = 10_000
)

// Events returns up to limit events of site, newest first, starting after
// the opaque cursor before ("" = newest). next is the cursor for the
// following page, "" when there are no more events. limit <= 0 means 100;
// it is capped at 10 000.
func (s *Store) Events(ctx context.Context, site string, limit int, before string) (events [][]byte, next string, err error) {
	return s.ListEvents(ctx, site, EventQuery{Limit: limit, Before: before})
}

// EventQuery selects the events ListEvents returns.
type EventQuery struct {
	// Limit is the most events returned: <= 0 means 100, capped at 10 000.
	Limit int
	// Before is the cursor of the previous page ("" = newest first).
	Before string
	// From and To bound the event time (Record.Time): From inclusive, To
	// exclusive; a zero time leaves that side open. The bounds are seeks,
	// not filters: events outside them are never read.
	From, To time.Time
	// Keep, when set, is given each stored event in range and returns
	// whether to list it.
	Keep func(event []byte) bool
	// MaxScan, when positive, bounds the events in range read in one call
	// (kept or not): once reached, next is the cursor after the last one
	// read, so a page can hold fewer than Limit events, even none, while
	// next is not "". It keeps a rare Keep from reading the whole site.
	MaxScan int
}

// ListEvents returns the events of site that q selects, newest first, and
// the cursor of the next page ("" when there are no more).
func (s *Store) ListEvents(ctx context.Context, site string, q EventQuery) (events [][]byte, next string, err error) {
	if site == "" {
		return nil, "", fmt.Errorf("%w: empty site", ErrInvalidKey)
	}
	if err := validName("site", site); err != nil {
		return nil, "", err
	}
	limit := q.Limit
	if limit <= 0 {
		limit = defaultPage
	}
	limit = min(limit, maxPage)
	prefix := siteEventPrefix(site)
	seek := append(append([]byte(nil), prefix...), bytes.Repeat([]byte{0xff}, timeLen+1)...)
	if !q.To.IsZero() {
		// Reverse iteration starts at the greatest key <= seek: every key
		// of an event at To's millisecond is longer, hence greater.
		seek = binary.BigEndian.AppendUint64(append([]byte(nil), prefix...), timeKey(q.To))
	}
	var cursorKey []byte
	if q.Before != "" {
		raw, derr := base64.RawURLEncoding.DecodeString(q.Before)
		if derr != nil || len(raw) <= timeLen {
			return nil, "", fmt.Errorf("%w: bad cursor", ErrInvalidKey)
		}
		cursorKey = append(append([]byte(nil), prefix...), raw...)
		if bytes.Compare(cursorKey, seek) < 0 {
			seek = cursorKey
		}
	}
	var from uint64
	if !q.From.IsZero() {
		from = timeKey(q.From)
	}
	if err := s.enter(); err != nil {
		return nil, "", err
	}
	defer s.mu.RUnlock()
	err = s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Reverse = true
		opts.Prefix = prefix
		opts.PrefetchSize = min(limit+1, opts.PrefetchSize)
		it := txn.NewIterator(opts)
		defer it.Close()
		it.Seek(seek)
		if cursorKey != nil && it.Valid() && bytes.Equal(it.Item().Key(), cursorKey) {
			it.Next()
		}
		var last []byte
		scanned := 0
		for ; it.Valid(); it.Next() {
			item := it.Item()
			key := item.Key()
			if from > 0 && len(key) >= len(prefix)+timeLen && binary.BigEndian.Uint64(key[len(prefix):]) < from {
				return nil
			}
			if len(events) == limit || (q.MaxScan > 0 && scanned == q.MaxScan) {
				next = base64.RawURLEncoding.EncodeToString(last[len(prefix):])
				return nil
			}
			if scanned++; scanned%ctxCheckEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			last = append(last[:0], key...)
			if q.Keep != nil && !q.Keep(v) {
				continue
			}
			events = append(events, v)
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("storage: events: %w", err)
	}
	return events, next, nil
}

// timeKey is t as the milliseconds of an event key (0 before 1970).
func timeKey(t time.Time) uint64 {
	return uint64(max(t.UnixMilli(), 0))
}

// SubjectEvents returns every stored event of subject, grouped by site and
// oldest first within a site. Expired or erased events are skipped.
func (s *Store) SubjectEvents(ctx context.Context, subject string) ([][]byte, error) {
	if subject == "" {
		return nil, fmt.Errorf("%w: empty subject", ErrInvalidKey)
	}
	if err := validName("subject", subject); err != nil {
		return nil, err
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	var out [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = subjectPrefix(subject)
		it := txn.NewIterator(opts)
		defer it.Close()
		var ek []byte
		steps := 0
		for it.Rewind(); it.Valid(); it.Next() {
			if steps++; steps%ctxCheckEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			var ok bool
			if ek, ok = eventKeyFromSubjectKey(ek[:0], it.Item().Key()); !ok {
				continue
			}
			item, err := txn.Get(ek)
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: subject events: %w", err)
	}
	return out, nil
}

// Stats is a snapshot of the store's size and counters.
type Stats struct {
	// Events counts live events per site.
	Events map[string]int64
	// OutboxDepth is OutboxLen.
	OutboxDepth int64
	// Duplicates counts records dropped as duplicates since Open.
	Duplicates int64
	// Commits counts write transactions of the committer since Open
	// (fewer than Append calls when grouping works).
	Commits int64
	// LSMBytes is the disk space of Badger's LSM tree: its table files
	// (.sst) and the write-ahead logs of its memtables (.mem), not yet
	// flushed to tables. VLogBytes is the value log's (.vlog). Both are
	// measured from the directory when Stats is called (Badger's own
	// figures are refreshed once a minute, count no memtable, and stay 0
	// with its metrics off) as allocated blocks: Badger preallocates its
	// write-ahead and value-log files sparse, far larger than written.
	LSMBytes, VLogBytes int64
}

// Stats counts events per site (a key-only scan of every event, so it costs
// O(events); call it for admin pages and tests, not per request) and
// reports the counters.
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	if err := s.enter(); err != nil {
		return Stats{}, err
	}
	defer s.mu.RUnlock()
	st := Stats{Events: map[string]int64{}}
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = []byte(prefixEvent)
		it := txn.NewIterator(opts)
		defer it.Close()
		var site []byte
		var n, steps int64
		flush := func() {
			if n > 0 {
				st.Events[string(site)] += n
			}
			n = 0
		}
		for it.Rewind(); it.Valid(); it.Next() {
			if steps++; steps%ctxCheckEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			ks, _, _, ok := parseEventKey(it.Item().Key())
			if !ok {
				continue
			}
			if !bytes.Equal(ks, site) {
				flush()
				site = append(site[:0], ks...)
			}
			n++
		}
		flush()
		return nil
	})
	if err != nil {
		return Stats{}, fmt.Errorf("storage: stats: %w", err)
	}
	st.OutboxDepth = s.outboxLen.Load()
	st.Duplicates = s.duplicates.Load()
	st.Commits = s.commits.Load()
	if !s.cfg.InMemory {
		st.LSMBytes, st.VLogBytes = badgerSizes(s.cfg.Dir)
	}
	return st, nil
}

// badgerSizes sums the disk use of the .sst and .mem (LSM) and .vlog
// files of dir (a file removed meanwhile is skipped).
func badgerSizes(dir string) (lsm, vlog int64) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0
	}
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".sst" && ext != ".mem" && ext != ".vlog") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		if ext == ".vlog" {
			vlog += diskUsage(info)
		} else {
			lsm += diskUsage(info)
		}
	}
	return lsm, vlog
}
