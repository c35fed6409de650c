package storage

import (
	"context"
	"errors"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"
)

// VaultTraits decrypts the traits stored for subject on site. It returns
// ErrNotFound when there are none or the subject was shredded, ErrCorrupt
// when they do not decrypt (for example under another vault key).
func (s *Store) VaultTraits(subject, site string) ([]byte, error) {
	if subject == "" || site == "" {
		return nil, fmt.Errorf("%w: empty subject or site", ErrInvalidKey)
	}
	if err := validName("subject", subject); err != nil {
		return nil, err
	}
	if err := validName("site", site); err != nil {
		return nil, err
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	var traits []byte
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(appendTraitsKey(nil, subject, site))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		dataKey, err := s.dataKey(txn, subject)
		if err != nil {
			return err
		}
		defer clear(dataKey)
		aead, err := newAEAD(dataKey)
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			var oerr error
			if traits, oerr = aead.Open(nil, nil, v, traitsAAD(subject, site)); oerr != nil {
				return fmt.Errorf("%w: traits", ErrCorrupt)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("storage: vault traits: %w", err)
	}
	return traits, nil
}

// ShredSubject erases subject: its data key (crypto-shredding), its traits
// on every site, its subject index entries and its events. The data key,
// traits and index entries are removed physically, every version, with
// Badger's DropPrefix; events get tombstones and their older versions go at
// the next compactions (they hold only pseudonymous data). Outbox entries of
// erased events are dropped when the outbox is drained.
//
// While it runs (DropPrefix flushes the memtables and compacts the affected
// tables, typically well under a second) all writes wait. ctx is checked
// between phases; the drop itself is not interruptible. Safe to retry, and
// a no-op for an unknown subject.
//
// The subject's profiles on every site are deleted too (tombstones, like
// events: they are pseudonymous) and their segments leave the segment
// sizes, but no segment change is logged or published: the caller handles
// the erasure downstream.
func (s *Store) ShredSubject(ctx context.Context, subject string) error {
	if subject == "" {
		return fmt.Errorf("%w: empty subject", ErrInvalidKey)
	}
	if err := validName("subject", subject); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	s.prof.segMu.Lock() // lock order: segMu before writeGate (profiles.go)
	defer s.prof.segMu.Unlock()
	s.writeGate.Lock()
	defer s.writeGate.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}

	sp := subjectPrefix(subject)
	var eventKeys [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = sp
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if ek, ok := eventKeyFromSubjectKey(nil, it.Item().Key()); ok {
				eventKeys = append(eventKeys, ek)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: shred: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Events first: if we stop here, the index still finds them on retry.
	if len(eventKeys) > 0 {
		wb := s.db.NewWriteBatch()
		for _, k := range eventKeys {
			if err := wb.Delete(k); err != nil {
				wb.Cancel()
				return fmt.Errorf("storage: shred events: %w", err)
			}
		}
		if err := wb.Flush(); err != nil {
			return fmt.Errorf("storage: shred events: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.shredProfiles(ctx, subject); err != nil {
		return fmt.Errorf("storage: shred profiles: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// DropPrefix only drops prefixes that still have a live key, so these
	// keys must not be deleted beforehand.
	if err := s.db.DropPrefix(dataKeyKey(subject), traitsPrefix(subject), sp); err != nil {
		return fmt.Errorf("storage: shred: drop prefix: %w", err)
	}
	return nil
}
