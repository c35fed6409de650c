package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/storage"
)

// Outbox is what the publisher drains: the storage outbox.
type Outbox interface {
	OutboxAfter(ctx context.Context, after []byte, max int) ([]storage.OutboxItem, error)
	AckOutbox(keys [][]byte) error
	OutboxSignal() <-chan struct{}
	OutboxLen() int64
}

var _ Outbox = (*storage.Store)(nil)

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	// Bus to publish on (required).
	Bus *Bus
	// Outbox to drain (required).
	Outbox Outbox
	// MaxInFlight bounds unacknowledged publishes. Default 1024.
	MaxInFlight int
	// AckTimeout bounds the wait for one batch's acks. Default 5s.
	AckTimeout time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Publisher moves outbox entries to JetStream, each to the stream its
// subject belongs to (streams.StreamOf): at-least-once, with the entry's
// message id (the event id, or a privacy message's own id) as Nats-Msg-Id so
// a republish after a crash is deduplicated by the stream. An entry leaves
// the outbox only once the stream acknowledged it. A KV delete
// (storage.Message.KVDelete) goes with the header KV-Operation: DEL, as
// jetstream.KeyValue.Delete sends it. An error saying a stream
// is missing makes it declare the streams again (rate-limited).
type Publisher struct {
	cfg PublisherConfig
	log *slog.Logger

	published atomic.Int64
	failures  atomic.Int64
	kick      chan struct{}

	// cursor is the key of the last outbox entry known to be handled: every
	// entry up to it was acknowledged (and deleted). Only drainOnce's
	// goroutine touches it.
	cursor []byte
}

// NewPublisher returns a publisher; it runs when Run is called.
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	if cfg.Bus == nil || cfg.Outbox == nil {
		return nil, errors.New("bus: publisher needs a Bus and an Outbox")
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 1024
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Publisher{cfg: cfg, log: cfg.Logger, kick: make(chan struct{}, 1)}, nil
}

// Published is the number of events acknowledged by the stream.
func (p *Publisher) Published() int64 { return p.published.Load() }

// Failures is the number of failed publish attempts.
func (p *Publisher) Failures() int64 { return p.failures.Load() }

// Run drains the outbox until ctx is done.
func (p *Publisher) Run(ctx context.Context) {
	const maxBackoff = 5 * time.Second
	backoff := 100 * time.Millisecond
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for ctx.Err() == nil {
		n, err := p.drainOnce(ctx)
		if err != nil {
			p.failures.Add(1)
			if ctx.Err() == nil {
				p.log.Warn("publishing to jetstream failed; will retry", "err", err, "retry_in", backoff)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, maxBackoff)
			continue
		}
		backoff = 100 * time.Millisecond
		if n >= p.cfg.MaxInFlight {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-p.cfg.Outbox.OutboxSignal():
		case <-p.kick:
		case <-tick.C:
		}
	}
}

