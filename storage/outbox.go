package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"
)

// OutboxItem is one entry waiting to be published: a stored event, or a
// Message.
type OutboxItem struct {
	// Key identifies the entry for AckOutbox.
	Key []byte
	// Topic is the NATS subject to publish on.
	Topic string
	// MsgID is the Nats-Msg-Id to publish with: the event id, or the
	// Message's ID.
	MsgID string
	// Data is the stored event bytes, or the Message's data.
	Data []byte
	// KVDelete is the Message's KVDelete.
	KVDelete bool
}

// Message is a NATS message that is committed to the outbox with its own
// payload, in the same Badger transaction as the write it reports (see
// PutConsent), and then published like stored events, in commit order.
type Message struct {
	// Topic is the subject to publish on; required, at most 1024 bytes.
	Topic string
	// ID is the Nats-Msg-Id: required, at most 255 bytes, and derived
	// from the message alone so that a republish after a crash is
	// deduplicated by the stream.
	ID string
	// Data is the payload, at most 1 MiB.
	Data []byte
	// KVDelete makes the message a KV delete: Topic is a key's
	// $KV.<bucket>.<key> subject, and the publisher sends it with the
	// header KV-Operation: DEL (what jetstream.KeyValue.Delete publishes);
	// Data stays in the delete marker (KeyValue.Get does not show it).
	// Default false: a plain message (a KV put on a $KV subject).
	KVDelete bool
}

// validateMessages checks msgs before anything is written.
func validateMessages(msgs []Message) error {
	for i, m := range msgs {
		switch {
		case m.Topic == "" || len(m.Topic) > maxTopicLen:
			return fmt.Errorf("%w: message %d: topic empty or too long", ErrInvalidRecord, i)
		case m.ID == "" || len(m.ID) > maxNameLen:
			return fmt.Errorf("%w: message %d: id empty or too long", ErrInvalidRecord, i)
		case len(m.Data) > maxRecordBytes:
			return fmt.Errorf("%w: message %d: larger than %d bytes", ErrInvalidRecord, i, maxRecordBytes)
		}
	}
	return nil
}

// update runs write and adds the outbox entries of msgs in one Badger
// transaction, so that the messages are published if and only if the write
// is committed. The entries take the next outbox sequence numbers under
// seqMu, like the committer's, so every outbox entry becomes visible in
// sequence order (the publisher reads from a cursor and relies on it).
// Like Append, it refuses with ErrOutboxFull the messages that would take
// the outbox past Config.MaxOutbox, and with ErrDiskFull everything while
// the disk is full. size estimates the bytes write adds (for the free-space
// monitor); op names the operation in errors.
//
// Every storage write that must tell the outside world (a consent choice,
// an erasure…) goes through update.
func (s *Store) update(ctx context.Context, op string, msgs []Message, size int, write func(txn *badger.Txn) error) error {
	return s.updateMore(ctx, op, msgs, 0, size, false, func(txn *badger.Txn) ([]Message, error) { return nil, write(txn) })
}

// updateMore is update whose write also returns messages, at most more of
// them, committed to the outbox before msgs (ReplaceTraits: the shared
// vault's put of what it sealed, before the event announcing it). A
// deletion's messages (an erasure's shared deletes) are accepted while
// the disk is full.
func (s *Store) updateMore(ctx context.Context, op string, msgs []Message, more, size int, deletion bool, write func(txn *badger.Txn) ([]Message, error)) error {
	if err := validateMessages(msgs); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.disk.room(); err != nil && !deletion {
		return fmt.Errorf("storage: %s: %w", op, err)
	}
	if n := int64(len(msgs) + more); n > 0 {
		if s.outboxInUse.Add(n)+s.outboxLen.Load() > s.cfg.MaxOutbox {
			s.outboxInUse.Add(-n)
			return ErrOutboxFull
		}
		defer s.outboxInUse.Add(-n)
	}
	s.writeGate.RLock()
	defer s.writeGate.RUnlock()
	s.seqMu.Lock()
	defer s.seqMu.Unlock()
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	first, err := write(txn)
	if err != nil {
		return fmt.Errorf("storage: %s: %w", op, err)
	}
	if len(first) > more {
		return fmt.Errorf("storage: %s: %w: more messages than announced", op, ErrInvalidRecord)
	}
	if len(first) > 0 {
		msgs = append(first[:len(first):len(first)], msgs...)
	}
	n := int64(len(msgs))
	seq := s.nextSeq
	for _, m := range msgs {
		e := badger.NewEntry(appendOutboxKey(nil, seq), appendOutboxMessage(nil, m.Topic, m.ID, m.Data, m.KVDelete))
		if err := txn.SetEntry(e); err != nil {
			return fmt.Errorf("storage: %s: outbox: %w", op, err)
		}
		size += len(e.Key) + len(e.Value) + entryOverhead
		seq++
	}
	s.addPending(s.nextSeq, seq)
	if err := txn.Commit(); err != nil {
		s.removePending(s.nextSeq, seq)
		return fmt.Errorf("storage: %s: %w", op, err)
	}
	s.nextSeq = seq
	s.disk.wrote(int64(size))
	if n > 0 {
		s.outboxLen.Add(n)
		select {
		case s.signal <- struct{}{}:
		default:
		}
	}
	return nil
}

