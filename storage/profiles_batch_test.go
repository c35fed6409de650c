package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// errClass names the sentinel an error wraps, for comparing results.
func errClass(err error) string {
	for _, s := range []error{ErrInvalidRecord, ErrInvalidKey, ErrNotFound, ErrCorrupt, ErrClosed} {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	if err != nil {
		return "other: " + err.Error()
	}
	return ""
}

// diffProfile describes how a and b differ in their stored form and in
// what a segmenter sees; "" when they do not.
func diffProfile(a, b *Profile) string {
	if a == nil || b == nil {
		if a != b {
			return fmt.Sprintf("%v vs %v", a, b)
		}
		return ""
	}
	canon := func(p *Profile) *Profile {
		v, err := encodeProfile(p)
		if err != nil {
			panic(err)
		}
		c, err := decodeProfile(v, p.Site, p.Subject)
		if err != nil {
			panic(err)
		}
		return c
	}
	ca, cb := canon(a), canon(b)
	if !proto.Equal(ca.Campaign, cb.Campaign) {
		return fmt.Sprintf("campaign %v vs %v", ca.Campaign, cb.Campaign)
	}
	ca.Campaign, cb.Campaign = nil, nil
	if !reflect.DeepEqual(ca, cb) {
		return fmt.Sprintf("%+v\nvs %+v", ca, cb)
	}
	now := profBase.UnixMilli()
	if !proto.Equal(a.Proto(now), b.Proto(now)) {
		return "Proto differs"
	}
	return ""
}

// randomEvents returns n events of 6 subjects on 2 sites, about a fifth
// of them replays of earlier ids and a few invalid.
func randomEvents(r *rand.Rand, n int) []*vigiev1.Event {
	evs := make([]*vigiev1.Event, n)
	types := []string{"track", "track", "page", "identify"}
	names := []string{"signup", "buy", "/pricing", "/blog"}
	for i := range evs {
		if i > 0 && r.IntN(5) == 0 {
			evs[i] = proto.CloneOf(evs[r.IntN(i)])
			continue
		}
		ev := pev(fmt.Sprint("e", i), fmt.Sprint("u", r.IntN(3)), types[r.IntN(len(types))], names[r.IntN(len(names))],
			profBase.Add(time.Duration(r.IntN(40*24*60)-30*24*60)*time.Minute))
		if r.IntN(2) == 0 {
			ev.Site = "other"
		}
		switch r.IntN(6) {
		case 0:
			ev.Geo = &vigiev1.Geo{Country: []string{"FR", "DE"}[r.IntN(2)]}
		case 1:
			ev.Campaign = &vigiev1.Campaign{Name: fmt.Sprint("c", r.IntN(3)), Source: "news"}
		case 2:
			ev.Purposes = append(ev.Purposes, "marketing")
		}
		if r.IntN(30) == 0 {
			ev.Type = "" // invalid
		}
		evs[i] = ev
	}
	return evs
}

// randomChunks splits n items into random batches of 1 to 40.
func randomChunks(r *rand.Rand, n int) [][2]int {
	var out [][2]int
	for from := 0; from < n; {
		to := min(from+1+r.IntN(40), n)
		out = append(out, [2]int{from, to})
		from = to
	}
	return out
}

// TestObserveEventsMatchesSingle runs random sequences through
// ObserveEvent one by one and through ObserveEvents in random batches
// (with profile deletions between batches), and compares every result and
// the final profiles.
func TestObserveEventsMatchesSingle(t *testing.T) {
	ctx := context.Background()
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 1))
			evs := randomEvents(r, 300)
			single, batch := openProfiles(t, ""), openProfiles(t, "")
			for _, c := range randomChunks(r, len(evs)) {
				if r.IntN(8) == 0 {
					site, subj := []string{"site", "other"}[r.IntN(2)], fmt.Sprint("u", r.IntN(3))
					for _, s := range []*Store{single, batch} {
						if _, err := s.DeleteProfile(ctx, site, subj, "test"); err != nil {
							t.Fatal(err)
						}
					}
				}
				res, err := batch.ObserveEvents(ctx, evs[c[0]:c[1]])
				if err != nil {
					t.Fatal(err)
				}
				if len(res) != c[1]-c[0] {
					t.Fatalf("%d results for %d events", len(res), c[1]-c[0])
				}
				for k, ev := range evs[c[0]:c[1]] {
					p, obs, err := single.ObserveEvent(ctx, ev)
					got := res[k]
					if errClass(got.Err) != errClass(err) || got.Observed != obs {
						t.Fatalf("event %d: batch (%v, %v), single (%v, %v)", c[0]+k, got.Observed, got.Err, obs, err)
					}
					if d := diffProfile(got.Profile, p); d != "" {
						t.Fatalf("event %d: profile differs: %s", c[0]+k, d)
					}
				}
			}
			for _, site := range []string{"site", "other"} {
				for u := range 3 {
					a, errA := single.Profile(ctx, site, fmt.Sprint("u", u))
					b, errB := batch.Profile(ctx, site, fmt.Sprint("u", u))
					if errClass(errA) != errClass(errB) {
						t.Fatalf("%s/u%d: %v vs %v", site, u, errA, errB)
					}
					if d := diffProfile(a, b); d != "" {
						t.Fatalf("%s/u%d: stored profile differs: %s", site, u, d)
					}
				}
			}
		})
	}
}

