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
	// Source names where the choice came from (payload, pixel,
	// preference_page, request…).
	Source string `json:"s,omitempty"`
	// AtMs is when the choice was recorded, Unix milliseconds.
	AtMs int64 `json:"t"`
	// EventID is the event that carried the choice, if any.
	EventID string `json:"e,omitempty"`
	// Proof is the hex SHA-256 of the consent signal exactly as it was
	// sent (the context.consent object with its TC or GPP string, or the
	// pixel's consent parameters): the proof of the choice, without keeping
	// the string.
	Proof string `json:"h,omitempty"`
	// Objected are purposes the subject objected to (GDPR Art. 21): denied
	// whatever later events say, until the objection is lifted.
	Objected []string `json:"o,omitempty"`
	// Restricted says processing is restricted (Art. 18): the subject's
	// events are kept anonymous, and no profile or sync happens.
	Restricted bool `json:"r,omitempty"`
}

// Chose reports whether e holds a consent choice (and not only an objection
// or a restriction).
func (e ConsentEntry) Chose() bool { return len(e.Granted)+len(e.Denied) > 0 }

// PutConsent records subject's consent choice on site, replacing the
// previous one, appends it to the subject's consent history
// (ch/<site>\x00<subject>\x00<ms>, kept ConsentTTL) and commits msgs (the
// privacy event telling the syncers about the choice) to the outbox in the
// same transaction: the choice is recorded and announced, or neither. With
// messages, it returns ErrOutboxFull when the outbox is full, like Append.
func (s *Store) PutConsent(ctx context.Context, site, subject string, e ConsentEntry, msgs ...Message) error {
	if err := validSubject(site, subject); err != nil {
		return err
	}
	v, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("%w: consent entry: %v", ErrInvalidRecord, err)
	}
	key := consentKey(site, subject)
	hkey := historyKey(site, subject, e.AtMs)
	return s.update(ctx, "put consent", msgs, len(key)+len(hkey)+2*(len(v)+entryOverhead), func(txn *badger.Txn) error {
		for _, k := range [][]byte{key, hkey} {
			be := badger.NewEntry(k, v)
			be.ExpiresAt = expiry(ConsentTTL)
			if err := txn.SetEntry(be); err != nil {
				return err
			}
		}
		return nil
	})
}

// ConsentHistory returns every recorded consent choice, objection and
// restriction of subject on site, oldest first (entries older than
// ConsentTTL are gone).
func (s *Store) ConsentHistory(ctx context.Context, site, subject string) ([]ConsentEntry, error) {
	if err := validSubject(site, subject); err != nil {
		return nil, err
	}
	var out []ConsentEntry
	err := s.scanPrefix(ctx, "consent history", siteSubjectPrefix(prefixHistory, site, subject), func(_, v []byte) error {
		var e ConsentEntry
		if err := json.Unmarshal(v, &e); err != nil {
			return fmt.Errorf("%w: consent history: %v", ErrCorrupt, err)
		}
		out = append(out, e)
		return nil
	})
	return out, err
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
