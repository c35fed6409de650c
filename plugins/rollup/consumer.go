package rollup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// DefaultDurable is the default durable consumer name (also the name of
// its mark in the store).
const DefaultDurable = "rollup"

// Defaults of ConsumerConfig.
const (
	defaultBatchSize     = 1000
	defaultFlushInterval = 2 * time.Second
	defaultMaxPending    = 20_000
	defaultAckWait       = 2 * time.Minute
	// fetchWait bounds one pull request's wait (see plugins/consume.go:
	// it is never cut short, so stopping takes up to this long).
	fetchWait = 500 * time.Millisecond
	// stopTimeout bounds the last flush when Run stops.
	stopTimeout = 10 * time.Second
)

// ConsumerConfig configures NewConsumer. The zero value of every optional
// field selects the documented default.
type ConsumerConfig struct {
	// JetStream is the connection's JetStream context. Required.
	JetStream jetstream.JetStream
	// Stream is the stream to read: the enriched stream when enrichers run
	// (so that countries are known), else the events stream. Required.
	Stream string
	// FilterSubjects selects the stream's subjects; empty reads them all.
	FilterSubjects []string
	// Durable is the durable consumer's name, and the name the position
	// is stored under. Default DefaultDurable. One process per name.
	Durable string
	// BatchSize is the most messages fetched at once. Default 1000.
	BatchSize int
	// FlushInterval is the longest time between receiving a message and
	// committing the rollups that include it (and then acking it).
	// Default 2s.
	FlushInterval time.Duration
	// MaxPending is the number of received, unacknowledged messages that
	// triggers a flush before FlushInterval. The durable's MaxAckPending
	// is twice it. Default 20 000.
	MaxPending int
	// AckWait is the durable's ack wait; it must exceed FlushInterval by a
	// wide margin (a redelivered message is recognized and skipped, but
	// costs a delivery). Default 2 minutes.
	AckWait time.Duration
	// Logger receives warnings. Default slog.Default().
	Logger *slog.Logger
}

// Consumer feeds an Aggregator from a durable JetStream pull consumer.
//
// Exactly-once counting: the rollups and the consumer's position (the
// stream sequence and the stream's creation time) are committed together,
// and messages are acknowledged only after that commit. At start the
// durable is recreated to deliver from the stored position on, in stream
// order, so what a crash left unacknowledged is delivered again and
// counted once: each stored bucket also carries the position it includes,
// so a flush interrupted half-way (some buckets written, not the position)
// is not counted twice either. A recreated stream (new creation time) is
// counted from its start. Messages are counted in stream order: a gap in
// the delivery sequence (a message delivered to a pull request the client
// had given up, which JetStream redelivers only after AckWait) makes the
// consumer commit and resume after the last message it counted.
type Consumer struct {
	agg *Aggregator
	cfg ConsumerConfig
	log *slog.Logger

	cons  jetstream.Consumer
	ev    vigiev1.Event // decoding buffer
	epoch uint64
	next  uint64 // expected delivery (consumer) sequence

	// afterFlush, when set (tests), runs after a flush commits and before
	// the ack; an error stops Run at once, as a crash would.
	afterFlush func() error
	// drop, when set (tests), loses the deliveries it returns true for,
	// as a pull request given up by the client does.
	drop func(jetstream.Msg) bool
}

