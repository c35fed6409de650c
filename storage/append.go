package storage

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// maxRecordBytes bounds Data+Vault of one record so that any single record
// fits in a Badger transaction.
const maxRecordBytes = 1 << 20

// Record is one event to store. The pipeline builds it.
type Record struct {
	// Site is the site id; required, no \x00, at most 255 bytes.
	Site string
	// ID is the event id, a time-sortable string made by the caller;
	// required, at most 255 bytes.
	ID string
	// Time is the event time, used in the key (millisecond precision).
	Time time.Time
	// Type is the event type (track, page…).
	Type string
	// Subject is the pseudonym; "" for anonymous events (then there is no
	// subject index entry). No \x00, at most 255 bytes.
	Subject string
	// Dedup is the dedup key material (already an HMAC of messageId); nil
	// or empty means no dedup. At most 255 bytes.
	Dedup []byte
	// KeepDedup keeps the dedup key as long as the record (TTL) instead of
	// Config.DedupWindow: an import's natural key, so that importing the
	// same rows again within their retention adds nothing.
	KeepDedup bool
	// TTL is the retention of the event, its index entry and its traits;
	// 0 keeps them forever.
	TTL time.Duration
	// Data is the encoded vigiev1.Event; exactly these bytes are stored and
	// later published.
	Data []byte
	// Topic is the NATS subject of the outbox entry, e.g.
	// vigie.events.<site>.<type>; required.
	Topic string
	// Vault optionally holds personal traits (JSON) to store encrypted for
	// Subject, replacing earlier traits for the same subject and site.
	// Requires Subject.
	Vault []byte
	// Index are blind-index entries linking keyed MACs of the event's
	// personal identifiers (an identify's e-mail, phone, user id) to
	// Subject, so that a privacy request can find the person without any
	// clear value being stored. Written with the event, same TTL (an entry
	// an earlier event gave a later expiry keeps it); at most
	// maxIndexEntries. Requires Subject.
	Index []IndexEntry
	// Links are other subjects of the same person (an identify or alias
	// naming both a user id and an anonymous id), linked to Subject in both
	// directions with the event's TTL, so that a request by user id also
	// finds the anonymous id's earlier events (a link an earlier event
	// gave a later expiry keeps it). At most maxIndexEntries. Requires
	// Subject.
	Links []string
	// Messages are published after the event, committed to the outbox in
	// its transaction (and, like it, not when it is a duplicate): cluster
	// mode marks the record's dedup key stored this way. Default none.
	Messages []Message
}

// outboxEntries is the number of outbox entries recs make (recordEntries).
func (s *Store) outboxEntries(recs []Record) int64 {
	var n int64
	for i := range recs {
		n += int64(s.recordEntries(&recs[i]))
	}
	return n
}

// recordEntries is the number of outbox entries r makes: one, one per
// message, and with a SharedVault the put of its traits.
func (s *Store) recordEntries(r *Record) int {
	n := 1 + len(r.Messages)
	if s.cfg.SharedVault != nil && len(r.Vault) > 0 {
		n++
	}
	return n
}

// MACLen is the length of a blind-index MAC.
const MACLen = 16

// maxIndexEntries bounds Record.Index and Record.Links.
const maxIndexEntries = 16

// IndexEntry is one blind-index entry: a keyed MAC of a normalized personal
// identifier, never the value (package proxy/blind computes it).
type IndexEntry struct {
	// Kind is the identifier's kind (email, phone, user_id…): 1 to 32
	// bytes, no \x00.
	Kind string
	// MAC is the keyed MAC, MACLen bytes.
	MAC []byte
}

// validIndex checks blind-index entries.
func validIndex(es []IndexEntry) error {
	for _, e := range es {
		if e.Kind == "" || len(e.Kind) > 32 || strings.IndexByte(e.Kind, 0) >= 0 || len(e.MAC) != MACLen {
			return fmt.Errorf("%w: blind-index entry: kind empty, long or with NUL, or MAC not %d bytes", ErrInvalidKey, MACLen)
		}
	}
	return nil
}

// request is one Append call waiting for the committer.
type request struct {
	recs []Record
	// n is the number of outbox entries recs make (outboxEntries).
	n    int64
	dups []bool
	err  error
	done chan struct{}
}

