package rollup

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
	"github.com/vigie-dev/vigie/storage/storagetest"
)

var t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// clock is a settable test clock.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

// hllTolerance is the accepted HyperLogLog error in the tests: 3 % (3.7
// standard errors at precision 14), at least 3 for small counts.
func hllClose(est uint64, exact int) bool {
	return math.Abs(float64(est)-float64(exact)) <= max(0.03*float64(exact), 3)
}

// checkTotals compares got with the brute-force counts and visitors.
func checkTotals(t *testing.T, what string, got Totals, n [numModes][numMetrics]uint64, visitors int) {
	t.Helper()
	want := totalsOf(n)
	want.Visitors = got.Visitors
	if got != want {
		t.Errorf("%s: totals\n got  %+v\n want %+v", what, got, want)
	}
	if !hllClose(got.Visitors, visitors) {
		t.Errorf("%s: visitors %d, exact %d (beyond the HLL tolerance)", what, got.Visitors, visitors)
	}
}

// checkList compares a full top list with the brute-force counts.
func checkList(t *testing.T, what string, l List, want map[string]uint64) {
	t.Helper()
	var total uint64
	for _, v := range want {
		total += v
	}
	if l.Total != total || len(l.Entries) != len(want) || l.Other != 0 {
		t.Errorf("%s: total %d entries %d other %d; want total %d entries %d other 0", what, l.Total, len(l.Entries), l.Other, total, len(want))
		return
	}
	for i, e := range l.Entries {
		if want[e.Key] != e.Count {
			t.Errorf("%s: %q counted %d, want %d", what, e.Key, e.Count, want[e.Key])
		}
		if i > 0 && e.Count > l.Entries[i-1].Count {
			t.Errorf("%s: not in decreasing order at %d", what, i)
		}
	}
}

