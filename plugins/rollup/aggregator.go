package rollup

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
)

// Time handling.
const (
	msPerHour = 3_600_000
	// maxAhead is how far after its reception an event's timestamp may be;
	// a later one is taken as the reception time.
	maxAhead = 10 * time.Minute
	// closeGrace is how long a bucket stays in memory after its period
	// ends, so that slightly late events do not reload it.
	closeGrace = 5 * time.Minute
	// maxLearnedHosts bounds the page hosts learned per site.
	maxLearnedHosts = 16
)

// Aggregator keeps the hourly and daily rollups of the events it is given
// and answers Overview queries from them. Its methods are safe for
// concurrent use; Add and Flush are meant to be called by one feeder (a
// Consumer), Overview by any number of readers.
//
// Memory holds, per site, the buckets of the periods that are still open
// (or were touched since the last Flush), with exact counts of up to
// 8×TopK values per dimension; Flush writes them, cut to TopK, and forgets
// the closed ones.
type Aggregator struct {
	cfg   Config
	store *storage.Store
	cache *cache

	flushMu sync.Mutex // one Flush at a time
	mu      sync.Mutex // guards everything below
	sites   map[string]*siteState
	epoch   uint64 // source (stream incarnation) of the sequences
	maxSeq  uint64 // highest source sequence added
	scratch []entry

	added, duplicates, tooOld, invalid, flushes atomic.Uint64
}

// siteState is one site's in-memory state.
type siteState struct {
	name       string
	hours      map[uint32]*bucket
	days       map[uint32]*bucket
	lastHour   *bucket // fast path: the bucket the previous event used
	lastDay    *bucket
	hosts      []string // own hosts: configured ones first, then learned
	configured int
	live       liveRing
}

// New returns an Aggregator over cfg.Store. It starts nothing.
func New(cfg Config) (*Aggregator, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Aggregator{
		cfg:   cfg,
		store: cfg.Store,
		cache: newCache(cfg.CacheBytes),
		sites: map[string]*siteState{},
	}, nil
}

// Stats are the Aggregator's counters since New.
type Stats struct {
	// Added is the number of events counted.
	Added uint64
	// Duplicates is the number of stream messages that a stored bucket
	// (its hour, its day or both) already included, delivered again after
	// a restart; they are not counted again there.
	Duplicates uint64
	// TooOld is the number of events older than the retention, not counted.
	TooOld uint64
	// Invalid is the number of events without a usable site or time, and
	// of messages that were not events.
	Invalid uint64
	// Flushes is the number of successful flushes.
	Flushes uint64
}

// Stats returns the counters.
func (a *Aggregator) Stats() Stats {
	return Stats{
		Added: a.added.Load(), Duplicates: a.duplicates.Load(), TooOld: a.tooOld.Load(),
		Invalid: a.invalid.Load(), Flushes: a.flushes.Load(),
	}
}

// Add counts one event. It is not idempotent: an event given twice is
// counted twice (a Consumer makes stream delivery exactly-once, see
// README.md). It reads the stored bucket the first time an hour or day is
// touched since it left memory; the error is that read's.
func (a *Aggregator) Add(ctx context.Context, ev *vigiev1.Event) error {
	return a.add(ctx, ev, 0, 0)
}

// facts is what one event contributes, computed once for its hour and day.
type facts struct {
	mode     int
	typ      string
	purposes []string
	subject  uint64 // xxhash64 of the subject pseudonym
	hasSubj  bool
	page     bool
	path     string
	entry    bool
	source   string
	campaign string
	utmSrc   string
	utmMed   string
	country  string
	device   string
	browser  string
	os       string
	email    string // emailKey of an e-mail open or click
}

