package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigie-dev/vigie/internal/streams"
)

// Heartbeat and liveness of the membership (KV VIGIE_NODES).
const (
	// HeartbeatInterval is how often a node writes its membership entry.
	HeartbeatInterval = 3 * time.Second
	// LiveFor is how long after its last heartbeat a node counts as live:
	// three missed heartbeats and a margin.
	LiveFor = 10 * time.Second
)

// Member is one node's entry in KV VIGIE_NODES: a node that joined the
// cluster stays a member (the privacy requests wait for its steps) until
// an operator removes it; it is live while it heartbeats.
type Member struct {
	// Node is the node's cluster.node_id.
	Node string `json:"node"`
	// JoinedMs is when the entry was first written (Unix ms).
	JoinedMs int64 `json:"joined_ms"`
	// SeenMs is the node's last heartbeat (Unix ms, the node's clock).
	SeenMs int64 `json:"seen_ms"`
	// Live reports whether SeenMs is within LiveFor of the reader's clock;
	// computed by List, never stored.
	Live bool `json:"-"`
}

// Membership keeps this node's entry in KV VIGIE_NODES fresh and lists
// the members. Configure its fields, then Run; List and Remove may be
// called at any time. It is safe for concurrent use.
type Membership struct {
	// JS gives the JetStream context.
	JS JetStreamer
	// Node is this node's id.
	Node string
	// Logger receives warnings (no personal data is involved).
	Logger *slog.Logger
	// Now is the clock; time.Now when nil (tests set it).
	Now func() time.Time
	// Interval is the heartbeat period; HeartbeatInterval when 0.
	Interval time.Duration
}

func (m *Membership) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// Run heartbeats until ctx ends, at once and then every Interval. A
// heartbeat that fails (NATS unreachable) is retried at the next tick.
func (m *Membership) Run(ctx context.Context) {
	every := m.Interval
	if every <= 0 {
		every = HeartbeatInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := m.Heartbeat(ctx); err != nil && ctx.Err() == nil && m.Logger != nil {
			m.Logger.Warn("cluster heartbeat failed; retrying", "node", m.Node, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Heartbeat writes this node's entry once, keeping its JoinedMs.
func (m *Membership) Heartbeat(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	kv, err := bucket(ctx, m.JS, streams.BucketNodes)
	if err != nil {
		return err
	}
	key := streams.KeyToken(m.Node)
	now := m.now().UnixMilli()
	e := Member{Node: m.Node, JoinedMs: now, SeenMs: now}
	if old, gerr := kv.Get(ctx, key); gerr == nil {
		var prev Member
		if json.Unmarshal(old.Value(), &prev) == nil && prev.JoinedMs > 0 {
			e.JoinedMs = prev.JoinedMs
		}
	}
	b, _ := json.Marshal(e)
	if _, err := kv.Put(ctx, key, b); err != nil {
		return fmt.Errorf("%w: heartbeat: %w", ErrUnavailable, err)
	}
	return nil
}

// List returns every member, sorted by node id, with Live computed
// against this node's clock.
func (m *Membership) List(ctx context.Context) ([]Member, error) {
	ctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	kv, err := bucket(ctx, m.JS, streams.BucketNodes)
	if err != nil {
		return nil, err
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: members: %w", ErrUnavailable, err)
	}
	now := m.now()
	var out []Member
	for k := range keys.Keys() {
		v, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%w: member %s: %w", ErrUnavailable, k, err)
		}
		var e Member
		if json.Unmarshal(v.Value(), &e) != nil || e.Node == "" {
			continue
		}
		e.Live = now.Sub(time.UnixMilli(e.SeenMs)) < LiveFor
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Member) int {
		switch {
		case a.Node < b.Node:
			return -1
		case a.Node > b.Node:
			return 1
		}
		return 0
	})
	return out, nil
}

// Live returns the ids of the live members, sorted.
func (m *Membership) Live(ctx context.Context) ([]string, error) {
	all, err := m.List(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range all {
		if e.Live {
			out = append(out, e.Node)
		}
	}
	return out, nil
}

// Remove takes node out of the membership (an operator decommissioning a
// node that will not come back). A live node writes itself back at its
// next heartbeat.
func (m *Membership) Remove(ctx context.Context, node string) error {
	ctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	kv, err := bucket(ctx, m.JS, streams.BucketNodes)
	if err != nil {
		return err
	}
	if err := kv.Delete(ctx, streams.KeyToken(node)); err != nil {
		return fmt.Errorf("%w: remove %s: %w", ErrUnavailable, node, err)
	}
	return nil
}