// randomOutcomes returns n outcomes of two plugins on 3 profiles of 2
// sites plus a missing one, with replays and a few bad patches.
func randomOutcomes(r *rand.Rand, n int) []SegmentOutcome {
	patches := []string{``, ``, `{"x":1}`, `{"x":null}`, `{"t":{"a":1}}`, `{"t":{"a":null,"b":[1]}}`, `{"bad":}`}
	segs := []string{"vip", "buyers", "churn"}
	os := make([]SegmentOutcome, n)
	for i := range os {
		if i > 0 && r.IntN(6) == 0 {
			os[i] = os[r.IntN(i)] // replay (a duplicate unless the first failed)
			continue
		}
		o := SegmentOutcome{
			Plugin: []string{"rules", "score"}[r.IntN(2)], Site: []string{"site", "other"}[r.IntN(2)],
			Subject: fmt.Sprint("u", r.IntN(4)), EventID: fmt.Sprint("e", i),
			ScoreDelta: int64(r.IntN(11) - 5), AtMs: profBase.UnixMilli() + int64(i),
		}
		if p := patches[r.IntN(len(patches))]; p != "" {
			o.Attributes = []byte(p)
		}
		for range r.IntN(4) {
			c := enter(segs[r.IntN(len(segs))])
			if r.IntN(2) == 0 {
				c.Transition = vigiev1.Transition_TRANSITION_EXITED
			}
			o.Changes = append(o.Changes, c)
		}
		if r.IntN(40) == 0 {
			o.Plugin = "" // invalid
		}
		os[i] = o
	}
	return os
}

// segmentState is everything segment bookkeeping leaves in a store.
func segmentState(t *testing.T, s *Store) string {
	t.Helper()
	ctx := context.Background()
	var b bytes.Buffer
	for _, site := range []string{"site", "other"} {
		sizes, err := s.SegmentSizes(ctx, site)
		if err != nil {
			t.Fatal(err)
		}
		recent, err := s.RecentSegmentChanges(ctx, site, 1000)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s sizes %v\nrecent %q\n", site, sizes, changeStrings(recent))
		for u := range 4 {
			p, err := s.Profile(ctx, site, fmt.Sprint("u", u))
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%s/u%d score=%d segs=%q attrs=%s\n", site, u, p.Score, p.Segments, p.Attributes)
		}
	}
	pend, err := s.PendingChanges(ctx, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pend {
		fmt.Fprintf(&b, "pending %q at %d\n", changeStrings([]*vigiev1.SegmentChange{p.Change}), p.Change.AtMs)
	}
	return b.String()
}

// TestApplySegmentsMatchesSingle compares ApplySegments in random batches
// with ApplySegment one by one: results, profiles, sizes, log, pending.
func TestApplySegmentsMatchesSingle(t *testing.T) {
	ctx := context.Background()
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 2))
			single, batch := openProfiles(t, ""), openProfiles(t, "")
			for _, s := range []*Store{single, batch} {
				for _, site := range []string{"site", "other"} {
					for u := range 3 { // u3 has no profile
						ev := pev(fmt.Sprint("obs", u), fmt.Sprint("u", u), "track", "x", profBase)
						ev.Site = site
						if _, _, err := s.ObserveEvent(ctx, ev); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			os := randomOutcomes(r, 300)
			for _, c := range randomChunks(r, len(os)) {
				res, err := batch.ApplySegments(ctx, os[c[0]:c[1]])
				if err != nil {
					t.Fatal(err)
				}
				for k, o := range os[c[0]:c[1]] {
					app, dup, err := single.ApplySegment(ctx, o)
					got := res[k]
					if errClass(got.Err) != errClass(err) || got.Dup != dup ||
						!slices.Equal(changeStrings(got.Applied), changeStrings(app)) {
						t.Fatalf("outcome %d: batch (%q, %v, %v), single (%q, %v, %v)", c[0]+k,
							changeStrings(got.Applied), got.Dup, got.Err, changeStrings(app), dup, err)
					}
					for j := range app {
						if got.Applied[j].AtMs != app[j].AtMs {
							t.Fatalf("outcome %d: AtMs %d vs %d", c[0]+k, got.Applied[j].AtMs, app[j].AtMs)
						}
					}
				}
			}
			if a, b := segmentState(t, single), segmentState(t, batch); a != b {
				t.Fatalf("state differs:\nsingle:\n%s\nbatch:\n%s", a, b)
			}
		})
	}
}

