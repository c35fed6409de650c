package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// This file holds what the rights of the people tracked (GDPR Art. 15–21)
// need from the store: finding a person's subjects without clear values
// (blind index, subject links), suppression entries, privacy requests,
// per-plugin sync history, and the physical erasure of every key of a
// subject.

// scanPrefix calls fn with every live key and value under prefix, in key
// order; op names the operation in errors.
func (s *Store) scanPrefix(ctx context.Context, op string, prefix []byte, fn func(key, value []byte) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		steps := 0
		for it.Rewind(); it.Valid(); it.Next() {
			if steps++; steps%ctxCheckEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			item := it.Item()
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if err := fn(item.Key(), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: %s: %w", op, err)
	}
	return nil
}

// BlindLookup returns the subjects the blind index links to the MAC of kind
// on site (those whose identify events carried the value), in key order.
func (s *Store) BlindLookup(ctx context.Context, site string, e IndexEntry) ([]string, error) {
	if err := validIndex([]IndexEntry{e}); err != nil {
		return nil, err
	}
	if err := validName("site", site); err != nil {
		return nil, err
	}
	p := blindPrefix(site, e.Kind, e.MAC)
	var out []string
	err := s.scanPrefix(ctx, "blind lookup", p, func(k, _ []byte) error {
		if subj := k[len(p):]; len(subj) > 0 {
			out = append(out, string(subj))
		}
		return nil
	})
	return out, err
}

// SubjectIndex returns the blind-index entries of subject on site.
func (s *Store) SubjectIndex(ctx context.Context, site, subject string) ([]IndexEntry, error) {
	if err := validSubject(site, subject); err != nil {
		return nil, err
	}
	p := siteSubjectPrefix(prefixBlindRev, site, subject)
	var out []IndexEntry
	err := s.scanPrefix(ctx, "subject index", p, func(k, _ []byte) error {
		if kind, mac, ok := parseBlindRevSuffix(k[len(p):]); ok {
			out = append(out, IndexEntry{Kind: kind, MAC: bytes.Clone(mac)})
		}
		return nil
	})
	return out, err
}

// SubjectLinks returns the subjects linked to subject on site (by identify
// and alias events naming both).
func (s *Store) SubjectLinks(ctx context.Context, site, subject string) ([]string, error) {
	if err := validSubject(site, subject); err != nil {
		return nil, err
	}
	p := siteSubjectPrefix(prefixLink, site, subject)
	var out []string
	err := s.scanPrefix(ctx, "subject links", p, func(k, _ []byte) error {
		if l := k[len(p):]; len(l) > 0 {
			out = append(out, string(l))
		}
		return nil
	})
	return out, err
}

// Suppression is kept, without TTL, for each blind-index value of a person
// erased with suppression: their later events are dropped at the door.
type Suppression struct {
	// RequestID is the erasure request that asked for it.
	RequestID string `json:"r"`
	// AtMs is when it was recorded, Unix milliseconds.
	AtMs int64 `json:"t"`
}

// PutSuppressions records sup for every entry on site.
func (s *Store) PutSuppressions(ctx context.Context, site string, entries []IndexEntry, sup Suppression) error {
	if err := validIndex(entries); err != nil {
		return err
	}
	if site == "" {
		return fmt.Errorf("%w: empty site", ErrInvalidKey)
	}
	if err := validName("site", site); err != nil {
		return err
	}
	v, err := json.Marshal(sup)
	if err != nil {
		return fmt.Errorf("%w: suppression: %v", ErrInvalidRecord, err)
	}
	return s.update(ctx, "put suppressions", nil, len(entries)*(64+len(v)), func(txn *badger.Txn) error {
		for _, e := range entries {
			if err := txn.Set(suppressKey(site, e.Kind, e.MAC), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// Suppressions calls fn with every suppression entry, for the in-memory set
// Vigie checks at the door.
func (s *Store) Suppressions(ctx context.Context, fn func(site string, e IndexEntry, sup Suppression)) error {
	return s.scanPrefix(ctx, "suppressions", []byte(prefixSuppress), func(k, v []byte) error {
		rest := k[len(prefixSuppress):]
		site, tail, ok := bytes.Cut(rest, []byte{0})
		if !ok {
			return nil
		}
		kind, mac, ok := parseBlindRevSuffix(tail)
		if !ok {
			return nil
		}
		var sup Suppression
		_ = json.Unmarshal(v, &sup)
		fn(string(site), IndexEntry{Kind: kind, MAC: bytes.Clone(mac)}, sup)
		return nil
	})
}

// Privacy requests are stored as their owner (package proxy/privacy)
// encodes them; the store only keeps them, with no TTL, and commits them
// with outbox messages when a step announces something.

// maxRequestBytes bounds one stored privacy request.
const maxRequestBytes = 1 << 20

// PutPrivacyRequest stores request id (v, at most 1 MiB) and commits msgs
// to the outbox in the same transaction: a request step that publishes a
// privacy event is recorded as done if and only if the event will be
// published.
func (s *Store) PutPrivacyRequest(ctx context.Context, id string, v []byte, msgs ...Message) error {
	if id == "" || len(id) > maxNameLen {
		return fmt.Errorf("%w: request id empty or too long", ErrInvalidKey)
	}
	if len(v) > maxRequestBytes {
		return fmt.Errorf("%w: request larger than %d bytes", ErrInvalidRecord, maxRequestBytes)
	}
	key := requestKey(id)
	return s.update(ctx, "put privacy request", msgs, len(key)+len(v)+entryOverhead, func(txn *badger.Txn) error {
		return txn.Set(key, v)
	})
}

// PrivacyRequest returns request id, or ErrNotFound.
func (s *Store) PrivacyRequest(ctx context.Context, id string) ([]byte, error) {
	if id == "" || len(id) > maxNameLen {
		return nil, fmt.Errorf("%w: request id empty or too long", ErrInvalidKey)
	}
	return s.getValue(ctx, "privacy request", requestKey(id))
}

// PrivacyRequests calls fn with every stored request, in id order.
func (s *Store) PrivacyRequests(ctx context.Context, fn func(id string, v []byte) error) error {
	return s.scanPrefix(ctx, "privacy requests", []byte(prefixRequest), func(k, v []byte) error {
		return fn(string(k[len(prefixRequest):]), v)
	})
}

// PutRequestSubjects stores the subjects (pseudonyms) of request id apart
// from the request (px/<id>), so that DropRequestSubjects can remove them
// with every version when an erasure ends: the request's own record, rewritten
// at every step, never holds them.
func (s *Store) PutRequestSubjects(ctx context.Context, id string, subjects []string) error {
	if id == "" || len(id) > maxNameLen {
		return fmt.Errorf("%w: request id empty or too long", ErrInvalidKey)
	}
	v, err := json.Marshal(subjects)
	if err != nil {
		return fmt.Errorf("%w: subjects: %v", ErrInvalidRecord, err)
	}
	key := requestSubjectsKey(id)
	return s.update(ctx, "put request subjects", nil, len(key)+len(v)+entryOverhead, func(txn *badger.Txn) error {
		return txn.Set(key, v)
	})
}

// RequestSubjects returns the subjects of request id (nil when none are
// stored).
func (s *Store) RequestSubjects(ctx context.Context, id string) ([]string, error) {
	if id == "" || len(id) > maxNameLen {
		return nil, fmt.Errorf("%w: request id empty or too long", ErrInvalidKey)
	}
	v, err := s.getValue(ctx, "request subjects", requestSubjectsKey(id))
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	if err := json.Unmarshal(v, &out); err != nil {
		return nil, fmt.Errorf("%w: request subjects: %v", ErrCorrupt, err)
	}
	return out, nil
}

// DropRequestSubjects removes the subjects of the requests ids and their
// captured contacts (PutRequestContacts), every version (Badger
// DropPrefix; writes wait meanwhile).
func (s *Store) DropRequestSubjects(ctx context.Context, ids ...string) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	s.writeGate.Lock()
	defer s.writeGate.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	keys := make([][]byte, 0, 2*len(ids))
	for _, id := range ids {
		keys = append(keys, requestSubjectsKey(id), requestContactsKey(id))
	}
	if err := s.db.DropPrefix(keys...); err != nil {
		return fmt.Errorf("storage: drop request subjects: %w", err)
	}
	return nil
}

// SyncRecord is one thing a plugin was given about a subject: the
// per-plugin sync history an access request returns (Art. 15(1)(c): the
// recipients). It names the contact fields given, never their values.
type SyncRecord struct {
	// Plugin is the plugin's name.
	Plugin string `json:"p"`
	// Kind is what it received: segment_entered, segment_exited,
	// identify, resync, privacy, contact_resolve.
	Kind string `json:"k"`
	// Detail is the segment, event id or privacy action concerned.
	Detail string `json:"d,omitempty"`
	// Fields are the contact fields given (email, phone…).
	Fields []string `json:"f,omitempty"`
	// AtMs is when, Unix milliseconds.
	AtMs int64 `json:"t"`
}

// AddSyncHistory records r for subject on site, kept ttl (0: forever).
func (s *Store) AddSyncHistory(ctx context.Context, site, subject string, r SyncRecord, ttl time.Duration) error {
	if err := validSubject(site, subject); err != nil {
		return err
	}
	if err := validName("plugin", r.Plugin); err != nil || r.Plugin == "" {
		return fmt.Errorf("%w: plugin name", ErrInvalidKey)
	}
	if r.AtMs == 0 {
		r.AtMs = time.Now().UnixMilli()
	}
	v, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("%w: sync record: %v", ErrInvalidRecord, err)
	}
	key := syncKey(site, subject, r.AtMs, r.Plugin, v)
	return s.update(ctx, "add sync history", nil, len(key)+len(v)+entryOverhead, func(txn *badger.Txn) error {
		e := badger.NewEntry(key, v)
		if ttl > 0 {
			e.ExpiresAt = expiry(ttl)
		}
		return txn.SetEntry(e)
	})
}

// SyncHistory returns what plugins were given about subject on site,
// oldest first.
func (s *Store) SyncHistory(ctx context.Context, site, subject string) ([]SyncRecord, error) {
	if err := validSubject(site, subject); err != nil {
		return nil, err
	}
	var out []SyncRecord
	err := s.scanPrefix(ctx, "sync history", siteSubjectPrefix(prefixSync, site, subject), func(_, v []byte) error {
		var r SyncRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("%w: sync record: %v", ErrCorrupt, err)
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

// SubjectSegmentLog returns the segment changes of subject on site still in
// the recent changes log (30 days), oldest first.
func (s *Store) SubjectSegmentLog(ctx context.Context, site, subject string) ([]*vigiev1.SegmentChange, error) {
	if err := validSubject(site, subject); err != nil {
		return nil, err
	}
	var out []*vigiev1.SegmentChange
	err := s.scanPrefix(ctx, "segment log", segLogPrefix(site), func(_, v []byte) error {
		c := new(vigiev1.SegmentChange)
		if proto.Unmarshal(v, c) == nil && c.GetSubject() == subject {
			out = append(out, c)
		}
		return nil
	})
	return out, err
}

// EraseReport counts what EraseSubjects found and dropped, per kind of
// data.
type EraseReport struct {
	// Events are stored events (e/), with their subject index entries
	// (s/) counted in SubjectIndex.
	Events, SubjectIndex int
	// Links are subject links (sl/, both directions).
	Links int
	// Profiles are profiles (p/); Segments the segment memberships they
	// held (taken out of the segment sizes); SegmentLog the entries of the
	// recent changes log and pending publications (pl/, pc/).
	Profiles, Segments, SegmentLog int
	// Vault are the data keys and encrypted traits (v/k/, v/t/).
	Vault int
	// Ledger are consent ledger entries (cl/); History the consent
	// history (ch/) and sync history (sh/) entries.
	Ledger, History int
	// BlindIndex are blind-index entries (bi/ and their sb/ reverse).
	BlindIndex int
}

// Total is the number of keys erased.
func (r EraseReport) Total() int {
	return r.Events + r.SubjectIndex + r.Links + r.Profiles + r.SegmentLog + r.Vault + r.Ledger + r.History + r.BlindIndex
}

// EraseSubjects physically erases everything the store keeps about
// subjects on site: their events and subject index, subject links (both
// directions), profiles (leaving their segments' sizes), segment-log and
// pending segment-change entries, vault data keys and traits
// (crypto-shredding), consent ledger entry and history, sync history and
// blind-index entries. Every version goes, not only the latest: all the
// keys are dropped with one Badger DropPrefix (exact keys and per-subject
// prefixes) while they are still live, which rewrites the tables holding
// them; values kept in the value log are unreachable from then on and
// rewritten away by its GC. Suppression entries (su/) and privacy requests
// stay.
//
// With a SharedVault, the deletes of the subjects' shared vault entries
// on site are committed to the outbox first, whether or not this node has
// traits for them.
//
// All writes wait while it runs (like ShredSubject). It is idempotent:
// run again, it finds what was left (nothing, or what an in-flight event
// wrote meanwhile).
func (s *Store) EraseSubjects(ctx context.Context, site string, subjects []string) (EraseReport, error) {
	var rep EraseReport
	for _, subj := range subjects {
		if err := validSubject(site, subj); err != nil {
			return rep, err
		}
	}
	if len(subjects) == 0 {
		return rep, nil
	}
	if err := s.shareDeletes(ctx, []string{site}, subjects); err != nil {
		return rep, err
	}
	// OnProfileDelete runs once every lock below is released: it may
	// write to this store (cluster mode commits to the outbox).
	profilesGone := false
	defer func() {
		if profilesGone && s.cfg.OnProfileDelete != nil {
			for _, subj := range subjects {
				s.cfg.OnProfileDelete(ctx, site, subj, "")
			}
		}
	}()
	if err := s.enter(); err != nil {
		return rep, err
	}
	defer s.mu.RUnlock()
	s.prof.segMu.Lock() // lock order: segMu before writeGate (profiles.go)
	defer s.prof.segMu.Unlock()
	s.writeGate.Lock()
	defer s.writeGate.Unlock()
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	var drop [][]byte // live keys and prefixes
	segments := map[string]int64{}
	want := map[string]bool{}
	for _, subj := range subjects {
		want[subj] = true
	}
	err := s.db.View(func(txn *badger.Txn) error {
		live := func(prefix []byte) (int, error) {
			opts := badger.DefaultIteratorOptions
			opts.PrefetchValues = false
			opts.Prefix = prefix
			it := txn.NewIterator(opts)
			defer it.Close()
			n := 0
			for it.Rewind(); it.Valid(); it.Next() {
				n++
			}
			return n, nil
		}
		keys := func(prefix []byte, fn func(k []byte) error) error {
			opts := badger.DefaultIteratorOptions
			opts.PrefetchValues = false
			opts.Prefix = prefix
			it := txn.NewIterator(opts)
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				if err := fn(it.Item().KeyCopy(nil)); err != nil {
					return err
				}
			}
			return nil
		}
		addPrefix := func(p []byte, count *int) error {
			n, err := live(p)
			if n > 0 {
				*count += n
				drop = append(drop, p)
			}
			return err
		}
		for _, subj := range subjects {
			// Events, through the subject index (every site's, but a
			// pseudonym belongs to one site).
			sp := subjectPrefix(subj)
			n := 0
			err := keys(sp, func(k []byte) error {
				n++
				ek, ok := eventKeyFromSubjectKey(nil, k)
				if !ok {
					return nil
				}
				if _, err := txn.Get(ek); err == nil {
					rep.Events++
					drop = append(drop, ek)
				} else if !errors.Is(err, badger.ErrKeyNotFound) {
					return err
				}
				return nil
			})
			if err != nil {
				return err
			}
			if n > 0 {
				rep.SubjectIndex += n
				drop = append(drop, sp)
			}
			// Links, both directions.
			lp := siteSubjectPrefix(prefixLink, site, subj)
			n = 0
			err = keys(lp, func(k []byte) error {
				n++
				rk := linkKey(site, string(k[len(lp):]), subj)
				if _, err := txn.Get(rk); err == nil {
					rep.Links++
					drop = append(drop, rk)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if n > 0 {
				rep.Links += n
				drop = append(drop, lp)
			}
			// Profile and the segments it is in.
			p, err := getProfile(txn, site, subj)
			switch {
			case err == nil:
				rep.Profiles++
				for _, seg := range p.Segments {
					segments[seg]--
					rep.Segments++
				}
				drop = append(drop, profileKey(site, subj))
			case errors.Is(err, ErrCorrupt):
				rep.Profiles++
				drop = append(drop, profileKey(site, subj))
			case !errors.Is(err, ErrNotFound):
				return err
			}
			// Vault.
			if err := addPrefix(dataKeyKey(subj), &rep.Vault); err != nil {
				return err
			}
			if err := addPrefix(traitsPrefix(subj), &rep.Vault); err != nil {
				return err
			}
			// Ledger and histories.
			if err := addPrefix(consentKey(site, subj), &rep.Ledger); err != nil {
				return err
			}
			if err := addPrefix(siteSubjectPrefix(prefixHistory, site, subj), &rep.History); err != nil {
				return err
			}
			if err := addPrefix(siteSubjectPrefix(prefixSync, site, subj), &rep.History); err != nil {
				return err
			}
			// Blind index, through its reverse.
			bp := siteSubjectPrefix(prefixBlindRev, site, subj)
			n = 0
			err = keys(bp, func(k []byte) error {
				n++
				kind, mac, ok := parseBlindRevSuffix(k[len(bp):])
				if !ok {
					return nil
				}
				fk := append(blindPrefix(site, kind, mac), subj...)
				if _, err := txn.Get(fk); err == nil {
					rep.BlindIndex++
					drop = append(drop, fk)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if n > 0 {
				rep.BlindIndex += n
				drop = append(drop, bp)
			}
		}
		// Segment changes naming the subjects: the recent log of the site
		// and the pending publications.
		for _, prefix := range [][]byte{segLogPrefix(site), []byte(prefixPending)} {
			opts := badger.DefaultIteratorOptions
			opts.Prefix = prefix
			it := txn.NewIterator(opts)
			for it.Rewind(); it.Valid(); it.Next() {
				c := new(vigiev1.SegmentChange)
				if it.Item().Value(func(v []byte) error { return proto.Unmarshal(v, c) }) == nil &&
					c.GetSite() == site && want[c.GetSubject()] {
					rep.SegmentLog++
					drop = append(drop, it.Item().KeyCopy(nil))
				}
			}
			it.Close()
		}
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("storage: erase: %w", err)
	}
	profilesGone = true
	if len(drop) == 0 {
		return rep, nil
	}
	// DropPrefix only drops prefixes that still have a live key: nothing
	// above was deleted first.
	if err := s.db.DropPrefix(drop...); err != nil {
		return rep, fmt.Errorf("storage: erase: drop: %w", err)
	}
	if len(segments) > 0 {
		var next uint64
		err := s.db.Update(func(txn *badger.Txn) error {
			seq, err := s.loadSegSeq(txn)
			if err == nil {
				next, err = s.eraseFromSizes(txn, site, segments, seq)
			}
			return err
		})
		if err == nil && s.cfg.SharedSegments {
			s.prof.seq, s.prof.seqLoaded = next, true
		}
		if err != nil {
			// The data is gone; only the segment sizes are off.
			s.log.Warn("storage: erase: segment sizes not updated", "err", err)
		}
	}
	return rep, nil
}

// HasSubject reports whether the store keeps anything of subject on site:
// an event, a profile, a ledger entry, vaulted data, links or blind-index
// entries.
func (s *Store) HasSubject(ctx context.Context, site, subject string) (bool, error) {
	if err := validSubject(site, subject); err != nil {
		return false, err
	}
	if err := s.enter(); err != nil {
		return false, err
	}
	defer s.mu.RUnlock()
	found := false
	err := s.db.View(func(txn *badger.Txn) error {
		for _, p := range [][]byte{subjectPrefix(subject), profileKey(site, subject), consentKey(site, subject),
			dataKeyKey(subject), siteSubjectPrefix(prefixLink, site, subject), siteSubjectPrefix(prefixBlindRev, site, subject),
			siteSubjectPrefix(prefixHistory, site, subject)} {
			opts := badger.DefaultIteratorOptions
			opts.PrefetchValues = false
			opts.Prefix = p
			it := txn.NewIterator(opts)
			it.Rewind()
			found = it.Valid()
			it.Close()
			if found {
				return nil
			}
		}
		return ctx.Err()
	})
	if err != nil {
		return false, fmt.Errorf("storage: has subject: %w", err)
	}
	return found, nil
}
