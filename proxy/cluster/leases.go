package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigie-dev/vigie/internal/streams"
)

// Lease timing of the segmentation partitions (KV VIGIE_LEASES).
const (
	// LeaseTTL is how long a lease lasts after its last renewal.
	LeaseTTL = 10 * time.Second
	// LeaseRenew is how often the owner renews its leases (and takes or
	// releases partitions to even the share out).
	LeaseRenew = 3 * time.Second
	// leaseDrain is how long a node waits, between no longer reporting a
	// partition it gives up and deleting its lease, for its consumers to
	// stop.
	leaseDrain = 2 * time.Second
)

// PartitionBuckets are the KV buckets partitioned segmentation uses:
// the leases, the profiles that move with them and the segment sizes.
func PartitionBuckets() []string {
	return []string{streams.BucketLeases, streams.BucketProfiles, streams.BucketSegmentSizes}
}

// LeaseKey is the VIGIE_LEASES key of partition n: part.<n>.
func LeaseKey(n int) string { return "part." + strconv.Itoa(n) }

// leftKey is the VIGIE_LEASES key a node that stopped cleanly writes
// (left.<node>) and deletes when it starts again: the others leave it out
// of the share at once instead of waiting for its heartbeat to age out.
func leftKey(node string) string { return "left." + streams.KeyToken(node) }

// Lease is the value of a partition's lease.
type Lease struct {
	// Node is the owner's cluster.node_id.
	Node string `json:"node"`
	// ExpiresMs is when the lease ends unless renewed (Unix ms, the
	// owner's clock).
	ExpiresMs int64 `json:"expires_ms"`
}

// Leases holds this node's share of the segmentation partitions: it takes
// free or expired leases (Create, or Update on the revision it read),
// renews its own every Renew, aims at ceil(Partitions / live nodes) and
// gives up the extra ones when more nodes are live, so that they
// rebalance. A partition whose renewal fails is dropped at once, well
// before its lease expires elsewhere; Run releases every lease when it
// returns. Configure the fields, then Run; Owned and Changed may be called
// at any time. It is safe for concurrent use.
type Leases struct {
	// JS gives the JetStream context.
	JS JetStreamer
	// Node is this node's id.
	Node string
	// Partitions is cluster.partitions (at least 1).
	Partitions int
	// Live returns the ids of the live nodes (Membership.Live); this node
	// counts as live whatever it says.
	Live func(ctx context.Context) ([]string, error)
	// Logger receives lease changes (no personal data is involved).
	Logger *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// TTL and Renew default to LeaseTTL and LeaseRenew; Drain to 2 s.
	TTL, Renew, Drain time.Duration

	mu      sync.Mutex
	back    bool           // our left key was deleted (first step done)
	owned   map[int]uint64 // partition → revision of our lease
	changed chan struct{}  // closed at the next change of owned, then replaced
	quiesce func(ctx context.Context, parts []int)
}

// SetQuiesce sets what waits, before a lease this node gives up is
// deleted, until the partition's consumers have stopped (the plugin
// runtime's WaitPartitions); without it the leases wait Drain.
func (l *Leases) SetQuiesce(f func(ctx context.Context, parts []int)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.quiesce = f
}

// settle waits until the consumers of parts stopped (see SetQuiesce), at
// most half a TTL; past that the leases are released all the same (they
// would expire soon after), and the overlap with the next owner is
// logged: its writes conflict and their messages are segmented again.
func (l *Leases) settle(ctx context.Context, parts []int) {
	l.mu.Lock()
	q := l.quiesce
	l.mu.Unlock()
	if q == nil {
		sleepCtx(ctx, l.Drain)
		return
	}
	qctx, cancel := context.WithTimeout(ctx, l.TTL/2)
	defer cancel()
	q(qctx, parts)
	if ctx.Err() == nil && qctx.Err() != nil && l.Logger != nil {
		l.Logger.Warn("partitions released before their consumers stopped", "node", l.Node, "partitions", parts, "waited", l.TTL/2)
	}
}