// TestObserveEventsSnapshots checks that each result is the state right
// after its event, and that snapshots share nothing mutable.
func TestObserveEventsSnapshots(t *testing.T) {
	ctx := context.Background()
	s := openProfiles(t, "")
	var evs []*vigiev1.Event
	for i := range 4 {
		ev := pev(fmt.Sprint("a", i), "s1", "track", "buy", profBase.Add(time.Duration(i)*time.Minute))
		ev.Purposes = []string{fmt.Sprint("p", i)}
		ev.Campaign = &vigiev1.Campaign{Name: fmt.Sprint("c", i)}
		evs = append(evs, ev, pev(fmt.Sprint("b", i), "s2", "track", "buy", profBase))
	}
	evs = append(evs, evs[0]) // replay of s1's first event: last item of s1
	res, err := s.ObserveEvents(ctx, evs)
	if err != nil {
		t.Fatal(err)
	}
	window := time.Hour
	for i := range 4 {
		r1, r2 := res[2*i], res[2*i+1]
		if !r1.Observed || !r2.Observed {
			t.Fatalf("event %d not observed: %+v %+v", i, r1, r2)
		}
		if n := r1.Profile.Count("track", "buy", window, profBase.UnixMilli()); n != int64(i+1) {
			t.Errorf("s1 after event %d: count %d, want %d", i, n, i+1)
		}
		if n := r2.Profile.Count("", "", window, profBase.UnixMilli()); n != int64(i+1) {
			t.Errorf("s2 after event %d: count %d, want %d", i, n, i+1)
		}
		if want := []string{fmt.Sprint("p", i)}; !slices.Equal(r1.Profile.Purposes, want) || r1.Profile.Campaign.GetName() != fmt.Sprint("c", i) {
			t.Errorf("s1 after event %d: purposes %q campaign %v", i, r1.Profile.Purposes, r1.Profile.Campaign)
		}
	}
	last := res[len(res)-1]
	if last.Observed || last.Err != nil || last.Profile.Count("", "", window, profBase.UnixMilli()) != 4 {
		t.Fatalf("replay in batch: %+v", last)
	}
	// Mutating one snapshot changes no other, nor the stored profile.
	p0 := res[0].Profile
	for k, bs := range p0.Counters {
		bs[0].N = 1000
		p0.Counters[k] = append(bs, Bucket{Hour: 1, N: 1})
	}
	p0.Counters["new\x00"] = []Bucket{{Hour: 2, N: 2}}
	p0.Purposes[0] = "mutated"
	p0.Campaign.Name = "mutated"
	for i := 1; i < 4; i++ {
		p := res[2*i].Profile
		if n := p.Count("", "", window, profBase.UnixMilli()); n != int64(i+1) || p.Purposes[0] == "mutated" || p.Campaign.GetName() == "mutated" {
			t.Fatalf("snapshot %d changed by mutating snapshot 0: count %d %+v", i, n, p)
		}
	}
	stored, err := s.Profile(ctx, "site", "s1")
	if err != nil {
		t.Fatal(err)
	}
	if d := diffProfile(stored, last.Profile); d != "" {
		t.Fatalf("stored profile is not the last snapshot: %s", d)
	}
}

