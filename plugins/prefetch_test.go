package plugins

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// TestConsumerFetchesAheadWhileHandling: while the handler is busy with a
// batch, the next batch is already fetched (both are unacknowledged on the
// server), handled next, in order, each message once; when the consumer
// stops with a batch fetched ahead, that batch is given back at once, so the
// next run (or the node taking the partition) gets it without waiting for
// AckWait. Real embedded JetStream. On the code before, the server had one
// batch out at a time.
func TestConsumerFetchesAheadWhileHandling(t *testing.T) {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	js := startBus(t)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		if _, err := js.Publish(ctx, "t.x", fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	rt := &Runtime{cfg: Config{BatchSize: 2, AckWait: time.Minute, MaxDeliver: 5, JetStream: js, Backoff: []time.Duration{time.Millisecond}},
		log: quiet, metrics: newMetrics(prometheus.NewRegistry())}
	var mu sync.Mutex
	var got []string
	release := make(chan struct{})
	c := &consumer{rt: rt, durable: "sync-x", stream: "T", filters: []string{"t.>"}, stage: stageSync,
		handle: func(ctx context.Context, msgs []jetstream.Msg) []error {
			mu.Lock()
			for _, m := range msgs {
				got = append(got, string(m.Data()))
			}
			first := len(got) == len(msgs)
			mu.Unlock()
			if first {
				<-release
			}
			return make([]error, len(msgs))
		}}
	if err := c.open(ctx); err != nil {
		t.Fatal(err)
	}
	ackPending := func() int {
		info, err := c.current().Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.NumAckPending
	}
	until := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	run := func() (stop func()) {
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); c.run(rctx) }()
		return func() { cancel(); <-done }
	}

	stop := run()
	until("a second batch fetched while the first is handled", func() bool { return ackPending() == 4 })
	close(release)
	until("every message handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 6
	})
	if want := []string{"m0", "m1", "m2", "m3", "m4", "m5"}; !slices.Equal(got, want) {
		t.Fatalf("handled %v, want %v", got, want)
	}
	until("every message acknowledged", func() bool { return ackPending() == 0 })

	// Stopped with a batch fetched ahead of a busy handler.
	stop()
	mu.Lock()
	got = nil
	mu.Unlock()
	release = make(chan struct{})
	for i := 6; i < 10; i++ {
		if _, err := js.Publish(ctx, "t.x", fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	stop = run()
	until("a batch fetched ahead again", func() bool { return ackPending() == 4 })
	go func() { time.Sleep(100 * time.Millisecond); close(release) }()
	stop() // the batch in the handler's hands is settled; the one ahead given back
	stop = run()
	defer stop()
	until("the batch given back handled by the next run, well before AckWait", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 4
	})
}
