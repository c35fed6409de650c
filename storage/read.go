package storage

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"

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
	if site == "" {
		return nil, "", fmt.Errorf("%w: empty site", ErrInvalidKey)
	}
	if err := validName("site", site); err != nil {
		return nil, "", err
	}
	if limit <= 0 {
		limit = defaultPage
	}
	limit = min(limit, maxPage)
	prefix := siteEventPrefix(site)
	var seek, cursorKey []byte
	if before == "" {
		seek = append(append([]byte(nil), prefix...), bytes.Repeat([]byte{0xff}, timeLen+1)...)
	} else {
		raw, derr := base64.RawURLEncoding.DecodeString(before)
		if derr != nil || len(raw) <= timeLen {
			return nil, "", fmt.Errorf("%w: bad cursor", ErrInvalidKey)
		}
		cursorKey = append(append([]byte(nil), prefix...), raw...)
		seek = cursorKey
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
		for ; it.Valid(); it.Next() {
			if len(events) == limit {
				next = base64.RawURLEncoding.EncodeToString(last[len(prefix):])
				return nil
			}
			if len(events)%ctxCheckEvery == ctxCheckEvery-1 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			item := it.Item()
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			events = append(events, v)
			last = append(last[:0], item.Key()...)
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("storage: events: %w", err)
	}
	return events, next, nil
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
	// LSMBytes and VLogBytes are Badger's on-disk sizes.
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
	st.LSMBytes, st.VLogBytes = s.db.Size()
	return st, nil
}