// TestBatchIdempotentAcrossBatches replays whole batches.
func TestBatchIdempotentAcrossBatches(t *testing.T) {
	ctx := context.Background()
	s := openProfiles(t, "")
	var evs []*vigiev1.Event
	var os []SegmentOutcome
	for i := range 20 {
		subj := fmt.Sprint("u", i%5)
		evs = append(evs, pev(fmt.Sprint("e", i), subj, "track", "x", profBase))
		os = append(os, SegmentOutcome{Plugin: "p", Site: "site", Subject: subj, EventID: fmt.Sprint("e", i),
			ScoreDelta: 1, Changes: []*vigiev1.SegmentChange{enter("vip")}})
	}
	for round := range 2 {
		res, err := s.ObserveEvents(ctx, evs)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range res {
			if r.Err != nil || r.Observed != (round == 0) {
				t.Fatalf("round %d event %d: %+v", round, i, r)
			}
			if n := r.Profile.Count("", "", time.Hour, profBase.UnixMilli()); round == 1 && n != 4 {
				t.Fatalf("round %d event %d: count %d, want 4", round, i, n)
			}
		}
		ar, err := s.ApplySegments(ctx, os)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range ar {
			wantApplied := round == 0 && i < 5 // only each subject's first outcome enters
			if r.Err != nil || r.Dup != (round == 1) || (len(r.Applied) == 1) != wantApplied {
				t.Fatalf("round %d outcome %d: %+v", round, i, r)
			}
		}
	}
	sizes, err := s.SegmentSizes(ctx, "site")
	if err != nil {
		t.Fatal(err)
	}
	if sizes["vip"] != 5 {
		t.Fatalf("sizes %v", sizes)
	}
	p, err := s.Profile(ctx, "site", "u0")
	if err != nil {
		t.Fatal(err)
	}
	if p.Score != 4 {
		t.Fatalf("score %d, want 4", p.Score)
	}
}

// TestBatchItemErrors: invalid or failing items leave the others (and
// themselves) unaffected; a closed store fails the whole call.
func TestBatchItemErrors(t *testing.T) {
	ctx := context.Background()
	s := openProfiles(t, "")
	bad := pev("bad", "u1", "", "x", profBase)
	res, err := s.ObserveEvents(ctx, []*vigiev1.Event{nil, pev("e1", "u1", "track", "x", profBase), bad})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res[0].Err, ErrInvalidRecord) || !errors.Is(res[2].Err, ErrInvalidRecord) || !res[1].Observed {
		t.Fatalf("results %+v", res)
	}
	os := []SegmentOutcome{
		{Plugin: "p", Site: "site", Subject: "u1", EventID: "a", ScoreDelta: 7, Attributes: []byte(`{"x":}`), Changes: []*vigiev1.SegmentChange{enter("s")}},
		{Plugin: "p", Site: "site", Subject: "ghost", EventID: "b", ScoreDelta: 1},
		{Plugin: "p", Site: "site", Subject: "u1", EventID: "c", ScoreDelta: 2},
	}
	ar, err := s.ApplySegments(ctx, os)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(ar[0].Err, ErrInvalidRecord) || len(ar[0].Applied) != 0 || !errors.Is(ar[1].Err, ErrNotFound) || ar[2].Err != nil {
		t.Fatalf("results %+v", ar)
	}
	// The failed outcome left no marker: fixed, it applies.
	os[0].Attributes = []byte(`{"x":1}`)
	ar, err = s.ApplySegments(ctx, os[:1])
	if err != nil || ar[0].Dup || len(ar[0].Applied) != 1 {
		t.Fatalf("retry: %+v %v", ar, err)
	}
	p, err := s.Profile(ctx, "site", "u1")
	if err != nil {
		t.Fatal(err)
	}
	if p.Score != 9 || string(p.Attributes) != `{"x":1}` {
		t.Fatalf("score %d attributes %s", p.Score, p.Attributes)
	}
	if res, err := s.ObserveEvents(ctx, nil); err != nil || len(res) != 0 {
		t.Fatalf("empty batch: %v %v", res, err)
	}
	_ = s.Close()
	if _, err := s.ObserveEvents(ctx, []*vigiev1.Event{pev("e2", "u1", "track", "x", profBase)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed: %v", err)
	}
	if _, err := s.ApplySegments(ctx, os); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed: %v", err)
	}
}