// item addresses one record of a request inside a group.
type item struct {
	req *request
	i   int
}

// Append durably writes recs. Each record is written in one Badger
// transaction with its subject index entry, dedup key, outbox entry and
// vault entry; concurrent calls are grouped by the committer (up to
// Config.MaxGroup records per transaction), so a call's records may span
// transactions. dups[i] reports that recs[i] duplicated a dedup key seen
// within Config.DedupWindow (or earlier in the same group) and was not
// stored. Append returns after the commit; ctx only cancels the wait, after
// which the records may still be committed and are read until then, so the
// caller must not modify recs. On error, some records may have been
// committed; retrying is safe when they carry dedup keys. While the disk is
// short of space (Config.MinFreeBytes) it returns ErrDiskFull and writes
// nothing.
func (s *Store) Append(ctx context.Context, recs []Record) (dups []bool, err error) {
	if len(recs) == 0 {
		return nil, nil
	}
	for i := range recs {
		if err := validateRecord(&recs[i]); err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
	}
	if err := s.disk.room(); err != nil {
		return nil, err
	}
	n := s.outboxEntries(recs)
	if s.outboxInUse.Add(n)+s.outboxLen.Load() > s.cfg.MaxOutbox {
		s.outboxInUse.Add(-n)
		return nil, ErrOutboxFull
	}
	req := &request{recs: recs, n: n, dups: make([]bool, len(recs)), done: make(chan struct{}, 1)}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		s.outboxInUse.Add(-n)
		return nil, ErrClosed
	}
	select {
	case s.queue <- req:
		s.mu.RUnlock()
	case <-ctx.Done():
		s.mu.RUnlock()
		s.outboxInUse.Add(-n)
		return nil, ctx.Err()
	}
	select {
	case <-req.done:
		if req.err != nil {
			return nil, req.err
		}
		return req.dups, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// validateRecord checks everything about r that does not need the database.
func validateRecord(r *Record) error {
	if r.Site == "" {
		return fmt.Errorf("%w: empty site", ErrInvalidKey)
	}
	if err := validName("site", r.Site); err != nil {
		return err
	}
	if err := validName("subject", r.Subject); err != nil {
		return err
	}
	if r.ID == "" || len(r.ID) > maxNameLen {
		return fmt.Errorf("%w: id empty or too long", ErrInvalidKey)
	}
	if len(r.Dedup) > maxDedupLen {
		return fmt.Errorf("%w: dedup key too long", ErrInvalidKey)
	}
	switch {
	case r.Topic == "" || len(r.Topic) > maxTopicLen:
		return fmt.Errorf("%w: topic empty or too long", ErrInvalidRecord)
	case r.Time.IsZero() || r.Time.UnixMilli() < 0:
		return fmt.Errorf("%w: time missing or before 1970", ErrInvalidRecord)
	case r.TTL < 0:
		return fmt.Errorf("%w: negative TTL", ErrInvalidRecord)
	case len(r.Vault) > 0 && r.Subject == "":
		return fmt.Errorf("%w: traits without subject", ErrInvalidRecord)
	case len(r.Data)+len(r.Vault) > maxRecordBytes:
		return fmt.Errorf("%w: larger than %d bytes", ErrInvalidRecord, maxRecordBytes)
	case (len(r.Index) > 0 || len(r.Links) > 0) && r.Subject == "":
		return fmt.Errorf("%w: blind index or links without subject", ErrInvalidRecord)
	case len(r.Index) > maxIndexEntries || len(r.Links) > maxIndexEntries:
		return fmt.Errorf("%w: more than %d blind-index entries or links", ErrInvalidRecord, maxIndexEntries)
	}
	if err := validIndex(r.Index); err != nil {
		return err
	}
	if err := validateMessages(r.Messages); err != nil {
		return err
	}
	for _, l := range r.Links {
		if l == "" {
			return fmt.Errorf("%w: empty link", ErrInvalidKey)
		}
		if err := validName("link", l); err != nil {
			return err
		}
	}
	return nil
}

// commitLoop is the committer goroutine: it takes whatever has queued (up
// to MaxGroup records, whole requests only unless one request alone is
// larger) and commits it, until the queue is closed and drained.
func (s *Store) commitLoop() {
	defer s.wg.Done()
	var (
		carry *request
		group []*request
		items []item
	)
	for {
		first := carry
		carry = nil
		if first == nil {
			r, ok := <-s.queue
			if !ok {
				return
			}
			first = r
		}
		group = append(group[:0], first)
		n := len(first.recs)
	drain:
		for n < s.cfg.MaxGroup {
			select {
			case r, ok := <-s.queue:
				if !ok {
					break drain
				}
				if n+len(r.recs) > s.cfg.MaxGroup {
					carry = r
					break drain
				}
				group = append(group, r)
				n += len(r.recs)
			default:
				break drain
			}
		}
		items = items[:0]
		for _, r := range group {
			for i := range r.recs {
				items = append(items, item{r, i})
			}
		}
		if err := s.disk.room(); err != nil {
			// The disk filled up while these waited: refuse them too.
			for _, r := range group {
				r.setErr(err)
			}
		} else {
			for pos := 0; pos < len(items); {
				end := min(pos+s.cfg.MaxGroup, len(items))
				pos += s.commitChunk(items[pos:end])
			}
		}
		for _, r := range group {
			s.outboxInUse.Add(-r.n)
			r.done <- struct{}{}
		}
		clear(group)
		clear(items)
	}
}

// setErr records the first error of a request.
func (r *request) setErr(err error) {
	if r.err == nil {
		r.err = err
	}
}

// commitChunk commits a prefix of items in one transaction and returns how
// many items it consumed (committed, duplicate or failed). When Badger
// reports the transaction too big, it is rebuilt with only the records that
// fitted, so each record stays atomic.
func (s *Store) commitChunk(items []item) int {
	s.writeGate.RLock()
	defer s.writeGate.RUnlock()
	s.seqMu.Lock()
	defer s.seqMu.Unlock()
	for {
		txn := s.db.NewTransaction(true)
		s.arena = s.arena[:0]
		s.ents = s.ents[:0]
		seq := s.nextSeq
		now := time.Now()
		added, stored, dups, size := 0, 0, 0, 0
		tooBig := false
		for added < len(items) {
			it := items[added]
			dup, err := s.addRecord(txn, &it.req.recs[it.i], &seq, now)
			if errors.Is(err, badger.ErrTxnTooBig) {
				tooBig = true
				break
			}
			switch {
			case err != nil:
				it.req.setErr(fmt.Errorf("storage: record %d: %w", it.i, err))
			case dup:
				dups++
			default:
				stored += s.recordEntries(&it.req.recs[it.i])
			}
			it.req.dups[it.i] = dup
			size += len(it.req.recs[it.i].Data) + len(it.req.recs[it.i].Vault)
			added++
		}
		if tooBig {
			txn.Discard()
			if added == 0 { // cannot happen with maxRecordBytes; be safe
				items[0].req.setErr(fmt.Errorf("%w: record %d too large for a transaction", ErrInvalidRecord, items[0].i))
				return 1
			}
			items = items[:added]
			continue
		}
		s.addPending(s.nextSeq, seq)
		err := txn.Commit()
		if err != nil {
			s.removePending(s.nextSeq, seq)
			s.log.Error("storage: commit failed", "records", added, "err", err)
			for _, it := range items[:added] {
				it.req.setErr(fmt.Errorf("storage: commit: %w", err))
			}
			return added
		}
		s.nextSeq = seq
		s.disk.wrote(int64(size + len(s.arena) + len(s.ents)*entryOverhead))
		s.commits.Add(1)
		s.duplicates.Add(int64(dups))
		if stored > 0 {
			s.outboxLen.Add(int64(stored))
			select {
			case s.signal <- struct{}{}:
			default:
			}
		}
		return added
	}
}

// entry returns a reusable Entry. Like the arena, the slab is reset only
// before a new transaction; Badger drops its references to entries when
// Commit returns.
func (s *Store) entry(key, value []byte, expiresAt uint64) *badger.Entry {
	if len(s.ents) == cap(s.ents) {
		s.ents = make([]badger.Entry, 0, max(64, 2*cap(s.ents)))
	}
	s.ents = append(s.ents, badger.Entry{Key: key, Value: value, ExpiresAt: expiresAt})
	return &s.ents[len(s.ents)-1]
}

// cut returns the arena bytes appended since start. Slices handed to Badger
// stay valid until the commit: the arena is only reset before a new
// transaction, and a reallocation leaves old slices intact.
func (s *Store) cut(start int) []byte {
	return s.arena[start:len(s.arena):len(s.arena)]
}

// addRecord adds one record's entries to txn. Everything that can fail for
// reasons other than ErrTxnTooBig happens before the first write, so a
// failed record leaves txn untouched.
func (s *Store) addRecord(txn *badger.Txn, r *Record, seq *uint64, now time.Time) (dup bool, err error) {
	ms := uint64(r.Time.UnixMilli())
	var dk []byte
	start := 0
	if len(r.Dedup) > 0 {
		start = len(s.arena)
		s.arena = appendDedupKey(s.arena, r.Site, r.Dedup)
		dk = s.cut(start)
		_, err := txn.Get(dk)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return false, err
		}
	}
	var wrapped, sealed []byte
	if len(r.Vault) > 0 {
		wrapped, sealed, err = s.sealTraits(txn, r.Subject, r.Site, r.Vault)
		if err != nil {
			return false, err
		}
	}
	var exp uint64
	if r.TTL > 0 {
		exp = uint64(now.Add(r.TTL).Unix())
	}
	// Cluster mode: the sealed traits go to the shared vault, put before
	// the event is published so that whichever node handles it finds them.
	var shared []Message
	if sealed != nil && s.cfg.SharedVault != nil {
		m, err := s.sharedPut(txn, r.Site, r.Subject, exp, wrapped, sealed)
		if err != nil {
			return false, err
		}
		shared = []Message{m}
	}
	// A blind-index entry or link already written by a longer-lived event
	// keeps its expiry: it must find every event it indexes.
	var linkExp []uint64
	if exp != 0 && len(r.Index)+len(r.Links) > 0 {
		linkExp = make([]uint64, 0, len(r.Index)+len(r.Links))
		for _, ie := range r.Index {
			k := append(append(appendNames(nil, prefixBlind, r.Site, ie.Kind), 0), ie.MAC...)
			e, err := laterExpiry(txn, append(k, r.Subject...), exp)
			if err != nil {
				return false, err
			}
			linkExp = append(linkExp, e)
		}
		for _, l := range r.Links {
			e, err := laterExpiry(txn, appendNames(nil, prefixLink, r.Site, r.Subject, l), exp)
			if err != nil {
				return false, err
			}
			linkExp = append(linkExp, e)
		}
	}
	expOf := func(i int) uint64 {
		if linkExp == nil {
			return exp
		}
		return linkExp[i]
	}
	if dk != nil {
		dexp := uint64(now.Add(s.cfg.DedupWindow).Unix())
		if r.KeepDedup {
			dexp = exp
		}
		if err := txn.SetEntry(s.entry(dk, nil, dexp)); err != nil {
			return false, err
		}
	}
	start = len(s.arena)
	s.arena = appendEventKey(s.arena, r.Site, ms, r.ID)
	ek := s.cut(start)
	if err := txn.SetEntry(s.entry(ek, r.Data, exp)); err != nil {
		return false, err
	}
	if r.Subject != "" {
		start = len(s.arena)
		s.arena = appendSubjectKey(s.arena, r.Subject, r.Site, ms, r.ID)
		sk := s.cut(start)
		if err := txn.SetEntry(s.entry(sk, nil, exp)); err != nil {
			return false, err
		}
	}
	for i, ie := range r.Index {
		start = len(s.arena)
		s.arena = append(append(append(appendNames(s.arena, prefixBlind, r.Site, ie.Kind), 0), ie.MAC...), r.Subject...)
		if err := txn.SetEntry(s.entry(s.cut(start), nil, expOf(i))); err != nil {
			return false, err
		}
		start = len(s.arena)
		s.arena = append(append(appendNames(s.arena, prefixBlindRev, r.Site, r.Subject, ie.Kind), 0), ie.MAC...)
		if err := txn.SetEntry(s.entry(s.cut(start), nil, expOf(i))); err != nil {
			return false, err
		}
	}
	for i, l := range r.Links {
		if l == r.Subject {
			continue
		}
		for _, pair := range [2][2]string{{r.Subject, l}, {l, r.Subject}} {
			start = len(s.arena)
			s.arena = appendNames(s.arena, prefixLink, r.Site, pair[0], pair[1])
			if err := txn.SetEntry(s.entry(s.cut(start), nil, expOf(len(r.Index)+i))); err != nil {
				return false, err
			}
		}
	}
	for _, m := range shared {
		if err := s.addMessage(txn, m, seq); err != nil {
			return false, err
		}
	}
	start = len(s.arena)
	s.arena = appendOutboxKey(s.arena, *seq)
	ok := s.cut(start)
	start = len(s.arena)
	s.arena = appendOutboxValue(s.arena, r.Topic, ek)
	ov := s.cut(start)
	if err := txn.SetEntry(s.entry(ok, ov, 0)); err != nil {
		return false, err
	}
	*seq++
	for _, m := range r.Messages {
		if err := s.addMessage(txn, m, seq); err != nil {
			return false, err
		}
	}
	if wrapped != nil {
		if err := txn.SetEntry(s.entry(dataKeyKey(r.Subject), wrapped, 0)); err != nil {
			return false, err
		}
	}
	if sealed != nil {
		start = len(s.arena)
		s.arena = appendTraitsKey(s.arena, r.Subject, r.Site)
		tk := s.cut(start)
		if err := txn.SetEntry(s.entry(tk, sealed, exp)); err != nil {
			return false, err
		}
	}
	return false, nil
}

