package plugins

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/storage"
)

// diskFullRedelay is how long a message waits before redelivery while the
// store refuses writes for lack of disk space.
const diskFullRedelay = 5 * time.Second

// Headers of dead-letter and replayed messages.
const (
	hdrSubject  = "Vigie-Subject"  // the message's original subject
	hdrConsumer = "Vigie-Consumer" // the durable consumer it failed on
	hdrPlugin   = "Vigie-Plugin"   // the plugin that failed
	hdrError    = "Vigie-Error"    // the last error
	hdrDeliver  = "Vigie-Deliveries"
	hdrFailedAt = "Vigie-Failed-At" // RFC 3339
)

// handler processes a batch of messages and returns one error per message
// (nil: done, ack it). An error wrapping a *pluginError names the plugin
// that failed; one wrapping errPermanent is dead-lettered at once.
type handler func(ctx context.Context, msgs []jetstream.Msg) []error

// pluginError attributes an error to a plugin.
type pluginError struct {
	plugin string
	err    error
}

func (e *pluginError) Error() string { return e.plugin + ": " + e.err.Error() }
func (e *pluginError) Unwrap() error { return e.err }

// consumer is one durable pull consumer and the loop that feeds a handler.
type consumer struct {
	rt      *Runtime
	durable string
	stream  string
	filters []string
	stage   int   // stageEnrich, stageSegment or stageSync
	owner   *proc // waited for before fetching; nil for the enrich stage
	handle  handler
	// onDead, when set, is told of each message dead-lettered.
	onDead func(ctx context.Context, m jetstream.Msg, cause error)
	// part, when set, is the partition run the consumer belongs to: it
	// stops when the partition is given up (partitions.go).
	part *partRun

	mu   sync.Mutex
	cons jetstream.Consumer // replaced when recover declares it again

	// later holds the stream sequences of messages naked because their
	// destination was unavailable (retryLater): delivered again, they are
	// not suspects, and are batched like fresh ones. Used by run's
	// goroutine only; bounded by MaxAckPending.
	later map[uint64]struct{}
}

// current returns the consumer handle last opened.
func (c *consumer) current() jetstream.Consumer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cons
}

// subjectOf is a message's original subject (replayed messages carry it in
// a header).
func subjectOf(m jetstream.Msg) string {
	if s := m.Headers().Get(hdrSubject); s != "" {
		return s
	}
	return m.Subject()
}

// open creates or updates the durable consumer.
func (c *consumer) open(ctx context.Context) error {
	cfg := jetstream.ConsumerConfig{
		Durable:       c.durable,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.rt.cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: 4 * c.fetchSize(),
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if len(c.filters) == 1 {
		cfg.FilterSubject = c.filters[0]
	} else {
		cfg.FilterSubjects = c.filters
	}
	cons, err := c.rt.cfg.JetStream.CreateOrUpdateConsumer(ctx, c.stream, cfg)
	if err != nil {
		return fmt.Errorf("plugins: consumer %s on %s: %w", c.durable, c.stream, err)
	}
	c.mu.Lock()
	c.cons = cons
	c.mu.Unlock()
	return nil
}

// run feeds the handler until ctx is done. Fresh messages are handled in
// batches; a message delivered again (it failed, or its plugin crashed on
// the batch) is handled alone, so that one poison event cannot hold the
// others back, unless it only waited for its destination (retryLater).
// The next batch is fetched while one is handled (prefetch), so the
// handler does not wait for the pull's round trip between batches.
func (c *consumer) run(ctx context.Context) {
	next := make(chan fetched) // unbuffered: one batch fetched ahead at most
	fctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.prefetch(fctx, next)
	}()
	defer func() {
		stop()
		<-done
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-next:
			c.handleBatch(ctx, b.msgs, b.hold)
		}
	}
}

// fetched is a batch fetched ahead, marked in progress since its fetch.
type fetched struct {
	msgs []jetstream.Msg
	hold *inProgress
}

// prefetch fetches batches and hands each to out, until ctx is done. A
// batch fetched when ctx ends is given back (nak): delivered again at once
// to this consumer's next run, or to the node taking the partition over.
func (c *consumer) prefetch(ctx context.Context, out chan<- fetched) {
	for ctx.Err() == nil {
		if c.owner != nil {
			if _, err := c.owner.waitReady(ctx); err != nil {
				return
			}
		}
		msgs, err := c.fetch()
		if err != nil {
			if ctx.Err() == nil {
				c.rt.log.Warn("fetch failed", "consumer", c.durable, "err", err)
				// The consumer or its stream may be gone (NATS lost its
				// store): declare them again.
				c.rt.recover(ctx, err)
				sleep(ctx, time.Second)
			}
			continue
		}
		if len(msgs) == 0 {
			continue
		}
		b := fetched{msgs: msgs, hold: holdInProgress(msgs, c.rt.cfg.AckWait/3)}
		select {
		case out <- b:
		case <-ctx.Done():
			b.hold.close()
			for _, m := range msgs {
				_ = m.Nak()
			}
			return
		}
	}
}

