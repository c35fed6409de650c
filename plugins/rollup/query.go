package rollup

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/axiomhq/hyperloglog"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/storage"
)

// Query limits.
const (
	// maxRange is the longest period Overview accepts.
	maxRange = 800 * 24 * time.Hour
	// hourlyUpTo is the longest period whose series is hourly; longer
	// ones are daily.
	hourlyUpTo = 72 * time.Hour
)

// Overview is the console's overview of one site over one period. Every
// time is UTC; periods are whole UTC hours, days are UTC days.
type Overview struct {
	Site string    `json:"site"`
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Interval is "hour" or "day", the step of Series.
	Interval string `json:"interval"`
	Totals   Totals `json:"totals"`
	// Series has one point per hour or per day of the period; with a daily
	// interval the first and last points may cover part of a day only.
	Series []Point `json:"series"`
	// Compare is the comparison period (nil when none was asked), with
	// the same interval.
	Compare *Period `json:"compare,omitempty"`
	Top     Top     `json:"top"`
	// Types counts the stored events by type.
	Types []Entry `json:"types"`
	// Live counts what was received in the last five minutes.
	Live Live `json:"live"`
	// Consent is the consent rate of each purpose.
	Consent Consent `json:"consent"`
	// Decisions counts, from ingestion, the hits kept pseudonymous, kept
	// anonymous or dropped, and why.
	Decisions Decisions `json:"decisions"`
}

// Counts are counts of stored events.
type Counts struct {
	// Visits counts page views that enter the site: no referrer, or a
	// referrer that is not the site itself (see README.md).
	Visits uint64 `json:"visits"`
	// PageViews counts events of type page.
	PageViews uint64 `json:"page_views"`
	// Events counts stored events of every type (page views included).
	Events uint64 `json:"events"`
}

// Totals are a period's figures.
type Totals struct {
	// Visitors estimates the distinct identified visitors: the subject
	// pseudonyms of pseudonymous events (HyperLogLog, ±0.8 % standard
	// error). Anonymous events have no identifier and add none; their
	// visits and page views are in Anonymous.
	Visitors uint64 `json:"visitors"`
	Counts
	// Anonymous and Pseudonymous split Counts by what consent allowed.
	Anonymous    Counts `json:"anonymous"`
	Pseudonymous Counts `json:"pseudonymous"`
}

// Point is one step of a series.
type Point struct {
	Start time.Time `json:"start"`
	Totals
}

// Period is a comparison period.
type Period struct {
	From   time.Time `json:"from"`
	To     time.Time `json:"to"`
	Totals Totals    `json:"totals"`
	Series []Point   `json:"series"`
}

// Entry is one value of a top list and its count.
type Entry struct {
	Key   string `json:"key"`
	Count uint64 `json:"count"`
}

// List is a top list: the largest values, and what the others add up to.
// Each stored hour and day keeps its TopK values per dimension, so a
// value's count is exact when it ranks within TopK in every bucket of the
// period and a lower bound otherwise; Total is always exact.
type List struct {
	Entries []Entry `json:"entries"`
	// Other is Total minus the listed entries.
	Other uint64 `json:"other"`
	// Total is the sum of every value: page views for Pages, visits for
	// the others.
	Total uint64 `json:"total"`
}

// Top lists. "(none)" stands for an absent value, "(direct)" for a visit
// without a referrer.
type Top struct {
	Pages      List `json:"pages"`       // page path of page views
	EntryPages List `json:"entry_pages"` // page path of visits
	Sources    List `json:"sources"`     // referrer host of visits
	Campaigns  List `json:"campaigns"`   // utm_campaign of visits
	UTMSources List `json:"utm_sources"` // utm_source of visits
	UTMMediums List `json:"utm_mediums"` // utm_medium of visits
	Countries  List `json:"countries"`   // GeoIP country of visits
	Devices    List `json:"devices"`     // device class of visits
	Browsers   List `json:"browsers"`    // browser of visits (pseudonymous only: "(none)" for anonymous)
	OSes       List `json:"oses"`        // operating system of visits (same)
}