// add counts ev as message seq of the current source (0: not a stream
// message), stored in the stream at streamMs (0: unknown) for the live
// count: anonymous events' own times are floored to the hour, the
// stream's time is when they were received, give or take the bus's lag.
func (a *Aggregator) add(ctx context.Context, ev *vigiev1.Event, seq uint64, streamMs int64) error {
	site := ev.GetSite()
	ms := eventMillis(ev)
	if site == "" || len(site) > 255 || strings.IndexByte(site, 0) >= 0 || ms <= 0 {
		a.invalid.Add(1)
		a.advance(seq)
		return nil
	}
	hour := uint32(ms / msPerHour)
	day := hour / 24

	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.cfg.Now()
	st := a.site(site)
	hb, err := a.bucketFor(ctx, st, storage.RollupHour, hour, now)
	if err != nil {
		return err
	}
	db, err := a.bucketFor(ctx, st, storage.RollupDay, day, now)
	if err != nil {
		return err
	}
	if seq > a.maxSeq {
		a.maxSeq = seq
	}
	if hb == nil && db == nil {
		a.tooOld.Add(1)
		return nil
	}
	dup := false
	if hb != nil && hb.covers(a.epoch, seq) {
		hb, dup = nil, true
	}
	if db != nil && db.covers(a.epoch, seq) {
		db, dup = nil, true
	}
	if dup {
		a.duplicates.Add(1)
	}
	if hb == nil && db == nil {
		return nil
	}
	var f facts
	a.facts(st, ev, &f)
	if streamMs <= 0 {
		streamMs = ev.GetReceivedAtMs()
	}
	st.live.add(streamMs, f.subject, f.hasSubj, now)
	limit := memFactor * a.cfg.TopK
	if hb != nil {
		f.count(hb, limit)
	}
	if db != nil {
		f.count(db, limit)
	}
	a.added.Add(1)
	return nil
}

// advance records that message seq was seen (it counted nothing).
func (a *Aggregator) advance(seq uint64) {
	if seq == 0 {
		return
	}
	a.mu.Lock()
	if seq > a.maxSeq {
		a.maxSeq = seq
	}
	a.mu.Unlock()
}

// eventMillis is the time an event is counted at: its timestamp, or its
// reception time when the timestamp is missing or more than maxAhead after
// the reception.
func eventMillis(ev *vigiev1.Event) int64 {
	ts, rx := ev.GetTimestampMs(), ev.GetReceivedAtMs()
	if ts <= 0 || (rx > 0 && ts > rx+maxAhead.Milliseconds()) {
		ts = rx
	}
	return ts
}

// site returns the state of site, created on first use. Called with a.mu.
func (a *Aggregator) site(name string) *siteState {
	if st := a.sites[name]; st != nil {
		return st
	}
	st := &siteState{name: name, hours: map[uint32]*bucket{}, days: map[uint32]*bucket{}}
	for _, h := range a.cfg.SiteHosts[name] {
		if h = normHost(h); h != "" && !slices.Contains(st.hosts, h) {
			st.hosts = append(st.hosts, h)
		}
	}
	st.configured = len(st.hosts)
	a.sites[name] = st
	return st
}

