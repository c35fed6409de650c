package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// SegmentMark is the position of FoldSegmentChanges in the segments
// stream: every message up to Seq of the stream incarnation Epoch is
// counted in the segment sizes and the recent changes log.
type SegmentMark struct {
	// Epoch identifies the stream incarnation (its creation time: a
	// stream created again numbers its messages from 1).
	Epoch uint64
	// Seq is the last stream sequence counted.
	Seq uint64
}

// FoldSegmentChanges counts changes, read from the segments stream in
// order, in the segment sizes and the recent changes log (kept 30 days),
// and records mark, in one transaction: after a crash the changes are
// counted again from the previous mark, never twice. Changes naming an
// invalid site or segment, or without a transition, are skipped. It is
// meant for Config.SharedSegments (cluster mode), where profile writes
// leave sizes and log to it.
func (s *Store) FoldSegmentChanges(ctx context.Context, changes []*vigiev1.SegmentChange, mark SegmentMark) error {
	var w segWrite
	for _, c := range changes {
		t := c.GetTransition()
		if validName("site", c.GetSite()) != nil || c.GetSite() == "" || c.GetSegment() == "" || validName("segment", c.GetSegment()) != nil ||
			(t != vigiev1.Transition_TRANSITION_ENTERED && t != vigiev1.Transition_TRANSITION_EXITED) {
			continue
		}
		w.add(c)
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.disk.room(); err != nil {
		return fmt.Errorf("storage: fold segment changes: %w", err)
	}
	s.prof.segMu.Lock() // lock order: segMu before writeGate (profiles.go)
	defer s.prof.segMu.Unlock()
	s.writeGate.RLock()
	defer s.writeGate.RUnlock()
	var next uint64
	err := s.db.Update(func(txn *badger.Txn) error {
		seq, err := s.loadSegSeq(txn)
		if err != nil {
			return err
		}
		for k, d := range w.deltas {
			if d == 0 {
				continue
			}
			if err := addSegSize(txn, k.site, k.segment, d); err != nil {
				return err
			}
		}
		logExp := expiry(segLogTTL)
		for _, c := range w.changes {
			v, err := proto.Marshal(c)
			if err != nil {
				return fmt.Errorf("storage: encode segment change: %w", err)
			}
			e := badger.NewEntry(segLogKey(c.GetSite(), seq), v)
			e.ExpiresAt = logExp
			if err := txn.SetEntry(e); err != nil {
				return err
			}
			seq++
		}
		if err := txn.Set([]byte(keySegmentSeq), binary.BigEndian.AppendUint64(nil, seq)); err != nil {
			return err
		}
		next = seq
		m := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, mark.Epoch), mark.Seq)
		return txn.Set([]byte(keySegmentFold), m)
	})
	if err != nil {
		return fmt.Errorf("storage: fold segment changes: %w", err)
	}
	s.prof.seq, s.prof.seqLoaded = next, true
	return nil
}

// ReadSegmentMark returns the mark FoldSegmentChanges recorded last, the
// zero SegmentMark when it never ran.
func (s *Store) ReadSegmentMark(ctx context.Context) (SegmentMark, error) {
	v, err := s.getValue(ctx, "segment mark", []byte(keySegmentFold))
	if errors.Is(err, ErrNotFound) {
		return SegmentMark{}, nil
	}
	if err != nil {
		return SegmentMark{}, err
	}
	if len(v) != 16 {
		return SegmentMark{}, fmt.Errorf("storage: segment mark: %w", ErrCorrupt)
	}
	return SegmentMark{Epoch: binary.BigEndian.Uint64(v), Seq: binary.BigEndian.Uint64(v[8:])}, nil
}

