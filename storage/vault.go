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
// the erasure downstream. With a SharedVault, the deletes of the shared
// copies of its traits (those of every site it has traits on here) are
// committed to the outbox first.
func (s *Store) ShredSubject(ctx context.Context, subject string) error {
	if subject == "" {
		return fmt.Errorf("%w: empty subject", ErrInvalidKey)
	}
	if err := validName("subject", subject); err != nil {
		return err
	}
	if s.cfg.SharedVault != nil {
		sites, err := s.traitSites(ctx, subject)
		if err != nil {
			return fmt.Errorf("storage: shred: %w", err)
		}
		if err := s.shareDeletes(ctx, sites, []string{subject}); err != nil {
			return err
		}
	}
	// OnProfileDelete runs once every lock below is released: it may
	// write to this store (cluster mode commits to the outbox).
	profilesGone := false
	defer func() {
		if profilesGone && s.cfg.OnProfileDelete != nil {
			s.cfg.OnProfileDelete(ctx, "", subject, "")
		}
	}()
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
	profilesGone = true
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

// ReplaceTraits replaces the vaulted traits of subject on site (a
// rectification, GDPR Art. 16), creating the subject's data key if it has
// none, and commits msgs (the privacy event announcing it) in the same
// transaction, after the SharedVault's put of the new entry if the store
// has one. The traits keep the expiry of those they replace (none for
// a subject that had none).
func (s *Store) ReplaceTraits(ctx context.Context, site, subject string, traits []byte, msgs ...Message) error {
	if err := validSubject(site, subject); err != nil {
		return err
	}
	if len(traits) == 0 || len(traits) > maxRecordBytes {
		return fmt.Errorf("%w: traits empty or larger than %d bytes", ErrInvalidRecord, maxRecordBytes)
	}
	more := 0
	if s.cfg.SharedVault != nil {
		more = 1
	}
	return s.updateMore(ctx, "replace traits", msgs, more, len(traits)+128, false, func(txn *badger.Txn) ([]Message, error) {
		var exp uint64
		tk := appendTraitsKey(nil, subject, site)
		if item, err := txn.Get(tk); err == nil {
			exp = item.ExpiresAt()
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return nil, err
		}
		wrapped, sealed, err := s.sealTraits(txn, subject, site, traits)
		if err != nil {
			return nil, err
		}
		if wrapped != nil {
			if err := txn.Set(dataKeyKey(subject), wrapped); err != nil {
				return nil, err
			}
		}
		e := badger.NewEntry(tk, sealed)
		e.ExpiresAt = exp
		if err := txn.SetEntry(e); err != nil {
			return nil, err
		}
		if s.cfg.SharedVault == nil {
			return nil, nil
		}
		m, err := s.sharedPut(txn, site, subject, exp, wrapped, sealed)
		if err != nil {
			return nil, err
		}
		return []Message{m}, nil
	})
}

// SealSecret encrypts data under the vault key for the privacy request
// named id (AAD "request" ‖ 0 ‖ id): what a request must keep until it runs
// (the traits of a rectification) is never stored in clear.
func (s *Store) SealSecret(id string, data []byte) []byte {
	return s.vault.Seal(nil, nil, data, append([]byte("request\x00"), id...))
}

// OpenSecret decrypts what SealSecret sealed for id, or returns ErrCorrupt.
func (s *Store) OpenSecret(id string, sealed []byte) ([]byte, error) {
	b, err := s.vault.Open(nil, nil, sealed, append([]byte("request\x00"), id...))
	if err != nil {
		return nil, fmt.Errorf("%w: request secret", ErrCorrupt)
	}
	return b, nil
}

// traitSites lists the sites subject has traits on.
func (s *Store) traitSites(ctx context.Context, subject string) ([]string, error) {
	var sites []string
	p := traitsPrefix(subject)
	err := s.scanPrefix(ctx, "trait sites", p, func(key, _ []byte) error {
		sites = append(sites, string(key[len(p):]))
		return nil
	})
	return sites, err
}
