package rollup

import (
	"context"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
)

// The overview benchmark's data: 10 million events over 30 days for one
// site, 50 000 zipfian pages, 200 000 subjects, 30 % anonymous, 200
// countries, 50 campaigns.
var (
	benchStart = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	benchSet   = genConfig{
		site: "shop", start: benchStart, span: 30 * 24 * time.Hour, events: 10_000_000,
		pages: 50_000, subjects: 200_000, countries: 200, campaigns: 50, anonymous: 0.3, seed: 42,
	}
)

// benchData is the store the overview benchmarks query, built once.
type benchData struct {
	dir      string
	key      []byte
	visitors int           // exact distinct subjects of the 30 days
	views    uint64        // exact page views
	took     time.Duration // aggregation and flushes of the 10 M events
	bytes    int64         // Badger directory size
	values   [2]int64      // mean encoded size of an hour and a day bucket
	err      error
}

var (
	benchOnce sync.Once
	bench     benchData
)

func TestMain(m *testing.M) {
	code := m.Run()
	if bench.dir != "" {
		_ = os.RemoveAll(bench.dir)
	}
	os.Exit(code)
}

// benchStore aggregates benchSet into a temporary store (once per run)
// and closes it, as the flushes of a consumer over 30 days would leave it.
func benchStore(b *testing.B) *benchData {
	benchOnce.Do(func() {
		d := &bench
		d.dir, d.err = os.MkdirTemp("", "rollup-bench-*")
		if d.err != nil {
			return
		}
		d.key = make([]byte, 32)
		s, err := storage.Open(storage.Config{Dir: d.dir, VaultKey: d.key})
		if err != nil {
			d.err = err
			return
		}
		defer s.Close()
		clk := &clock{}
		a, err := New(Config{Store: s, Now: clk.Now, SiteHosts: map[string][]string{"shop": {siteHost}}})
		if err != nil {
			d.err = err
			return
		}
		ctx := context.Background()
		subjects := make(map[string]struct{}, benchSet.subjects)
		i := 0
		start := time.Now()
		generate(benchSet, func(ev *vigiev1.Event) {
			if d.err != nil {
				return
			}
			if ev.Subject != "" {
				subjects[ev.Subject] = struct{}{}
			}
			if ev.Type == "page" {
				d.views++
			}
			clk.now = time.UnixMilli(ev.ReceivedAtMs)
			if d.err = a.Add(ctx, ev); d.err != nil {
				return
			}
			if i++; i%100_000 == 0 { // every ~26 s of event time at this rate
				d.err = a.Flush(ctx)
			}
		})
		clk.now = benchStart.Add(benchSet.span + time.Hour)
		if d.err == nil {
			d.err = a.Flush(ctx)
		}
		d.took = time.Since(start)
		d.visitors = len(subjects)
		for _, k := range []storage.RollupKind{storage.RollupHour, storage.RollupDay} {
			n := 0
			_ = s.ScanRollups(ctx, k, "shop", 0, 1<<32-1, func(_ uint32, _ uint64, v []byte) error {
				d.values[k-1] += int64(len(v))
				n++
				return nil
			})
			d.values[k-1] /= int64(max(n, 1))
		}
		_ = filepath.WalkDir(d.dir, func(_ string, e fs.DirEntry, _ error) error {
			if info, err := e.Info(); err == nil && !e.IsDir() {
				d.bytes += info.Size()
			}
			return nil
		})
	})
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	return &bench
}

