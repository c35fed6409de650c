package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// Retention says how long what Badger's TTLs alone do not bound may live.
// The zero value of each field selects its documented default.
type Retention struct {
	// Audit is how long an audit entry is kept (its Badger TTL). Default
	// DefaultAuditRetention (3 years).
	Audit time.Duration
	// Requests is how long a privacy request is kept once it completed
	// (the receipt of an erasure, without identifiers). Default
	// DefaultRequestRetention (3 years).
	Requests time.Duration
	// PluginKV bounds plugin key-value entries: a KVPut without a TTL, or
	// with a longer one, gets this TTL, and PurgeExpired gives it to
	// entries written before. Default 0: unbounded (the server sets the
	// longest retention of the configuration).
	PluginKV time.Duration
	// PendingChanges is how long a segment change that could not be
	// published waits (NATS unreachable) before PurgeExpired drops it.
	// Default DefaultPendingRetention (30 days, the change log's TTL).
	PendingChanges time.Duration
}

// Defaults of Retention.
const (
	DefaultRequestRetention = 3 * 365 * 24 * time.Hour
	DefaultPendingRetention = segLogTTL
)

// withDefaults fills r's zero fields.
func (r Retention) withDefaults() Retention {
	if r.Audit <= 0 {
		r.Audit = DefaultAuditRetention
	}
	if r.Requests <= 0 {
		r.Requests = DefaultRequestRetention
	}
	if r.PendingChanges <= 0 {
		r.PendingChanges = DefaultPendingRetention
	}
	if r.PluginKV < 0 {
		r.PluginKV = 0
	}
	return r
}

// How a prefix's keys come to an end.
type lifetime int

const (
	// byTTL: every write sets a Badger TTL.
	byTTL lifetime = iota
	// byPurge: PurgeExpired deletes (or bounds) them.
	byPurge
	// kept: no personal data, or bounded by something else (said why).
	kept
)

// prefixLifetimes is the one table saying, for every key prefix of
// keys.go, how its keys end. TestEveryPrefixHasALifetime fails when a
// prefix is added without a row here; a byPurge row needs a purger.
var prefixLifetimes = map[string]struct {
	how lifetime
	why string
}{
	prefixEvent:    {byTTL, "Record.TTL: the retention of the event's purposes"},
	prefixSubject:  {byTTL, "Record.TTL, as its event"},
	prefixDedup:    {byTTL, "Config.DedupWindow, or Record.TTL with KeepDedup (imports)"},
	prefixOutbox:   {kept, "deleted once JetStream acknowledged it; at most Config.MaxOutbox entries"},
	prefixDataKey:  {byPurge, "a subject's data key goes once no vaulted trait of the subject is left"},
	prefixTraits:   {byTTL, "Record.TTL, as the event that brought them"},
	prefixProfile:  {byPurge, "PurgeExpired deletes it Config.ProfileTTL after its last update, publishing its exits; its TTL, profileGrace later, is a backstop"},
	prefixObserved: {byTTL, "48 hours"},
	prefixApplied:  {byTTL, "48 hours"},
	prefixSegSize:  {kept, "one count per segment, naming no subject"},
	prefixSegLog:   {byTTL, "30 days"},
	prefixPending:  {byPurge, "dropped Retention.PendingChanges after the change when never published"},
	prefixKV:       {byPurge, "KVPut's TTL, at most Retention.PluginKV; entries without one get it"},
	keySegmentSeq:  {kept, "a counter"},
	keySegmentFold: {kept, "one stream position (SharedSegments)"},
	prefixConsent:  {byTTL, "ConsentTTL after the choice"},
	prefixAudit:    {byTTL, "Retention.Audit"},
	prefixRequest:  {byPurge, "Retention.Requests after the request's completed_at"},
	prefixSite:     {kept, "a site's definition, as long as the site exists"},
	prefixReqSubj:  {kept, "a request's subjects, dropped (DropPrefix) when its receipt is made"},
	prefixHistory:  {byTTL, "ConsentTTL after the choice"},
	prefixBlind:    {byTTL, "Record.TTL, as the identify event that wrote it"},
	prefixBlindRev: {byTTL, "Record.TTL, as its bi/ twin"},
	prefixLink:     {byTTL, "Record.TTL, as the identify or alias event that wrote it"},
	prefixSuppress: {kept, "a suppression holds until lifted: keyed MACs only, no identifier"},
	prefixSync:     {byTTL, "SyncRecord TTL (the marketing retention)"},
	prefixDetected: {byTTL, "the anonymous retention after the day (AddSensitive's ttl)"},

	prefixReqContacts: {kept, "an erasure's sealed contacts for its destinations, dropped (DropPrefix) with px/ when its receipt is made"},
	prefixResync:      {kept, "one resync job per syncer: counts, and its cursor (a pseudonym) only while it runs"},

	prefixRollupHour:      {byTTL, "RollupEntry.ExpiresAt: the hour's end plus the rollup retention"},
	prefixRollupDay:       {byTTL, "RollupEntry.ExpiresAt: the day's end plus the rollup retention"},
	prefixRollupDecisions: {byTTL, "RollupEntry.ExpiresAt: the hour's end plus the rollup retention"},
	prefixEmailCount:      {byTTL, "EmailCount.TTL from the hit's hour: the anonymous retention"},
	prefixRollupMark:      {kept, "one stream position per rollup consumer"},

	prefixImportJob:   {byTTL, "ImportJobTTL after the job's last write"},
	prefixImportError: {byTTL, "ImportJobTTL, as its job"},
	prefixImportIdem:  {byTTL, "ImportJobTTL, as its job"},
}