// Flush publishes until the outbox is empty or ctx is done.
func (p *Publisher) Flush(ctx context.Context) error {
	for p.cfg.Outbox.OutboxLen() > 0 {
		if _, err := p.drainOnce(ctx); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("bus: flush: %w (last error: %v)", ctx.Err(), err)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("bus: flush: %w", ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// drainOnce publishes one batch of outbox entries and removes those the
// stream acknowledged. It returns how many entries it read.
func (p *Publisher) drainOnce(ctx context.Context) (int, error) {
	items, err := p.cfg.Outbox.OutboxAfter(ctx, p.cursor, p.cfg.MaxInFlight)
	if err != nil || len(items) == 0 {
		if err == nil && p.cursor != nil && p.cfg.Outbox.OutboxLen() > 0 {
			// Entries below the cursor remain (e.g. a failed delete):
			// start again from the oldest.
			p.cursor = nil
		}
		return 0, err
	}
	if !p.cfg.Bus.Connected() {
		return len(items), fmt.Errorf("nats: %w", ErrNotReady)
	}
	if err := p.cfg.Bus.EnsureStreams(ctx); err != nil {
		return len(items), err
	}
	js := p.cfg.Bus.JetStream()
	if js == nil {
		return len(items), ErrNotReady
	}
	futs := make([]jetstream.PubAckFuture, 0, len(items))
	var pubErr error
	var topics map[string]bool // of this batch, for erasures (ErasesOnDelete)
	for _, it := range items {
		if it.KVDelete && streams.ErasesOnDelete(it.Topic) && topics[it.Topic] {
			// The key's put is in flight: erase it at the next drain,
			// once acknowledged.
			break
		}
		msg := &nats.Msg{Subject: it.Topic, Data: it.Data, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, it.MsgID)
		if it.KVDelete {
			msg.Header.Set(streams.KVOperationHeader, streams.KVOperationDelete)
			if streams.ErasesOnDelete(it.Topic) {
				err := eraseCurrent(ctx, js, it.Topic, p.cfg.AckTimeout)
				if errors.Is(err, errDeniesDeletes) {
					// A stream declared before it allowed deletes: the
					// marker still removes the value from the bucket.
					p.log.Warn("bus: KV value not erased from the stream's files: the stream denies deletes", "stream", streams.StreamOf(it.Topic))
					err = nil
				}
				if err != nil {
					pubErr = err
					break
				}
			}
		}
		var opts []jetstream.PublishOpt
		if st := streams.StreamOf(it.Topic); st != "" {
			opts = append(opts, jetstream.WithExpectStream(st))
		}
		f, err := js.PublishMsgAsync(msg, opts...)
		if err != nil {
			pubErr = err
			break
		}
		futs = append(futs, f)
		if !it.KVDelete && streams.ErasesOnDelete(it.Topic) {
			if topics == nil {
				topics = map[string]bool{}
			}
			topics[it.Topic] = true
		}
	}
	acked := make([][]byte, 0, len(futs))
	// contiguous counts the items acknowledged from the start of the batch:
	// the cursor may move past those only.
	contiguous := 0
	timeout := time.NewTimer(p.cfg.AckTimeout)
	defer timeout.Stop()
wait:
	for i, f := range futs {
		select {
		case <-f.Ok():
			acked = append(acked, items[i].Key)
			if contiguous == i {
				contiguous++
			}
		case err := <-f.Err():
			if pubErr == nil {
				pubErr = err
			}
		case <-timeout.C:
			if pubErr == nil {
				pubErr = fmt.Errorf("no ack within %s", p.cfg.AckTimeout)
			}
			break wait
		case <-ctx.Done():
			if pubErr == nil {
				pubErr = ctx.Err()
			}
			break wait
		}
	}
	if len(acked) > 0 {
		if err := p.cfg.Outbox.AckOutbox(acked); err != nil {
			p.cursor = nil
			return len(items), fmt.Errorf("bus: remove published entries: %w", err)
		}
		p.published.Add(int64(len(acked)))
		if contiguous > 0 {
			p.cursor = items[contiguous-1].Key
		}
	}
	if pubErr != nil {
		if streams.IsMissing(pubErr) {
			// NATS lost a stream (e.g. it restarted on an empty store):
			// declare them again, then the next attempt goes through.
			if ran, err := p.cfg.Bus.Redeclare(ctx); ran {
				p.log.Warn("a stream was missing; streams declared again", "cause", pubErr, "err", err)
			}
		}
		return len(items), fmt.Errorf("bus: publish: %w", pubErr)
	}
	return len(items), nil
}

// errDeniesDeletes: the stream was declared denying message deletes.
var errDeniesDeletes = errors.New("bus: the stream denies message deletes")

// eraseCurrent erases the current value of the KV key subject (a put, not
// a delete marker) from its stream with a secure delete: with history 1
// the delete marker published next would only mark it removed, its bytes
// left in the stream's block files. The caller publishes no put of the key
// in the same batch before it.
func eraseCurrent(ctx context.Context, js jetstream.JetStream, subject string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, err := js.Stream(ctx, streams.StreamOf(subject))
	if err != nil {
		return fmt.Errorf("erase: %w", err)
	}
	if st.CachedInfo().Config.DenyDelete {
		return errDeniesDeletes
	}
	// From the leader: a follower answering a direct get may not have the
	// latest put yet, which would then stay in the files.
	m, err := streams.LeaderLastMsg(ctx, js, st.CachedInfo().Config.Name, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("erase: %w", err)
	}
	if m.Header.Get(streams.KVOperationHeader) != "" {
		return nil // a delete or purge marker: nothing to erase
	}
	if err := st.SecureDeleteMsg(ctx, m.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("erase: %w", err)
	}
	return nil
}