// TestBatchConcurrent runs overlapping batches (subjects in different
// orders, shared event ids, segment changes) from several goroutines:
// no deadlock, no lost or double count, sizes match profiles.
func TestBatchConcurrent(t *testing.T) {
	ctx := context.Background()
	s := openProfiles(t, "")
	const workers, batches, subjects = 4, 8, 10
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 3))
			for b := range batches {
				var evs []*vigiev1.Event
				var os []SegmentOutcome
				for _, u := range r.Perm(subjects) {
					id := fmt.Sprint(w, "-", b, "-", u)
					if u == 0 {
						id = fmt.Sprint("shared-", b) // every worker sends it
					}
					evs = append(evs, pev(id, fmt.Sprint("u", u), "track", "x", profBase))
					c := enter("seg")
					if r.IntN(2) == 0 {
						c = exit("seg")
					}
					os = append(os, SegmentOutcome{Plugin: "p", Site: "site", Subject: fmt.Sprint("u", u), EventID: id, Changes: []*vigiev1.SegmentChange{c}})
				}
				if _, err := s.ObserveEvents(ctx, evs); err != nil {
					t.Error(err)
					return
				}
				if _, err := s.ApplySegments(ctx, os); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	in := int64(0)
	for u := range subjects {
		p, err := s.Profile(ctx, "site", fmt.Sprint("u", u))
		if err != nil {
			t.Fatal(err)
		}
		want := int64(workers * batches)
		if u == 0 {
			want = batches
		}
		if n := p.Count("", "", time.Hour, profBase.UnixMilli()); n != want {
			t.Errorf("u%d: count %d, want %d", u, n, want)
		}
		if slices.Contains(p.Segments, "seg") {
			in++
		}
	}
	sizes, err := s.SegmentSizes(ctx, "site")
	if err != nil {
		t.Fatal(err)
	}
	if sizes["seg"] != in {
		t.Fatalf("size %d, %d profiles in the segment", sizes["seg"], in)
	}
}

// openSmallTxn builds a store on a Badger whose transactions hold only a
// few hundred entries (Config has no such knob; only profile methods are
// used, so the committer is not started).
func openSmallTxn(t *testing.T) *Store {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions("").WithInMemory(true).WithMemTableSize(256 << 10).
		WithValueThreshold(256).WithDetectConflicts(false).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return &Store{db: db, cfg: Config{ProfileTTL: defaultProfileTTL}, log: slog.Default(), disk: &diskMonitor{}}
}