// Live is the last five minutes, by the time events reached the stream
// (their reception, give or take the bus's lag; anonymous events' own
// times are floored to the hour), as counted by this process (it starts
// at zero after a restart).
type Live struct {
	// Since is the window's start (between 4 min 50 s and 5 min ago).
	Since  time.Time `json:"since"`
	Events uint64    `json:"events"`
	// Visitors estimates the distinct identified visitors of the window.
	Visitors uint64 `json:"visitors"`
}

// Consent gives, per purpose, the share of hits that granted it.
type Consent struct {
	// Basis is "decisions" when the rates are over the hits decided at
	// ingestion (DecisionCounter.CountDecision, dropped hits included),
	// or "events" over the stored events when no decision was counted in
	// the period (dropped hits then are not in the denominator).
	Basis string `json:"basis"`
	// Total is the denominator.
	Total    uint64        `json:"total"`
	Purposes []PurposeRate `json:"purposes"`
}

// PurposeRate is one purpose's consent rate.
type PurposeRate struct {
	Purpose string  `json:"purpose"`
	Granted uint64  `json:"granted"`
	Rate    float64 `json:"rate"`
}

// Decisions are the ingestion outcomes of a period.
type Decisions struct {
	Pseudonymous uint64 `json:"pseudonymous"`
	Anonymous    uint64 `json:"anonymous"`
	Dropped      uint64 `json:"dropped"`
	// Reasons splits them, largest first.
	Reasons []ReasonCount `json:"reasons"`
}

// ReasonCount is the number of hits with one outcome and reason.
type ReasonCount struct {
	// Outcome is "pseudonymous", "anonymous" or "drop".
	Outcome string `json:"outcome"`
	Reason  string `json:"reason"`
	Count   uint64 `json:"count"`
}

// Overview answers the overview of site over [from, to), compared with
// [compareFrom, compareTo) unless both are zero. Bounds are rounded out to
// whole UTC hours (from down, to up). The series is hourly for periods up
// to 72 hours, daily beyond. Buckets of open periods are read from memory
// (so counts include what was added but not yet flushed); closed ones from
// a cache, else the store. Decision counters are read from the store: they
// lag by up to the DecisionCounter's FlushInterval.
func (a *Aggregator) Overview(ctx context.Context, site string, from, to, compareFrom, compareTo time.Time) (Overview, error) {
	if site == "" || len(site) > 255 || strings.IndexByte(site, 0) >= 0 {
		return Overview{}, fmt.Errorf("%w: site must be 1 to 255 bytes without NUL", ErrInvalidQuery)
	}
	f, t, err := hourRange(from, to)
	if err != nil {
		return Overview{}, err
	}
	daily := time.Duration(t-f)*time.Hour > hourlyUpTo
	ov := Overview{Site: site, From: indexStart(storage.RollupHour, f), To: indexStart(storage.RollupHour, t), Interval: "hour"}
	if daily {
		ov.Interval = "day"
	}
	ac, series, err := a.period(ctx, site, f, t, daily, true)
	if err != nil {
		return Overview{}, err
	}
	ov.Totals, ov.Series = ac.totals(), series
	if compareFrom.IsZero() != compareTo.IsZero() {
		return Overview{}, fmt.Errorf("%w: comparison needs both bounds", ErrInvalidQuery)
	}
	if !compareFrom.IsZero() {
		cf, ct, err := hourRange(compareFrom, compareTo)
		if err != nil {
			return Overview{}, err
		}
		cac, cseries, err := a.period(ctx, site, cf, ct, daily, false)
		if err != nil {
			return Overview{}, err
		}
		ov.Compare = &Period{
			From: indexStart(storage.RollupHour, cf), To: indexStart(storage.RollupHour, ct),
			Totals: cac.totals(), Series: cseries,
		}
	}
	n := a.cfg.TopN
	ov.Top = Top{
		Pages: ac.list(dimPage, n), EntryPages: ac.list(dimEntry, n), Sources: ac.list(dimSource, n),
		Campaigns: ac.list(dimCampaign, n), UTMSources: ac.list(dimUTMSource, n), UTMMediums: ac.list(dimUTMMedium, n),
		Countries: ac.list(dimCountry, n), Devices: ac.list(dimDevice, n), Browsers: ac.list(dimBrowser, n), OSes: ac.list(dimOS, n),
	}
	ov.Types = ac.list(dimType, maxTopK).Entries

	a.mu.Lock()
	if st := a.sites[site]; st != nil {
		ov.Live.Events, ov.Live.Visitors, ov.Live.Since = st.live.sum(a.cfg.Now())
	} else {
		_, _, ov.Live.Since = (&liveRing{}).sum(a.cfg.Now())
	}
	a.mu.Unlock()

	ds, err := a.decisions(ctx, site, f, t)
	if err != nil {
		return Overview{}, err
	}
	ov.Decisions = ds.summary()
	ov.Consent = consentRates(ds, ac)
	return ov, nil
}

