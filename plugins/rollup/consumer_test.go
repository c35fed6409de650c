package rollup

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/proxy/bus"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
	"github.com/vigie-dev/vigie/storage/storagetest"
)

// startBus starts an embedded NATS server with JetStream and the events
// stream, stopped at cleanup.
func startBus(t testing.TB) *bus.Bus {
	t.Helper()
	b, err := bus.New(bus.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if err := b.EnsureStreams(ctx); err != nil {
		t.Fatal(err)
	}
	return b
}

// publish publishes the generated events as the outbox publisher does and
// returns the brute-force reference of what it published.
func publish(t testing.TB, js jetstream.JetStream, g genConfig, x *exact) {
	t.Helper()
	var futs []jetstream.PubAckFuture
	generate(g, func(ev *vigiev1.Event) {
		data, err := proto.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		m := nats.NewMsg(streams.EventSubject(ev.Site, ev.Type))
		m.Data = data
		m.Header.Set(nats.MsgIdHdr, ev.Id)
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			t.Fatal(err)
		}
		futs = append(futs, f)
		if x != nil {
			x.add(ev)
		}
	})
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("publish timed out")
	}
	for _, f := range futs {
		select {
		case err := <-f.Err():
			t.Fatal(err)
		default:
		}
	}
}

func lastSeq(t testing.TB, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), streams.Events)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

func newConsumer(t testing.TB, a *Aggregator, js jetstream.JetStream) *Consumer {
	t.Helper()
	c, err := NewConsumer(a, ConsumerConfig{
		JetStream: js, Stream: streams.Events, FilterSubjects: []string{streams.EventsPrefix + ">"},
		BatchSize: 200, FlushInterval: 50 * time.Millisecond, MaxPending: 1000, AckWait: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// runUntil runs c until its aggregator has counted up to stream sequence
// seq, then stops it and returns Run's error.
func runUntil(t testing.TB, c *Consumer, seq uint64) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	deadline := time.Now().Add(60 * time.Second)
	for c.agg.highest() < seq {
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer stuck at %d of %d", c.agg.highest(), seq)
		}
	}
	cancel()
	select {
	case err := <-done:
		return err
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not stop")
	}
	return nil
}

var errCrash = errors.New("simulated crash")

// twoDays is the consumer tests' event set: 125 events an hour, so that
// one flush covers several hours and a day or two.
var twoDays = genConfig{
	site: "shop", start: t0, span: 48 * time.Hour, events: 6000,
	pages: 80, subjects: 500, countries: 20, campaigns: 5, anonymous: 0.3, seed: 2,
}

// TestConsumerRestartCountsOnce kills a consumer at the worst moments and
// checks that after a restart every event is counted exactly once.
func TestConsumerRestartCountsOnce(t *testing.T) {
	tests := []struct {
		name string
		// crash arms a simulated crash for the first run; it returns the
		// check that it happened.
		crash func(c *Consumer, cancel context.CancelFunc) func() bool
		// duplicates says the restart must skip messages already counted.
		duplicates bool
	}{
		{
			name: "killed after a flush committed, before its ack",
			crash: func(c *Consumer, _ context.CancelFunc) func() bool {
				flushes := 0
				c.afterFlush = func() error {
					if flushes++; flushes == 3 {
						return errCrash
					}
					return nil
				}
				return func() bool { return flushes >= 3 }
			},
		},
		{
			name: "killed in the middle of a flush (some buckets written, not the position)",
			crash: func(c *Consumer, cancel context.CancelFunc) func() bool {
				calls, crashed := 0, false
				putRollups = func(s *storage.Store, ctx context.Context, es []storage.RollupEntry, m *storage.RollupMark) error {
					if crashed {
						return errCrash // dead: nothing more is written
					}
					if calls++; calls == 3 && len(es) > 1 {
						crashed = true
						cancel()
						if err := s.PutRollups(context.Background(), es[:len(es)/2], nil); err != nil {
							return err
						}
						return errCrash
					}
					return s.PutRollups(ctx, es, m)
				}
				return func() bool { return crashed }
			},
			duplicates: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() { putRollups = (*storage.Store).PutRollups }()
			dir := t.TempDir()
			s := storagetest.OpenConfig(t, storage.Config{Dir: dir, VaultKey: make([]byte, 32)})
			b := startBus(t)
			js := b.JetStream()
			clk := &clock{now: t0.Add(72 * time.Hour)}
			x := newExact()
			first := twoDays
			first.events = 4000
			publish(t, js, first, x)

			// First run, killed.
			a1 := newAgg(t, s, clk, nil)
			c1 := newConsumer(t, a1, js)
			ctx, cancel := context.WithCancel(context.Background())
			happened := tt.crash(c1, cancel)
			done := make(chan error, 1)
			go func() { done <- c1.Run(ctx) }()
			select {
			case err := <-done:
				if !errors.Is(err, errCrash) || !happened() {
					t.Fatalf("first run ended with %v before the crash", err)
				}
			case <-time.After(60 * time.Second):
				t.Fatal("the crash did not happen")
			}
			cancel()
			putRollups = (*storage.Store).PutRollups

			// More events while it is down, then a restart on the reopened
			// store.
			second := twoDays
			second.seed, second.start, second.span, second.events = 3, t0.Add(24*time.Hour), 24*time.Hour, 2000
			publish(t, js, second, x)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = storagetest.OpenConfig(t, storage.Config{Dir: dir, VaultKey: make([]byte, 32)})
			a2 := newAgg(t, s, clk, nil)
			if err := runUntil(t, newConsumer(t, a2, js), lastSeq(t, js)); err != nil {
				t.Fatalf("second run: %v", err)
			}
			if st := a2.Stats(); (st.Duplicates > 0) != tt.duplicates || st.Added == 0 {
				t.Errorf("second run stats %+v (duplicates expected: %v)", st, tt.duplicates)
			}
			// A clean stop leaves every bucket whole, without parts.
			for _, k := range []storage.RollupKind{storage.RollupHour, storage.RollupDay} {
				_ = s.ScanRollups(context.Background(), k, "shop", 0, 1<<32-1, func(i uint32, p uint64, _ []byte) error {
					if p != 0 {
						t.Errorf("kind %d index %d: part %d left after a clean stop", k, i, p)
					}
					return nil
				})
			}

			// A cold aggregator reads what was committed.
			cold := newAgg(t, s, clk, nil)
			for _, q := range []struct {
				name     string
				from, to time.Time
			}{
				{"hour buckets", t0, t0.Add(48 * time.Hour)},
				{"day buckets", t0.Add(-24 * time.Hour), t0.Add(72 * time.Hour)},
			} {
				ov, err := cold.Overview(context.Background(), "shop", q.from, q.to, time.Time{}, time.Time{})
				if err != nil {
					t.Fatal(err)
				}
				n, _, v := x.sum(q.from, q.to)
				checkTotals(t, q.name, ov.Totals, n, v)
				for i, p := range ov.Series {
					end := q.to
					if i+1 < len(ov.Series) {
						end = ov.Series[i+1].Start
					}
					pn, _, pv := x.sum(p.Start, end)
					checkTotals(t, q.name+" point "+p.Start.Format(time.RFC3339), p.Totals, pn, pv)
				}
			}
			m, err := s.ReadRollupMark(context.Background(), DefaultDurable)
			if err != nil || m.Seq != lastSeq(t, js) {
				t.Errorf("stored mark %+v, %v; want seq %d", m, err, lastSeq(t, js))
			}
		})
	}
}

