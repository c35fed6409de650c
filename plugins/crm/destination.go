package crm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/vigie-dev/vigie/plugins/crm/delivery"
	"github.com/vigie-dev/vigie/sdk"
)

// StatusKey is the key, in a destination's plugin key-value space, of its
// Status: the host reads it for GET /admin/v1/destinations and the
// metrics.
const StatusKey = "status"

// Status is a destination's health as the plugin last wrote it (after
// every batch): the connector's status, with the plugin's own counts.
type Status struct {
	delivery.Status
	// Retried counts changes deferred because the destination was
	// unavailable (down, throttling, paused); RateLimited those refused
	// by its rate limit (a 429, a pause).
	Retried     uint64 `json:"retried"`
	RateLimited uint64 `json:"rate_limited"`
	// Resync is the delivery of the last full resync's contacts.
	Resync *ResyncProgress `json:"resync,omitempty"`
	// UpdatedAt is when the plugin wrote this.
	UpdatedAt time.Time `json:"updated_at"`
}

// ResyncProgress counts what a resync run delivered.
type ResyncProgress struct {
	Run       string `json:"run"`
	Delivered uint64 `json:"delivered"`
}

// DecodeStatus reads a Status as stored under StatusKey.
func DecodeStatus(b []byte) (Status, error) {
	var s Status
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("crm: status: %w", err)
	}
	return s, nil
}

// Destination is the plugin: one destination, fed sync items by the host.
// It implements sdk.Configurer, sdk.Syncer with sdk.BatchSyncer, and
// sdk.Forgetter.
type Destination struct {
	opts Options

	// mu serializes deliveries: the host's consumers (segments, identify,
	// privacy, resync) call concurrently, and a subject's changes must
	// reach the connector in order.
	mu     sync.Mutex
	cfg    Config
	conn   delivery.Connector
	m      mapper
	streak int    // consecutive deliveries without a single success
	base   Status // counts of the previous processes (from the stored status)
	stats  Status // this process's own counts (Retried, RateLimited, Resync)
}

// NewDestination returns an unconfigured destination; o is for tests
// (resolver, retry policy).
func NewDestination(o Options) *Destination { return &Destination{opts: o} }

var (
	_ sdk.Configurer  = (*Destination)(nil)
	_ sdk.BatchSyncer = (*Destination)(nil)
	_ sdk.Forgetter   = (*Destination)(nil)
)

// Configure implements sdk.Configurer: it parses the destination, reads
// its secrets, checks its address (a host name is resolved: one resolving
// to a refused address fails here) and writes its first status.
func (d *Destination) Configure(ctx context.Context, raw []byte) error {
	cfg, err := Parse(raw)
	if err != nil {
		return err
	}
	o := d.opts
	if o.Logger == nil {
		o.Logger = slog.Default().With("connector", cfg.Connector)
	}
	conn, err := cfg.Connect(ctx, o)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil {
		_ = d.conn.Close()
	}
	d.cfg, d.conn = cfg, conn
	d.m = mapper{purposes: cfg.Purposes, segments: cfg.Segments, fields: cfg.Fields}
	h := sdk.HostFrom(ctx)
	if b, err := h.KVGet(ctx, StatusKey); err == nil {
		if st, err := DecodeStatus(b); err == nil {
			d.base = st
			if st.Resync != nil {
				r := *st.Resync
				d.stats.Resync = &r
			}
		}
	}
	d.writeStatus(ctx)
	return nil
}

// Sync implements sdk.Syncer for one item.
func (d *Destination) Sync(ctx context.Context, item *sdk.SyncItem) error {
	return d.SyncBatch(ctx, []*sdk.SyncItem{item})[0].Err
}

// Forget implements sdk.Forgetter. The destination keeps nothing about
// people: its key-value space holds only its status. The downstream
// deletion is the erasure's sync item (SyncBatch).
func (d *Destination) Forget(context.Context, []*sdk.PrivacyEvent) error { return nil }

