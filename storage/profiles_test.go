package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// These tests are internal (package storage) to reach mergePatch and the
// profile codec; storagetest cannot be imported here (import cycle).

var profBase = time.Date(2025, 3, 1, 12, 30, 0, 0, time.UTC)

func openProfiles(t testing.TB, dir string) *Store {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	s, err := Open(Config{Dir: dir, VaultKey: bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// pev builds a pseudonymous event.
func pev(id, subject, typ, name string, at time.Time) *vigiev1.Event {
	ev := &vigiev1.Event{Id: id, Site: "site", Subject: subject, Type: typ, TimestampMs: at.UnixMilli(),
		Mode: vigiev1.Mode_MODE_PSEUDONYMOUS, Purposes: []string{"analytics"}}
	if typ == "page" {
		ev.Page = &vigiev1.Page{Path: name}
	} else {
		ev.Name = name
	}
	return ev
}

type countEvent struct {
	typ, key string
	ago      time.Duration
}

// countScenario: offsets are relative to profBase (hour H); the comments
// give the hour and which windows ending at profBase contain it.
var countScenario = []countEvent{
	{"track", "signup", 0},                   // H: 1d 7d 30d
	{"track", "signup", 0},                   // H
	{"track", "signup", 23 * time.Hour},      // H-23: 1d 7d 30d
	{"track", "signup", 24 * time.Hour},      // H-24: 7d 30d
	{"track", "signup", 167 * time.Hour},     // H-167: 7d 30d
	{"track", "signup", 168 * time.Hour},     // H-168: 30d
	{"track", "signup", 719 * time.Hour},     // H-719: 30d
	{"track", "signup", 720 * time.Hour},     // H-720: pruned
	{"track", "login", time.Hour},            // H-1
	{"page", "/pricing", 2 * time.Hour},      // H-2
	{"page", "/pricing/team", 3 * time.Hour}, // H-3
	{"page", "/blog", 30 * time.Hour},        // H-30
	{"identify", "", 5 * time.Hour},          // H-5
}

func scenarioProfile(order []int) *Profile {
	p := &Profile{Site: "site", Subject: "subj"}
	for _, i := range order {
		e := countScenario[i]
		p.observe(pev(fmt.Sprint(i), "subj", e.typ, e.key, profBase.Add(-e.ago)))
	}
	return p
}

func TestProfileCount(t *testing.T) {
	n := len(countScenario)
	inOrder, reversed, interleaved := make([]int, n), make([]int, n), make([]int, 0, n)
	for i := range n {
		inOrder[i], reversed[i] = i, n-1-i
	}
	for i := 0; i < n; i += 2 {
		interleaved = append(interleaved, i)
	}
	for i := 1; i < n; i += 2 {
		interleaved = append(interleaved, i)
	}
	now := profBase.UnixMilli()
	day := 24 * time.Hour
	tests := []struct {
		typ, pattern string
		window       time.Duration
		nowMs        int64
		want         int64
	}{
		{"track", "signup", day, now, 3},
		{"track", "signup", 7 * day, now, 5},
		{"track", "signup", 30 * day, now, 7},
		{"track", "signup", 31 * day, now, 7}, // H-720 was pruned
		{"track", "sign*", time.Hour, now, 2},
		{"track", "signup", 0, now, 2}, // sub-hour window = current hour
		{"track", "", day, now, 4},
		{"track", "*", day, now, 4},
		{"track", "signup", day, now + day.Milliseconds(), 0},
		{"track", "signup", day, now - time.Hour.Milliseconds(), 2}, // H-24..H-1 → H-23, H-24
		{"page", "/pricing*", day, now, 2},
		{"page", "/pricing", day, now, 1},
		{"page", "*", 7 * day, now, 3},
		{"page", "/blog", day, now, 0},
		{"identify", "", day, now, 1},
		{"", "*", 30 * day, now, 12},
		{"screen", "", 30 * day, now, 0},
	}
	for name, order := range map[string][]int{"in order": inOrder, "reversed": reversed, "interleaved": interleaved} {
		p := scenarioProfile(order)
		for _, tc := range tests {
			if got := p.Count(tc.typ, tc.pattern, tc.window, tc.nowMs); got != tc.want {
				t.Errorf("%s: Count(%q, %q, %v, %+dms) = %d, want %d", name, tc.typ, tc.pattern, tc.window, tc.nowMs-now, got, tc.want)
			}
		}
		if p.FirstSeenMs != profBase.Add(-720*time.Hour).UnixMilli() || p.LastSeenMs != now {
			t.Errorf("%s: first/last seen %d/%d", name, p.FirstSeenMs, p.LastSeenMs)
		}
		for k, bs := range p.Counters {
			if !slices.IsSortedFunc(bs, func(a, b Bucket) int { return int(a.Hour - b.Hour) }) {
				t.Errorf("%s: buckets of %q not sorted: %v", name, k, bs)
			}
		}
	}
}

func TestProfilePruneAfter30Days(t *testing.T) {
	p := &Profile{Site: "site", Subject: "subj"}
	p.observe(pev("1", "subj", "track", "old", profBase))
	p.observe(pev("2", "subj", "track", "new", profBase.Add(719*time.Hour)))
	if _, ok := p.Counters["track\x00old"]; !ok {
		t.Fatalf("bucket 719h old pruned too early")
	}
	p.observe(pev("3", "subj", "track", "new", profBase.Add(720*time.Hour)))
	if _, ok := p.Counters["track\x00old"]; ok {
		t.Fatalf("bucket 720h old not pruned: %v", p.Counters)
	}
	if got := p.Count("track", "new", 30*24*time.Hour, profBase.Add(720*time.Hour).UnixMilli()); got != 2 {
		t.Fatalf("new count %d, want 2", got)
	}
}

func TestProfileCounterCap(t *testing.T) {
	p := &Profile{Site: "site", Subject: "subj"}
	// Key i is last used at hour i, except key 0 which is used again last
	// but one: the LRU victim must be key 1.
	for i := range maxCounterKeys {
		p.observe(pev(fmt.Sprint(i), "subj", "track", fmt.Sprint("k", i), profBase.Add(time.Duration(i)*time.Minute)))
	}
	p.observe(pev("again", "subj", "track", "k0", profBase.Add(10*time.Hour)))
	p.observe(pev("new", "subj", "track", "knew", profBase.Add(11*time.Hour)))
	if len(p.Counters) != maxCounterKeys {
		t.Fatalf("%d counter keys, want %d", len(p.Counters), maxCounterKeys)
	}
	for k, want := range map[string]bool{"track\x00k0": true, "track\x00knew": true, "track\x00k1": false, "track\x00k2": true} {
		if _, ok := p.Counters[k]; ok != want {
			t.Errorf("key %q present=%v, want %v", k, ok, want)
		}
	}
}

func TestProfileProto(t *testing.T) {
	p := scenarioProfile([]int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	p.Campaign = &vigiev1.Campaign{Name: "spring", ClickIds: map[string]string{"gclid": "x"}}
	p.Segments = []string{"a", "b"}
	p.Attributes = json.RawMessage(`{"x":1}`)
	pp := p.Proto(profBase.UnixMilli())
	if pp.GetLastCampaign().GetName() != "spring" || len(pp.GetLastCampaign().GetClickIds()) != 0 {
		t.Errorf("campaign %v: want name kept and click ids dropped", pp.GetLastCampaign())
	}
	if !slices.Equal(pp.Segments, p.Segments) || string(pp.Attributes) != string(p.Attributes) {
		t.Errorf("segments/attributes not copied: %v %s", pp.Segments, pp.Attributes)
	}
	var got []string
	for _, c := range pp.Counters {
		if c.Count <= 0 {
			t.Errorf("counter %v with non-positive count", c)
		}
		w := map[string]time.Duration{"1d": 24 * time.Hour, "7d": 7 * 24 * time.Hour, "30d": 30 * 24 * time.Hour}[c.Window]
		if want := p.Count(c.Type, c.Key, w, profBase.UnixMilli()); c.Count != want {
			t.Errorf("counter %v: Count says %d", c, want)
		}
		got = append(got, c.Type+"|"+c.Key+"|"+c.Window)
	}
	want := []string{
		"identify||1d", "identify||7d", "identify||30d",
		"page|/blog|7d", "page|/blog|30d",
		"page|/pricing|1d", "page|/pricing|7d", "page|/pricing|30d",
		"page|/pricing/team|1d", "page|/pricing/team|7d", "page|/pricing/team|30d",
		"track|login|1d", "track|login|7d", "track|login|30d",
		"track|signup|1d", "track|signup|7d", "track|signup|30d",
	}
	if !slices.Equal(got, want) {
		t.Errorf("counters\n got %q\nwant %q", got, want)
	}
	// Mutating the proto must not touch the profile.
	pp.Segments[0] = "zzz"
	pp.Attributes[0] = '['
	if p.Segments[0] != "a" || p.Attributes[0] != '{' {
		t.Errorf("Proto shares memory with the profile")
	}
}

func TestObserveEvent(t *testing.T) {
	ctx := context.Background()
	s := openProfiles(t, "")
	ev := pev("e1", "subj", "track", "signup", profBase)
	ev.Campaign = &vigiev1.Campaign{Source: "news", ClickIds: map[string]string{"gclid": "secret-click"}}
	ev.Geo = &vigiev1.Geo{Country: "FR"}
	p, observed, err := s.ObserveEvent(ctx, ev)
	if err != nil || !observed {
		t.Fatalf("first observe: %v observed=%v", err, observed)
	}
	if p.Count("track", "signup", time.Hour, ev.TimestampMs) != 1 || p.Country != "FR" || p.Campaign.GetSource() != "news" {
		t.Fatalf("profile after first event: %+v", p)
	}
	// Replay: nothing changes.
	p2, observed, err := s.ObserveEvent(ctx, ev)
	if err != nil || observed {
		t.Fatalf("replay: %v observed=%v", err, observed)
	}
	if !reflect.DeepEqual(p2.Counters, p.Counters) {
		t.Fatalf("replay changed counters: %v vs %v", p2.Counters, p.Counters)
	}
	// An older event counts but does not replace the latest state.
	old := pev("e0", "subj", "track", "signup", profBase.Add(-2*time.Hour))
	old.Purposes = []string{"analytics", "marketing"}
	old.Geo = &vigiev1.Geo{Country: "DE"}
	p3, _, err := s.ObserveEvent(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	if p3.Country != "FR" || !slices.Equal(p3.Purposes, []string{"analytics"}) || p3.FirstSeenMs != old.TimestampMs || p3.LastSeenMs != ev.TimestampMs {
		t.Fatalf("older event replaced latest state: %+v", p3)
	}
	// A newer event without campaign/geo keeps them, replaces purposes.
	nw := pev("e2", "subj", "page", "/home", profBase.Add(time.Hour))
	nw.Purposes = nil
	p4, _, err := s.ObserveEvent(ctx, nw)
	if err != nil {
		t.Fatal(err)
	}
	if p4.Country != "FR" || p4.Campaign.GetSource() != "news" || len(p4.Purposes) != 0 || p4.LastSeenMs != nw.TimestampMs {
		t.Fatalf("newer event: %+v", p4)
	}
	got, err := s.Profile(ctx, "site", "subj")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Counters, p4.Counters) || got.Campaign.GetSource() != "news" {
		t.Fatalf("stored %+v\nreturned %+v", got, p4)
	}
	// Click ids never reach disk.
	if err := s.ScanAllVersions(func(k, v []byte) error {
		if bytes.Contains(v, []byte("secret-click")) {
			return fmt.Errorf("click id stored under %q", k)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Profile(ctx, "site", "nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing profile: %v", err)
	}
}

func TestObserveEventValidation(t *testing.T) {
	s := openProfiles(t, "")
	ok := func() *vigiev1.Event { return pev("id", "subj", "track", "x", profBase) }
	tests := []struct {
		name string
		mod  func(*vigiev1.Event) *vigiev1.Event
		want error
	}{
		{"nil", func(*vigiev1.Event) *vigiev1.Event { return nil }, ErrInvalidRecord},
		{"no site", func(e *vigiev1.Event) *vigiev1.Event { e.Site = ""; return e }, ErrInvalidKey},
		{"anonymous", func(e *vigiev1.Event) *vigiev1.Event { e.Subject = ""; return e }, ErrInvalidKey},
		{"nul subject", func(e *vigiev1.Event) *vigiev1.Event { e.Subject = "a\x00b"; return e }, ErrInvalidKey},
		{"no id", func(e *vigiev1.Event) *vigiev1.Event { e.Id = ""; return e }, ErrInvalidKey},
		{"no type", func(e *vigiev1.Event) *vigiev1.Event { e.Type = ""; return e }, ErrInvalidRecord},
		{"nul type", func(e *vigiev1.Event) *vigiev1.Event { e.Type = "a\x00"; return e }, ErrInvalidRecord},
		{"no time", func(e *vigiev1.Event) *vigiev1.Event { e.TimestampMs = 0; return e }, ErrInvalidRecord},
	}
	for _, tc := range tests {
		if _, _, err := s.ObserveEvent(context.Background(), tc.mod(ok())); !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestObserveEventConcurrent(t *testing.T) {
	s := openProfiles(t, "")
	const workers, each = 8, 40
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				// Every worker also replays one id another worker uses.
				id := fmt.Sprintf("%d-%d", w, i)
				if i == 0 {
					id = "shared"
				}
				ev := pev(id, "subj", "track", "click", profBase.Add(time.Duration(i)*time.Second))
				if _, _, err := s.ObserveEvent(context.Background(), ev); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	p, err := s.Profile(context.Background(), "site", "subj")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.Count("track", "click", time.Hour, profBase.UnixMilli()), int64(workers*(each-1)+1); got != want {
		t.Fatalf("count %d, want %d (lost or double updates)", got, want)
	}
}

func enter(seg string) *vigiev1.SegmentChange {
	return &vigiev1.SegmentChange{Segment: seg, Transition: vigiev1.Transition_TRANSITION_ENTERED}
}

func exit(seg string) *vigiev1.SegmentChange {
	return &vigiev1.SegmentChange{Segment: seg, Transition: vigiev1.Transition_TRANSITION_EXITED}
}

func changeStrings(cs []*vigiev1.SegmentChange) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = fmt.Sprintf("%s/%s:%s:%s@%s", c.Site, c.Subject, c.Segment, c.Transition.String()[len("TRANSITION_"):], c.EventId)
	}
	return out
}

func observe(t *testing.T, s *Store, subject string) {
	t.Helper()
	if _, _, err := s.ObserveEvent(context.Background(), pev("obs-"+subject, subject, "track", "x", profBase)); err != nil {
		t.Fatal(err)
	}
}

func TestApplySegment(t *testing.T) {
	ctx := context.Background()
	s := openProfiles(t, "")
	observe(t, s, "u1")
	observe(t, s, "u2")
	steps := []struct {
		o        SegmentOutcome
		wantApp  []string
		wantDup  bool
		wantErr  error
		wantSegs []string // of the outcome's subject afterwards
	}{
		{SegmentOutcome{Plugin: "rules", Site: "site", Subject: "u1", EventID: "e1", Changes: []*vigiev1.SegmentChange{enter("vip"), enter("buyers")}},
			[]string{"site/u1:vip:ENTERED@e1", "site/u1:buyers:ENTERED@e1"}, false, nil, []string{"buyers", "vip"}},
		// Same (plugin, event): duplicate, nothing applied.
		{SegmentOutcome{Plugin: "rules", Site: "site", Subject: "u1", EventID: "e1", Changes: []*vigiev1.SegmentChange{exit("vip")}},
			nil, true, nil, []string{"buyers", "vip"}},
		// Another plugin, same event: not a duplicate; inconsistent ENTERED dropped.
		{SegmentOutcome{Plugin: "score", Site: "site", Subject: "u1", EventID: "e1", Changes: []*vigiev1.SegmentChange{enter("vip"), exit("buyers"), exit("never")}},
			[]string{"site/u1:buyers:EXITED@e1"}, false, nil, []string{"vip"}},
		// Enter then exit in one outcome: both apply, in order.
		{SegmentOutcome{Plugin: "rules", Site: "site", Subject: "u2", EventID: "e2", Changes: []*vigiev1.SegmentChange{enter("vip"), exit("vip"), exit("vip")}},
			[]string{"site/u2:vip:ENTERED@e2", "site/u2:vip:EXITED@e2"}, false, nil, nil},
		{SegmentOutcome{Plugin: "rules", Site: "site", Subject: "u2", EventID: "e3", Changes: []*vigiev1.SegmentChange{enter("vip")}},
			[]string{"site/u2:vip:ENTERED@e3"}, false, nil, []string{"vip"}},
		{SegmentOutcome{Plugin: "rules", Site: "site", Subject: "ghost", EventID: "e4", Changes: []*vigiev1.SegmentChange{enter("vip")}},
			nil, false, ErrNotFound, nil},
		{SegmentOutcome{Plugin: "rules", Site: "site", Subject: "u2", EventID: "e5", Changes: []*vigiev1.SegmentChange{{Segment: "vip"}}},
			nil, false, ErrInvalidRecord, []string{"vip"}},
		{SegmentOutcome{Plugin: "rules", Site: "site", Subject: "u2", EventID: "e5", Attributes: []byte(`[1]`)},
			nil, false, ErrInvalidRecord, []string{"vip"}},
		{SegmentOutcome{Plugin: "", Site: "site", Subject: "u2", EventID: "e5"},
			nil, false, ErrInvalidKey, []string{"vip"}},
	}
	for i, st := range steps {
		app, dup, err := s.ApplySegment(ctx, st.o)
		if !errors.Is(err, st.wantErr) {
			t.Fatalf("step %d: err %v, want %v", i, err, st.wantErr)
		}
		if got := changeStrings(app); !slices.Equal(got, st.wantApp) || dup != st.wantDup {
			t.Fatalf("step %d: applied %q dup=%v, want %q dup=%v", i, got, dup, st.wantApp, st.wantDup)
		}
		for _, c := range app {
			if c.AtMs == 0 {
				t.Fatalf("step %d: AtMs not filled", i)
			}
		}
		if st.wantErr == ErrNotFound {
			continue
		}
		p, err := s.Profile(ctx, "site", st.o.Subject)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(p.Segments, st.wantSegs) {
			t.Fatalf("step %d: segments %q, want %q", i, p.Segments, st.wantSegs)
		}
	}
	sizes, err := s.SegmentSizes(ctx, "site")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int64{"vip": 2}; !reflect.DeepEqual(sizes, want) {
		t.Fatalf("sizes %v, want %v", sizes, want)
	}
	recent, err := s.RecentSegmentChanges(ctx, "site", 3)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := changeStrings(recent), []string{"site/u2:vip:ENTERED@e3", "site/u2:vip:EXITED@e2", "site/u2:vip:ENTERED@e2"}; !slices.Equal(got, want) {
		t.Fatalf("recent %q, want %q", got, want)
	}
	pend, err := s.PendingChanges(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	var pc []*vigiev1.SegmentChange
	for _, p := range pend {
		pc = append(pc, p.Change)
	}
	want := []string{"site/u1:vip:ENTERED@e1", "site/u1:buyers:ENTERED@e1", "site/u1:buyers:EXITED@e1",
		"site/u2:vip:ENTERED@e2", "site/u2:vip:EXITED@e2", "site/u2:vip:ENTERED@e3"}
	if got := changeStrings(pc); !slices.Equal(got, want) {
		t.Fatalf("pending %q, want %q", got, want)
	}
}

func TestApplySegmentScoreAndAttributes(t *testing.T) {
	ctx := context.Background()
	s := openProfiles(t, "")
	observe(t, s, "u1")
	outcomes := []SegmentOutcome{
		{Plugin: "p", Site: "site", Subject: "u1", EventID: "1", ScoreDelta: 5, Attributes: []byte(`{"plan":"pro","tags":{"a":1}}`)},
		{Plugin: "p", Site: "site", Subject: "u1", EventID: "2", ScoreDelta: -2, Attributes: []byte(`{"tags":{"a":null,"b":2}}`)},
		{Plugin: "p", Site: "site", Subject: "u1", EventID: "2", ScoreDelta: 100, Attributes: []byte(`{"plan":null}`)}, // dup
	}
	for _, o := range outcomes {
		if _, _, err := s.ApplySegment(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	p, err := s.Profile(ctx, "site", "u1")
	if err != nil {
		t.Fatal(err)
	}
	if p.Score != 3 || string(p.Attributes) != `{"plan":"pro","tags":{"b":2}}` {
		t.Fatalf("score %d attributes %s", p.Score, p.Attributes)
	}
	if _, _, err := s.ApplySegment(ctx, SegmentOutcome{Plugin: "p", Site: "site", Subject: "u1", EventID: "3",
		Attributes: fmt.Appendf(nil, `{"big":%q}`, bytes.Repeat([]byte("x"), maxAttributes))}); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("oversized attributes: %v", err)
	}
}

func TestApplySegmentConcurrentSizes(t *testing.T) {
	ctx := context.Background()
	s := openProfiles(t, "")
	const n = 24
	for i := range n {
		observe(t, s, fmt.Sprint("u", i))
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			for j, ch := range []*vigiev1.SegmentChange{enter("all"), enter("odd"), exit("odd")} {
				if ch.Segment == "odd" && i%2 == 0 {
					continue
				}
				if j == 2 && i%4 == 1 {
					continue // keep u1, u5… in odd
				}
				o := SegmentOutcome{Plugin: "p", Site: "site", Subject: fmt.Sprint("u", i), EventID: fmt.Sprint(i, "-", j), Changes: []*vigiev1.SegmentChange{ch}}
				if _, _, err := s.ApplySegment(ctx, o); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	sizes, err := s.SegmentSizes(ctx, "site")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int64{"all": n, "odd": n / 4}; !reflect.DeepEqual(sizes, want) {
		t.Fatalf("sizes %v, want %v", sizes, want)
	}
	pend, err := s.PendingChanges(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if want := n + n/2 + n/4; len(pend) != want {
		t.Fatalf("%d pending, want %d", len(pend), want)
	}
	for i := 1; i < len(pend); i++ {
		if bytes.Compare(pend[i-1].Key, pend[i].Key) >= 0 {
			t.Fatalf("pending keys not in order")
		}
	}
}

func TestDeleteProfile(t *testing.T) {
	ctx := context.Background()
	s := openProfiles(t, "")
	observe(t, s, "u1")
	observe(t, s, "u2")
	for _, subj := range []string{"u1", "u2"} {
		if _, _, err := s.ApplySegment(ctx, SegmentOutcome{Plugin: "p", Site: "site", Subject: subj, EventID: "e-" + subj,
			Changes: []*vigiev1.SegmentChange{enter("a"), enter("b")}}); err != nil {
			t.Fatal(err)
		}
	}
	exits, err := s.DeleteProfile(ctx, "site", "u1", "consent-withdrawn")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := changeStrings(exits), []string{"site/u1:a:EXITED@consent-withdrawn", "site/u1:b:EXITED@consent-withdrawn"}; !slices.Equal(got, want) {
		t.Fatalf("exits %q, want %q", got, want)
	}
	if _, err := s.Profile(ctx, "site", "u1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("profile after delete: %v", err)
	}
	sizes, _ := s.SegmentSizes(ctx, "site")
	if want := map[string]int64{"a": 1, "b": 1}; !reflect.DeepEqual(sizes, want) {
		t.Fatalf("sizes %v, want %v", sizes, want)
	}
	recent, _ := s.RecentSegmentChanges(ctx, "site", 2)
	if got, want := changeStrings(recent), []string{"site/u1:b:EXITED@consent-withdrawn", "site/u1:a:EXITED@consent-withdrawn"}; !slices.Equal(got, want) {
		t.Fatalf("recent %q, want %q", got, want)
	}
	pend, _ := s.PendingChanges(ctx, 100)
	if len(pend) != 6 || !proto.Equal(pend[5].Change, exits[1]) {
		t.Fatalf("pending %d, last %v", len(pend), pend[len(pend)-1].Change)
	}
	again, err := s.DeleteProfile(ctx, "site", "u1", "x")
	if err != nil || again != nil {
		t.Fatalf("second delete: %v %v", again, err)
	}
	// A replayed outcome for the deleted subject cannot resurrect it.
	if _, _, err := s.ApplySegment(ctx, SegmentOutcome{Plugin: "p", Site: "site", Subject: "u1", EventID: "late",
		Changes: []*vigiev1.SegmentChange{enter("a")}}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("apply after delete: %v", err)
	}
}

// TestDeleteProfiles: several profiles deleted in one call give the exits
// DeleteProfile gives each (a repeated one once, an absent one none), and
// the deleted profiles stay deleted; an invalid subject fails the call
// before anything is deleted.
func TestDeleteProfiles(t *testing.T) {
	ctx := context.Background()
	s := openProfiles(t, "")
	for _, subj := range []string{"u1", "u2", "u3"} {
		observe(t, s, subj)
		if _, _, err := s.ApplySegment(ctx, SegmentOutcome{Plugin: "p", Site: "site", Subject: subj, EventID: "e-" + subj,
			Changes: []*vigiev1.SegmentChange{enter("a")}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.DeleteProfiles(ctx, []ProfileRef{{"site", "u3"}, {"site", ""}}, "x"); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("invalid subject: %v, want ErrInvalidKey", err)
	}
	if _, err := s.Profile(ctx, "site", "u3"); err != nil {
		t.Fatalf("u3 after a refused call: %v", err)
	}
	exits, err := s.DeleteProfiles(ctx, []ProfileRef{{"site", "u1"}, {"site", "absent"}, {"site", "u2"}, {"site", "u1"}}, "consent-withdrawn")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := changeStrings(exits), []string{"site/u1:a:EXITED@consent-withdrawn", "site/u2:a:EXITED@consent-withdrawn"}; !slices.Equal(got, want) {
		t.Fatalf("exits %q, want %q", got, want)
	}
	for subj, want := range map[string]error{"u1": ErrNotFound, "u2": ErrNotFound, "u3": nil} {
		if _, err := s.Profile(ctx, "site", subj); !errors.Is(err, want) {
			t.Errorf("%s after the deletion: %v, want %v", subj, err, want)
		}
	}
	if sizes, _ := s.SegmentSizes(ctx, "site"); sizes["a"] != 1 {
		t.Fatalf("sizes %v, want a: 1", sizes)
	}
}

func TestPendingAckAndReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openProfiles(t, dir)
	observe(t, s, "u1")
	apply := func(s *Store, id string, ch *vigiev1.SegmentChange) {
		t.Helper()
		if _, _, err := s.ApplySegment(ctx, SegmentOutcome{Plugin: "p", Site: "site", Subject: "u1", EventID: id,
			Changes: []*vigiev1.SegmentChange{ch}}); err != nil {
			t.Fatal(err)
		}
	}
	apply(s, "1", enter("a"))
	apply(s, "2", exit("a"))
	apply(s, "3", enter("a"))
	pend, err := s.PendingChanges(ctx, 2)
	if err != nil || len(pend) != 2 {
		t.Fatalf("pending: %v %d", err, len(pend))
	}
	if err := s.AckPendingChanges([][]byte{pend[0].Key, pend[1].Key}); err != nil {
		t.Fatal(err)
	}
	if err := s.AckPendingChanges([][]byte{[]byte("p/site\x00u1")}); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("ack of a non-pending key: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openProfiles(t, dir)
	// Everything pending was acked except change 3; the sequence continues.
	pend, err = s.PendingChanges(ctx, 10)
	if err != nil || len(pend) != 1 || pend[0].Change.EventId != "3" {
		t.Fatalf("pending after reopen: %v %v", err, pend)
	}
	if err := s.AckPendingChanges([][]byte{pend[0].Key}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openProfiles(t, dir)
	apply(s, "4", exit("a"))
	recent, err := s.RecentSegmentChanges(ctx, "site", 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := changeStrings(recent), []string{"site/u1:a:EXITED@4", "site/u1:a:ENTERED@3", "site/u1:a:EXITED@2", "site/u1:a:ENTERED@1"}; !slices.Equal(got, want) {
		t.Fatalf("recent after reopen %q, want %q", got, want)
	}
	p, err := s.Profile(ctx, "site", "u1")
	if err != nil || len(p.Segments) != 0 || p.Count("track", "x", time.Hour, profBase.UnixMilli()) != 1 {
		t.Fatalf("profile after reopen: %v %+v", err, p)
	}
	if _, dup, err := s.ApplySegment(ctx, SegmentOutcome{Plugin: "p", Site: "site", Subject: "u1", EventID: "3",
		Changes: []*vigiev1.SegmentChange{enter("a")}}); err != nil || !dup {
		t.Fatalf("marker lost across reopen: dup=%v %v", dup, err)
	}
	if sizes, _ := s.SegmentSizes(ctx, "site"); len(sizes) != 0 {
		t.Fatalf("sizes %v, want none", sizes)
	}
}

func TestShredSubjectRemovesProfiles(t *testing.T) {
	ctx := context.Background()
	s := openProfiles(t, "")
	for _, site := range []string{"site", "other"} {
		for _, subj := range []string{"victim", "victimx", "keep"} {
			ev := pev("e-"+subj, subj, "track", "x", profBase)
			ev.Site = site
			if _, _, err := s.ObserveEvent(ctx, ev); err != nil {
				t.Fatal(err)
			}
			if _, _, err := s.ApplySegment(ctx, SegmentOutcome{Plugin: "p", Site: site, Subject: subj, EventID: "e-" + subj,
				Changes: []*vigiev1.SegmentChange{enter("s")}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	pendBefore, _ := s.PendingChanges(ctx, 100)
	if err := s.ShredSubject(ctx, "victim"); err != nil {
		t.Fatal(err)
	}
	for _, site := range []string{"site", "other"} {
		if _, err := s.Profile(ctx, site, "victim"); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: victim profile survived: %v", site, err)
		}
		for _, subj := range []string{"victimx", "keep"} {
			if _, err := s.Profile(ctx, site, subj); err != nil {
				t.Errorf("%s: %s profile lost: %v", site, subj, err)
			}
		}
		if sizes, _ := s.SegmentSizes(ctx, site); sizes["s"] != 2 {
			t.Errorf("%s: size %d, want 2", site, sizes["s"])
		}
	}
	if pend, _ := s.PendingChanges(ctx, 100); len(pend) != len(pendBefore) {
		t.Errorf("shred emitted changes: %d pending, was %d", len(pend), len(pendBefore))
	}
}

func TestProfileTTL(t *testing.T) {
	for _, tc := range []struct {
		cfg  time.Duration
		want time.Duration
	}{{0, 395 * 24 * time.Hour}, {time.Hour, time.Hour}} {
		s, err := Open(Config{Dir: t.TempDir(), VaultKey: bytes.Repeat([]byte{1}, 32), ProfileTTL: tc.cfg})
		if err != nil {
			t.Fatal(err)
		}
		observe(t, s, "u1")
		var exp uint64
		err = s.db.View(func(txn *badger.Txn) error {
			item, err := txn.Get(profileKey("site", "u1"))
			if err == nil {
				exp = item.ExpiresAt()
			}
			return err
		})
		_ = s.Close()
		if err != nil {
			t.Fatal(err)
		}
		want := time.Now().Add(tc.want).Unix()
		if d := profileDueAt(exp).Unix() - want; d < -5 || d > 5 {
			t.Errorf("ProfileTTL %v: due at %d, want about %d", tc.cfg, profileDueAt(exp).Unix(), want)
		}
		if d := int64(exp) - want - int64(profileGrace/time.Second); d < -5 || d > 5 {
			t.Errorf("ProfileTTL %v: Badger TTL ends at %d, want the grace after its due time", tc.cfg, exp)
		}
	}
}

func TestMergePatch(t *testing.T) {
	// RFC 7396 appendix A, plus empty targets.
	tests := []struct{ target, patch, want string }{
		{`{"a":"b"}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"b"}`, `{"b":"c"}`, `{"a":"b","b":"c"}`},
		{`{"a":"b"}`, `{"a":null}`, `{}`},
		{`{"a":"b","b":"c"}`, `{"a":null}`, `{"b":"c"}`},
		{`{"a":["b"]}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"c"}`, `{"a":["b"]}`, `{"a":["b"]}`},
		{`{"a":{"b":"c"}}`, `{"a":{"b":"d","c":null}}`, `{"a":{"b":"d"}}`},
		{`{"a":[{"b":"c"}]}`, `{"a":[1]}`, `{"a":[1]}`},
		{`["a","b"]`, `["c","d"]`, `["c","d"]`},
		{`{"a":"b"}`, `["c"]`, `["c"]`},
		{`{"a":"foo"}`, `null`, `null`},
		{`{"a":"foo"}`, `"bar"`, `"bar"`},
		{`{"e":null}`, `{"a":1}`, `{"e":null,"a":1}`},
		{`[1,2]`, `{"a":"b","c":null}`, `{"a":"b"}`},
		{`{}`, `{"a":{"bb":{"ccc":null}}}`, `{"a":{"bb":{}}}`},
		{``, `{ "a" : 1 , "n" : null }`, `{"a":1}`},
	}
	for _, tc := range tests {
		got, err := mergePatch([]byte(tc.target), []byte(tc.patch))
		if err != nil || string(got) != tc.want {
			t.Errorf("mergePatch(%s, %s) = %s, %v; want %s", tc.target, tc.patch, got, err, tc.want)
		}
	}
	for _, bad := range []string{`{`, `{"a":}`, `{"a":1,"a":2}`, `{"a":1} x`} {
		if _, err := mergePatch([]byte(`{}`), []byte(bad)); err == nil {
			t.Errorf("mergePatch accepted invalid patch %s", bad)
		}
	}
}

// refMergePatch is RFC 7396's pseudocode over decoded values.
func refMergePatch(target, patch any) any {
	pm, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	tm, ok := target.(map[string]any)
	if !ok {
		tm = map[string]any{}
	}
	for k, v := range pm {
		if v == nil {
			delete(tm, k)
		} else {
			tm[k] = refMergePatch(tm[k], v)
		}
	}
	return tm
}

func FuzzMergePatch(f *testing.F) {
	f.Add([]byte(`{"a":{"b":1}}`), []byte(`{"a":{"b":null,"c":[1]}}`))
	f.Add([]byte(`{"a":"b"}`), []byte(`{"a":null}`))
	f.Add([]byte(``), []byte(`{"x":{"y":{"z":null}}}`))
	f.Add([]byte(`[1]`), []byte(`"s"`))
	f.Add([]byte(`{"a":1}`), []byte(`{"a":{"b":2}}`))
	f.Fuzz(func(t *testing.T, target, patch []byte) {
		var tv, pv any
		if json.Unmarshal(patch, &pv) != nil {
			return
		}
		if len(target) > 0 && json.Unmarshal(target, &tv) != nil {
			return
		}
		got, err := mergePatch(target, patch)
		if err != nil {
			return // e.g. duplicate names, which encoding/json accepts
		}
		var gv any
		if err := json.Unmarshal(got, &gv); err != nil {
			t.Fatalf("result %s is not JSON: %v", got, err)
		}
		if want := refMergePatch(tv, pv); !reflect.DeepEqual(gv, want) {
			t.Fatalf("mergePatch(%s, %s) = %s, reference %v", target, patch, got, want)
		}
		again, err := mergePatch(got, patch)
		if err != nil || !bytes.Equal(again, got) {
			t.Fatalf("merge patch not idempotent: %s then %s (%v)", got, again, err)
		}
	})
}

func FuzzDecodeProfile(f *testing.F) {
	p := scenarioProfile([]int{0, 3, 8, 9})
	p.Campaign = &vigiev1.Campaign{Name: "n", Source: "s"}
	p.Attributes = json.RawMessage(`{"a":[1,2]}`)
	p.Segments = []string{"x"}
	seed, _ := encodeProfile(p)
	f.Add(seed)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"c":{"track\u0000x":[{"h":1,"n":2}]},"cp":null}`))
	f.Add([]byte(`{"a":"notanobject"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodeProfile(b, "site", "subj")
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decode error not ErrCorrupt: %v", err)
			}
			return
		}
		_ = p.Count("track", "*", 24*time.Hour, 0)
		_ = p.Proto(0)
		// After one round trip (which normalizes empty slices), encoding
		// and decoding must be lossless.
		enc, err := encodeProfile(p)
		if err != nil {
			return
		}
		p2, err := decodeProfile(enc, "site", "subj")
		if err != nil {
			t.Fatalf("re-decode of %s: %v", enc, err)
		}
		enc2, err := encodeProfile(p2)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		p3, err := decodeProfile(enc2, "site", "subj")
		if err != nil {
			t.Fatalf("re-decode of %s: %v", enc2, err)
		}
		if !proto.Equal(p2.Campaign, p3.Campaign) {
			t.Fatalf("campaign %v became %v", p2.Campaign, p3.Campaign)
		}
		p2.Campaign, p3.Campaign = nil, nil
		if !reflect.DeepEqual(p2, p3) {
			t.Fatalf("profile codec not stable:\n%+v\n%+v", p2, p3)
		}
	})
}

func FuzzParseProfileKey(f *testing.F) {
	f.Add([]byte("p/site\x00subj"))
	f.Add([]byte("p/\x00"))
	f.Add([]byte("pe/site\x00id"))
	f.Fuzz(func(t *testing.T, b []byte) {
		site, subj, ok := parseProfileKey(b)
		if ok && !bytes.Equal(profileKey(string(site), string(subj)), b) {
			t.Fatalf("profile key %q does not round-trip", b)
		}
		if seq, ok := parsePendingKey(b); ok && !bytes.Equal(pendingKey(seq), b) {
			t.Fatalf("pending key %q does not round-trip", b)
		}
	})
}

func benchEvents(n int) []*vigiev1.Event {
	evs := make([]*vigiev1.Event, n)
	names := []string{"signup", "click", "view", "buy", "share"}
	for i := range evs {
		evs[i] = pev(fmt.Sprintf("b-%09d", i), fmt.Sprintf("subj-%03d", i%500), "track", names[i%len(names)],
			profBase.Add(time.Duration(i)*time.Second))
		evs[i].Geo = &vigiev1.Geo{Country: "FR"}
	}
	return evs
}

// BenchmarkObserveEvent observes events of 500 subjects (each profile ends
// with a few dozen buckets), sequentially and from 8 goroutines.
func BenchmarkObserveEvent(b *testing.B) {
	for _, workers := range []int{1, 8} {
		b.Run(fmt.Sprint("goroutines=", workers), func(b *testing.B) {
			s := openProfiles(b, "")
			evs := benchEvents(b.N)
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					for i := w; i < len(evs); i += workers {
						if _, _, err := s.ObserveEvent(context.Background(), evs[i]); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
}

// BenchmarkApplySegment applies outcomes without changes (the common case:
// score and attributes only) and with one segment transition each.
func BenchmarkApplySegment(b *testing.B) {
	for _, withChange := range []bool{false, true} {
		b.Run(fmt.Sprint("change=", withChange), func(b *testing.B) {
			s := openProfiles(b, "")
			const subjects = 200
			for i := range subjects {
				if _, _, err := s.ObserveEvent(context.Background(), pev(fmt.Sprint("o", i), fmt.Sprint("u", i), "track", "x", profBase)); err != nil {
					b.Fatal(err)
				}
			}
			attrs := []byte(`{"last":"x"}`)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				o := SegmentOutcome{Plugin: "p", Site: "site", Subject: fmt.Sprint("u", i%subjects),
					EventID: fmt.Sprint(i), ScoreDelta: 1, Attributes: attrs}
				if withChange {
					if (i/subjects)%2 == 0 {
						o.Changes = []*vigiev1.SegmentChange{enter("seg")}
					} else {
						o.Changes = []*vigiev1.SegmentChange{exit("seg")}
					}
				}
				app, _, err := s.ApplySegment(context.Background(), o)
				if err != nil || withChange && len(app) != 1 {
					b.Fatalf("apply: %v %d", err, len(app))
				}
			}
		})
	}
}