// purgers are the byPurge prefixes' sweeps, run by PurgeExpired in this
// order.
var purgers = []struct {
	prefix string
	run    func(s *Store, ctx context.Context, now time.Time) (int, error)
}{
	{prefixProfile, (*Store).purgeProfiles},
	{prefixPending, (*Store).purgePending},
	{prefixKV, (*Store).purgeKV},
	{prefixDataKey, (*Store).purgeDataKeys},
	{prefixRequest, (*Store).purgeRequests},
}

// sweepChunk is how many keys one read transaction of a sweep visits:
// Close waits for one chunk, never for a whole sweep.
const sweepChunk = 4096

// PurgeReport counts, per key prefix, the keys PurgeExpired deleted (or,
// for plugin KV, bounded).
type PurgeReport map[string]int

// Total is the sum of the report's counts.
func (r PurgeReport) Total() int {
	n := 0
	for _, v := range r {
		n += v
	}
	return n
}

// PurgeExpired deletes, as of now, what has no Badger TTL but must not
// live forever (the byPurge rows of prefixLifetimes): profiles idle for
// Config.ProfileTTL (through DeleteProfile: their segment exits are
// published and the sizes follow), segment changes never
// published within Retention.PendingChanges, vault data keys of subjects
// with no trait left, privacy requests completed more than
// Retention.Requests ago; and gives plugin KV entries without a TTL (or
// with one beyond Retention.PluginKV) that bound. It works in chunks, so
// ingestion goes on meanwhile. It runs by itself every Config.PurgeInterval.
func (s *Store) PurgeExpired(ctx context.Context, now time.Time) (PurgeReport, error) {
	rep := PurgeReport{}
	for _, p := range purgers {
		n, err := p.run(s, ctx, now)
		rep[p.prefix] = n
		if err != nil {
			return rep, fmt.Errorf("storage: purge %s: %w", p.prefix, err)
		}
	}
	return rep, nil
}

