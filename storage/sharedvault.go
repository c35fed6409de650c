package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// SharedVault is where cluster mode keeps a copy of every node's vault
// entries (Config.SharedVault; proxy/cluster.VaultBucket over KV
// VIGIE_VAULT). The store builds the entries, sealed exactly as it keeps
// them (the wrapped data key and the ciphertext, never clear traits); the
// SharedVault names the outbox messages that put and delete them and reads
// them back.
type SharedVault interface {
	// PutMessage is the outbox message that puts entry, the sealed
	// traits of subject on site.
	PutMessage(site, subject string, entry []byte) Message
	// DeleteMessage is the outbox message that removes the entry of
	// subject on site, every version of it.
	DeleteMessage(site, subject string) Message
	// Get returns the entry of subject on site, or an error wrapping
	// ErrNotFound when there is none.
	Get(ctx context.Context, site, subject string) ([]byte, error)
}

// sharedEntryVersion starts every shared vault entry.
const sharedEntryVersion = 1

// sharedEntry encodes a shared vault entry: version, expiry (Unix
// seconds, 0 for none, as uvarint), the wrapped data key's length
// (uvarint), the wrapped data key, the sealed traits.
func sharedEntry(exp uint64, wrapped, sealed []byte) []byte {
	b := make([]byte, 0, 1+2*binary.MaxVarintLen64+len(wrapped)+len(sealed))
	b = append(b, sharedEntryVersion)
	b = binary.AppendUvarint(b, exp)
	b = binary.AppendUvarint(b, uint64(len(wrapped)))
	b = append(b, wrapped...)
	return append(b, sealed...)
}

// parseSharedEntry splits what sharedEntry encoded.
func parseSharedEntry(b []byte) (exp uint64, wrapped, sealed []byte, ok bool) {
	if len(b) == 0 || b[0] != sharedEntryVersion {
		return 0, nil, nil, false
	}
	b = b[1:]
	exp, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, nil, nil, false
	}
	b = b[n:]
	l, n := binary.Uvarint(b)
	if n <= 0 || l > uint64(len(b)-n) {
		return 0, nil, nil, false
	}
	b = b[n:]
	return exp, b[:l], b[l:], true
}

// sharedPut is the SharedVault put of the traits sealed for subject on
// site in txn, with their expiry; wrapped is the data key sealTraits
// created (nil: the one stored).
func (s *Store) sharedPut(txn *badger.Txn, site, subject string, exp uint64, wrapped, sealed []byte) (Message, error) {
	if wrapped == nil {
		item, err := txn.Get(dataKeyKey(subject))
		if err != nil {
			return Message{}, err
		}
		if wrapped, err = item.ValueCopy(nil); err != nil {
			return Message{}, err
		}
	}
	return s.cfg.SharedVault.PutMessage(site, subject, sharedEntry(exp, wrapped, sealed)), nil
}

// shareDeletes commits to the outbox the SharedVault deletes of subjects
// on each of sites (nothing in single-node mode), before an erasure drops
// them here: the shared copy goes even while the bus is away, and while
// the disk is full (an erasure is a deletion). The outbox's bound still
// applies (ErrOutboxFull: the erasure is retried).
func (s *Store) shareDeletes(ctx context.Context, sites, subjects []string) error {
	if s.cfg.SharedVault == nil || len(sites) == 0 || len(subjects) == 0 {
		return nil
	}
	msgs := make([]Message, 0, len(sites)*len(subjects))
	for _, site := range sites {
		for _, subj := range subjects {
			msgs = append(msgs, s.cfg.SharedVault.DeleteMessage(site, subj))
		}
	}
	return s.updateMore(ctx, "shared vault delete", msgs, 0, 0, true, func(*badger.Txn) ([]Message, error) { return nil, nil })
}

// ResolveTraits returns the traits of subject on site as VaultTraits
// does, or, when this node's vault has none and the store has a
// SharedVault (cluster mode), those another node shared, decrypted here
// (every node of a cluster has the same vault key). It returns ErrNotFound
// when neither has them (or the shared entry has expired), ErrCorrupt when
// the shared entry does not decrypt; a shared vault that cannot be read
// gives its error.
func (s *Store) ResolveTraits(ctx context.Context, subject, site string) ([]byte, error) {
	traits, err := s.VaultTraits(subject, site)
	if s.cfg.SharedVault == nil || !errors.Is(err, ErrNotFound) {
		return traits, err
	}
	entry, err := s.cfg.SharedVault.Get(ctx, site, subject)
	if err != nil {
		return nil, fmt.Errorf("storage: shared vault: %w", err)
	}
	exp, wrapped, sealed, ok := parseSharedEntry(entry)
	if !ok {
		return nil, fmt.Errorf("storage: shared vault: %w: entry", ErrCorrupt)
	}
	if exp != 0 && uint64(time.Now().Unix()) >= exp {
		return nil, fmt.Errorf("storage: shared vault: %w: expired", ErrNotFound)
	}
	dataKey, err := s.unwrapDataKey(wrapped, subject)
	if err != nil {
		return nil, fmt.Errorf("storage: shared vault: %w", err)
	}
	defer clear(dataKey)
	aead, err := newAEAD(dataKey)
	if err != nil {
		return nil, err
	}
	if traits, err = aead.Open(nil, nil, sealed, traitsAAD(subject, site)); err != nil {
		return nil, fmt.Errorf("storage: shared vault: %w: traits", ErrCorrupt)
	}
	return traits, nil
}
