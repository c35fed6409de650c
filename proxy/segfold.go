package proxy

import (
	"context"
	"encoding/json"
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

// segFoldResets bounds the ordered consumer's attempts to recreate itself
// within one Fetch (1 s, then 2 s apart); past them follow starts again.
const segFoldResets = 2

// segSnapshotEvery is how often, at most, a node writes its sizes to KV
// VIGIE_SEGMENT_SIZES after they changed.
const segSnapshotEvery = 5 * time.Second

// segSnapshot is a VIGIE_SEGMENT_SIZES entry: a node's segment sizes (by
// site, then segment) counting every VIGIE_SEGMENTS message up to Seq of
// the stream incarnation Epoch.
type segSnapshot struct {
	Node  string                      `json:"node"`
	Epoch uint64                      `json:"epoch"`
	Seq   uint64                      `json:"seq"`
	Sizes map[string]map[string]int64 `json:"sizes"`
}

// segmentFold reads VIGIE_SEGMENTS in order, from the position stored
// with the counts, into the store.
type segmentFold struct {
	js    jetstream.JetStream
	store *storage.Store
	log   *slog.Logger
	// node is this node's id, its VIGIE_SEGMENT_SIZES key.
	node string
	// wait is how long a fetch waits for changes.
	wait time.Duration
}

// startSegmentFold starts, in cluster mode, the fold of VIGIE_SEGMENTS;
// it stops with ctx.
func (s *Server) startSegmentFold(ctx context.Context) {
	if !s.cfg.Cluster.Enabled() {
		return
	}
	f := &segmentFold{js: s.bus.JetStream(), store: s.store, log: s.log.With("component", "segment-fold"),
		node: s.cfg.Cluster.NodeID, wait: time.Second}
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
	if first := info.State.FirstSeq; mark.Seq+1 < first {
		// Changes this node never read have aged out (a node added
		// later, or down longer than the stream keeps them): start from
		// the sizes another node counted past them.
		if mark, err = f.seed(ctx, epoch, first); err != nil {
			return err
		}
	}
	// A bounded reset: Fetch retries a lost consumer without a context,
	// so unbounded it would hold a stop for as long as NATS is away.
	cc := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy, MaxResetAttempts: segFoldResets}
	if mark.Seq > 0 {
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, mark.Seq+1
	}
	cons, err := st.OrderedConsumer(ctx, cc)
	if err != nil {
		return err
	}
	var snapped time.Time
	dirty := false
	for ctx.Err() == nil {
		if dirty && time.Since(snapped) >= segSnapshotEvery {
			if err := f.snapshot(ctx); err != nil {
				f.log.Warn("segment sizes not shared yet", "err", err)
			} else {
				dirty = false
			}
			snapped = time.Now()
		}
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
		mark, dirty = next, true
	}
	return nil
}

// snapshot writes this node's sizes and mark to VIGIE_SEGMENT_SIZES.
func (f *segmentFold) snapshot(ctx context.Context) error {
	mark, sizes, err := f.store.SegmentSnapshot(ctx)
	if err != nil {
		return err
	}
	v, err := json.Marshal(segSnapshot{Node: f.node, Epoch: mark.Epoch, Seq: mark.Seq, Sizes: sizes})
	if err != nil {
		return err
	}
	kctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	kv, err := f.js.KeyValue(kctx, streams.BucketSegmentSizes)
	if err != nil {
		return err
	}
	_, err = kv.Put(kctx, streams.KeyToken(f.node), v)
	return err
}

// seed sets this node's sizes to those of the VIGIE_SEGMENT_SIZES entry
// of incarnation epoch that counts furthest, when it reaches first - 1
// (no change in between lost), and returns its mark; without one the
// sizes count only the changes still on the stream.
func (f *segmentFold) seed(ctx context.Context, epoch, first uint64) (storage.SegmentMark, error) {
	mark := storage.SegmentMark{Epoch: epoch}
	kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	kv, err := f.js.KeyValue(kctx, streams.BucketSegmentSizes)
	if err != nil {
		return mark, err
	}
	keys, err := kv.ListKeys(kctx)
	if err != nil {
		return mark, err
	}
	var best *segSnapshot
	for k := range keys.Keys() {
		e, err := kv.Get(kctx, k)
		if err != nil {
			continue
		}
		var s segSnapshot
		if json.Unmarshal(e.Value(), &s) != nil || s.Epoch != epoch || s.Seq+1 < first {
			continue
		}
		if best == nil || s.Seq > best.Seq {
			best = &s
		}
	}
	if best == nil {
		f.log.Warn("segment changes older than the stream's retention were never counted on this node, and no other node's sizes cover them", "missed_up_to", first-1)
		return mark, nil
	}
	mark.Seq = best.Seq
	if err := f.store.SeedSegmentSizes(ctx, mark, best.Sizes); err != nil {
		return storage.SegmentMark{}, err
	}
	f.log.Info("segment sizes taken from another node's count", "node", best.Node, "seq", best.Seq)
	return mark, nil
}
