package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	badger "github.com/dgraph-io/badger/v4"
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
// previous one, and commits msgs (the privacy event telling the syncers
// about the choice) to the outbox in the same transaction: the choice is
// recorded and announced, or neither. With messages, it returns
// ErrOutboxFull when the outbox is full, like Append.
func (s *Store) PutConsent(ctx context.Context, site, subject string, e ConsentEntry, msgs ...Message) error {
	if err := validSubject(site, subject); err != nil {
		return err
	}
	v, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("%w: consent entry: %v", ErrInvalidRecord, err)
	}
	key := consentKey(site, subject)
	return s.update(ctx, "put consent", msgs, len(key)+len(v)+entryOverhead, func(txn *badger.Txn) error {
		e := badger.NewEntry(key, v)
		e.ExpiresAt = expiry(ConsentTTL)
		return txn.SetEntry(e)
	})
}

// Consent returns subject's last recorded consent choice on site, or
// ErrNotFound.
func (s *Store) Consent(ctx context.Context, site, subject string) (ConsentEntry, error) {
	var e ConsentEntry
	if err := validSubject(site, subject); err != nil {
		return e, err
	}
	v, err := s.getValue(ctx, "consent", consentKey(site, subject))
	if err != nil {
		return e, err
	}
	if err := json.Unmarshal(v, &e); err != nil {
		return e, fmt.Errorf("%w: consent entry: %v", ErrCorrupt, err)
	}
	return e, nil
}