func (l *Leases) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

func (l *Leases) init() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.owned == nil {
		l.owned = map[int]uint64{}
	}
	if l.changed == nil {
		l.changed = make(chan struct{})
	}
	if l.TTL <= 0 {
		l.TTL = LeaseTTL
	}
	if l.Renew <= 0 {
		l.Renew = LeaseRenew
	}
	if l.Drain <= 0 {
		l.Drain = leaseDrain
	}
	if l.Partitions < 1 {
		l.Partitions = 1
	}
}

// Count is the number of partitions.
func (l *Leases) Count() int { return max(l.Partitions, 1) }

// Owned returns the partitions this node holds now, sorted.
func (l *Leases) Owned() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]int, 0, len(l.owned))
	for n := range l.owned {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Changed returns a channel closed once the owned set changes after the
// call. Every caller is woken (each segmenter's partition runner listens:
// a signal only one of them received left the others consuming a
// partition given up); call it before Owned, so that a change between the
// two is not missed.
func (l *Leases) Changed() <-chan struct{} {
	l.init()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

// notify wakes every Changed caller.
func (l *Leases) notify() {
	l.mu.Lock()
	defer l.mu.Unlock()
	close(l.changed)
	l.changed = make(chan struct{})
}

// Run takes, renews and rebalances leases until ctx ends, then releases
// every lease it holds.
func (l *Leases) Run(ctx context.Context) {
	l.init()
	t := time.NewTicker(l.Renew)
	defer t.Stop()
	for {
		if err := l.Step(ctx); err != nil && ctx.Err() == nil && l.Logger != nil {
			l.Logger.Warn("partition leases not refreshed; retrying", "node", l.Node, "err", err)
		}
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.TTL/2+kvTimeout)
			l.ReleaseAll(rctx)
			cancel()
			return
		case <-t.C:
		}
	}
}

// value encodes a lease of this node from now.
func (l *Leases) value() []byte {
	b, _ := json.Marshal(Lease{Node: l.Node, ExpiresMs: l.now().Add(l.TTL).UnixMilli()})
	return b
}

// drop forgets partitions (their consumers stop) and notifies.
func (l *Leases) drop(parts []int, why string) {
	if len(parts) == 0 {
		return
	}
	l.mu.Lock()
	for _, n := range parts {
		delete(l.owned, n)
	}
	l.mu.Unlock()
	l.notify()
	if l.Logger != nil {
		l.Logger.Info("partitions given up", "node", l.Node, "partitions", parts, "why", why)
	}
}