// SyncBatch implements sdk.BatchSyncer: the items become changes, sent in
// one Deliver, and each result becomes the item's outcome.
func (d *Destination) SyncBatch(ctx context.Context, items []*sdk.SyncItem) []sdk.SyncOutcome {
	outs := make([]sdk.SyncOutcome, len(items))
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn == nil {
		for i := range outs {
			outs[i] = sdk.SyncOutcome{Err: errors.New("crm: destination not configured")}
		}
		return outs
	}
	var changes []delivery.Change
	var idx []int
	for i, it := range items {
		ch, ok, why := d.m.change(it)
		if !ok {
			outs[i] = sdk.SyncOutcome{Detail: why}
			continue
		}
		changes, idx = append(changes, ch), append(idx, i)
	}
	if len(changes) > 0 {
		dctx, cancel := deliverContext(ctx)
		results, _ := d.conn.Deliver(dctx, changes)
		cancel()
		done, failed := false, false
		for _, r := range results {
			done = done || r.Outcome == delivery.Done
			failed = failed || r.Outcome == delivery.Failed
		}
		switch {
		case done:
			d.streak = 0
		case failed:
			d.streak++
		}
		for k, r := range results {
			outs[idx[k]] = d.outcome(changes[k], r)
		}
	}
	d.writeStatus(ctx)
	return outs
}

// deliverContext bounds a Deliver below the host's call deadline (past
// it, the host takes the plugin for hung and kills it): what is not done
// in time comes back failed and retryable.
func deliverContext(ctx context.Context) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok {
		return context.WithTimeout(ctx, 8*time.Second)
	}
	margin := max(time.Second, time.Until(dl)/5)
	return context.WithDeadline(ctx, dl.Add(-margin))
}

// outcome is the item outcome of change ch's result r.
func (d *Destination) outcome(ch delivery.Change, r delivery.Result) sdk.SyncOutcome {
	switch r.Outcome {
	case delivery.Done:
		switch ch.Kind {
		case delivery.KindDelete:
			return sdk.SyncOutcome{Detail: "contact deleted downstream (" + d.cfg.Connector + ")"}
		case delivery.KindUnsubscribe:
			return sdk.SyncOutcome{Detail: "contact unsubscribed downstream (" + d.cfg.Connector + ")"}
		case delivery.KindUpsert:
			if run, ok := strings.CutPrefix(ch.EventID, "resync:"); ok {
				if d.stats.Resync == nil || d.stats.Resync.Run != run {
					d.stats.Resync = &ResyncProgress{Run: run}
				}
				d.stats.Resync.Delivered++
			}
		}
		return sdk.SyncOutcome{}
	case delivery.NotSupported:
		return sdk.SyncOutcome{NotSupported: true, Detail: r.Reason}
	}
	reason := r.Reason
	if reason == "" {
		reason = "delivery failed"
	}
	if r.Status == 429 || (r.RetryAfter > 0 && d.conn.Status().State == delivery.StatePaused) {
		d.stats.RateLimited++
	}
	if !r.Retryable {
		return sdk.SyncOutcome{Err: errors.New(reason), Permanent: true}
	}
	if !ch.At.IsZero() && time.Since(ch.At) > time.Duration(d.cfg.RetryFor) {
		return sdk.SyncOutcome{Err: fmt.Errorf("gave up after retrying for %s: %s", time.Duration(d.cfg.RetryFor), reason), Permanent: true}
	}
	// The destination's failure rather than this change's: it asked for
	// a wait (429, pause), or nothing got through twice in a row. The
	// host defers the item without counting it as one of its tries.
	if r.RetryAfter > 0 || d.streak >= 2 {
		d.stats.Retried++
		p := delivery.Policy{MinBackoff: time.Duration(d.cfg.Backoff.Min), MaxBackoff: time.Duration(d.cfg.Backoff.Max)}
		return sdk.SyncOutcome{Err: errors.New(reason), RetryAfter: max(r.RetryAfter, p.Backoff(max(d.streak, 1)))}
	}
	return sdk.SyncOutcome{Err: errors.New(reason)}
}

// writeStatus stores the destination's status in its key-value space;
// d.mu is held.
func (d *Destination) writeStatus(ctx context.Context) {
	st := Status{Status: d.conn.Status(), Retried: d.base.Retried + d.stats.Retried,
		RateLimited: d.base.RateLimited + d.stats.RateLimited, Resync: d.stats.Resync, UpdatedAt: time.Now().UTC()}
	st.Delivered += d.base.Delivered
	st.Failed += d.base.Failed
	if st.LastError == "" {
		st.LastError, st.LastErrorAt = d.base.LastError, d.base.LastErrorAt
	}
	b, err := json.Marshal(st)
	if err != nil {
		return
	}
	if err := sdk.HostFrom(ctx).KVPut(ctx, StatusKey, b, 0); err != nil {
		slog.Warn("destination status not stored", "err", err)
	}
}