// BenchmarkOverview30Days measures Overview over the 30 days of 10 M
// events: "cold" is the first query after the store is reopened (new
// Aggregator, empty cache, Badger's caches empty, the OS page cache
// warm), "warm" a repeated query. Both ask for a comparison with the 30
// days before (empty, as a console would ask). "rolling" is the last 30
// days from a mid-day hour: 29 day buckets and 24 hour buckets.
func BenchmarkOverview30Days(b *testing.B) {
	d := benchStore(b)
	ctx := context.Background()
	now := benchStart.Add(benchSet.span + time.Hour)
	clk := &clock{now: now}
	open := func(b *testing.B) (*storage.Store, *Aggregator) {
		s, err := storage.Open(storage.Config{Dir: d.dir, VaultKey: d.key})
		if err != nil {
			b.Fatal(err)
		}
		a, err := New(Config{Store: s, Now: clk.Now})
		if err != nil {
			b.Fatal(err)
		}
		return s, a
	}
	ranges := []struct {
		name     string
		from, to time.Time
	}{
		{"aligned", benchStart, benchStart.Add(benchSet.span)},
		{"rolling", benchStart.Add(12 * time.Hour), benchStart.Add(benchSet.span + 12*time.Hour)},
	}
	report := func(b *testing.B, ov Overview) {
		b.ReportMetric(100*math.Abs(float64(ov.Totals.Visitors)-float64(d.visitors))/float64(d.visitors), "visitors_err_%")
	}
	for _, r := range ranges {
		query := func(b *testing.B, a *Aggregator) Overview {
			ov, err := a.Overview(ctx, "shop", r.from, r.to, r.from.Add(-benchSet.span), r.from)
			if err != nil {
				b.Fatal(err)
			}
			return ov
		}
		b.Run(r.name+"/cold", func(b *testing.B) {
			var ov Overview
			b.StopTimer()
			for range b.N {
				s, a := open(b)
				b.StartTimer()
				ov = query(b, a)
				b.StopTimer()
				_ = s.Close()
			}
			report(b, ov)
		})
		b.Run(r.name+"/warm", func(b *testing.B) {
			s, a := open(b)
			defer s.Close()
			ov := query(b, a)
			b.ResetTimer()
			for range b.N {
				ov = query(b, a)
			}
			b.StopTimer()
			report(b, ov)
			if r.name == "aligned" {
				if ov.Totals.PageViews != d.views || ov.Totals.Events != uint64(benchSet.events) {
					b.Fatalf("page views %d events %d, want %d and %d", ov.Totals.PageViews, ov.Totals.Events, d.views, benchSet.events)
				}
				b.Logf("10M events: generated, aggregated and flushed in %v (%.0f events/s); Badger dir %.1f MB, mean hour bucket %.1f kB, day bucket %.1f kB; visitors %d (exact %d), visits %d, page views %d, top page %v, series %d points",
					d.took.Round(time.Millisecond), float64(benchSet.events)/d.took.Seconds(), float64(d.bytes)/1e6,
					float64(d.values[0])/1e3, float64(d.values[1])/1e3,
					ov.Totals.Visitors, d.visitors, ov.Totals.Visits, ov.Totals.PageViews, ov.Top.Pages.Entries[0], len(ov.Series))
			}
		})
	}
}

// benchEvents are pre-generated events (one day of benchSet's rate) that
// the throughput benchmarks cycle through.
func benchEvents(n int) []*vigiev1.Event {
	g := benchSet
	g.events, g.span = n, time.Duration(float64(benchSet.span)*float64(n)/float64(benchSet.events))
	out := make([]*vigiev1.Event, 0, n)
	generate(g, func(ev *vigiev1.Event) { out = append(out, proto.Clone(ev).(*vigiev1.Event)) })
	return out
}

