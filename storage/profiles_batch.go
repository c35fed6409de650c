package storage

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"time"

	"github.com/cespare/xxhash/v2"
	badger "github.com/dgraph-io/badger/v4"

	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// The stripes a batch locks are a bit mask, so there can be at most 64.
const _ = uint(64 - profileLockStripes)

// ObserveResult is ObserveEvent's result for one event of a batch.
type ObserveResult struct {
	// Profile is the profile right after this event: a snapshot, which
	// later events of the same batch do not change.
	Profile *Profile
	// Observed is false when the event was already observed (nothing
	// changed) or Err is set.
	Observed bool
	// Applied reports, for ObserveEventsFor, that the plugin's outcome
	// for this event was applied already (ApplySegment's idempotency
	// marker): a redelivery the plugin decided on before.
	Applied bool
	// Err is the event's own error: an invalid event, ErrNotFound when it
	// was already observed and the profile was deleted since, ErrCorrupt
	// when the stored profile does not decode.
	Err error
}

// ApplyResult is ApplySegment's result for one outcome of a batch.
type ApplyResult struct {
	// Applied are the changes applied (see ApplySegment).
	Applied []*vigiev1.SegmentChange
	// Dup reports an outcome already applied (nothing changed).
	Dup bool
	// Err is the outcome's own error: an invalid outcome or attributes
	// patch, ErrNotFound for a missing profile, ErrCorrupt.
	Err error
}

// ObserveEvents is ObserveEvent for a batch, in order: events of the same
// subject are applied in the order given, and each result's Profile is the
// state right after that event (the counts include it and not the later
// ones). The work runs in one Badger transaction (several only if Badger's
// size limit is reached; each commits whole events), each distinct profile
// is decoded once and written once per transaction, and the stripes of all
// subjects are held for the whole call. The error is for whole-call
// failures only (closed store, cancelled context, I/O); the events of
// transactions committed before such a failure stay observed, which
// retrying the batch cannot double count.
func (s *Store) ObserveEvents(ctx context.Context, evs []*vigiev1.Event) ([]ObserveResult, error) {
	return s.ObserveEventsFor(ctx, "", evs)
}

