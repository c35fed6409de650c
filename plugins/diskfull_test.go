package plugins

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigie-dev/vigie/proxy/bus"
	"github.com/vigie-dev/vigie/storage"
)

// TestDiskFullIsNotAFailure: a delivery refused because the disk is full
// (profiles cannot be written) is redelivered later without counting as a
// failure, even at max_deliver, while another error at max_deliver is
// dead-lettered. Real embedded JetStream.
func TestDiskFullIsNotAFailure(t *testing.T) {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	js := startBus(t)
	for name, subj := range map[string]string{"T": "t.>", "D": "vigie.dead.>"} {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subj}}); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "T", jetstream.ConsumerConfig{Durable: "segment-x", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		err  error
		dead bool
	}{
		{fmt.Errorf("storage: observe events: %w", storage.ErrDiskFull), false},
		{errors.New("boom"), true},
	}
	for i := range cases {
		if _, err := js.Publish(ctx, fmt.Sprintf("t.%d", i), []byte("m")); err != nil {
			t.Fatal(err)
		}
	}
	batch, err := cons.Fetch(len(cases), jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	msgs := collect(batch)
	if len(msgs) != len(cases) {
		t.Fatalf("fetched %d messages", len(msgs))
	}
	reg := prometheus.NewRegistry()
	rt := &Runtime{cfg: Config{MaxDeliver: 1, JetStream: js, Backoff: []time.Duration{time.Millisecond}},
		log: quiet, metrics: newMetrics(reg)}
	counter := func(name string) float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		return 0
	}
	c := &consumer{rt: rt, durable: "segment-x"}
	want := 0.0
	for i, tc := range cases {
		c.settleOne(ctx, msgs[i], tc.err)
		if tc.dead {
			want++
		}
		if got := counter("vigie_plugin_dead_letters_total"); got != want {
			t.Errorf("%v: %v dead letters, want %v", tc.err, got, want)
		}
		if got := counter("vigie_plugin_errors_total"); got != want {
			t.Errorf("%v: %v failures counted, want %v", tc.err, got, want)
		}
	}
}

// startBus starts a real embedded NATS with JetStream (package bus) for
// the test and returns its JetStream context.
func startBus(t *testing.T) jetstream.JetStream {
	t.Helper()
	b, err := bus.New(bus.Config{StoreDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b.JetStream()
}
