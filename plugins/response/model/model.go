// Package model is the statistical core of Vigie's response plugin: how
// each contact type responds to each message type, refined as events
// arrive, and which message to send next. It is pure Go with no I/O.
//
// A cell is a contact type × a message type. A contact type is a named
// combination of segments (the first configured type whose segments a
// subject is all in, else Other). Exposures (a message sent or shown to a
// subject) and responses (a human open, a click, a conversion event within
// the message type's window; once per exposure) feed decayed pseudo-counts
// per cell: every exposure weighs 2^(−age/half-life), updated in O(1) per
// event. Each cell's response rate has a Beta posterior whose prior is
// learnt from the message type's other cells: their precision-weighted
// rate as the prior mean, and a distribution over the prior strength
// α+β weighted by how well it predicts the cells (see fitPrior), so that a
// small cell borrows strength from the others without trusting a point
// estimate of their spread. Credible intervals are equal-tailed, from
// gonum's stat/distuv.Beta. Next picks a message type by Thompson
// sampling on those posteriors. Holdout exposures (the subject was
// picked and the message held back) give the uplift of a message over no
// message, on conversions.
//
// The model keeps, per subject, its decayed contribution to each cell it
// touched and its exposures still awaiting a response, so that Forget
// subtracts exactly what one subject contributed (an objection under GDPR
// Art. 21(3), an erasure). The cells are always the sum of the subjects'
// contributions; the encoded state holds only the subjects and the cells
// are rebuilt from them.
//
// A Model is not safe for concurrent use; its read-only methods (Table,
// Estimate, Next, Uplift) may run concurrently with each other.
package model

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Exposure is a message sent or shown to a subject (or held back from a
// holdout subject).
type Exposure struct {
	// ID identifies the exposure (the event id); a repeated ID of an
	// exposure still awaiting a response is counted once. Optional.
	ID string
	// Subject is the subject's pseudonym; required.
	Subject string
	// Segments are the subject's segments at the time of the exposure;
	// they decide its contact type.
	Segments []string
	// MessageType names a configured message type.
	MessageType string
	// Arm is Treated, or Holdout for a subject held out.
	Arm Arm
	// Key matches opens and clicks to this exposure (e.g. channel and
	// campaign); opens and clicks are attributed to the latest treated
	// exposure with the same key.
	Key string
	// At is when the message was sent or shown; required.
	At time.Time
}

// Response is an open, a click or a conversion event of a subject.
type Response struct {
	// Subject is the subject's pseudonym; required.
	Subject string
	// Kind is Open, Click or Conversion.
	Kind Kind
	// Key, for opens and clicks, is the key of the exposure responded to.
	Key string
	// Event, for conversions, is the event name (e.g. Order Completed).
	Event string
	// At is when the response happened; required.
	At time.Time
}

// Outcome says what Expose or Respond did.
type Outcome uint8

// Outcomes.
const (
	// Counted: the exposure or response was added to its cell.
	Counted Outcome = iota
	// Duplicate: the exposure was already counted, or the exposure
	// responded to had already responded (or converted).
	Duplicate
	// NotCounted: the response was matched to an exposure whose message
	// type does not count that kind.
	NotCounted
	// NoExposure: no exposure awaiting a response matches.
	NoExposure
	// Ignored: the message type is not configured.
	Ignored
)

// String returns the outcome's name.
func (o Outcome) String() string {
	switch o {
	case Counted:
		return "counted"
	case Duplicate:
		return "duplicate"
	case NotCounted:
		return "not_counted"
	case NoExposure:
		return "no_exposure"
	case Ignored:
		return "ignored"
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// Model is the response model of one site. Use New.
type Model struct {
	cfg    Config
	lambda float64 // decay rate per ms; 0 for none
	ctIdx  map[string]int
	mtIdx  map[string]int
	// convMT lists, for each conversion event name, the message types
	// that count it.
	convMT   map[string][]int
	nct, nmt int
	// cells[ct*nmt+mt][arm] are the sums of the subjects' contributions.
	cells [][2]counts
	// shards[ShardOf(name, len(shards))][name] is a subject's record.
	shards   []map[string]*subject
	nsubject int
	dirty    []bool
	clock    int64 // latest event time seen, Unix ms
	// version[mt] changes whenever a cell of message type mt does.
	version []uint64
	priors  priorCache
	// readOnly marks a summary (NewSummary): cells without subjects.
	readOnly bool
}

// subject is what one subject contributed, and what it may still.
type subject struct {
	contribs []contrib
	pending  []pending
}

// contrib is a subject's contribution to one arm of one cell.
type contrib struct {
	cell uint32
	arm  Arm
	counts
}

// pending is an exposure awaiting a response.
type pending struct {
	id, key string
	at      int64
	cell    uint32
	arm     Arm
	flags   uint8
}

// Flags of a pending exposure.
const (
	responded uint8 = 1 << iota
	converted
)

// New returns an empty model for cfg.
func New(cfg Config) (*Model, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	m := &Model{
		cfg:    cfg,
		ctIdx:  make(map[string]int, len(cfg.ContactTypes)+1),
		mtIdx:  make(map[string]int, len(cfg.MessageTypes)),
		convMT: map[string][]int{},
		nct:    len(cfg.ContactTypes) + 1,
		nmt:    len(cfg.MessageTypes),
	}
	m.setShards(cfg.Shards)
	if cfg.HalfLife > 0 {
		m.lambda = math.Ln2 / float64(cfg.HalfLife.Milliseconds())
	}
	for i, ct := range cfg.ContactTypes {
		m.ctIdx[ct.Name] = i
	}
	m.ctIdx[Other] = len(cfg.ContactTypes)
	for i, mt := range cfg.MessageTypes {
		m.mtIdx[mt.Name] = i
		for _, ev := range mt.Conversions {
			if !slices.Contains(m.convMT[ev], i) {
				m.convMT[ev] = append(m.convMT[ev], i)
			}
		}
	}
	m.cells = make([][2]counts, m.nct*m.nmt)
	m.version = make([]uint64, m.nmt)
	return m, nil
}

// Config returns the model's configuration, defaults applied.
func (m *Model) Config() Config { return m.cfg }

// ContactTypes lists the contact type names, Other last.
func (m *Model) ContactTypes() []string {
	out := make([]string, 0, m.nct)
	for _, ct := range m.cfg.ContactTypes {
		out = append(out, ct.Name)
	}
	return append(out, Other)
}

// MessageTypes lists the message type names.
func (m *Model) MessageTypes() []string {
	out := make([]string, 0, m.nmt)
	for _, mt := range m.cfg.MessageTypes {
		out = append(out, mt.Name)
	}
	return out
}

// HasMessageType reports whether name is a configured message type.
func (m *Model) HasMessageType(name string) bool {
	_, ok := m.mtIdx[name]
	return ok
}

// CountsConversion reports whether some message type counts event as a
// conversion.
func (m *Model) CountsConversion(event string) bool {
	return len(m.convMT[event]) > 0
}

// ContactTypeOf returns the contact type of a subject in segments: the
// first configured type whose segments are all among them, else Other.
func (m *Model) ContactTypeOf(segments []string) string {
	return m.contactTypeName(m.contactType(segments))
}

// contactType is ContactTypeOf as an index.
func (m *Model) contactType(segments []string) int {
next:
	for i, ct := range m.cfg.ContactTypes {
		for _, s := range ct.Segments {
			if !slices.Contains(segments, s) {
				continue next
			}
		}
		return i
	}
	return m.nct - 1
}

// contactTypeName returns the name of contact type index i.
func (m *Model) contactTypeName(i int) string {
	if i < len(m.cfg.ContactTypes) {
		return m.cfg.ContactTypes[i].Name
	}
	return Other
}

// Subjects returns the number of subjects the model holds.
func (m *Model) Subjects() int { return m.nsubject }

// Has reports whether the model holds a contribution of subject.
func (m *Model) Has(subject string) bool {
	return m.get(subject) != nil
}

// get returns the record of subject, or nil.
func (m *Model) get(name string) *subject {
	return m.shards[ShardOf(name, len(m.shards))][name]
}

// put stores a new record for subject.
func (m *Model) put(name string, s *subject) {
	m.shards[ShardOf(name, len(m.shards))][name] = s
	m.nsubject++
}

// remove deletes the record of subject.
func (m *Model) remove(name string) {
	sh := m.shards[ShardOf(name, len(m.shards))]
	if _, ok := sh[name]; ok {
		delete(sh, name)
		m.nsubject--
	}
}

// Clock returns the latest event time the model has seen (zero before
// any).
func (m *Model) Clock() time.Time {
	if m.clock == 0 {
		return time.Time{}
	}
	return time.UnixMilli(m.clock)
}

// Expose records an exposure.
func (m *Model) Expose(e Exposure) (Outcome, error) {
	if m.readOnly {
		return 0, ErrReadOnly
	}
	if e.Subject == "" || e.At.IsZero() {
		return 0, fmt.Errorf("%w: exposure needs a subject and a time", ErrInvalid)
	}
	if e.Arm != Treated && e.Arm != Holdout {
		return 0, fmt.Errorf("%w: arm %d", ErrInvalid, e.Arm)
	}
	mt, ok := m.mtIdx[e.MessageType]
	if !ok {
		return Ignored, nil
	}
	at := e.At.UnixMilli()
	m.tick(at)
	s := m.get(e.Subject)
	if s == nil {
		s = &subject{}
		m.put(e.Subject, s)
	}
	m.expire(s, m.clock)
	if e.ID != "" {
		for i := range s.pending {
			if s.pending[i].id == e.ID {
				return Duplicate, nil
			}
		}
	}
	cell := uint32(m.contactType(e.Segments)*m.nmt + mt)
	m.add(s, cell, e.Arm, at, 1, 0, 0)
	if len(s.pending) >= m.cfg.MaxPending {
		oldest := 0
		for i := range s.pending {
			if s.pending[i].at < s.pending[oldest].at {
				oldest = i
			}
		}
		s.pending = slices.Delete(s.pending, oldest, oldest+1)
	}
	s.pending = append(s.pending, pending{id: e.ID, key: e.Key, at: at, cell: cell, arm: e.Arm})
	m.markDirty(e.Subject)
	return Counted, nil
}

// Respond records a response. Opens and clicks go to the subject's latest
// treated exposure with the same key, conversions to its latest exposure
// (either arm) whose message type counts the event; either must be at or
// before the response and within its message type's window. A response
// counts once per exposure: an exposure already responded to (or, for
// conversions, converted) is a Duplicate.
func (m *Model) Respond(r Response) (Outcome, error) {
	if m.readOnly {
		return 0, ErrReadOnly
	}
	if r.Subject == "" || r.At.IsZero() {
		return 0, fmt.Errorf("%w: response needs a subject and a time", ErrInvalid)
	}
	if r.Kind != Open && r.Kind != Click && r.Kind != Conversion {
		return 0, fmt.Errorf("%w: response kind %v", ErrInvalid, r.Kind)
	}
	if r.Kind == Conversion && !m.CountsConversion(r.Event) {
		return Ignored, nil
	}
	s := m.get(r.Subject)
	if s == nil {
		return NoExposure, nil
	}
	at := r.At.UnixMilli()
	m.tick(at)
	m.expire(s, m.clock)
	best := -1
	for i := range s.pending {
		p := &s.pending[i]
		mt := int(p.cell) % m.nmt
		if at < p.at || at > p.at+m.cfg.MessageTypes[mt].Window.Milliseconds() {
			continue
		}
		if r.Kind == Conversion {
			if !slices.Contains(m.cfg.MessageTypes[mt].Conversions, r.Event) {
				continue
			}
		} else if p.arm != Treated || p.key != r.Key {
			continue
		}
		if best < 0 || p.at >= s.pending[best].at {
			best = i
		}
	}
	if best < 0 {
		return NoExposure, nil
	}
	p := &s.pending[best]
	mt := &m.cfg.MessageTypes[int(p.cell)%m.nmt]
	var dr, dc float64
	if p.arm == Treated && mt.Responses&r.Kind != 0 && p.flags&responded == 0 {
		dr = 1
		p.flags |= responded
	}
	if r.Kind == Conversion && p.flags&converted == 0 {
		dc = 1
		p.flags |= converted
	}
	if dr == 0 && dc == 0 {
		// A conversion adds nothing only when the exposure had converted.
		if r.Kind == Conversion || mt.Responses&r.Kind != 0 {
			return Duplicate, nil
		}
		return NotCounted, nil
	}
	m.add(s, p.cell, p.arm, p.at, 0, dr, dc)
	m.markDirty(r.Subject)
	return Counted, nil
}

// Forget removes everything subject contributed, as if none of its
// events had been seen, and reports whether there was anything. (The
// empirical-Bayes priors are computed from the cells, so they follow.)
func (m *Model) Forget(subject string) bool {
	s := m.get(subject)
	if s == nil {
		return false
	}
	m.subtract(s)
	m.remove(subject)
	m.markDirty(subject)
	return true
}

// subtract removes the contributions of s from the cells.
func (m *Model) subtract(s *subject) {
	for i := range s.contribs {
		c := &s.contribs[i]
		m.cells[c.cell][c.arm].sub(c.counts, m.lambda)
		m.version[int(c.cell)%m.nmt]++
	}
}

// Prune drops, as of time at, the exposures whose window has passed and
// the contributions that decayed below PruneBelow (subtracting them from
// their cells, so that the cells stay the sum of what is kept), and the
// subjects left with nothing. It returns the number of subjects removed.
// It is O(subjects); call it now and then (e.g. hourly).
func (m *Model) Prune(at time.Time) int {
	t := max(at.UnixMilli(), m.clock)
	removed := 0
	for _, sh := range m.shards {
		removed += m.pruneShard(sh, t)
	}
	return removed
}

// pruneShard is Prune over one shard.
func (m *Model) pruneShard(sh map[string]*subject, t int64) int {
	removed := 0
	for name, s := range sh {
		changed := m.expire(s, t)
		if m.lambda > 0 {
			kept := s.contribs[:0]
			for _, c := range s.contribs {
				if c.at(t, m.lambda).n < m.cfg.PruneBelow && !s.awaits(c.cell, c.arm) {
					m.cells[c.cell][c.arm].sub(c.counts, m.lambda)
					m.version[int(c.cell)%m.nmt]++
					changed = true
					continue
				}
				kept = append(kept, c)
			}
			clear(s.contribs[len(kept):])
			s.contribs = kept
		}
		if len(s.contribs) == 0 && len(s.pending) == 0 {
			delete(sh, name)
			m.nsubject--
			removed++
			changed = true
		}
		if changed {
			m.markDirty(name)
		}
	}
	return removed
}

// awaits reports whether an exposure of s to (cell, arm) is pending.
func (s *subject) awaits(cell uint32, arm Arm) bool {
	for i := range s.pending {
		if s.pending[i].cell == cell && s.pending[i].arm == arm {
			return true
		}
	}
	return false
}

// tick moves the model clock to at if it is later.
func (m *Model) tick(at int64) {
	m.clock = max(m.clock, at)
}

// expire drops the pending exposures of s whose window ended before t and
// reports whether it dropped any.
func (m *Model) expire(s *subject, t int64) bool {
	n := len(s.pending)
	s.pending = slices.DeleteFunc(s.pending, func(p pending) bool {
		return t > p.at+m.cfg.MessageTypes[int(p.cell)%m.nmt].Window.Milliseconds()
	})
	if len(s.pending) == 0 {
		s.pending = nil // most subjects wait for nothing: keep no capacity
	}
	return len(s.pending) != n
}

// add adds (dn, dr, dc) at time at to one arm of a cell and to s's
// contribution to it.
func (m *Model) add(s *subject, cell uint32, arm Arm, at int64, dn, dr, dc float64) {
	m.cells[cell][arm].add(at, dn, dr, dc, m.lambda)
	m.version[int(cell)%m.nmt]++
	for i := range s.contribs {
		if c := &s.contribs[i]; c.cell == cell && c.arm == arm {
			c.add(at, dn, dr, dc, m.lambda)
			return
		}
	}
	c := contrib{cell: cell, arm: arm}
	c.add(at, dn, dr, dc, m.lambda)
	s.contribs = append(s.contribs, c)
}