// purgeLoop runs PurgeExpired at once and then every interval until Close.
func (s *Store) purgeLoop(next time.Time, interval time.Duration) {
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.stop
		cancel()
	}()
	t := time.NewTimer(time.Until(next))
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		rep, err := s.PurgeExpired(ctx, time.Now())
		switch {
		case errors.Is(err, ErrClosed) || ctx.Err() != nil:
			return
		case err != nil:
			s.log.Warn("storage: purge incomplete; retried at the next one", "err", err)
		case rep.Total() > 0:
			args := make([]any, 0, 2*len(rep))
			for k, v := range rep {
				args = append(args, k, v)
			}
			s.log.Info("storage: purged what outlived its retention", args...)
		}
		// Runs keep their phase (first + k × interval), skipping those
		// a long run overtook: NextPurge stays on that grid.
		for next = next.Add(interval); !next.After(time.Now()); next = next.Add(interval) {
		}
		s.nextPurge.Store(next.UnixMilli())
		t.Reset(time.Until(next))
	}
}

// sweep visits every key under prefix in chunks of sweepChunk, each in its
// own read transaction; pick says which keys are candidates, and act is
// handed each chunk's candidates outside the read and returns how many it
// purged.
func (s *Store) sweep(ctx context.Context, prefix string, pick func(txn *badger.Txn, item *badger.Item) bool,
	act func(keys [][]byte) (int, error)) (int, error) {
	start := []byte(prefix)
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		var keys [][]byte
		var last []byte
		more := false
		if err := s.enter(); err != nil {
			return total, err
		}
		err := s.db.View(func(txn *badger.Txn) error {
			opts := badger.DefaultIteratorOptions
			opts.Prefix = []byte(prefix)
			opts.PrefetchValues = false
			it := txn.NewIterator(opts)
			defer it.Close()
			n := 0
			for it.Seek(start); it.Valid(); it.Next() {
				if n == sweepChunk {
					more = true
					break
				}
				n++
				item := it.Item()
				last = item.KeyCopy(last)
				if pick(txn, item) {
					keys = append(keys, item.KeyCopy(nil))
				}
			}
			return nil
		})
		s.mu.RUnlock()
		if err != nil {
			return total, err
		}
		if len(keys) > 0 {
			n, err := act(keys)
			total += n
			if err != nil {
				return total, err
			}
		}
		if !more {
			return total, nil
		}
		start = append(last, 0) // the first key after the last one visited
	}
}

// deleteKeys deletes keys (already deleted ones are no error).
func (s *Store) deleteKeys(keys [][]byte) (int, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.mu.RUnlock()
	s.writeGate.RLock()
	defer s.writeGate.RUnlock()
	wb := s.db.NewWriteBatch()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			wb.Cancel()
			return 0, err
		}
	}
	if err := wb.Flush(); err != nil {
		return 0, err
	}
	return len(keys), nil
}

// purgePending drops segment changes older than Retention.PendingChanges
// that were never published.
func (s *Store) purgePending(ctx context.Context, now time.Time) (int, error) {
	cutoff := now.Add(-s.cfg.Retention.PendingChanges).UnixMilli()
	return s.sweep(ctx, prefixPending, func(_ *badger.Txn, item *badger.Item) bool {
		if _, ok := parsePendingKey(item.Key()); !ok {
			return false
		}
		var at int64
		err := item.Value(func(v []byte) error {
			c := new(vigiev1.SegmentChange)
			if err := proto.Unmarshal(v, c); err != nil {
				return err
			}
			at = c.GetAtMs()
			return nil
		})
		// An undecodable change is never published either.
		return err != nil || (at > 0 && at < cutoff)
	}, s.deleteKeys)
}