// handleBatch handles and settles one fetched batch, its messages marked
// in progress (h) until each is settled.
func (c *consumer) handleBatch(ctx context.Context, msgs []jetstream.Msg, h *inProgress) {
	defer h.close()
	var fresh []jetstream.Msg
	for _, m := range msgs {
		md, err := m.Metadata()
		if err == nil && md.NumDelivered > 1 {
			if _, ok := c.later[md.Sequence.Stream]; !ok {
				c.settle(ctx, h, []jetstream.Msg{m}, c.handle(ctx, []jetstream.Msg{m}))
				continue
			}
			delete(c.later, md.Sequence.Stream)
		}
		fresh = append(fresh, m)
	}
	if len(fresh) > 0 {
		c.settle(ctx, h, fresh, c.handle(ctx, fresh))
	}
}

// inProgress keeps a batch's unsettled messages marked in progress.
type inProgress struct {
	mu     sync.Mutex
	msgs   map[jetstream.Msg]struct{}
	stop   chan struct{}
	exited chan struct{}
}

// holdInProgress marks msgs in progress every `every` until each is
// released or the hold closed.
func holdInProgress(msgs []jetstream.Msg, every time.Duration) *inProgress {
	h := &inProgress{msgs: make(map[jetstream.Msg]struct{}, len(msgs)), stop: make(chan struct{}), exited: make(chan struct{})}
	for _, m := range msgs {
		h.msgs[m] = struct{}{}
	}
	go func() {
		defer close(h.exited)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
			h.mu.Lock()
			for m := range h.msgs {
				_ = m.InProgress()
			}
			h.mu.Unlock()
		}
	}()
	return h
}

// release stops marking m: it is being settled. A mark sent before is on
// the wire ahead of the settlement (sent under the same lock), so it never
// resets a naked message's redelivery delay.
func (h *inProgress) release(m jetstream.Msg) {
	h.mu.Lock()
	delete(h.msgs, m)
	h.mu.Unlock()
}

// close stops marking and waits for the marking goroutine.
func (h *inProgress) close() {
	close(h.stop)
	<-h.exited
}

// fetchWait is how long one pull request waits for a message. The wait is
// never cut short by cancelling a context: a message JetStream delivers to a
// pull request its client has abandoned counts as delivered and comes back
// only after AckWait. Stopping a consumer therefore takes up to fetchWait.
const fetchWait = 500 * time.Millisecond

// enrichFetchFactor is how many times BatchSize the enrich stage fetches
// at once; each enricher is still called with at most BatchSize events. The
// stage's cost per batch is mostly round trips (fetch, publish and its
// acks), which a larger batch shares, and it keeps no per-subject state
// that would bound how much it may hold unacknowledged (the segment stage's
// idempotency markers do; see storage.Config.PortableProfiles).
const enrichFetchFactor = 5

// fetchSize is the most messages one fetch returns.
func (c *consumer) fetchSize() int {
	if c.stage == stageEnrich {
		return enrichFetchFactor * c.rt.cfg.BatchSize
	}
	return c.rt.cfg.BatchSize
}

// fetch waits up to fetchWait for a message and returns up to fetchSize.
func (c *consumer) fetch() ([]jetstream.Msg, error) {
	n := c.fetchSize()
	cons := c.current()
	batch, err := cons.FetchNoWait(n)
	if err != nil {
		return nil, err
	}
	msgs := collect(batch)
	if len(msgs) > 0 || batch.Error() != nil {
		return msgs, batch.Error()
	}
	batch, err = cons.Fetch(1, jetstream.FetchMaxWait(fetchWait))
	if err != nil {
		return nil, err
	}
	msgs = collect(batch)
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
		return msgs, err
	}
	if len(msgs) == 1 && n > 1 {
		if more, err := cons.FetchNoWait(n - 1); err == nil {
			msgs = append(msgs, collect(more)...)
		}
	}
	return msgs, nil
}

// collect drains a batch.
func collect(b jetstream.MessageBatch) []jetstream.Msg {
	var out []jetstream.Msg
	for m := range b.Messages() {
		out = append(out, m)
	}
	return out
}