// Step is one round: renew our leases (dropping those that fail), then
// release the ones above our share or take free and expired ones up to it.
func (l *Leases) Step(ctx context.Context) error {
	l.init()
	ctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	kv, err := bucket(ctx, l.JS, streams.BucketLeases)
	if err != nil {
		l.drop(l.Owned(), "leases unreachable")
		return err
	}
	// Renew.
	var lost []int
	for _, n := range l.Owned() {
		l.mu.Lock()
		rev := l.owned[n]
		l.mu.Unlock()
		nrev, err := kv.Update(ctx, LeaseKey(n), l.value(), rev)
		if err != nil {
			lost = append(lost, n)
			continue
		}
		l.mu.Lock()
		if _, ok := l.owned[n]; ok {
			l.owned[n] = nrev
		}
		l.mu.Unlock()
	}
	l.drop(lost, "renewal failed")
	l.mu.Lock()
	back := l.back
	l.mu.Unlock()
	if !back {
		if err := kv.Delete(ctx, leftKey(l.Node)); err != nil {
			return fmt.Errorf("%w: leases: %w", ErrUnavailable, err)
		}
		l.mu.Lock()
		l.back = true
		l.mu.Unlock()
	}
	// Our share: over the live nodes, less those that stopped cleanly.
	share := l.Count()
	if l.Live != nil {
		live, err := l.Live(ctx)
		if err != nil {
			return err
		}
		live = slices.DeleteFunc(live, func(node string) bool {
			if node == l.Node {
				return false
			}
			_, err := kv.Get(ctx, leftKey(node))
			return err == nil
		})
		if !slices.Contains(live, l.Node) {
			live = append(live, l.Node)
		}
		share = (l.Count() + len(live) - 1) / len(live)
	}
	owned := l.Owned()
	if extra := len(owned) - share; extra > 0 {
		// Give up the highest ones: stop reporting them, let the
		// consumers stop, then delete the leases.
		give := owned[len(owned)-extra:]
		l.mu.Lock()
		revs := make([]uint64, len(give))
		for i, n := range give {
			revs[i] = l.owned[n]
		}
		l.mu.Unlock()
		l.drop(give, "rebalance")
		l.settle(context.WithoutCancel(ctx), give)
		dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), kvTimeout)
		for i, n := range give {
			_ = kv.Delete(dctx, LeaseKey(n), jetstream.LastRevision(revs[i]))
		}
		dcancel()
		return nil
	}
	need := share - len(owned)
	if need <= 0 {
		return nil
	}
	var took []int
	now := l.now().UnixMilli()
	for n := range l.Count() {
		if len(took) == need {
			break
		}
		if slices.Contains(owned, n) {
			continue
		}
		var rev uint64
		e, err := kv.Get(ctx, LeaseKey(n))
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			rev, err = kv.Create(ctx, LeaseKey(n), l.value())
		case err != nil:
			return fmt.Errorf("%w: lease %d: %w", ErrUnavailable, n, err)
		default:
			var cur Lease
			if json.Unmarshal(e.Value(), &cur) == nil && cur.ExpiresMs > now && cur.Node != l.Node {
				continue // held
			}
			// Expired, undecodable or ours from before a restart.
			rev, err = kv.Update(ctx, LeaseKey(n), l.value(), e.Revision())
		}
		if err != nil {
			continue // another node was faster
		}
		l.mu.Lock()
		l.owned[n] = rev
		l.mu.Unlock()
		took = append(took, n)
	}
	if len(took) > 0 {
		l.notify()
		if l.Logger != nil {
			l.Logger.Info("partitions taken", "node", l.Node, "partitions", took)
		}
	}
	return nil
}

// ReleaseAll gives every lease up (the node stops): consumers are told
// first, then the leases are deleted and the node marked as left, so that
// the other nodes take its share at once.
func (l *Leases) ReleaseAll(ctx context.Context) {
	l.init()
	owned := l.Owned()
	l.mu.Lock()
	revs := make([]uint64, len(owned))
	for i, n := range owned {
		revs[i] = l.owned[n]
	}
	l.mu.Unlock()
	if len(owned) > 0 {
		l.drop(owned, "stopping")
		l.settle(ctx, owned)
	}
	kv, err := bucket(ctx, l.JS, streams.BucketLeases)
	if err != nil {
		return
	}
	_, _ = kv.Put(ctx, leftKey(l.Node), []byte(strconv.FormatInt(l.now().UnixMilli(), 10)))
	for i, n := range owned {
		_ = kv.Delete(ctx, LeaseKey(n), jetstream.LastRevision(revs[i]))
	}
}

// Holders returns the owner of every partition with a live lease (by
// partition), as seen now: for status pages and tests.
func (l *Leases) Holders(ctx context.Context) (map[int]string, error) {
	ctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	kv, err := bucket(ctx, l.JS, streams.BucketLeases)
	if err != nil {
		return nil, err
	}
	out := map[int]string{}
	now := l.now().UnixMilli()
	for n := range l.Count() {
		e, err := kv.Get(ctx, LeaseKey(n))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%w: lease %d: %w", ErrUnavailable, n, err)
		}
		var cur Lease
		if json.Unmarshal(e.Value(), &cur) == nil && cur.ExpiresMs > now {
			out[n] = cur.Node
		}
	}
	return out, nil
}

// sleepCtx waits d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
