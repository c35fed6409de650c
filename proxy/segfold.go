package proxy

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
)

// Cluster mode: the segment sizes and the recent changes log of
// GET /admin/v1/segments and the console are folded on every node from
// VIGIE_SEGMENTS (storage.Config.SharedSegments), where each change is
// published once whichever node applied it, so every node answers the
// same and a partition that moves between nodes is neither lost nor
// counted twice. Single-node mode counts them where they are applied.

// segFoldBatch is how many changes one fold commits at most.
const segFoldBatch = 256

// segmentFold reads VIGIE_SEGMENTS in order, from the position stored
// with the counts, into the store.
type segmentFold struct {
	js    jetstream.JetStream
	store *storage.Store
	log   *slog.Logger
	// wait is how long a fetch waits for changes.
	wait time.Duration
}

// startSegmentFold starts, in cluster mode, the fold of VIGIE_SEGMENTS;
// it stops with ctx.
func (s *Server) startSegmentFold(ctx context.Context) {
	if !s.cfg.Cluster.Enabled() {
		return
	}
	f := &segmentFold{js: s.bus.JetStream(), store: s.store, log: s.log.With("component", "segment-fold"), wait: time.Second}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f.run(ctx)
	}()
}

// run folds until ctx ends, opening the stream again after a failure.
func (f *segmentFold) run(ctx context.Context) {
	for ctx.Err() == nil {
		err := f.follow(ctx)
		if ctx.Err() != nil {
			return
		}
		f.log.Warn("segment changes not read; retrying", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// follow opens an ordered consumer after the stored mark and folds what
// it delivers until ctx ends or a failure.
func (f *segmentFold) follow(ctx context.Context) error {
	mark, err := f.store.ReadSegmentMark(ctx)
	if err != nil {
		return err
	}
	st, err := f.js.Stream(ctx, streams.Segments)
	if err != nil {
		return err
	}
	info := st.CachedInfo()
	epoch := uint64(info.Created.UnixNano())
	if mark.Epoch != epoch {
		if mark.Seq != 0 {
			f.log.Info("the segments stream was created again; its changes are counted from its start")
		}
		mark = storage.SegmentMark{Epoch: epoch}
	}
	if first := info.State.FirstSeq; mark.Seq+1 < first && info.State.Msgs > 0 {
		f.log.Warn("segment changes older than the stream's retention were never counted on this node", "missed_up_to", first-1)
	}
	cc := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if mark.Seq > 0 {
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, mark.Seq+1
	}
	cons, err := st.OrderedConsumer(ctx, cc)
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		batch, err := cons.Fetch(segFoldBatch, jetstream.FetchMaxWait(f.wait))
		if err != nil {
			return err
		}
		var changes []*vigiev1.SegmentChange
		last := mark.Seq
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil || md.Sequence.Stream <= last {
				continue
			}
			last = md.Sequence.Stream
			c := new(vigiev1.SegmentChange)
			if proto.Unmarshal(m.Data(), c) != nil {
				f.log.Warn("undecodable segment change skipped", "seq", last)
				continue
			}
			changes = append(changes, c)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) &&
			!errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) {
			if last == mark.Seq {
				return err
			}
		}
		if last == mark.Seq {
			continue
		}
		next := storage.SegmentMark{Epoch: epoch, Seq: last}
		if err := f.store.FoldSegmentChanges(context.WithoutCancel(ctx), changes, next); err != nil {
			return err
		}
		mark = next
	}
	return nil
}