// ctxCheckEvery is how many iterator steps pass between ctx checks.
const ctxCheckEvery = 256

// recoverOutbox counts the outbox and resumes its sequence (called by Open).
func (s *Store) recoverOutbox() error {
	var n int64
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = []byte(prefixOutbox)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
			seq, ok := parseOutboxKey(it.Item().Key())
			if !ok {
				continue
			}
			s.pending.add(seq)
			if seq >= s.nextSeq {
				s.nextSeq = seq + 1
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: recover outbox: %w", err)
	}
	s.outboxLen.Store(n)
	return nil
}

// Outbox returns up to max outbox entries, oldest first. Event entries whose
// event is gone (erased or expired) are skipped and deleted.
func (s *Store) Outbox(ctx context.Context, max int) ([]OutboxItem, error) {
	return s.OutboxAfter(ctx, nil, max)
}

// OutboxAfter is Outbox starting after the entry with key after (nil: from
// the oldest). Entries are appended in key order by a single committer, so a
// drainer that passes the last key it has handled never walks again over the
// delete markers of entries it already acknowledged: without it, every read
// would step over all of them until compaction drops them.
func (s *Store) OutboxAfter(ctx context.Context, after []byte, max int) ([]OutboxItem, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	if max <= 0 {
		return nil, nil
	}
	var (
		out   []OutboxItem
		stale [][]byte
	)
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = []byte(prefixOutbox)
		it := txn.NewIterator(opts)
		defer it.Close()
		steps := 0
		if after == nil {
			it.Rewind()
		} else {
			it.Seek(after)
			if it.Valid() && bytes.Equal(it.Item().Key(), after) {
				it.Next()
			}
		}
		for ; it.Valid() && len(out) < max; it.Next() {
			if steps++; steps%ctxCheckEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			item := it.Item()
			var oi OutboxItem
			var ek []byte
			isMsg := false
			err := item.Value(func(v []byte) error {
				if isMsg = len(v) > 0 && v[0] == outboxMessageTag; isMsg {
					topic, id, data, del, ok := parseOutboxMessage(v[1:])
					if !ok {
						return ErrCorrupt
					}
					oi.Topic, oi.MsgID, oi.Data, oi.KVDelete = string(topic), string(id), bytes.Clone(data), del
					return nil
				}
				topic, eventKey, ok := parseOutboxValue(v)
				if !ok {
					return ErrCorrupt
				}
				oi.Topic = string(topic)
				ek = append(ek, eventKey...)
				return nil
			})
			if errors.Is(err, ErrCorrupt) {
				s.log.Warn("storage: dropping undecodable outbox entry")
				stale = append(stale, item.KeyCopy(nil))
				continue
			}
			if err != nil {
				return err
			}
			if isMsg { // it carries its payload
				oi.Key = item.KeyCopy(nil)
				out = append(out, oi)
				continue
			}
			_, _, id, ok := parseEventKey(ek)
			ev, err := txn.Get(ek)
			if !ok || errors.Is(err, badger.ErrKeyNotFound) {
				stale = append(stale, item.KeyCopy(nil))
				continue
			}
			if err != nil {
				return err
			}
			if oi.Data, err = ev.ValueCopy(nil); err != nil {
				return err
			}
			oi.Key = item.KeyCopy(nil)
			oi.MsgID = string(id)
			out = append(out, oi)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: read outbox: %w", err)
	}
	if len(stale) > 0 {
		if err := s.deleteOutbox(stale); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// AckOutbox deletes published entries in one write batch. Keys already
// deleted are ignored; keys that are not outbox keys are rejected with
// ErrInvalidKey before anything is deleted.
func (s *Store) AckOutbox(keys [][]byte) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	for _, k := range keys {
		if _, ok := parseOutboxKey(k); !ok {
			return fmt.Errorf("%w: not an outbox key", ErrInvalidKey)
		}
	}
	return s.deleteOutbox(keys)
}

// addPending records the outbox sequences lo..hi-1 of a transaction about
// to commit: before the commit, so that no reader can see (and acknowledge)
// an entry that is not yet in the set.
func (s *Store) addPending(lo, hi uint64) {
	if lo == hi {
		return
	}
	s.pendMu.Lock()
	s.pending.addRange(lo, hi)
	s.pendMu.Unlock()
}

// removePending undoes addPending after a failed commit.
func (s *Store) removePending(lo, hi uint64) {
	if lo == hi {
		return
	}
	s.pendMu.Lock()
	s.pending.removeRange(lo, hi)
	s.pendMu.Unlock()
}

// deleteOutbox deletes the live keys among keys and adjusts the counter.
// Liveness comes from the in-memory pending set, not from a Badger lookup
// per key (which grew with the LSM during a soak).
func (s *Store) deleteOutbox(keys [][]byte) error {
	s.ackMu.Lock()
	defer s.ackMu.Unlock()
	s.writeGate.RLock()
	defer s.writeGate.RUnlock()
	live := make([][]byte, 0, len(keys))
	s.pendMu.Lock()
	for _, k := range keys {
		if seq, ok := parseOutboxKey(k); ok && s.pending.remove(seq) {
			live = append(live, k)
		}
	}
	s.pendMu.Unlock()
	if len(live) == 0 {
		return nil
	}
	wb := s.db.NewWriteBatch()
	for _, k := range live {
		if err := wb.Delete(k); err != nil {
			wb.Cancel()
			s.repend(live)
			return fmt.Errorf("storage: ack outbox: %w", err)
		}
	}
	if err := wb.Flush(); err != nil {
		s.repend(live)
		return fmt.Errorf("storage: ack outbox: %w", err)
	}
	s.outboxLen.Add(-int64(len(live)))
	return nil
}

// repend puts back into the pending set, after a failed delete, the keys
// among keys that are still in Badger (a failed write batch may have
// deleted some of them), and takes the others off the counter, so both
// stay exact.
func (s *Store) repend(keys [][]byte) {
	gone := int64(0)
	_ = s.db.View(func(txn *badger.Txn) error {
		s.pendMu.Lock()
		defer s.pendMu.Unlock()
		for _, k := range keys {
			seq, _ := parseOutboxKey(k)
			if _, err := txn.Get(k); errors.Is(err, badger.ErrKeyNotFound) {
				gone++
				continue
			}
			s.pending.add(seq) // present, or unknown: keep it
		}
		return nil
	})
	s.outboxLen.Add(-gone)
}

// OutboxLen returns the number of outbox entries (an atomic counter,
// recovered at Open by counting outbox keys).
func (s *Store) OutboxLen() int64 { return s.outboxLen.Load() }

// OutboxSignal returns a channel that receives (without blocking the
// committer; capacity 1) after each commit that added outbox entries.
func (s *Store) OutboxSignal() <-chan struct{} { return s.signal }

// Enqueue commits msgs to the outbox alone, in one transaction: what a
// caller must publish (through the outbox, so it survives a NATS outage
// and a restart) when no write of its own goes with it.
func (s *Store) Enqueue(ctx context.Context, msgs ...Message) error {
	if len(msgs) == 0 {
		return nil
	}
	return s.update(ctx, "enqueue", msgs, 0, func(*badger.Txn) error { return nil })
}