// ObserveEventsFor is ObserveEvents for the segmenter plugin, which also
// reports, for each event observed before, whether the plugin's outcome
// for it was applied already (ObserveResult.Applied): the segment stage
// then does not give the event to the plugin again, whose own state (the
// response model's counts) would count it twice, on another node after a
// partition moved. The marker read costs nothing for a first delivery.
func (s *Store) ObserveEventsFor(ctx context.Context, plugin string, evs []*vigiev1.Event) ([]ObserveResult, error) {
	res := make([]ObserveResult, len(evs))
	b := profBatch{s: s, subj: make([]int, len(evs)), plugin: plugin}
	for i, ev := range evs {
		if err := validEvent(ev); err != nil {
			res[i].Err = err
			b.subj[i] = -1
			continue
		}
		b.subj[i] = b.subject(ev.GetSite(), ev.GetSubject(), i)
	}
	err := b.run(ctx, false, func(txn *badger.Txn, from, to int) error {
		for i := from; i < to; i++ {
			if b.subj[i] < 0 {
				continue
			}
			if err := b.observe(txn, i, evs[i], &res[i]); err != nil {
				return err
			}
		}
		return nil
	}, func(from, to int) {
		for i := from; i < to; i++ {
			if b.subj[i] >= 0 {
				res[i] = ObserveResult{}
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("storage: observe events: %w", err)
	}
	return res, nil
}

// ApplySegments is ApplySegment for a batch, in order, with the same
// semantics per outcome (idempotency marker per plugin, site and event,
// consistency filtering of transitions, sizes, log and pending changes in
// commit order). Like ObserveEvents it uses one transaction (several only
// past Badger's size limit), decodes and writes each profile once, and
// returns an error only for whole-call failures. An outcome without AtMs
// gets the time of the call.
func (s *Store) ApplySegments(ctx context.Context, os []SegmentOutcome) ([]ApplyResult, error) {
	res := make([]ApplyResult, len(os))
	b := profBatch{s: s, subj: make([]int, len(os))}
	changes := false
	for i := range os {
		if err := validOutcome(&os[i]); err != nil {
			res[i].Err = err
			b.subj[i] = -1
			continue
		}
		b.subj[i] = b.subject(os[i].Site, os[i].Subject, i)
		changes = changes || len(os[i].Changes) > 0
	}
	now := time.Now().UnixMilli()
	err := b.run(ctx, changes, func(txn *badger.Txn, from, to int) error {
		for i := from; i < to; i++ {
			if b.subj[i] < 0 {
				continue
			}
			if err := b.apply(txn, i, &os[i], now, &res[i]); err != nil {
				return err
			}
		}
		return nil
	}, func(from, to int) {
		for i := from; i < to; i++ {
			if b.subj[i] >= 0 {
				res[i] = ApplyResult{}
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("storage: apply segments: %w", err)
	}
	return res, nil
}

// profState is one distinct subject of a batch and its working profile.
type profState struct {
	site, subject string
	// last is the index of the subject's last item in the batch.
	last int
	// loaded: p and err hold the profile as of the transaction; p is nil
	// when err is set (ErrNotFound or ErrCorrupt).
	loaded bool
	p      *Profile
	err    error
	dirty  bool
}

// profBatch is the state of one ObserveEvents or ApplySegments call.
type profBatch struct {
	s *Store
	// plugin is ObserveEventsFor's segmenter ("": none).
	plugin string
	// subj[i] indexes states for item i; -1 for an invalid item.
	subj   []int
	states []profState
	mask   uint64 // stripes of all subjects
	dirty  []int  // states written to by the current transaction
	w      segWrite
	// index maps a subject to its state once there are several.
	index map[subjectKey]int
}

// subjectKey identifies a profile.
type subjectKey struct{ site, subject string }

// subject returns the state index of (site, subject), adding it, and
// records item i as its last.
func (b *profBatch) subject(site, subject string, i int) int {
	k, ok := -1, false
	switch {
	case b.index != nil:
		k, ok = b.index[subjectKey{site, subject}]
	case len(b.states) == 1:
		if st := &b.states[0]; st.site == site && st.subject == subject {
			k, ok = 0, true
		} else {
			b.index = make(map[subjectKey]int, min(len(b.subj), 64))
			b.index[subjectKey{st.site, st.subject}] = 0
		}
	}
	if !ok {
		k = len(b.states)
		b.states = append(b.states, profState{site: site, subject: subject})
		b.mask |= 1 << stripeIndex(site, subject)
		if b.index != nil {
			b.index[subjectKey{site, subject}] = k
		}
	}
	b.states[k].last = i
	return k
}

// run locks what the batch needs (store, subject stripes in index order,
// segMu when seg, then writeGate) and calls do over all items in as few
// transactions as Badger allows: on badger.ErrTxnTooBig the transaction is
// discarded, reset(from, to) clears the results of its items, every
// profile is reloaded and the items are retried in halves. After each
// commit the dirty profiles are written and the segment sequence stored.
func (b *profBatch) run(ctx context.Context, seg bool, do func(txn *badger.Txn, from, to int) error, reset func(from, to int)) error {
	if b.mask == 0 {
		return nil // nothing valid: no I/O, like the single-item calls
	}
	s := b.s
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	s.prof.lockStripes(b.mask)
	defer s.prof.unlockStripes(b.mask)
	if seg {
		s.prof.segMu.Lock()
		defer s.prof.segMu.Unlock()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.disk.room(); err != nil {
		return err
	}
	s.writeGate.RLock()
	defer s.writeGate.RUnlock()
	n := len(b.subj)
	size := n
	for from := 0; from < n; {
		to := min(from+size, n)
		var newSeq uint64
		err := s.db.Update(func(txn *badger.Txn) error {
			if err := do(txn, from, to); err != nil {
				return err
			}
			for _, k := range b.dirty {
				if err := s.putProfile(txn, b.states[k].p); err != nil {
					return err
				}
			}
			if len(b.w.changes) > 0 {
				var err error
				newSeq, err = s.flushSegWrite(txn, &b.w)
				return err
			}
			return nil
		})
		if err != nil {
			// Forget everything the failed transaction did in memory.
			for k := range b.states {
				st := &b.states[k]
				st.loaded, st.p, st.err, st.dirty = false, nil, nil, false
			}
			b.dirty, b.w = b.dirty[:0], segWrite{}
			reset(from, to)
			if errors.Is(err, badger.ErrTxnTooBig) && to-from > 1 {
				size = (to - from + 1) / 2
				continue
			}
			return err
		}
		if len(b.w.changes) > 0 {
			s.prof.seq, s.prof.seqLoaded = newSeq, true
		}
		for _, k := range b.dirty {
			b.states[k].dirty = false
		}
		// A fresh segWrite: results keep sub-slices of the old changes.
		b.dirty, b.w = b.dirty[:0], segWrite{}
		from = to
	}
	return nil
}

// profile returns the working state of item i's subject, loading the
// profile on first use in txn. The error is for I/O failures only.
func (b *profBatch) profile(txn *badger.Txn, i int) (*profState, error) {
	st := &b.states[b.subj[i]]
	if !st.loaded {
		p, err := getProfile(txn, st.site, st.subject)
		if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrCorrupt) {
			return nil, err
		}
		st.p, st.err, st.loaded = p, err, true
	}
	return st, nil
}

// touch marks the profile of item i as written by the current transaction.
func (b *profBatch) touch(i int) {
	if st := &b.states[b.subj[i]]; !st.dirty {
		st.dirty = true
		b.dirty = append(b.dirty, b.subj[i])
	}
}

// snapshot returns the profile of st for item i: st.p itself when i is the
// subject's last item (nothing mutates it any more), else a deep copy.
func (b *profBatch) snapshot(st *profState, i int) *Profile {
	if i == st.last {
		return st.p
	}
	return st.p.clone()
}

// observe is ObserveEvent for item i inside txn.
func (b *profBatch) observe(txn *badger.Txn, i int, ev *vigiev1.Event, r *ObserveResult) error {
	portable := b.s.cfg.PortableProfiles
	mk := observedKey(ev.GetSite(), ev.GetId())
	seen := false
	if !portable {
		var err error
		if seen, err = exists(txn, mk); err != nil {
			return err
		}
	}
	st, err := b.profile(txn, i)
	if err != nil {
		return err
	}
	if portable && st.p != nil {
		seen = slices.Contains(st.p.Events, xxhash.Sum64String(ev.GetId()))
	}
	if !seen && errors.Is(st.err, ErrNotFound) {
		st.p, st.err = &Profile{Site: st.site, Subject: st.subject}, nil
	}
	if st.err != nil {
		r.Err = fmt.Errorf("storage: observe event: %w", st.err)
		return nil
	}
	if seen && b.plugin != "" {
		if portable {
			r.Applied = slices.Contains(st.p.Outcomes, outcomeMarker(b.plugin, ev.GetId()))
		} else if r.Applied, err = exists(txn, appliedKey(b.plugin, ev.GetSite(), ev.GetId())); err != nil {
			return err
		}
	}
	if !seen {
		st.p.observe(ev)
		b.touch(i)
		if portable {
			st.p.Events = remember(st.p.Events, xxhash.Sum64String(ev.GetId()))
		} else if err := setMarker(txn, mk); err != nil {
			return err
		}
		r.Observed = true
	}
	r.Profile = b.snapshot(st, i)
	return nil
}

// outcomeMarker is a portable profile's marker (Profile.Outcomes) of
// plugin's outcome for event id.
func outcomeMarker(plugin, id string) uint64 { return xxhash.Sum64String(plugin + "\x00" + id) }

// apply is ApplySegment for item i inside txn (o is valid).
func (b *profBatch) apply(txn *badger.Txn, i int, o *SegmentOutcome, now int64, r *ApplyResult) error {
	portable := b.s.cfg.PortableProfiles
	mk := appliedKey(o.Plugin, o.Site, o.EventID)
	if !portable {
		seen, err := exists(txn, mk)
		if err != nil {
			return err
		}
		if seen {
			r.Dup = true
			return nil
		}
	}
	st, err := b.profile(txn, i)
	if err != nil {
		return err
	}
	outcome := outcomeMarker(o.Plugin, o.EventID)
	if portable && st.p != nil && slices.Contains(st.p.Outcomes, outcome) {
		r.Dup = true
		return nil
	}
	if len(o.CreatePurposes) > 0 && errors.Is(st.err, ErrNotFound) {
		at := o.AtMs
		if at == 0 {
			at = now
		}
		st.p, st.err = &Profile{Site: st.site, Subject: st.subject, FirstSeenMs: at, LastSeenMs: at,
			Purposes: slices.Clone(o.CreatePurposes)}, nil
	}
	if st.err != nil {
		r.Err = fmt.Errorf("storage: apply segment: %w", st.err)
		return nil
	}
	p := st.p
	attrs := p.Attributes
	if len(o.Attributes) > 0 {
		merged, err := mergePatch(p.Attributes, o.Attributes)
		if err != nil {
			r.Err = fmt.Errorf("storage: apply segment: %w: attributes: %w", ErrInvalidRecord, err)
			return nil
		}
		if len(merged) > maxAttributes {
			r.Err = fmt.Errorf("storage: apply segment: %w: attributes larger than %d bytes", ErrInvalidRecord, maxAttributes)
			return nil
		}
		if string(merged) == "{}" {
			merged = nil
		}
		attrs = merged
	}
	at := o.AtMs
	if at == 0 {
		at = now
	}
	p.Score += o.ScoreDelta
	p.Attributes = attrs
	start := len(b.w.changes)
	for _, c := range o.Changes {
		seg := c.GetSegment()
		j, in := slices.BinarySearch(p.Segments, seg)
		enter := c.GetTransition() == vigiev1.Transition_TRANSITION_ENTERED
		if enter == in {
			continue
		}
		if enter {
			p.Segments = slices.Insert(p.Segments, j, seg)
		} else {
			p.Segments = slices.Delete(p.Segments, j, j+1)
		}
		b.w.add(&vigiev1.SegmentChange{
			Site: o.Site, Subject: o.Subject, Segment: seg,
			Transition: c.GetTransition(), AtMs: at, EventId: o.EventID,
		})
	}
	if n := len(b.w.changes); n > start {
		r.Applied = b.w.changes[start:n:n]
	}
	b.touch(i)
	if portable {
		p.Outcomes = remember(p.Outcomes, outcome)
		return nil
	}
	return setMarker(txn, mk)
}

// remember appends id to a portable marker list, keeping the last
// MaxPortableMarkers.
func remember(ids []uint64, id uint64) []uint64 {
	if len(ids) >= MaxPortableMarkers {
		ids = slices.Delete(ids, 0, len(ids)-MaxPortableMarkers+1)
	}
	return append(ids, id)
}

// clone returns a deep copy of p (every bucket in one allocation).
func (p *Profile) clone() *Profile {
	c := *p
	c.Purposes = slices.Clone(p.Purposes)
	c.Segments = slices.Clone(p.Segments)
	c.Events = slices.Clone(p.Events)
	c.Outcomes = slices.Clone(p.Outcomes)
	c.Attributes = slices.Clone(p.Attributes)
	if p.Campaign != nil {
		c.Campaign = scrubCampaign(p.Campaign)
	}
	if p.Counters != nil {
		n := 0
		for _, bs := range p.Counters {
			n += len(bs)
		}
		all := make([]Bucket, 0, n)
		c.Counters = make(map[string][]Bucket, len(p.Counters))
		for k, bs := range p.Counters {
			from := len(all)
			all = append(all, bs...)
			c.Counters[k] = all[from:len(all):len(all)]
		}
	}
	return &c
}

// lockStripes locks the stripes in mask in index order (the order every
// multi-stripe holder uses, so batches cannot deadlock).
func (l *profileLocks) lockStripes(mask uint64) {
	for m := mask; m != 0; m &= m - 1 {
		l.stripes[bits.TrailingZeros64(m)].Lock()
	}
}

// unlockStripes unlocks the stripes in mask.
func (l *profileLocks) unlockStripes(mask uint64) {
	for m := mask; m != 0; m &= m - 1 {
		l.stripes[bits.TrailingZeros64(m)].Unlock()
	}
}