// TestBatchTxnTooBig: batches larger than one Badger transaction are
// split, and every item is applied once, with the same results.
func TestBatchTxnTooBig(t *testing.T) {
	ctx := context.Background()
	s, ref := openSmallTxn(t), openProfiles(t, "")
	const n = 600 // ~2 entries per event, ~5 per outcome
	if limit := s.db.MaxBatchCount(); 2*n < 2*limit {
		t.Fatalf("batch of %d does not exceed Badger's limit of %d entries twice", n, limit)
	}
	var evs []*vigiev1.Event
	var os []SegmentOutcome
	for i := range n {
		subj := fmt.Sprint("u", i%(n/2)) // two events per subject, far apart
		evs = append(evs, pev(fmt.Sprint("e", i), subj, "track", fmt.Sprint("k", i), profBase.Add(time.Duration(i)*time.Second)))
		os = append(os, SegmentOutcome{Plugin: "p", Site: "site", Subject: subj, EventID: fmt.Sprint("e", i),
			ScoreDelta: 1, AtMs: 1, Changes: []*vigiev1.SegmentChange{enter("a"), enter(fmt.Sprint("b", i%3))}})
	}
	res, err := s.ObserveEvents(ctx, evs)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ref.ObserveEvents(ctx, evs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range res {
		if res[i].Err != nil || !res[i].Observed {
			t.Fatalf("event %d: %+v", i, res[i])
		}
		if d := diffProfile(res[i].Profile, want[i].Profile); d != "" {
			t.Fatalf("event %d: %s", i, d)
		}
	}
	ar, err := s.ApplySegments(ctx, os)
	if err != nil {
		t.Fatal(err)
	}
	wantAr, err := ref.ApplySegments(ctx, os)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ar {
		if ar[i].Err != nil || !slices.Equal(changeStrings(ar[i].Applied), changeStrings(wantAr[i].Applied)) {
			t.Fatalf("outcome %d: %+v vs %+v", i, ar[i], wantAr[i])
		}
	}
	if a, b := segmentState(t, s), segmentState(t, ref); a != b {
		t.Fatalf("state differs:\nsplit:\n%s\nreference:\n%s", a, b)
	}
	// A replay of the whole batch is all duplicates.
	ar, err = s.ApplySegments(ctx, os)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ar {
		if !ar[i].Dup {
			t.Fatalf("replayed outcome %d not a duplicate", i)
		}
	}
}

// benchBatches returns n events (n a multiple of 100) of 50 subjects.
func benchBatchEvents(n int) []*vigiev1.Event {
	evs := make([]*vigiev1.Event, n)
	names := []string{"signup", "click", "view", "buy", "share"}
	for i := range evs {
		evs[i] = pev(fmt.Sprintf("b-%09d", i), fmt.Sprintf("subj-%03d", i%50), "track", names[i%len(names)],
			profBase.Add(time.Duration(i)*time.Second))
		evs[i].Geo = &vigiev1.Geo{Country: "FR"}
	}
	return evs
}

// BenchmarkObserveEvents observes batches of 100 events of 50 subjects,
// one ObserveEvent per event or one ObserveEvents per batch (portable:
// cluster mode's markers inside the profile); one op is one event.
func BenchmarkObserveEvents(b *testing.B) {
	for _, mode := range []string{"single", "batch", "portable"} {
		b.Run(mode, func(b *testing.B) {
			s := openProfiles(b, "")
			if mode == "portable" {
				var err error
				if s, err = Open(Config{Dir: b.TempDir(), VaultKey: bytes.Repeat([]byte{7}, 32), PortableProfiles: true}); err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = s.Close() })
			}
			evs := benchBatchEvents((b.N + 99) / 100 * 100)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for from := 0; from < len(evs); from += 100 {
				batch := evs[from : from+100]
				if mode != "single" {
					if _, err := s.ObserveEvents(ctx, batch); err != nil {
						b.Fatal(err)
					}
					continue
				}
				for _, ev := range batch {
					if _, _, err := s.ObserveEvent(ctx, ev); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkApplySegments applies batches of 100 outcomes of 50 subjects
// (score and attributes, optionally one transition each), one
// ApplySegment per outcome or one ApplySegments per batch; one op is one
// outcome.
func BenchmarkApplySegments(b *testing.B) {
	for _, withChange := range []bool{false, true} {
		for _, mode := range []string{"single", "batch"} {
			b.Run(fmt.Sprintf("change=%v/%s", withChange, mode), func(b *testing.B) {
				s := openProfiles(b, "")
				ctx := context.Background()
				if _, err := s.ObserveEvents(ctx, benchBatchEvents(2000)); err != nil {
					b.Fatal(err)
				}
				attrs := []byte(`{"last":"x"}`)
				n := (b.N + 99) / 100 * 100
				os := make([]SegmentOutcome, n)
				for i := range os {
					os[i] = SegmentOutcome{Plugin: "p", Site: "site", Subject: fmt.Sprintf("subj-%03d", i%50),
						EventID: fmt.Sprint(i), ScoreDelta: 1, Attributes: attrs}
					if withChange {
						if (i/50)%2 == 0 {
							os[i].Changes = []*vigiev1.SegmentChange{enter("seg")}
						} else {
							os[i].Changes = []*vigiev1.SegmentChange{exit("seg")}
						}
					}
				}
				b.ReportAllocs()
				b.ResetTimer()
				for from := 0; from < n; from += 100 {
					batch := os[from : from+100]
					if mode == "batch" {
						if _, err := s.ApplySegments(ctx, batch); err != nil {
							b.Fatal(err)
						}
						continue
					}
					for _, o := range batch {
						if _, _, err := s.ApplySegment(ctx, o); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
		}
	}
}