// bucketFor returns the in-memory bucket of (kind, index), loading the
// stored one when it is not in memory; nil when the period is beyond the
// retention. Called with a.mu.
func (a *Aggregator) bucketFor(ctx context.Context, st *siteState, kind storage.RollupKind, index uint32, now time.Time) (*bucket, error) {
	last, m := &st.lastHour, st.hours
	if kind == storage.RollupDay {
		last, m = &st.lastDay, st.days
	}
	if b := *last; b != nil && b.index == index {
		return b, nil
	}
	b := m[index]
	if b == nil {
		if !indexStart(kind, index+1).Add(a.cfg.Retention).After(now) {
			return nil, nil
		}
		var pieces []piece
		err := a.store.ScanRollups(ctx, kind, st.name, index, index+1, func(_ uint32, part uint64, v []byte) error {
			pieces = append(pieces, piece{part, bytes.Clone(v)})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("rollup: load bucket: %w", err)
		}
		b = assemble(kind, index, pieces, memFactor*a.cfg.TopK, func(err error) {
			a.cfg.Logger.Warn("rollup: a stored bucket part does not decode; left out", "site", st.name, "start", indexStart(kind, index), "err", err)
		})
		m[index] = b
	}
	*last = b
	return b, nil
}

// facts fills f from ev. Called with a.mu (it may learn a site host).
func (a *Aggregator) facts(st *siteState, ev *vigiev1.Event, f *facts) {
	switch ev.GetMode() {
	case vigiev1.Mode_MODE_ANONYMOUS:
		f.mode = modeAnonymous
	case vigiev1.Mode_MODE_PSEUDONYMOUS:
		f.mode = modePseudonymous
		f.purposes = ev.GetPurposes()
	}
	f.typ = orNone(ev.GetType())
	if em := ev.GetEmail(); em != nil {
		// An e-mail's recipient opening or clicking is not a visitor of the
		// site: e-mail events count as events, and in the e-mail lists.
		if kind := emailKind(ev.GetName()); kind != "" {
			f.email = emailKey(kind, em.GetClass(), em.GetCampaign(), em.GetLink())
		}
		return
	}
	if s := ev.GetSubject(); s != "" && f.mode == modePseudonymous {
		f.subject, f.hasSubj = xxhash.Sum64String(s), true
	}
	if ev.GetType() != "page" {
		return
	}
	pg := ev.GetPage()
	f.page = true
	f.path = orNone(pg.GetPath())
	f.entry = st.isEntry(pg)
	if !f.entry {
		return
	}
	f.source = pg.GetReferrerHost()
	if f.source == "" {
		f.source = keyDirect
	}
	c := ev.GetCampaign()
	f.campaign, f.utmSrc, f.utmMed = orNone(c.GetName()), orNone(c.GetSource()), orNone(c.GetMedium())
	f.country = orNone(ev.GetGeo().GetCountry())
	d := ev.GetDevice()
	f.device, f.browser, f.os = orNone(d.GetClass()), orNone(d.GetBrowser()), orNone(d.GetOs())
}

// count counts f into b and, once b is stored (until then it is written
// whole), into b's changes since its last write.
func (f *facts) count(b *bucket, limit int) {
	b.dirty = true
	f.apply(b, limit)
	if !b.stored {
		return
	}
	if b.delta == nil {
		b.delta = newBucket(b.kind, b.index)
	}
	f.apply(b.delta, limit)
}

// apply counts f into b.
func (f *facts) apply(b *bucket, limit int) {
	n := &b.n[f.mode]
	n[metricEvents]++
	b.dims[dimType].add(f.typ, 1, limit)
	for _, p := range f.purposes {
		b.dims[dimPurpose].add(p, 1, limit)
	}
	if f.hasSubj {
		b.insert(f.subject)
	}
	if f.email != "" {
		b.dims[dimEmail].add(f.email, 1, limit)
	}
	if !f.page {
		return
	}
	n[metricPageViews]++
	b.dims[dimPage].add(f.path, 1, limit)
	if !f.entry {
		return
	}
	n[metricVisits]++
	b.dims[dimEntry].add(f.path, 1, limit)
	b.dims[dimSource].add(f.source, 1, limit)
	b.dims[dimCampaign].add(f.campaign, 1, limit)
	b.dims[dimUTMSource].add(f.utmSrc, 1, limit)
	b.dims[dimUTMMedium].add(f.utmMed, 1, limit)
	b.dims[dimCountry].add(f.country, 1, limit)
	b.dims[dimDevice].add(f.device, 1, limit)
	b.dims[dimBrowser].add(f.browser, 1, limit)
	b.dims[dimOS].add(f.os, 1, limit)
}

func orNone(s string) string {
	if s == "" {
		return keyNone
	}
	return s
}

// isEntry reports whether a page view is a visit: its referrer host is
// absent, or is neither the host of the page's own URL nor one of the
// site's hosts. It learns the page URL's host.
func (st *siteState) isEntry(pg *vigiev1.Page) bool {
	own := normHost(urlHost(pg.GetUrl()))
	if own != "" && len(st.hosts) < st.configured+maxLearnedHosts && !slices.Contains(st.hosts, own) {
		st.hosts = append(st.hosts, strings.Clone(own))
	}
	ref := normHost(pg.GetReferrerHost())
	if ref == "" {
		return true
	}
	return ref != own && !slices.Contains(st.hosts, ref)
}

// urlHost returns the host[:port] of an absolute URL, or "".
func urlHost(u string) string {
	i := strings.Index(u, "://")
	if i < 0 {
		return ""
	}
	u = u[i+3:]
	if j := strings.IndexAny(u, "/?#"); j >= 0 {
		u = u[:j]
	}
	if j := strings.LastIndexByte(u, '@'); j >= 0 {
		u = u[j+1:]
	}
	return u
}

// normHost lower-cases h and drops a port and a "www." prefix, allocating
// only when h changes case.
func normHost(h string) string {
	if strings.HasPrefix(h, "[") { // [v6]:port
		if j := strings.IndexByte(h, ']'); j >= 0 {
			h = h[:j+1]
		}
	} else if j := strings.LastIndexByte(h, ':'); j >= 0 {
		h = h[:j]
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; 'A' <= c && c <= 'Z' {
			h = strings.ToLower(h)
			break
		}
	}
	return strings.TrimPrefix(h, "www.")
}

// setSource starts counting stream messages of source epoch after seq.
func (a *Aggregator) setSource(epoch, seq uint64) {
	a.mu.Lock()
	a.epoch, a.maxSeq = epoch, seq
	a.mu.Unlock()
}

// highest returns the highest source sequence added.
func (a *Aggregator) highest() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.maxSeq
}

// Flush writes every bucket changed since the last Flush and forgets the
// buckets of closed periods. Nothing is lost when it fails: the buckets
// are written by the next Flush.
func (a *Aggregator) Flush(ctx context.Context) error { return a.flush(ctx, "", false) }