// feed adds the generated events to a in two passes (even events, then
// odd ones, as if half arrived late), flushing every flushEvery events with
// the clock just after the event: closed buckets leave memory and the
// second pass reloads and adds to every one of them. It returns the
// brute-force reference.
func feed(t *testing.T, a *Aggregator, clk *clock, g genConfig, flushEvery int) *exact {
	t.Helper()
	ctx := context.Background()
	x := newExact()
	n := 0
	for pass := range 2 {
		i := 0
		generate(g, func(ev *vigiev1.Event) {
			if i++; i%2 != pass {
				return
			}
			clk.now = time.UnixMilli(ev.ReceivedAtMs).Add(time.Minute)
			if err := a.Add(ctx, ev); err != nil {
				t.Fatalf("add: %v", err)
			}
			x.add(ev)
			if n++; n%flushEvery == 0 {
				if err := a.Flush(ctx); err != nil {
					t.Fatalf("flush: %v", err)
				}
			}
		})
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	return x
}

func newAgg(t *testing.T, s *storage.Store, clk *clock, mod func(*Config)) *Aggregator {
	t.Helper()
	cfg := Config{Store: s, Now: clk.Now, SiteHosts: map[string][]string{"shop": {siteHost}}}
	if mod != nil {
		mod(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

var smallSet = genConfig{
	site: "shop", start: t0, span: 10 * 24 * time.Hour, events: 60_000,
	pages: 300, subjects: 4000, countries: 40, campaigns: 12, anonymous: 0.3, seed: 1,
}

func TestOverviewMatchesBruteForce(t *testing.T) {
	ctx := context.Background()
	s := storagetest.Open(t)
	clk := &clock{}
	full := func(c *Config) { c.TopN = 500 } // every value listed: lists compare exactly
	a := newAgg(t, s, clk, full)
	x := feed(t, a, clk, smallSet, 7000)
	clk.now = t0.Add(11 * 24 * time.Hour)
	kolkata := time.FixedZone("IST", 5*3600+1800)

	tests := []struct {
		name        string
		from, to    time.Time
		interval    string
		points      int
		wantFrom    time.Time // after rounding out to whole UTC hours
		wantTo      time.Time
		compareFrom time.Time
		compareTo   time.Time
	}{
		{name: "48 hours, hourly", from: t0.Add(29 * time.Hour), to: t0.Add(77 * time.Hour), interval: "hour", points: 48},
		{name: "72 hours is still hourly", from: t0.Add(24 * time.Hour), to: t0.Add(96 * time.Hour), interval: "hour", points: 72},
		{name: "partial first and last days", from: t0.Add(22 * time.Hour), to: t0.Add(8*24*time.Hour + 3*time.Hour), interval: "day", points: 9},
		{name: "whole days", from: t0, to: t0.Add(10 * 24 * time.Hour), interval: "day", points: 10},
		{
			name: "bounds in another time zone, rounded out to UTC hours",
			from: time.Date(2026, 3, 2, 10, 50, 0, 0, kolkata), to: time.Date(2026, 3, 6, 3, 10, 0, 0, kolkata),
			wantFrom: time.Date(2026, 3, 2, 5, 0, 0, 0, time.UTC), wantTo: time.Date(2026, 3, 5, 22, 0, 0, 0, time.UTC),
			interval: "day", points: 4,
		},
		{
			name: "week compared with the previous week", from: t0.Add(7 * 24 * time.Hour), to: t0.Add(10 * 24 * time.Hour),
			compareFrom: t0.Add(4 * 24 * time.Hour), compareTo: t0.Add(7 * 24 * time.Hour), interval: "hour", points: 72,
		},
	}
	for _, agg := range []struct {
		name string
		a    *Aggregator
	}{{"same aggregator", a}, {"cold aggregator", newAgg(t, s, clk, full)}} {
		for _, tt := range tests {
			t.Run(agg.name+"/"+tt.name, func(t *testing.T) {
				ov, err := agg.a.Overview(ctx, "shop", tt.from, tt.to, tt.compareFrom, tt.compareTo)
				if err != nil {
					t.Fatal(err)
				}
				from, to := tt.from.UTC(), tt.to.UTC()
				if !tt.wantFrom.IsZero() {
					from, to = tt.wantFrom, tt.wantTo
				}
				if !ov.From.Equal(from) || !ov.To.Equal(to) || ov.From.Location() != time.UTC {
					t.Fatalf("period %v – %v, want %v – %v in UTC", ov.From, ov.To, from, to)
				}
				if ov.Interval != tt.interval || len(ov.Series) != tt.points {
					t.Fatalf("interval %s with %d points, want %s with %d", ov.Interval, len(ov.Series), tt.interval, tt.points)
				}
				n, dims, visitors := x.sum(from, to)
				checkTotals(t, "totals", ov.Totals, n, visitors)
				for i, p := range ov.Series {
					end := to
					if i+1 < len(ov.Series) {
						end = ov.Series[i+1].Start
					}
					if i == 0 && !p.Start.Equal(from) {
						t.Errorf("first point starts %v, want %v", p.Start, from)
					}
					if tt.interval == "day" && i > 0 && (p.Start.Hour() != 0 || p.Start.Location() != time.UTC) {
						t.Errorf("point %d starts %v, not at a UTC midnight", i, p.Start)
					}
					pn, _, pv := x.sum(p.Start, end)
					checkTotals(t, fmt.Sprintf("point %d (%v)", i, p.Start), p.Totals, pn, pv)
				}
				for _, l := range []struct {
					name string
					l    List
					d    dim
				}{
					{"pages", ov.Top.Pages, dimPage}, {"entry pages", ov.Top.EntryPages, dimEntry},
					{"sources", ov.Top.Sources, dimSource}, {"campaigns", ov.Top.Campaigns, dimCampaign},
					{"utm sources", ov.Top.UTMSources, dimUTMSource}, {"utm mediums", ov.Top.UTMMediums, dimUTMMedium},
					{"countries", ov.Top.Countries, dimCountry}, {"devices", ov.Top.Devices, dimDevice},
					{"browsers", ov.Top.Browsers, dimBrowser}, {"oses", ov.Top.OSes, dimOS},
				} {
					checkList(t, l.name, l.l, dims[l.d])
				}
				checkList(t, "types", List{Entries: ov.Types, Total: sumEntries(ov.Types)}, dims[dimType])
				if ov.Consent.Basis != "events" || ov.Consent.Total != ov.Totals.Events {
					t.Errorf("consent basis %q total %d, want events %d", ov.Consent.Basis, ov.Consent.Total, ov.Totals.Events)
				}
				for _, p := range ov.Consent.Purposes {
					if p.Granted != dims[dimPurpose][p.Purpose] {
						t.Errorf("purpose %s granted %d, want %d", p.Purpose, p.Granted, dims[dimPurpose][p.Purpose])
					}
				}
				if tt.compareFrom.IsZero() {
					if ov.Compare != nil {
						t.Error("comparison without asking")
					}
					return
				}
				if ov.Compare == nil || len(ov.Compare.Series) != tt.points {
					t.Fatalf("comparison %+v", ov.Compare)
				}
				cn, _, cv := x.sum(tt.compareFrom, tt.compareTo)
				checkTotals(t, "comparison", ov.Compare.Totals, cn, cv)
				if ov.Compare.Totals == ov.Totals {
					t.Error("comparison equals the period")
				}
			})
		}
	}
	if st := a.Stats(); st.Added != uint64(smallSet.events) || st.Duplicates+st.TooOld+st.Invalid != 0 {
		t.Errorf("stats %+v", st)
	}
}

func sumEntries(es []Entry) uint64 {
	var n uint64
	for _, e := range es {
		n += e.Count
	}
	return n
}

// TestOpenBucketsReadFromMemory: what was added and not flushed is in
// the overview, and a flush after a query is seen by the next query (the
// cache is invalidated).
func TestOpenBucketsReadFromMemory(t *testing.T) {
	ctx := context.Background()
	s := storagetest.Open(t)
	clk := &clock{now: t0.Add(30 * time.Minute)}
	a := newAgg(t, s, clk, nil)
	page := func(at time.Time, path string) *vigiev1.Event {
		return &vigiev1.Event{Site: "shop", Type: "page", TimestampMs: at.UnixMilli(), ReceivedAtMs: at.UnixMilli(),
			Mode: vigiev1.Mode_MODE_ANONYMOUS, Page: &vigiev1.Page{Path: path}}
	}
	views := func() uint64 {
		ov, err := a.Overview(ctx, "shop", t0.Add(-24*time.Hour), t0.Add(24*time.Hour), time.Time{}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		return ov.Totals.PageViews
	}
	// A closed hour, flushed and evicted, then cached by a query.
	if err := a.Add(ctx, page(t0.Add(-3*time.Hour), "/old")); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := views(); got != 1 {
		t.Fatalf("page views %d, want 1", got)
	}
	// Not flushed: read from memory.
	if err := a.Add(ctx, page(t0.Add(10*time.Minute), "/now")); err != nil {
		t.Fatal(err)
	}
	if got := views(); got != 2 {
		t.Fatalf("page views %d after an unflushed event, want 2", got)
	}
	// A late event reloads the cached closed hour; after the flush the
	// query must not serve the stale cached copy.
	if err := a.Add(ctx, page(t0.Add(-3*time.Hour+time.Minute), "/old")); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := views(); got != 3 {
		t.Fatalf("page views %d after a late event, want 3 (stale cache?)", got)
	}
}

func TestTopKOther(t *testing.T) {
	ctx := context.Background()
	s := storagetest.Open(t)
	clk := &clock{now: t0.Add(48 * time.Hour)}
	a := newAgg(t, s, clk, func(c *Config) { c.TopK, c.TopN = 5, 5 })
	add := func(hour int, path string, n int) {
		for range n {
			at := t0.Add(time.Duration(hour) * time.Hour).UnixMilli()
			if err := a.Add(ctx, &vigiev1.Event{Site: "shop", Type: "page", TimestampMs: at, ReceivedAtMs: at,
				Mode: vigiev1.Mode_MODE_ANONYMOUS, Page: &vigiev1.Page{Path: path, ReferrerHost: siteHost}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Hour 0: /p1..../p20 with counts 20..1.
	for i := 1; i <= 20; i++ {
		add(0, fmt.Sprintf("/p%d", i), 21-i)
	}
	// Hour 1: /q1 dominates, /p1 appears once.
	add(1, "/q1", 100)
	add(1, "/p1", 1)
	// Hour 2: more distinct values than even memory keeps (8×TopK = 40):
	// 60 values once each, the first 40 exact and the rest in "other".
	for i := range 60 {
		add(2, fmt.Sprintf("/r%02d", i), 1)
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	cold := newAgg(t, s, clk, func(c *Config) { c.TopK, c.TopN = 5, 5 })
	tests := []struct {
		name     string
		from, to int
		want     []Entry
		other    uint64
		total    uint64
	}{
		{"one hour: the 5 largest and the rest in other", 0, 1,
			[]Entry{{"/p1", 20}, {"/p2", 19}, {"/p3", 18}, {"/p4", 17}, {"/p5", 16}}, 120, 210},
		{"two hours: counts add, totals exact", 0, 2,
			[]Entry{{"/q1", 100}, {"/p1", 21}, {"/p2", 19}, {"/p3", 18}, {"/p4", 17}}, 16 + 120, 311},
		{"beyond the memory cap: total still exact", 2, 3,
			[]Entry{{"/r00", 1}, {"/r01", 1}, {"/r02", 1}, {"/r03", 1}, {"/r04", 1}}, 55, 60},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ov, err := cold.Overview(ctx, "shop", t0.Add(time.Duration(tt.from)*time.Hour), t0.Add(time.Duration(tt.to)*time.Hour), time.Time{}, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			l := ov.Top.Pages
			if fmt.Sprint(l.Entries) != fmt.Sprint(tt.want) || l.Other != tt.other || l.Total != tt.total {
				t.Errorf("pages %v other %d total %d; want %v other %d total %d", l.Entries, l.Other, l.Total, tt.want, tt.other, tt.total)
			}
		})
	}
	// The stored hour keeps exactly TopK values and sums the rest.
	v, err := s.Rollup(ctx, storage.RollupHour, "shop", uint32(t0.Unix()/3600))
	if err != nil {
		t.Fatal(err)
	}
	b, err := decodeBucket(storage.RollupHour, 0, v)
	if err != nil {
		t.Fatal(err)
	}
	if c := b.dims[dimPage]; len(c.m) != 5 || c.other != 210-90 {
		t.Errorf("stored hour keeps %d pages and other %d, want 5 and 120", len(c.m), c.other)
	}
}

func TestVisitDefinition(t *testing.T) {
	tests := []struct {
		name       string
		configured []string
		url, ref   string
		want       bool
	}{
		{"no referrer", nil, "https://shop.example/a", "", true},
		{"own URL host", nil, "https://shop.example/a", "shop.example", false},
		{"www and port ignored", nil, "https://shop.example:8443/a", "WWW.Shop.Example", false},
		{"external referrer", nil, "https://shop.example/a", "news.example", true},
		{"subdomain is another host", nil, "https://shop.example/a", "blog.shop.example", true},
		{"anonymous (no URL), configured host", []string{"https://no-scheme-allowed"}, "", "no-scheme-allowed", true},
		{"anonymous, configured host matches", []string{"shop.example"}, "", "www.shop.example", false},
		{"anonymous, host learned from an earlier URL", nil, "", "learned.example", false},
		{"anonymous, unknown host", nil, "", "other.example", true},
	}
	st := &siteState{}
	(&siteState{}).isEntry(&vigiev1.Page{})
	st.isEntry(&vigiev1.Page{Url: "https://learned.example/x"})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := st
			if tt.configured != nil {
				a := &Aggregator{cfg: Config{SiteHosts: map[string][]string{"x": tt.configured}}, sites: map[string]*siteState{}}
				s = a.site("x")
			}
			if got := s.isEntry(&vigiev1.Page{Url: tt.url, ReferrerHost: tt.ref}); got != tt.want {
				t.Errorf("isEntry = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRetention(t *testing.T) {
	ctx := context.Background()
	s := storagetest.Open(t)
	// Badger expires entries by the real clock.
	clk := &clock{now: time.Now()}
	a := newAgg(t, s, clk, func(c *Config) { c.Retention = 30 * 24 * time.Hour })
	ev := func(at time.Time) *vigiev1.Event {
		return &vigiev1.Event{Site: "shop", Type: "track", TimestampMs: at.UnixMilli(), ReceivedAtMs: clk.now.UnixMilli()}
	}
	recent := clk.now.Add(-10 * 24 * time.Hour).Truncate(time.Hour)
	for _, at := range []time.Time{recent, clk.now.Add(-40 * 24 * time.Hour)} {
		if err := a.Add(ctx, ev(at)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if st := a.Stats(); st.Added != 1 || st.TooOld != 1 {
		t.Errorf("stats %+v, want 1 added and 1 too old", st)
	}
	want := map[string]time.Time{
		"rh/": recent.Add(time.Hour).Add(30 * 24 * time.Hour),
		"rd/": recent.Truncate(24 * time.Hour).Add(24 * time.Hour).Add(30 * 24 * time.Hour),
	}
	seen := 0
	_ = s.DB().View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("r")})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			w, ok := want[string(item.Key()[:3])]
			if !ok {
				continue
			}
			seen++
			if got := item.ExpiresAt(); got != uint64(w.Unix()) {
				t.Errorf("%q expires at %v, want %v (period end + retention)", item.Key(), time.Unix(int64(got), 0).UTC(), w)
			}
		}
		return nil
	})
	if seen != 2 {
		t.Errorf("%d rollups stored, want an hour and a day", seen)
	}
}

func TestOverviewInvalid(t *testing.T) {
	s := storagetest.Open(t)
	a := newAgg(t, s, &clock{now: t0}, nil)
	z := time.Time{}
	tests := []struct {
		name                 string
		site                 string
		from, to, cfrom, cto time.Time
	}{
		{"empty site", "", t0, t0.Add(time.Hour), z, z},
		{"NUL in site", "a\x00", t0, t0.Add(time.Hour), z, z},
		{"empty period", "shop", t0, t0, z, z},
		{"inverted period", "shop", t0, t0.Add(-time.Hour), z, z},
		{"too long", "shop", t0, t0.Add(801 * 24 * time.Hour), z, z},
		{"before 1970", "shop", time.Unix(-7200, 0), t0, z, z},
		{"comparison with one bound", "shop", t0, t0.Add(time.Hour), t0, z},
		{"inverted comparison", "shop", t0, t0.Add(time.Hour), t0, t0.Add(-time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := a.Overview(context.Background(), tt.site, tt.from, tt.to, tt.cfrom, tt.cto); !errors.Is(err, ErrInvalidQuery) {
				t.Errorf("err = %v, want ErrInvalidQuery", err)
			}
		})
	}
}

func TestLive(t *testing.T) {
	ctx := context.Background()
	s := storagetest.Open(t)
	clk := &clock{now: t0.Add(12 * time.Hour)}
	a := newAgg(t, s, clk, nil)
	add := func(ago time.Duration, subject string) {
		rx := clk.now.Add(-ago).UnixMilli()
		ev := &vigiev1.Event{Site: "shop", Type: "track", TimestampMs: rx - 500, ReceivedAtMs: rx, Subject: subject}
		if subject != "" {
			ev.Mode = vigiev1.Mode_MODE_PSEUDONYMOUS
		}
		if err := a.Add(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	add(10*time.Minute, "old")
	add(5*time.Minute+time.Second, "old")
	add(4*time.Minute+40*time.Second, "a")
	add(time.Minute, "b")
	add(time.Second, "b")
	add(0, "")
	ov, err := a.Overview(ctx, "shop", t0, t0.Add(24*time.Hour), time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if ov.Live.Events != 4 || ov.Live.Visitors != 2 {
		t.Errorf("live %+v, want 4 events of 2 visitors", ov.Live)
	}
	if d := clk.now.Sub(ov.Live.Since); d < 4*time.Minute+50*time.Second || d > 5*time.Minute {
		t.Errorf("live window starts %v before now", d)
	}
	clk.now = clk.now.Add(6 * time.Minute)
	if ov, _ := a.Overview(ctx, "shop", t0, t0.Add(24*time.Hour), time.Time{}, time.Time{}); ov.Live.Events != 0 {
		t.Errorf("live %+v six minutes later, want 0", ov.Live)
	}
}

func TestBucketCodec(t *testing.T) {
	b := newBucket(storage.RollupHour, 7)
	f := facts{mode: modePseudonymous, typ: "page", purposes: []string{"analytics"}, page: true, path: "/a", entry: true,
		source: keyDirect, campaign: keyNone, utmSrc: keyNone, utmMed: keyNone, country: "FR", device: "mobile", browser: "Safari", os: "iOS"}
	for i := range 3000 {
		f.subject, f.hasSubj = uint64(i)*0x9E3779B97F4A7C15, true
		f.path = fmt.Sprintf("/p%d", i%700)
		f.apply(b, 8*500)
	}
	var scratch []entry
	v := b.appendBinary(nil, 3, 99, 4, 500, &scratch)
	d, err := decodeBucket(storage.RollupHour, 7, v)
	if err != nil {
		t.Fatal(err)
	}
	if d.n != b.n || d.epoch != 3 || d.mark != 99 || d.included != 4 {
		t.Errorf("decoded counts %v epoch %d mark %d", d.n, d.epoch, d.mark)
	}
	if c := d.dims[dimPage]; len(c.m) != 500 || c.total() != 3000 {
		t.Errorf("decoded pages: %d values, total %d; want 500 and 3000", len(c.m), c.total())
	}
	if got, want := d.hll.Estimate(), b.hll.Estimate(); got != want {
		t.Errorf("decoded HLL estimates %d, original %d", got, want)
	}
	for _, bad := range [][]byte{nil, {2}, v[:len(v)/2], append(append([]byte{}, v[:20]...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)} {
		if _, err := decodeBucket(storage.RollupHour, 7, bad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("decode of %d corrupt bytes: err %v", len(bad), err)
		}
	}
}

// storedParts returns the part numbers and sizes stored for one hour.
func storedParts(t *testing.T, s *storage.Store, hour uint32) (parts []uint64, sizes []int) {
	t.Helper()
	err := s.ScanRollups(context.Background(), storage.RollupHour, "shop", hour, hour+1, func(_ uint32, p uint64, v []byte) error {
		parts, sizes = append(parts, p), append(sizes, len(v))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return parts, sizes
}

// TestDeltaParts: an open bucket is written as small parts holding the
// changes, read back whole (by queries and after a restart), and compacted
// into one value once its hour is closed.
func TestDeltaParts(t *testing.T) {
	ctx := context.Background()
	s := storagetest.Open(t)
	clk := &clock{}
	hourStart := t0.Add(10 * time.Hour)
	hour := uint32(hourStart.Unix() / 3600)
	x := newExact()
	a := newAgg(t, s, clk, nil)
	g := smallSet
	g.start, g.span, g.events = hourStart, time.Hour, 3000
	var evs []*vigiev1.Event
	generate(g, func(ev *vigiev1.Event) { evs = append(evs, proto.Clone(ev).(*vigiev1.Event)) })
	check := func(what string, a *Aggregator) {
		t.Helper()
		ov, err := a.Overview(ctx, "shop", hourStart, hourStart.Add(time.Hour), time.Time{}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		n, _, v := x.sum(hourStart, hourStart.Add(time.Hour))
		checkTotals(t, what, ov.Totals, n, v)
	}
	addRange := func(a *Aggregator, from, to, flushEvery int) {
		t.Helper()
		for i := from; i < to; i++ {
			clk.now = time.UnixMilli(evs[i].ReceivedAtMs)
			if err := a.Add(ctx, evs[i]); err != nil {
				t.Fatal(err)
			}
			x.add(evs[i])
			if (i+1)%flushEvery == 0 {
				if err := a.Flush(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	// 1 200 events flushed every 4 (every ~5 s): part 0, then changes,
	// 300 flushes: more than maxParts, so part 0 is rewritten on the way.
	addRange(a, 0, 1200, 4)
	parts, sizes := storedParts(t, s, hour)
	if len(parts) < 2 || parts[0] != 0 || len(parts) > maxParts+1 {
		t.Fatalf("stored parts %v", parts)
	}
	for i, p := range parts[1:] {
		if p != parts[i]+1 && parts[i] != 0 {
			t.Errorf("parts not numbered in sequence: %v", parts)
		}
		if sizes[i+1] > 4000 {
			t.Errorf("part %d is %d bytes: not just the changes of 10 events", p, sizes[i+1])
		}
	}
	check("open hour, read from memory", a)
	check("open hour, read from its parts", newAgg(t, s, clk, nil))

	// A restart: the new aggregator loads part 0 and the parts, and adds.
	a2 := newAgg(t, s, clk, nil)
	addRange(a2, 1200, 2400, 10)
	check("after a restart, from memory", a2)
	check("after a restart, from the parts", newAgg(t, s, clk, nil))
	if p, _ := storedParts(t, s, hour); len(p) > maxParts+1 {
		t.Errorf("%d parts, more than %d", len(p)-1, maxParts)
	}

	// The hour closes: compacted into part 0, then forgotten by memory.
	addRange(a2, 2400, 3000, 10)
	clk.now = hourStart.Add(time.Hour + closeGrace + time.Second)
	if err := a2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if p, _ := storedParts(t, s, hour); len(p) != 1 || p[0] != 0 {
		t.Errorf("after the hour closed, stored parts %v, want only part 0", p)
	}
	if len(a2.sites["shop"].hours) != 0 {
		t.Error("closed hour kept in memory")
	}
	check("compacted", newAgg(t, s, clk, nil))
}

func TestAssembleSkipsCompactedParts(t *testing.T) {
	var scratch []entry
	enc := func(pages map[string]uint64, mark, included uint64) []byte {
		b := newBucket(storage.RollupHour, 1)
		for k, v := range pages {
			b.dims[dimPage].add(k, v, 100)
			b.n[modeAnonymous][metricPageViews] += v
		}
		return b.appendBinary(nil, 1, mark, included, 100, &scratch)
	}
	pieces := []piece{
		{0, enc(map[string]uint64{"/a": 5, "/b": 1}, 30, 3)}, // includes parts up to 3
		{2, enc(map[string]uint64{"/a": 2}, 10, 0)},          // stale: compacted already
		{3, enc(map[string]uint64{"/b": 1}, 20, 0)},          // stale
		{4, enc(map[string]uint64{"/a": 1, "/c": 7}, 40, 0)},
		{5, []byte{9}}, // corrupt: left out
	}
	var warned int
	b := assemble(storage.RollupHour, 1, pieces, 100, func(error) { warned++ })
	if got := b.dims[dimPage].m; got["/a"] != 6 || got["/b"] != 1 || got["/c"] != 7 || b.n[modeAnonymous][metricPageViews] != 14 {
		t.Errorf("assembled pages %v, views %d; want /a 6, /b 1, /c 7 and 14", got, b.n[modeAnonymous][metricPageViews])
	}
	if b.mark != 40 || b.lastPart != 5 || fmt.Sprint(b.parts) != "[2 3 4 5]" || !b.stored || warned != 1 {
		t.Errorf("mark %d lastPart %d parts %v stored %v warned %d", b.mark, b.lastPart, b.parts, b.stored, warned)
	}
}

// TestChangesDuringAWrite: events added while a flush writes (the lock is
// not held then) are in the next write, whole or as a part.
func TestChangesDuringAWrite(t *testing.T) {
	defer func() { putRollups = (*storage.Store).PutRollups }()
	ctx := context.Background()
	s := storagetest.Open(t)
	clk := &clock{now: t0.Add(10*time.Hour + 30*time.Minute)}
	a := newAgg(t, s, clk, nil)
	i := 0
	add := func(n int) {
		for range n {
			at := clk.now.UnixMilli()
			i++
			if err := a.Add(ctx, &vigiev1.Event{Site: "shop", Type: "page", TimestampMs: at, ReceivedAtMs: at,
				Page: &vigiev1.Page{Path: fmt.Sprintf("/page/%d", i)}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	events := func() uint64 {
		ov, err := newAgg(t, s, clk, nil).Overview(ctx, "shop", t0, t0.Add(24*time.Hour), time.Time{}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		return ov.Totals.Events
	}
	for _, failFirst := range []bool{false, true} {
		before := events()
		add(300) // large enough for the last few changes to be written as a part
		calls := 0
		putRollups = func(s *storage.Store, ctx context.Context, es []storage.RollupEntry, m *storage.RollupMark) error {
			if calls++; calls == 1 {
				add(5) // during the write
				if failFirst {
					return errCrash
				}
			}
			return s.PutRollups(ctx, es, m)
		}
		if err := a.Flush(ctx); (err != nil) != failFirst {
			t.Fatalf("flush: %v", err)
		}
		putRollups = (*storage.Store).PutRollups
		add(3)
		if err := a.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if got := events() - before; got != 308 {
			t.Errorf("failed first write %v: %d events stored, want 308", failFirst, got)
		}
	}
}
