package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigie-dev/vigie/internal/streams"
)

// decisionsValue is a VIGIE_DECISIONS entry: node's cumulative decision
// counters of site and hour (rollup's encoding).
type decisionsValue struct {
	Site string `json:"site"`
	Node string `json:"node"`
	Hour uint32 `json:"hour"`
	Set  []byte `json:"set"`
}

// Decisions shares this node's decision counters (the console overview's
// kept, dropped, bot and rejection counts, counted where a hit arrives)
// through KV VIGIE_DECISIONS: one key per site, hour and node, written only
// by that node.
type Decisions struct {
	// JS gives the JetStream context.
	JS JetStreamer
	// Node is this node's id.
	Node string
}

// Publish puts the node's cumulative counters of site and hour
// (rollup.Publisher).
func (d Decisions) Publish(ctx context.Context, site string, hour uint32, value []byte) error {
	ctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	kv, err := bucket(ctx, d.JS, streams.BucketDecisions)
	if err != nil {
		return err
	}
	v, err := json.Marshal(decisionsValue{Site: site, Node: d.Node, Hour: hour, Set: value})
	if err != nil {
		return fmt.Errorf("cluster: decisions: %w", err)
	}
	k := streams.KeyToken(site) + "." + strconv.FormatUint(uint64(hour), 10) + "." + streams.KeyToken(d.Node)
	if _, err := kv.Put(ctx, k, v); err != nil {
		return fmt.Errorf("%w: decisions: %w", ErrUnavailable, err)
	}
	return nil
}

// DecisionsWatcher gives every other node's VIGIE_DECISIONS entries to Put
// (rollup.PeerDecisions.Put): every entry present at start, then each new
// one.
type DecisionsWatcher struct {
	// JS gives the JetStream context.
	JS JetStreamer
	// Node is this node's id: its own entries are skipped.
	Node string
	// Put receives another node's counters; required.
	Put func(site string, hour uint32, node string, value []byte) error
	// Logger receives warnings.
	Logger *slog.Logger
	// Retry is the wait before watching again after a failure. Default
	// 1s.
	Retry time.Duration
}

// Run watches VIGIE_DECISIONS until ctx ends.
func (w *DecisionsWatcher) Run(ctx context.Context) {
	keepWatching(ctx, w.Retry, w.Logger, "decision counters", w.watch)
}

func (w *DecisionsWatcher) watch(ctx context.Context) error {
	kv, err := bucket(ctx, w.JS, streams.BucketDecisions)
	if err != nil {
		return err
	}
	return follow(ctx, kv, "", watchMark{}, "decision counters", w.Logger,
		func(ctx context.Context, e jetstream.KeyValueEntry) error {
			var v decisionsValue
			if err := json.Unmarshal(e.Value(), &v); err != nil || v.Site == "" || v.Node == "" {
				w.Logger.Warn("cluster: unreadable decision counters entry skipped")
				return nil
			}
			if v.Node == w.Node {
				return nil
			}
			if err := w.Put(v.Site, v.Hour, v.Node, v.Set); err != nil {
				w.Logger.Warn("cluster: decision counters of another node not readable; skipped", "err", err)
			}
			return nil
		})
}