// putRollups is storage's PutRollups; tests replace it to interrupt a
// flush half-way or to measure what is written.
var putRollups = (*storage.Store).PutRollups

// Write policy. A changed bucket is written as a new part holding only its
// changes, unless a whole write is due: the bucket was never stored, its
// period is closed (it is compacted before leaving memory), it has
// maxParts parts already, or its changes are at least a quarter of its
// size.
const maxParts = 256

// wholeWrites makes every write a whole one (the benchmark's baseline).
var wholeWrites = false

// written is what one flush did to one bucket.
type written struct {
	b         *bucket
	site      string
	whole     bool
	wasStored bool // b.stored before a whole write
	part      uint64
	delta     *bucket // the changes written (restored if the write fails)
}

// flush is Flush, writing the source mark under markName when not empty;
// compact writes every bucket that has parts whole (at stop, so that a
// clean stop leaves no parts behind).
func (a *Aggregator) flush(ctx context.Context, markName string, compact bool) error {
	a.flushMu.Lock()
	defer a.flushMu.Unlock()

	a.mu.Lock()
	epoch, seq := a.epoch, a.maxSeq
	now := a.cfg.Now()
	var entries []storage.RollupEntry
	var done []written
	for _, st := range a.sites {
		for _, m := range [2]map[uint32]*bucket{st.hours, st.days} {
			for _, b := range m {
				closed := compact || b.end().Add(closeGrace).Before(now)
				if !b.dirty && !(closed && len(b.parts) > 0) {
					continue
				}
				w := written{b: b, site: st.name, delta: b.delta}
				e := storage.RollupEntry{Kind: b.kind, Site: st.name, Index: b.index, ExpiresAt: b.end().Add(a.cfg.Retention)}
				w.whole = wholeWrites || !b.stored || closed || len(b.parts) >= maxParts || b.delta == nil ||
					4*b.delta.sizeEstimate() >= b.size
				if w.whole {
					e.Value = b.appendBinary(nil, epoch, seq, b.lastPart, a.cfg.TopK, &a.scratch)
					entries = append(entries, e)
					for _, p := range b.parts {
						entries = append(entries, storage.RollupEntry{Kind: b.kind, Site: st.name, Index: b.index, Part: p, Delete: true})
					}
				} else {
					w.part = b.lastPart + 1
					e.Part = w.part
					e.Value = b.delta.appendBinary(nil, epoch, seq, 0, maxTopK*memFactor, &a.scratch)
					entries = append(entries, e)
				}
				if w.whole {
					// Stored from now on: changes made while this is written
					// are tracked for the next part.
					b.size, w.wasStored, b.stored = len(e.Value), b.stored, true
				}
				b.dirty, b.delta = false, nil
				done = append(done, w)
			}
		}
	}
	a.mu.Unlock()

	var mark *storage.RollupMark
	if markName != "" {
		mark = &storage.RollupMark{Name: markName, Epoch: epoch, Seq: seq}
	}
	err := putRollups(a.store, ctx, entries, mark)

	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		limit := memFactor * a.cfg.TopK
		for _, w := range done {
			b := w.b
			b.dirty = true
			if w.whole {
				b.stored = w.wasStored
			}
			if w.delta != nil { // changes written again next time
				if b.delta != nil {
					w.delta.merge(b.delta, limit)
				}
				b.delta = w.delta
			}
		}
		return fmt.Errorf("rollup: flush: %w", err)
	}
	keys := make([]cacheKey, len(done))
	for i, w := range done {
		b := w.b
		b.epoch, b.mark = epoch, seq
		if w.whole {
			b.included, b.parts = b.lastPart, nil
		} else {
			b.lastPart = w.part
			b.parts = append(b.parts, w.part)
		}
		keys[i] = cacheKey{site: w.site, kind: b.kind, index: b.index}
	}
	a.cache.invalidate(keys)
	a.evict(a.cfg.Now())
	a.flushes.Add(1)
	return nil
}

// evict forgets the clean buckets of periods that ended more than
// closeGrace ago. Called with a.mu.
func (a *Aggregator) evict(now time.Time) {
	for _, st := range a.sites {
		for _, m := range [2]map[uint32]*bucket{st.hours, st.days} {
			for i, b := range m {
				if !b.dirty && len(b.parts) == 0 && b.end().Add(closeGrace).Before(now) {
					delete(m, i)
					if st.lastHour == b {
						st.lastHour = nil
					}
					if st.lastDay == b {
						st.lastDay = nil
					}
				}
			}
		}
	}
}