// BenchmarkAggregatorAdd is the Aggregator's throughput on decoded events
// (including a flush every 100 000 events), against a baseline loop that
// only reads the same events.
func BenchmarkAggregatorAdd(b *testing.B) {
	evs := benchEvents(400_000)
	ctx := context.Background()
	b.Run("baseline", func(b *testing.B) {
		var n int
		for i := range b.N {
			ev := evs[i%len(evs)]
			n += len(ev.Site) + len(ev.GetPage().GetPath())
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		_ = n
	})
	b.Run("aggregate", func(b *testing.B) {
		dir := b.TempDir()
		s, err := storage.Open(storage.Config{Dir: dir, VaultKey: make([]byte, 32)})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		clk := &clock{}
		a, err := New(Config{Store: s, Now: clk.Now})
		if err != nil {
			b.Fatal(err)
		}
		span := evs[len(evs)-1].TimestampMs - evs[0].TimestampMs + msPerHour
		b.ResetTimer()
		for i := range b.N {
			ev := evs[i%len(evs)]
			// Each lap of the slice is the next day: always new buckets.
			lap := int64(i / len(evs))
			ts, rx := ev.TimestampMs, ev.ReceivedAtMs
			ev.TimestampMs, ev.ReceivedAtMs = ts+lap*span, rx+lap*span
			clk.now = time.UnixMilli(ev.ReceivedAtMs)
			if err := a.Add(ctx, ev); err != nil {
				b.Fatal(err)
			}
			ev.TimestampMs, ev.ReceivedAtMs = ts, rx
			if (i+1)%100_000 == 0 {
				if err := a.Flush(ctx); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}

// BenchmarkConsume is the Consumer's throughput from embedded JetStream
// (decode, aggregate, flush, ack) against a no-op consumer that fetches
// and acknowledges the same messages the same way. Each op consumes the
// whole stream (200 000 events) with a fresh durable.
func BenchmarkConsume(b *testing.B) {
	const n = 200_000
	bs := startBus(b)
	js := bs.JetStream()
	g := benchSet
	g.events, g.span = n, time.Duration(float64(benchSet.span)*n/float64(benchSet.events))
	publish(b, js, g, nil)
	last := lastSeq(b, js)
	ctx := context.Background()
	run := func(b *testing.B, name string, consume func(b *testing.B, durable string)) {
		b.Run(name, func(b *testing.B) {
			for i := range b.N {
				consume(b, fmt.Sprintf("%s-%d", name, i))
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
	run(b, "noop", func(b *testing.B, durable string) {
		cons, err := js.CreateConsumer(ctx, streams.Events, jetstream.ConsumerConfig{
			Durable: durable, AckPolicy: jetstream.AckAllPolicy, MaxAckPending: 2 * defaultMaxPending,
		})
		if err != nil {
			b.Fatal(err)
		}
		c := &Consumer{cfg: ConsumerConfig{BatchSize: defaultBatchSize}, cons: cons}
		got, pending := 0, 0
		for got < n {
			msgs, err := c.fetch(fetchWait)
			if err != nil {
				b.Fatal(err)
			}
			if len(msgs) == 0 {
				continue
			}
			got += len(msgs)
			if pending += len(msgs); pending >= defaultMaxPending/2 || got >= n {
				_ = msgs[len(msgs)-1].Ack()
				pending = 0
			}
		}
		_ = js.DeleteConsumer(ctx, streams.Events, durable)
	})
	run(b, "rollup", func(b *testing.B, durable string) {
		s, err := storage.Open(storage.Config{Dir: b.TempDir(), VaultKey: make([]byte, 32)})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		a, err := New(Config{Store: s, Now: func() time.Time { return g.start.Add(g.span) }})
		if err != nil {
			b.Fatal(err)
		}
		c, err := NewConsumer(a, ConsumerConfig{JetStream: js, Stream: streams.Events, Durable: durable})
		if err != nil {
			b.Fatal(err)
		}
		if err := runUntil(b, c, last); err != nil {
			b.Fatal(err)
		}
		if st := a.Stats(); st.Added != n {
			b.Fatalf("counted %d of %d", st.Added, n)
		}
		_ = js.DeleteConsumer(ctx, streams.Events, durable)
	})
}

// BenchmarkFlushWrites measures what the store is given to write for one
// day of benchSet's site at its pace (10 M events a month, 3.9 a second),
// flushed every 2 seconds of event time as the Consumer does: changes as
// parts ("parts") against rewriting each changed bucket whole ("whole").
// Each op is one day; events_B is the bytes per day over the events' own
// bytes (protobuf).
func BenchmarkFlushWrites(b *testing.B) {
	g := benchSet
	g.span = 24 * time.Hour
	g.events = int(float64(benchSet.events) * float64(g.span) / float64(benchSet.span))
	evs := benchEvents(g.events)
	var evBytes int
	for _, ev := range evs {
		evBytes += proto.Size(ev)
	}
	for _, mode := range []struct {
		name  string
		whole bool
	}{{"parts", false}, {"whole", true}} {
		b.Run(mode.name, func(b *testing.B) {
			wholeWrites = mode.whole
			defer func() { wholeWrites, putRollups = false, (*storage.Store).PutRollups }()
			var written int64
			putRollups = func(s *storage.Store, ctx context.Context, es []storage.RollupEntry, m *storage.RollupMark) error {
				for _, e := range es {
					written += int64(len(e.Value))
				}
				return s.PutRollups(ctx, es, m)
			}
			ctx := context.Background()
			for range b.N {
				s, err := storage.Open(storage.Config{Dir: b.TempDir(), VaultKey: make([]byte, 32)})
				if err != nil {
					b.Fatal(err)
				}
				clk := &clock{}
				a, err := New(Config{Store: s, Now: clk.Now})
				if err != nil {
					b.Fatal(err)
				}
				next := evs[0].ReceivedAtMs + 2000
				for _, ev := range evs {
					if ev.ReceivedAtMs >= next {
						if err := a.Flush(ctx); err != nil {
							b.Fatal(err)
						}
						next += 2000
					}
					clk.now = time.UnixMilli(ev.ReceivedAtMs)
					if err := a.Add(ctx, ev); err != nil {
						b.Fatal(err)
					}
				}
				clk.now = clk.now.Add(time.Hour)
				if err := a.Flush(ctx); err != nil {
					b.Fatal(err)
				}
				_ = s.Close()
			}
			b.ReportMetric(float64(written)/float64(b.N)/1e6, "MB/day")
			b.ReportMetric(float64(written)/float64(b.N)/float64(evBytes), "x_events_B")
		})
	}
}
