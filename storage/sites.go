package storage

import (
	"context"
	"errors"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"
)

// maxSiteValue bounds a stored site's definition.
const maxSiteValue = 64 << 10

// AddSite stores the definition of a site added at run time (its bytes are
// the caller's: the proxy's JSON). An id already stored is ErrExists;
// nothing is replaced.
func (s *Store) AddSite(ctx context.Context, id string, value []byte) error {
	if id == "" || len(value) > maxSiteValue {
		return fmt.Errorf("%w: site id empty or definition larger than %d bytes", ErrInvalidKey, maxSiteValue)
	}
	if err := validName("site", id); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.disk.room(); err != nil {
		return fmt.Errorf("storage: add site: %w", err)
	}
	s.writeGate.RLock()
	defer s.writeGate.RUnlock()
	err := s.db.Update(func(txn *badger.Txn) error {
		k := siteKey(id)
		if _, err := txn.Get(k); err == nil {
			return ErrExists
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		return txn.Set(k, value)
	})
	if err != nil {
		return fmt.Errorf("storage: add site %q: %w", id, err)
	}
	s.disk.wrote(int64(len(id) + len(value) + entryOverhead))
	return nil
}

// Sites returns every stored site definition by id.
func (s *Store) Sites(ctx context.Context) (map[string][]byte, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	out := map[string][]byte{}
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(prefixSite)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out[string(it.Item().Key()[len(prefixSite):])] = v
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: sites: %w", err)
	}
	return out, nil
}