// hourRange rounds [from, to) out to hour indexes and checks it.
func hourRange(from, to time.Time) (uint32, uint32, error) {
	if !from.Before(to) {
		return 0, 0, fmt.Errorf("%w: from must be before to", ErrInvalidQuery)
	}
	if to.Sub(from) > maxRange {
		return 0, 0, fmt.Errorf("%w: period longer than %d days", ErrInvalidQuery, maxRange/(24*time.Hour))
	}
	fms, tms := from.UnixMilli(), to.UnixMilli()
	if fms < 0 || tms/msPerHour >= 1<<32-1 {
		return 0, 0, fmt.Errorf("%w: period outside 1970 to 2459", ErrInvalidQuery)
	}
	f := uint32(fms / msPerHour)
	t := uint32((tms + msPerHour - 1) / msPerHour)
	return f, t, nil
}

// accum sums buckets.
type accum struct {
	n     [numModes][numMetrics]uint64
	dims  [numDims]map[string]uint64
	other [numDims]uint64
	hll   *hyperloglog.Sketch
}

// add adds b (its dimensions too when withDims).
func (ac *accum) add(b *bucket, withDims bool) {
	for m := range b.n {
		for x, v := range b.n[m] {
			ac.n[m][x] += v
		}
	}
	if b.hll != nil {
		if ac.hll == nil {
			ac.hll = &hyperloglog.Sketch{}
		}
		_ = ac.hll.Merge(b.hll) // same precision: decodeBucket checks it
	}
	if !withDims {
		return
	}
	for d := range b.dims {
		c := &b.dims[d]
		if len(c.m) > 0 && ac.dims[d] == nil {
			ac.dims[d] = make(map[string]uint64, len(c.m))
		}
		for k, v := range c.m {
			ac.dims[d][k] += v
		}
		ac.other[d] += c.other
	}
}

// totals returns the figures of ac (estimating its HLL).
func (ac *accum) totals() Totals {
	var t Totals
	if ac.hll != nil {
		t.Visitors = ac.hll.Estimate()
	}
	counts := func(m int) Counts {
		return Counts{Visits: ac.n[m][metricVisits], PageViews: ac.n[m][metricPageViews], Events: ac.n[m][metricEvents]}
	}
	t.Anonymous, t.Pseudonymous = counts(modeAnonymous), counts(modePseudonymous)
	for m := range numModes {
		c := counts(m)
		t.Visits += c.Visits
		t.PageViews += c.PageViews
		t.Events += c.Events
	}
	return t
}

// list returns the n largest values of dimension d.
func (ac *accum) list(d dim, n int) List {
	l := List{Total: ac.other[d]}
	top := make([]Entry, 0, min(n, len(ac.dims[d])))
	less := func(a, b Entry) bool { return a.Count < b.Count || (a.Count == b.Count && a.Key > b.Key) }
	for k, v := range ac.dims[d] {
		l.Total += v
		e := Entry{k, v}
		if len(top) == n {
			if !less(top[n-1], e) {
				continue
			}
			top = top[:n-1]
		}
		i, _ := slices.BinarySearchFunc(top, e, func(x, y Entry) int {
			if less(y, x) {
				return -1
			}
			if less(x, y) {
				return 1
			}
			return 0
		})
		top = slices.Insert(top, i, e)
	}
	l.Entries = top
	l.Other = l.Total
	for _, e := range top {
		l.Other -= e.Count
	}
	return l
}