// NewConsumer returns a consumer feeding agg. It starts nothing; call Run.
func NewConsumer(agg *Aggregator, cfg ConsumerConfig) (*Consumer, error) {
	if agg == nil || cfg.JetStream == nil || cfg.Stream == "" {
		return nil, fmt.Errorf("%w: an Aggregator, JetStream and Stream are required", ErrInvalidConfig)
	}
	if cfg.BatchSize < 0 || cfg.FlushInterval < 0 || cfg.MaxPending < 0 || cfg.AckWait < 0 {
		return nil, fmt.Errorf("%w: negative BatchSize, FlushInterval, MaxPending or AckWait", ErrInvalidConfig)
	}
	if cfg.Durable == "" {
		cfg.Durable = DefaultDurable
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = defaultBatchSize
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = defaultFlushInterval
	}
	if cfg.MaxPending == 0 {
		cfg.MaxPending = defaultMaxPending
	}
	if cfg.AckWait == 0 {
		cfg.AckWait = defaultAckWait
	}
	if cfg.AckWait <= 2*cfg.FlushInterval {
		return nil, fmt.Errorf("%w: AckWait must exceed twice FlushInterval", ErrInvalidConfig)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Consumer{agg: agg, cfg: cfg, log: cfg.Logger}, nil
}

// Run consumes until ctx is done, then commits what it received (with up
// to 10 s of its own; buckets are then written whole), acknowledges it and
// returns. Errors while running
// (NATS unreachable, stream missing, store refusing writes) are logged and
// retried; Run returns the last commit's error, if any.
func (c *Consumer) Run(ctx context.Context) error {
	if err := c.openRetry(ctx); err != nil {
		return nil // ctx done before the stream could be opened
	}
	var last jetstream.Msg // newest message received and not acknowledged
	pending := 0
	lastFlush := time.Now()
	// commit flushes and acknowledges; crashed reports a test hook's
	// simulated crash, after which Run must return at once.
	commit := func(ctx context.Context, final bool) (crashed bool, err error) {
		lastFlush = time.Now()
		if err := c.agg.flush(ctx, c.cfg.Durable, final); err != nil {
			return false, err
		}
		if c.afterFlush != nil {
			if err := c.afterFlush(); err != nil {
				return true, err
			}
		}
		if last != nil {
			// AckAll: acknowledges every message delivered before it.
			if err := last.Ack(); err != nil {
				c.log.Warn("rollup: ack failed; the messages will be delivered again and skipped", "err", err)
			}
		}
		last, pending = nil, 0
		return false, nil
	}
	resync := false // commit, then recreate the durable after the last counted message
	for ctx.Err() == nil {
		if resync {
			crashed, err := commit(ctx, false)
			if crashed {
				return err
			}
			if err != nil {
				// Reopening now would count again what memory holds.
				if ctx.Err() == nil {
					c.log.Warn("rollup: flush failed; retrying", "err", err)
					sleep(ctx, time.Second)
				}
				continue
			}
			if c.openRetry(ctx) != nil {
				break
			}
			resync = false
		}
		wait := min(fetchWait, max(10*time.Millisecond, c.cfg.FlushInterval-time.Since(lastFlush)))
		msgs, err := c.fetch(wait)
		if err != nil && ctx.Err() == nil {
			c.log.Warn("rollup: fetch failed", "consumer", c.cfg.Durable, "err", err)
			if streams.IsMissing(err) {
				resync = true
				continue
			}
			sleep(ctx, time.Second)
		}
		for _, m := range msgs {
			if c.drop != nil && c.drop(m) {
				continue // as if delivered to a pull request given up
			}
			md, err := m.Metadata()
			if err != nil {
				c.agg.invalid.Add(1) // not a JetStream message
				continue
			}
			if md.Sequence.Consumer != c.next {
				// A delivery went to a pull request that was given up: it
				// comes back only after AckWait, out of stream order.
				c.log.Info("rollup: a delivery was missed; resuming after the last counted message", "consumer", c.cfg.Durable)
				resync = true
				break
			}
			c.next++
			if !c.handleRetry(ctx, m, md) {
				break // stopping: m and the rest come back after the restart
			}
			last = m
			pending++
		}
		if !resync && pending > 0 && (pending >= c.cfg.MaxPending || time.Since(lastFlush) >= c.cfg.FlushInterval) {
			if crashed, err := commit(ctx, false); crashed {
				return err
			} else if err != nil && ctx.Err() == nil {
				c.log.Warn("rollup: flush failed; retrying", "err", err)
			}
		}
	}
	// The last commit also compacts the buckets' parts.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
	defer cancel()
	_, err := commit(sctx, true)
	return err
}

// handleRetry counts m, retrying while the store fails; false when ctx
// ended first (m was not counted).
func (c *Consumer) handleRetry(ctx context.Context, m jetstream.Msg, md *jetstream.MsgMetadata) bool {
	for {
		err := c.handle(ctx, m, md)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		c.log.Warn("rollup: event not counted yet; retrying", "err", err)
		sleep(ctx, time.Second)
		if ctx.Err() != nil {
			return false
		}
	}
}

// handle counts one message. Messages arrive in stream order (Run checks
// the delivery sequence), so one at or below the highest sequence counted
// was counted already: it is a redelivery after AckWait.
func (c *Consumer) handle(ctx context.Context, m jetstream.Msg, md *jetstream.MsgMetadata) error {
	seq := md.Sequence.Stream
	if seq <= c.agg.highest() {
		c.agg.duplicates.Add(1)
		return nil
	}
	if err := proto.Unmarshal(m.Data(), &c.ev); err != nil {
		c.agg.invalid.Add(1)
		c.agg.advance(seq)
		return nil
	}
	return c.agg.add(ctx, &c.ev, seq, md.Timestamp.UnixMilli())
}

// openRetry opens the durable, retrying until it works or ctx is done.
func (c *Consumer) openRetry(ctx context.Context) error {
	delay := 250 * time.Millisecond
	for {
		err := c.open(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.log.Warn("rollup: cannot open the consumer yet; retrying", "stream", c.cfg.Stream, "consumer", c.cfg.Durable, "err", err)
		sleep(ctx, delay)
		delay = min(2*delay, 5*time.Second)
	}
}

// open reads the stored position and recreates the durable to deliver
// from the message after it.
func (c *Consumer) open(ctx context.Context) error {
	mark, err := c.agg.store.ReadRollupMark(ctx, c.cfg.Durable)
	if err != nil {
		return err
	}
	js := c.cfg.JetStream
	s, err := js.Stream(ctx, c.cfg.Stream)
	if err != nil {
		return err
	}
	epoch := uint64(s.CachedInfo().Created.UnixNano())
	if mark.Epoch != epoch {
		if mark.Seq != 0 {
			c.log.Info("rollup: the stream was created again; counting it from its start", "stream", c.cfg.Stream)
		}
		mark.Seq = 0
	}
	if err := js.DeleteConsumer(ctx, c.cfg.Stream, c.cfg.Durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return err
	}
	cc := jetstream.ConsumerConfig{
		Durable:       c.cfg.Durable,
		AckPolicy:     jetstream.AckAllPolicy,
		AckWait:       c.cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: 2 * c.cfg.MaxPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if mark.Seq > 0 {
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, mark.Seq+1
	}
	if len(c.cfg.FilterSubjects) == 1 {
		cc.FilterSubject = c.cfg.FilterSubjects[0]
	} else {
		cc.FilterSubjects = c.cfg.FilterSubjects
	}
	cons, err := js.CreateConsumer(ctx, c.cfg.Stream, cc)
	if err != nil {
		return err
	}
	c.cons, c.epoch, c.next = cons, epoch, 1
	c.agg.setSource(epoch, mark.Seq)
	return nil
}

// fetch waits up to wait for a message and returns up to BatchSize.
func (c *Consumer) fetch(wait time.Duration) ([]jetstream.Msg, error) {
	n := c.cfg.BatchSize
	batch, err := c.cons.FetchNoWait(n)
	if err != nil {
		return nil, err
	}
	msgs := collect(batch, nil)
	if len(msgs) > 0 || batch.Error() != nil {
		return msgs, batch.Error()
	}
	batch, err = c.cons.Fetch(1, jetstream.FetchMaxWait(wait))
	if err != nil {
		return nil, err
	}
	msgs = collect(batch, msgs)
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
		return msgs, err
	}
	if len(msgs) == 1 && n > 1 {
		if more, err := c.cons.FetchNoWait(n - 1); err == nil {
			msgs = collect(more, msgs)
		}
	}
	return msgs, nil
}

// collect drains a batch into dst.
func collect(b jetstream.MessageBatch, dst []jetstream.Msg) []jetstream.Msg {
	for m := range b.Messages() {
		dst = append(dst, m)
	}
	return dst
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