// settle acks, naks with backoff or dead-letters each message.
func (c *consumer) settle(ctx context.Context, h *inProgress, msgs []jetstream.Msg, errs []error) {
	for i, m := range msgs {
		var err error
		if i < len(errs) {
			err = errs[i]
		}
		h.release(m)
		c.settleOne(ctx, m, err)
	}
}

func (c *consumer) settleOne(ctx context.Context, m jetstream.Msg, err error) {
	plugin := c.durable
	var pe *pluginError
	if errors.As(err, &pe) {
		plugin = pe.plugin
	} else if c.owner != nil {
		plugin = c.owner.spec.Name
	}
	if err == nil {
		if aerr := m.Ack(); aerr != nil {
			c.rt.log.Warn("ack failed", "consumer", c.durable, "err", aerr)
		}
		return
	}
	if errors.Is(err, ErrNotRunning) || streams.IsMissing(err) || ctx.Err() != nil {
		// Shutting down, the plugin is not up, or a stream it publishes
		// to is missing (being declared again): not the message's fault.
		// Deliver it again soon without counting it as a failure.
		c.rt.recover(ctx, err)
		_ = m.NakWithDelay(time.Second)
		return
	}
	if errors.Is(err, storage.ErrDiskFull) {
		// Profiles cannot be written until disk space is freed (the store
		// logged it once): not the message's fault either.
		_ = m.NakWithDelay(diskFullRedelay)
		return
	}
	var rl *retryLater
	if errors.As(err, &rl) {
		// The destination's failure (down, throttling, paused), which the
		// plugin reports in its own status: delivered again after its
		// delay, not counted towards MaxDeliver.
		c.rt.metrics.retried.WithLabelValues(plugin).Inc()
		if md, _ := m.Metadata(); md != nil {
			if c.later == nil {
				c.later = map[uint64]struct{}{}
			}
			c.later[md.Sequence.Stream] = struct{}{}
		}
		c.rt.log.Debug("delivery deferred: destination unavailable", "plugin", plugin, "consumer", c.durable, "after", rl.after, "err", err)
		_ = m.NakWithDelay(rl.after)
		return
	}
	c.rt.metrics.errors.WithLabelValues(plugin).Inc()
	if p := c.rt.procs[plugin]; p != nil {
		p.errors.Add(1)
	}
	delivered := 1
	if md, _ := m.Metadata(); md != nil {
		delivered = int(md.NumDelivered)
	}
	c.rt.log.Warn("delivery failed", "plugin", plugin, "consumer", c.durable, "deliveries", delivered, "err", err)
	if delivered >= c.rt.cfg.MaxDeliver || errors.Is(err, errPermanent) {
		if derr := c.rt.deadLetter(ctx, c.durable, plugin, m, err, delivered); derr != nil {
			c.rt.log.Error("dead letter failed; will retry", "consumer", c.durable, "err", derr)
			c.rt.recover(ctx, derr)
			_ = m.NakWithDelay(c.rt.cfg.backoff(delivered))
			return
		}
		if c.onDead != nil {
			c.onDead(ctx, m, err)
		}
		_ = m.Ack()
		return
	}
	_ = m.NakWithDelay(c.rt.cfg.backoff(delivered))
}

// deadLetter copies m to vigie.dead.<plugin> with the error.
func (rt *Runtime) deadLetter(ctx context.Context, durable, plugin string, m jetstream.Msg, cause error, delivered int) error {
	msg := nats.NewMsg(streams.DeadSubject(plugin))
	msg.Data = m.Data()
	msg.Header.Set(hdrSubject, subjectOf(m))
	msg.Header.Set(hdrConsumer, durable)
	msg.Header.Set(hdrPlugin, plugin)
	reason := cause.Error()
	if len(reason) > 1024 {
		reason = reason[:1024]
	}
	msg.Header.Set(hdrError, reason)
	msg.Header.Set(hdrDeliver, strconv.Itoa(delivered))
	msg.Header.Set(hdrFailedAt, time.Now().UTC().Format(time.RFC3339))
	if md, err := m.Metadata(); err == nil {
		msg.Header.Set(nats.MsgIdHdr, fmt.Sprintf("%s:%s:%d", durable, md.Stream, md.Sequence.Stream))
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := rt.cfg.JetStream.PublishMsg(pctx, msg); err != nil {
		return err
	}
	rt.metrics.dead.WithLabelValues(plugin).Inc()
	rt.log.Warn("message dead-lettered", "plugin", plugin, "consumer", durable, "deliveries", delivered, "err", reason)
	return nil
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