// period sums hours [from, to) of site, with its series (daily or
// hourly); withDims also sums the top-list dimensions.
func (a *Aggregator) period(ctx context.Context, site string, from, to uint32, daily, withDims bool) (*accum, []Point, error) {
	type span struct{ from, to uint32 } // hours of one point
	var points []span
	if !daily {
		for h := from; h < to; h++ {
			points = append(points, span{h, h + 1})
		}
	} else {
		for h := from; h < to; {
			next := min((h/24+1)*24, to)
			points = append(points, span{h, next})
			h = next
		}
	}
	// Full days come from day buckets, the rest from hour buckets.
	full := func(s span) bool { return daily && s.from%24 == 0 && s.to-s.from == 24 }
	var days []*bucket
	var dayFrom uint32
	var hourSpans []span
	for _, s := range points {
		if full(s) {
			if days == nil {
				dayFrom = s.from / 24
			}
			days = append(days, nil)
		} else {
			hourSpans = append(hourSpans, s)
		}
	}
	if len(days) > 0 {
		var err error
		if days, err = a.load(ctx, site, storage.RollupDay, dayFrom, dayFrom+uint32(len(days))); err != nil {
			return nil, nil, err
		}
	}
	hours := map[uint32][]*bucket{} // by span start
	for _, s := range hourSpans {
		bs, err := a.load(ctx, site, storage.RollupHour, s.from, s.to)
		if err != nil {
			return nil, nil, err
		}
		hours[s.from] = bs
	}

	ac := &accum{}
	series := make([]Point, 0, len(points))
	for _, s := range points {
		var bs []*bucket
		if full(s) {
			bs = days[s.from/24-dayFrom : s.from/24-dayFrom+1]
		} else {
			bs = hours[s.from]
		}
		var pt accum
		var single *bucket
		n := 0
		for _, b := range bs {
			if b == nil {
				continue
			}
			ac.add(b, withDims)
			single = b
			n++
		}
		p := Point{Start: indexStart(storage.RollupHour, s.from)}
		switch n {
		case 0:
		case 1:
			// One bucket: its own estimate, without merging a sketch.
			pt.n = single.n
			p.Totals = pt.totals()
			p.Visitors = single.visitors
		default:
			for _, b := range bs {
				if b != nil {
					pt.add(b, false)
				}
			}
			p.Totals = pt.totals()
		}
		series = append(series, p)
	}
	return ac, series, nil
}