// TestConsumerNewStreamCountedFromStart: a stream deleted and created again
// numbers its messages from 1; the stored position of the old one must
// not hide them.
func TestConsumerNewStreamCountedFromStart(t *testing.T) {
	s := storagetest.Open(t)
	b := startBus(t)
	js := b.JetStream()
	clk := &clock{now: t0.Add(72 * time.Hour)}
	x := newExact()
	g := twoDays
	g.events = 1500
	publish(t, js, g, x)
	a := newAgg(t, s, clk, nil)
	if err := runUntil(t, newConsumer(t, a, js), lastSeq(t, js)); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(context.Background(), streams.Events); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // a distinct creation time
	b2 := startBus(t)                 // fresh server, stream created again
	_ = b2
	js2 := b2.JetStream()
	g.seed, g.events = 5, 500
	publish(t, js2, g, x)
	a2 := newAgg(t, s, clk, nil)
	if err := runUntil(t, newConsumer(t, a2, js2), lastSeq(t, js2)); err != nil {
		t.Fatal(err)
	}
	ov, err := newAgg(t, s, clk, nil).Overview(context.Background(), "shop", t0, t0.Add(48*time.Hour), time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	n, _, v := x.sum(t0, t0.Add(48*time.Hour))
	checkTotals(t, "after a new stream", ov.Totals, n, v)
}

// TestConsumerMissedDelivery: a delivery lost on the way (sent to a pull
// request the client had given up) comes back after AckWait, behind later
// messages; it must still be counted, once.
func TestConsumerMissedDelivery(t *testing.T) {
	s := storagetest.Open(t)
	b := startBus(t)
	js := b.JetStream()
	clk := &clock{now: t0.Add(72 * time.Hour)}
	x := newExact()
	g := twoDays
	g.events = 3000
	publish(t, js, g, x)
	a := newAgg(t, s, clk, nil)
	c := newConsumer(t, a, js)
	dropped := 0
	c.drop = func(m jetstream.Msg) bool {
		md, err := m.Metadata()
		if err == nil && md.Sequence.Stream == 1500 && dropped == 0 {
			dropped++
			return true
		}
		return false
	}
	if err := runUntil(t, c, lastSeq(t, js)); err != nil {
		t.Fatal(err)
	}
	if dropped != 1 {
		t.Fatalf("dropped %d deliveries", dropped)
	}
	ov, err := newAgg(t, s, clk, nil).Overview(context.Background(), "shop", t0, t0.Add(48*time.Hour), time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	n, _, v := x.sum(t0, t0.Add(48*time.Hour))
	checkTotals(t, "after a missed delivery", ov.Totals, n, v)
}