// addMessage adds m to the outbox in txn at *seq, and advances *seq.
func (s *Store) addMessage(txn *badger.Txn, m Message, seq *uint64) error {
	start := len(s.arena)
	s.arena = appendOutboxKey(s.arena, *seq)
	mk := s.cut(start)
	start = len(s.arena)
	s.arena = appendOutboxMessage(s.arena, m.Topic, m.ID, m.Data, m.KVDelete)
	if err := txn.SetEntry(s.entry(mk, s.cut(start), 0)); err != nil {
		return err
	}
	*seq++
	return nil
}

// laterExpiry is the later of exp and the expiry of key as stored (0:
// never; a missing key: exp).
func laterExpiry(txn *badger.Txn, key []byte, exp uint64) (uint64, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return exp, nil
	}
	if err != nil {
		return 0, err
	}
	if e := item.ExpiresAt(); e == 0 || e > exp {
		return e, nil
	}
	return exp, nil
}

// sealTraits encrypts traits for subject+site under the subject's data key,
// creating the key if the subject has none. wrapped is non-nil when a new
// data key must be stored.
func (s *Store) sealTraits(txn *badger.Txn, subject, site string, traits []byte) (wrapped, sealed []byte, err error) {
	dataKey, err := s.dataKey(txn, subject)
	if errors.Is(err, ErrNotFound) {
		dataKey = make([]byte, 32)
		_, _ = rand.Read(dataKey) // never fails since Go 1.24
		wrapped = s.vault.Seal(nil, nil, dataKey, []byte(subject))
	} else if err != nil {
		return nil, nil, err
	}
	defer clear(dataKey)
	aead, err := newAEAD(dataKey)
	if err != nil {
		return nil, nil, err
	}
	return wrapped, aead.Seal(nil, nil, traits, traitsAAD(subject, site)), nil
}

// dataKey returns the unwrapped data key of subject, or ErrNotFound.
func (s *Store) dataKey(txn *badger.Txn, subject string) ([]byte, error) {
	item, err := txn.Get(dataKeyKey(subject))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	var key []byte
	err = item.Value(func(v []byte) error {
		var oerr error
		key, oerr = s.unwrapDataKey(v, subject)
		return oerr
	})
	if err != nil {
		return nil, fmt.Errorf("%w: data key", ErrCorrupt)
	}
	return key, nil
}

// unwrapDataKey opens subject's data key wrapped under the vault key
// (ErrCorrupt when it does not open or is not 32 bytes).
func (s *Store) unwrapDataKey(wrapped []byte, subject string) ([]byte, error) {
	key, err := s.vault.Open(nil, nil, wrapped, []byte(subject))
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("%w: data key", ErrCorrupt)
	}
	return key, nil
}

// newAEAD returns AES-256-GCM with random nonces prepended to ciphertexts.
func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return cipher.NewGCMWithRandomNonce(block)
}
