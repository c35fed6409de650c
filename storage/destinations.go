package storage

import (
	"context"
	"errors"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"
)

// What the CRM sync keeps besides the plugin KV (see the layout in
// keys.go): the sealed e-mails an erasure must reach downstream, and the
// state of each syncer's full resync.
const (
	prefixReqContacts = "pk/" // pk/<request id> → sealed contacts (SealSecret)
	prefixResync      = "rs/" // rs/<plugin> → resync job (JSON, plugins runtime)
)

// requestContactsKey returns pk/<id>.
func requestContactsKey(id string) []byte { return append([]byte(prefixReqContacts), id...) }

// resyncKey returns rs/<plugin>.
func resyncKey(plugin string) []byte { return append([]byte(prefixResync), plugin...) }

// PutRequestContacts stores, apart from request id (pk/<id>), what its
// erasure must still reach downstream after the vault is shredded: the
// contact details captured before, sealed by the caller (SealSecret).
// DropRequestSubjects removes them with every version.
func (s *Store) PutRequestContacts(ctx context.Context, id string, sealed []byte) error {
	if id == "" || len(id) > maxNameLen {
		return fmt.Errorf("%w: request id empty or too long", ErrInvalidKey)
	}
	key := requestContactsKey(id)
	return s.update(ctx, "put request contacts", nil, len(key)+len(sealed)+entryOverhead, func(txn *badger.Txn) error {
		return txn.Set(key, sealed)
	})
}

// RequestContacts returns what PutRequestContacts stored for id, or
// ErrNotFound.
func (s *Store) RequestContacts(ctx context.Context, id string) ([]byte, error) {
	if id == "" || len(id) > maxNameLen {
		return nil, fmt.Errorf("%w: request id empty or too long", ErrInvalidKey)
	}
	return s.getValue(ctx, "request contacts", requestContactsKey(id))
}

// PutResyncJob stores the state of plugin's full resync (opaque to this
// package), replacing the previous one.
func (s *Store) PutResyncJob(ctx context.Context, plugin string, v []byte) error {
	if err := validName("plugin", plugin); err != nil || plugin == "" {
		return fmt.Errorf("%w: plugin name", ErrInvalidKey)
	}
	key := resyncKey(plugin)
	return s.update(ctx, "put resync job", nil, len(key)+len(v)+entryOverhead, func(txn *badger.Txn) error {
		return txn.Set(key, v)
	})
}

// ResyncJob returns the state of plugin's last full resync, or
// ErrNotFound.
func (s *Store) ResyncJob(ctx context.Context, plugin string) ([]byte, error) {
	if err := validName("plugin", plugin); err != nil || plugin == "" {
		return nil, fmt.Errorf("%w: plugin name", ErrInvalidKey)
	}
	return s.getValue(ctx, "resync job", resyncKey(plugin))
}

// ListProfiles returns up to limit profiles of site in subject order,
// starting after subject after ("" for the first): the pages of a full
// resync.
func (s *Store) ListProfiles(ctx context.Context, site, after string, limit int) ([]*Profile, error) {
	if err := validName("site", site); err != nil || site == "" {
		return nil, fmt.Errorf("%w: site", ErrInvalidKey)
	}
	if err := validName("subject", after); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	prefix := append(appendNames(nil, prefixProfile, site), 0)
	var out []*Profile
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		start := prefix
		if after != "" {
			start = append(profileKey(site, after), 0) // just after it
		}
		for it.Seek(start); it.Valid() && len(out) < limit; it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			_, subj, ok := parseProfileKey(it.Item().Key())
			if !ok {
				continue
			}
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			p, err := decodeProfile(v, site, string(subj))
			if errors.Is(err, ErrCorrupt) {
				continue // skipped here as everywhere else
			}
			if err != nil {
				return err
			}
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: list profiles: %w", err)
	}
	return out, nil
}
