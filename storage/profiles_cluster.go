package storage

import (
	"context"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"
)

// Profiles in cluster mode move with their partition: the owner reads a
// profile's shared copy, keeps it here while it owns the partition
// (PutProfileValue), writes it back after each batch (ProfileValue) and
// forgets the partition's profiles when it loses it (DropProfiles). These
// never record segment changes: the shared copy is the same profile.

// ProfileValue returns the stored form of the profile of subject on site
// (with its markers when Config.PortableProfiles), or ErrNotFound.
func (s *Store) ProfileValue(ctx context.Context, site, subject string) ([]byte, error) {
	if err := validSubject(site, subject); err != nil {
		return nil, err
	}
	return s.getValue(ctx, "profile value", profileKey(site, subject))
}

// PutProfileValue replaces the profile of subject on site by v (a
// ProfileValue, possibly from another node); v nil deletes this node's
// copy. v must decode: ErrCorrupt otherwise.
func (s *Store) PutProfileValue(ctx context.Context, site, subject string, v []byte) error {
	if err := validSubject(site, subject); err != nil {
		return err
	}
	if v != nil {
		if _, err := decodeProfile(v, site, subject); err != nil {
			return err
		}
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	mu := s.prof.stripe(site, subject)
	mu.Lock()
	defer mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	s.writeGate.RLock()
	defer s.writeGate.RUnlock()
	err := s.db.Update(func(txn *badger.Txn) error {
		if v == nil {
			return txn.Delete(profileKey(site, subject))
		}
		e := badger.NewEntry(profileKey(site, subject), v)
		e.ExpiresAt = s.profileExpiry()
		return txn.SetEntry(e)
	})
	if err != nil {
		return fmt.Errorf("storage: put profile value: %w", err)
	}
	return nil
}

// DropProfiles deletes this node's copy of every profile for which drop
// returns true, without segment changes, and returns how many it deleted.
func (s *Store) DropProfiles(ctx context.Context, drop func(site, subject string) bool) (int, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	var keys [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = []byte(prefixProfile)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			site, subj, ok := parseProfileKey(it.Item().Key())
			if ok && drop(string(site), string(subj)) {
				keys = append(keys, it.Item().KeyCopy(nil))
			}
		}
		return nil
	})
	s.mu.RUnlock()
	if err != nil {
		return 0, fmt.Errorf("storage: drop profiles: %w", err)
	}
	for _, k := range keys {
		site, subj, _ := parseProfileKey(k)
		if err := s.PutProfileValue(ctx, string(site), string(subj), nil); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}

// DecodeProfileValue decodes a ProfileValue of subject on site (a shared
// copy read from KV): for tools and tests that inspect the cluster.
func DecodeProfileValue(v []byte, site, subject string) (*Profile, error) {
	return decodeProfile(v, site, subject)
}
