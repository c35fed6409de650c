package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// ConsentTTL is how long a consent choice is kept after it was last made:
// 13 months, the longest a consent choice may be relied on before asking
// again under the CNIL's guidance.
const ConsentTTL = 395 * 24 * time.Hour

// ConsentEntry is a subject's last explicit consent choice on a site, as
// recorded in the consent ledger. It is read on every later event of the
// subject that carries no consent signal of its own.
type ConsentEntry struct {
	// Granted and Denied are purpose names.
	Granted []string `json:"g,omitempty"`
	Denied  []string `json:"d,omitempty"`
	// Source names where the choice came from (payload, tcf, gpp…).
	Source string `json:"s,omitempty"`
	// AtMs is when the choice was recorded, Unix milliseconds.
	AtMs int64 `json:"t"`
}

// PutConsent records subject's consent choice on site, replacing the
// previous one.
func (s *Store) PutConsent(ctx context.Context, site, subject string, e ConsentEntry) error {
	if err := validSubject(site, subject); err != nil {
		return err
	}
	v, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("%w: consent entry: %v", ErrInvalidRecord, err)
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	entry := badger.NewEntry(consentKey(site, subject), v)
	entry.ExpiresAt = expiry(ConsentTTL)
	s.writeGate.RLock()
	defer s.writeGate.RUnlock()
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.SetEntry(entry) }); err != nil {
		return fmt.Errorf("storage: put consent: %w", err)
	}
	return nil
}

// Consent returns subject's last recorded consent choice on site, or
// ErrNotFound.
func (s *Store) Consent(ctx context.Context, site, subject string) (ConsentEntry, error) {
	var e ConsentEntry
	if err := validSubject(site, subject); err != nil {
		return e, err
	}
	if err := s.enter(); err != nil {
		return e, err
	}
	defer s.mu.RUnlock()
	if err := ctx.Err(); err != nil {
		return e, err
	}
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(consentKey(site, subject))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("%w: consent entry: %v", ErrCorrupt, err)
			}
			return nil
		})
	})
	if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrCorrupt) {
		err = fmt.Errorf("storage: consent: %w", err)
	}
	return e, err
}
