package storage

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	jsonv2 "github.com/go-json-experiment/json"
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
	// AtMs is when the entry was written (the choice, or an objection or
	// restriction set on it), Unix milliseconds.
	AtMs int64 `json:"t"`
	// ChoiceAtMs is when the consent choice itself was made (0: AtMs): a
	// choice lasts the site's consent lifetime from then, and an objection
	// or restriction written later does not extend it.
	ChoiceAtMs int64 `json:"c,omitempty"`
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

// ChoseAt is when the consent choice was made (ChoiceAtMs, or AtMs for an
// entry written by the choice itself).
func (e ConsentEntry) ChoseAt() time.Time {
	if e.ChoiceAtMs != 0 {
		return time.UnixMilli(e.ChoiceAtMs)
	}
	return time.UnixMilli(e.AtMs)
}

// PutConsent records subject's consent choice on site, replacing the
// previous one, appends it to the subject's consent history
// (historyKey, kept ConsentTTL) and commits msgs (the
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
	hkey := historyKey(site, subject, e.AtMs, v)
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

// ConsentStats counts one site's consent ledger: the subjects with an
// entry, their choices per purpose, objections and restrictions. No
// subject is named.
type ConsentStats struct {
	// Entries is the number of subjects with an entry (a choice, an
	// objection or a restriction) within ConsentTTL.
	Entries uint64
	// Choices counts entries holding a consent choice made within the
	// lifetime given to ConsentStats; Expired those whose choice is older
	// (it reads as no choice).
	Choices, Expired uint64
	// Granted and Denied count, per purpose, the current choices granting
	// or denying it.
	Granted, Denied map[string]uint64
	// Objections counts entries with an objection, Objected the objected
	// purposes.
	Objections uint64
	Objected   map[string]uint64
	// Restricted counts restricted subjects.
	Restricted uint64
}

// consentCounts is what ConsentStats reads of a ConsentEntry (the same
// JSON names; the other members are skipped).
type consentCounts struct {
	Granted    []string `json:"g"`
	Denied     []string `json:"d"`
	AtMs       int64    `json:"t"`
	ChoiceAtMs int64    `json:"c"`
	Objected   []string `json:"o"`
	Restricted bool     `json:"r"`
}

// ConsentStats reads every ledger entry of site (one prefix scan; about
// 1 µs an entry, see BENCHMARKS.md) and counts them; a choice made more
// than lifetime before now (0: no limit) counts as expired.
func (s *Store) ConsentStats(ctx context.Context, site string, lifetime time.Duration, now time.Time) (ConsentStats, error) {
	st := ConsentStats{Granted: map[string]uint64{}, Denied: map[string]uint64{}, Objected: map[string]uint64{}}
	if site == "" {
		return st, fmt.Errorf("%w: consent stats: empty site", ErrInvalidKey)
	}
	if err := validName("site", site); err != nil {
		return st, err
	}
	if err := s.enter(); err != nil {
		return st, err
	}
	defer s.mu.RUnlock()
	oldest := int64(0)
	if lifetime > 0 {
		oldest = now.Add(-lifetime).UnixMilli()
	}
	prefix := append(append([]byte(prefixConsent), site...), 0)
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		// Values are small and inline: read in place, not prefetched into
		// copies.
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		var e consentCounts
		steps := 0
		for it.Rewind(); it.Valid(); it.Next() {
			if steps++; steps%ctxCheckEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			e = consentCounts{Granted: e.Granted[:0], Denied: e.Denied[:0], Objected: e.Objected[:0]}
			if err := it.Item().Value(func(v []byte) error { return jsonv2.Unmarshal(v, &e) }); err != nil {
				return fmt.Errorf("%w: consent entry: %v", ErrCorrupt, err)
			}
			st.Entries++
			if len(e.Granted)+len(e.Denied) > 0 {
				if at := cmp.Or(e.ChoiceAtMs, e.AtMs); at < oldest {
					st.Expired++
				} else {
					st.Choices++
					for _, p := range e.Granted {
						st.Granted[p]++
					}
					for _, p := range e.Denied {
						st.Denied[p]++
					}
				}
			}
			if len(e.Objected) > 0 {
				st.Objections++
				for _, p := range e.Objected {
					st.Objected[p]++
				}
			}
			if e.Restricted {
				st.Restricted++
			}
		}
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("storage: consent stats: %w", err)
	}
	return st, nil
}