// eraseFromSizes takes an erasure's subjects out of the segment sizes of
// site (deltas: by segment, negative) in txn; seq is the next segment
// change sequence (loadSegSeq, or a previous call's result in the same
// txn). The caller holds segMu and sets s.prof.seq to the sequence
// returned after the commit (seq itself without SharedSegments). A single node subtracts them at once. With
// SharedSegments the sizes are the stream's, so it queues for publication
// one exit per subject and segment naming nobody (no subject; event id
// "erased-<time>-<seq>", fixed here so that a publication made again is
// deduplicated): every node's fold subtracts it, and the subject is not
// named again on the stream the erasure cleans.
func (s *Store) eraseFromSizes(txn *badger.Txn, site string, deltas map[string]int64, seq uint64) (uint64, error) {
	if !s.cfg.SharedSegments {
		for seg, d := range deltas {
			if err := addSegSize(txn, site, seg, d); err != nil {
				return 0, err
			}
		}
		return seq, nil
	}
	now := time.Now()
	for seg, d := range deltas {
		for ; d < 0; d++ {
			c := &vigiev1.SegmentChange{Site: site, Segment: seg, Transition: vigiev1.Transition_TRANSITION_EXITED,
				AtMs: now.UnixMilli(), EventId: fmt.Sprintf("erased-%d-%d", now.UnixNano(), seq)}
			v, err := proto.Marshal(c)
			if err != nil {
				return 0, fmt.Errorf("storage: encode segment change: %w", err)
			}
			if err := txn.Set(pendingKey(seq), v); err != nil {
				return 0, err
			}
			seq++
		}
	}
	if err := txn.Set([]byte(keySegmentSeq), binary.BigEndian.AppendUint64(nil, seq)); err != nil {
		return 0, err
	}
	return seq, nil
}

// SegmentSnapshot returns, read together, the mark FoldSegmentChanges
// recorded last and the segment sizes of every site (by site, then
// segment; segments with no subject omitted).
func (s *Store) SegmentSnapshot(ctx context.Context) (SegmentMark, map[string]map[string]int64, error) {
	if err := s.enter(); err != nil {
		return SegmentMark{}, nil, err
	}
	defer s.mu.RUnlock()
	var mark SegmentMark
	sizes := map[string]map[string]int64{}
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(keySegmentFold))
		switch {
		case err == nil:
			err = item.Value(func(v []byte) error {
				if len(v) != 16 {
					return fmt.Errorf("%w: segment mark", ErrCorrupt)
				}
				mark = SegmentMark{Epoch: binary.BigEndian.Uint64(v), Seq: binary.BigEndian.Uint64(v[8:])}
				return nil
			})
			if err != nil {
				return err
			}
		case !errors.Is(err, badger.ErrKeyNotFound):
			return err
		}
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(prefixSegSize)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			site, seg, ok := bytes.Cut(it.Item().Key()[len(prefixSegSize):], []byte{0})
			if !ok {
				continue
			}
			err := it.Item().Value(func(v []byte) error {
				if len(v) != 8 {
					return fmt.Errorf("%w: segment size", ErrCorrupt)
				}
				if n := int64(binary.BigEndian.Uint64(v)); n > 0 {
					if sizes[string(site)] == nil {
						sizes[string(site)] = map[string]int64{}
					}
					sizes[string(site)][string(seg)] = n
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return SegmentMark{}, nil, fmt.Errorf("storage: segment snapshot: %w", err)
	}
	return mark, sizes, nil
}

// SeedSegmentSizes sets the segment sizes (by site, then segment) and the
// mark at once, replacing any sizes held: a node that cannot read the
// segments stream from its start (its first messages have aged out)
// starts from another node's SegmentSnapshot. Invalid names are skipped.
func (s *Store) SeedSegmentSizes(ctx context.Context, mark SegmentMark, sizes map[string]map[string]int64) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	s.prof.segMu.Lock()
	defer s.prof.segMu.Unlock()
	s.writeGate.RLock()
	defer s.writeGate.RUnlock()
	err := s.db.Update(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = []byte(prefixSegSize)
		it := txn.NewIterator(opts)
		var old [][]byte
		for it.Rewind(); it.Valid(); it.Next() {
			old = append(old, it.Item().KeyCopy(nil))
		}
		it.Close()
		for _, k := range old {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		for site, segs := range sizes {
			if site == "" || validName("site", site) != nil {
				continue
			}
			for seg, n := range segs {
				if seg == "" || validName("segment", seg) != nil || n <= 0 {
					continue
				}
				if err := txn.Set(segSizeKey(site, seg), binary.BigEndian.AppendUint64(nil, uint64(n))); err != nil {
					return err
				}
			}
		}
		m := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, mark.Epoch), mark.Seq)
		return txn.Set([]byte(keySegmentFold), m)
	})
	if err != nil {
		return fmt.Errorf("storage: seed segment sizes: %w", err)
	}
	return nil
}