// purgeKV gives Retention.PluginKV as TTL to plugin KV entries without one
// or with a later expiry.
func (s *Store) purgeKV(ctx context.Context, now time.Time) (int, error) {
	bound := s.cfg.Retention.PluginKV
	if bound <= 0 {
		return 0, nil
	}
	// Rounded up as KVPut's expiry is, so what KVPut bounded is left alone.
	at := now.Add(bound)
	limit := uint64(at.Unix())
	if at.Nanosecond() > 0 {
		limit++
	}
	beyond := func(exp uint64) bool { return exp == 0 || exp > limit }
	return s.sweep(ctx, prefixKV, func(_ *badger.Txn, item *badger.Item) bool {
		return beyond(item.ExpiresAt())
	}, func(keys [][]byte) (int, error) {
		if err := s.enter(); err != nil {
			return 0, err
		}
		defer s.mu.RUnlock()
		// Exclusive: a KVPut between the read and the write below would
		// otherwise be overwritten with the older value.
		s.writeGate.Lock()
		defer s.writeGate.Unlock()
		n := 0
		err := s.db.Update(func(txn *badger.Txn) error {
			for _, k := range keys {
				item, err := txn.Get(k)
				if errors.Is(err, badger.ErrKeyNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				if !beyond(item.ExpiresAt()) {
					continue
				}
				v, err := item.ValueCopy(nil)
				if err != nil {
					return err
				}
				e := badger.NewEntry(k, v)
				e.ExpiresAt = limit
				if err := txn.SetEntry(e); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		return n, err
	})
}

// purgeDataKeys deletes the vault data keys of subjects that have no
// vaulted traits left (they expired with their events): the key itself is
// not personal, but its name is the subject's pseudonym.
func (s *Store) purgeDataKeys(ctx context.Context, _ time.Time) (int, error) {
	orphan := func(txn *badger.Txn, key []byte) bool {
		subject, ok := bytes.CutPrefix(key, []byte(prefixDataKey))
		if !ok || len(subject) == 0 || subject[len(subject)-1] != 0 {
			return false
		}
		tp := traitsPrefix(string(subject[:len(subject)-1]))
		opts := badger.DefaultIteratorOptions
		opts.Prefix = tp
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		it.Rewind()
		return !it.Valid()
	}
	return s.sweep(ctx, prefixDataKey, func(txn *badger.Txn, item *badger.Item) bool {
		return orphan(txn, item.Key())
	}, func(keys [][]byte) (int, error) {
		if err := s.enter(); err != nil {
			return 0, err
		}
		defer s.mu.RUnlock()
		// Exclusive: no commit may be sealing new traits under one of
		// these keys while it is checked and deleted.
		s.writeGate.Lock()
		defer s.writeGate.Unlock()
		n := 0
		err := s.db.Update(func(txn *badger.Txn) error {
			for _, k := range keys {
				if !orphan(txn, k) {
					continue
				}
				if err := txn.Delete(k); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		return n, err
	})
}

// purgeRequests deletes privacy requests that completed more than
// Retention.Requests ago. A request is JSON with a completed_at member
// (RFC 3339 text or Unix milliseconds); one without it is not complete.
func (s *Store) purgeRequests(ctx context.Context, now time.Time) (int, error) {
	cutoff := now.Add(-s.cfg.Retention.Requests)
	return s.sweep(ctx, prefixRequest, func(_ *badger.Txn, item *badger.Item) bool {
		var done time.Time
		err := item.Value(func(v []byte) error {
			var r struct {
				CompletedAt json.RawMessage `json:"completed_at"`
			}
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			done = parseInstant(r.CompletedAt)
			return nil
		})
		return err == nil && !done.IsZero() && done.Before(cutoff)
	}, s.deleteKeys)
}

// parseInstant reads a JSON time: RFC 3339 text or Unix milliseconds; zero
// for null, absent or anything else.
func parseInstant(raw json.RawMessage) time.Time {
	if len(raw) == 0 || string(raw) == "null" {
		return time.Time{}
	}
	var txt string
	if json.Unmarshal(raw, &txt) == nil {
		t, err := time.Parse(time.RFC3339Nano, txt)
		if err != nil {
			return time.Time{}
		}
		return t
	}
	ms, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}