// load returns the buckets of kind for indexes [from, to) of site (nil
// where there is none): snapshots of the ones in memory, else cached or
// stored ones. Every returned bucket is read-only and has its visitors
// estimate.
func (a *Aggregator) load(ctx context.Context, site string, kind storage.RollupKind, from, to uint32) ([]*bucket, error) {
	out := make([]*bucket, to-from)
	found := make([]bool, to-from)
	gen := a.cache.generation()

	a.mu.Lock()
	if st := a.sites[site]; st != nil {
		m := st.hours
		if kind == storage.RollupDay {
			m = st.days
		}
		for i, b := range m {
			if i >= from && i < to {
				s := b.clone()
				if s.hll != nil {
					s.visitors = s.hll.Estimate()
				}
				out[i-from], found[i-from] = s, true
			}
		}
	}
	a.mu.Unlock()

	lo, hi := -1, -1
	for i := range out {
		if found[i] {
			continue
		}
		if c, ok := a.cache.get(cacheKey{site, kind, from + uint32(i)}); ok {
			out[i], found[i] = c.b, true
			continue
		}
		if lo < 0 {
			lo = i
		}
		hi = i
	}
	if lo < 0 {
		return out, nil
	}
	pieces := map[uint32][]piece{}
	err := a.store.ScanRollups(ctx, kind, site, from+uint32(lo), from+uint32(hi)+1, func(idx uint32, part uint64, v []byte) error {
		if !found[idx-from] {
			pieces[idx] = append(pieces[idx], piece{part, bytes.Clone(v)})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rollup: read buckets: %w", err)
	}
	for idx, ps := range pieces {
		b := assemble(kind, idx, ps, maxTopK*memFactor, func(err error) {
			a.cfg.Logger.Warn("rollup: a stored bucket part does not decode; left out", "site", site, "start", indexStart(kind, idx), "err", err)
		})
		if b.hll != nil {
			b.visitors = b.hll.Estimate()
		}
		out[idx-from] = b
	}
	for i := lo; i <= hi; i++ {
		if found[i] {
			continue
		}
		cost := int64(64)
		if b := out[i]; b != nil {
			cost += 2*int64(b.size) + 512
		}
		a.cache.put(cacheKey{site, kind, from + uint32(i)}, cached{b: out[i]}, cost, gen)
	}
	return out, nil
}

// decisions sums the stored decision counters of hours [from, to).
func (a *Aggregator) decisions(ctx context.Context, site string, from, to uint32) (*decisionSet, error) {
	total := newDecisionSet()
	a.cfg.Peers.sum(site, from, to, total)
	gen := a.cache.generation()
	settled := uint32(a.cfg.Now().Add(-decisionsSettled).UnixMilli() / msPerHour) // hours before it are settled
	missing := make([]bool, to-from)
	lo, hi := -1, -1
	for h := from; h < to; h++ {
		if c, ok := a.cache.get(cacheKey{site, storage.RollupDecisions, h}); ok {
			if c.d != nil {
				total.merge(c.d)
			}
			continue
		}
		missing[h-from] = true
		if lo < 0 {
			lo = int(h - from)
		}
		hi = int(h - from)
	}
	if lo < 0 {
		return total, nil
	}
	got := map[uint32]*decisionSet{}
	err := a.store.ScanRollups(ctx, storage.RollupDecisions, site, from+uint32(lo), from+uint32(hi)+1, func(h uint32, _ uint64, v []byte) error {
		if !missing[h-from] {
			return nil
		}
		s, err := decodeDecisions(v)
		if err != nil {
			a.cfg.Logger.Warn("rollup: stored decision counters do not decode; ignored", "site", site, "err", err)
			return nil
		}
		got[h] = s
		total.merge(s)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rollup: read decisions: %w", err)
	}
	for i := lo; i <= hi; i++ {
		h := from + uint32(i)
		if !missing[i] || h+1 >= settled {
			continue
		}
		s := got[h]
		cost := int64(64)
		if s != nil {
			cost += 2*int64(s.size) + 256
		}
		a.cache.put(cacheKey{site, storage.RollupDecisions, h}, cached{d: s}, cost, gen)
	}
	return total, nil
}

// summary returns the decisions of s, reasons largest first.
func (s *decisionSet) summary() Decisions {
	var d Decisions
	for k, v := range s.reasons {
		switch k.outcome {
		case consent.Pseudonymous:
			d.Pseudonymous += v
		case consent.Anonymous:
			d.Anonymous += v
		case consent.Drop:
			d.Dropped += v
		}
		d.Reasons = append(d.Reasons, ReasonCount{Outcome: k.outcome.String(), Reason: k.reason, Count: v})
	}
	slices.SortFunc(d.Reasons, func(a, b ReasonCount) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		if c := strings.Compare(a.Outcome, b.Outcome); c != 0 {
			return c
		}
		return strings.Compare(a.Reason, b.Reason)
	})
	return d
}

// consentRates computes the consent rates from the decisions when there
// are any, else from the stored events.
func consentRates(ds *decisionSet, ac *accum) Consent {
	c := Consent{Basis: "decisions", Total: ds.decided}
	granted := ds.purposes
	if ds.decided == 0 {
		c.Basis = "events"
		for m := range numModes {
			c.Total += ac.n[m][metricEvents]
		}
		granted = ac.dims[dimPurpose]
	}
	for p, n := range granted {
		r := PurposeRate{Purpose: p, Granted: n}
		if c.Total > 0 {
			r.Rate = float64(n) / float64(c.Total)
		}
		c.Purposes = append(c.Purposes, r)
	}
	slices.SortFunc(c.Purposes, func(a, b PurposeRate) int { return strings.Compare(a.Purpose, b.Purpose) })
	return c
}
