package rollup

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/storage"
)

// Decision counter limits.
const (
	numShards = 16
	// maxCellsPerShard bounds the distinct (site, hour, outcome, reason,
	// purposes) counters of one shard; past it new ones count as reason
	// "other".
	maxCellsPerShard = 4096
	// maxReasonLen bounds a reason; longer ones are cut.
	maxReasonLen = 64
	// reasonOther replaces reasons past maxCellsPerShard.
	reasonOther = "other"
	// decisionsSettled is how long after its hour's end a DecisionCounter
	// may still write an hour (it keeps a counter two hours, flushes every
	// few seconds); queries cache only hours settled that long.
	decisionsSettled     = 3 * time.Hour
	defaultDecisionFlush = 10 * time.Second
)

// DecisionConfig configures NewDecisionCounter. The zero value of every
// optional field selects the documented default.
type DecisionConfig struct {
	// Store holds the counters. Required. One DecisionCounter per store:
	// its flush reads, adds and rewrites the stored hours.
	Store *storage.Store
	// FlushInterval is how often Run writes the counters. Default 10s.
	FlushInterval time.Duration
	// Retention is how long an hour's counters are kept after the hour.
	// Default DefaultRetention.
	Retention time.Duration
	// Publish, in cluster mode, receives after each flush the cumulative
	// counters of each hour written (the other nodes' PeerDecisions
	// hold them). Default nil: none.
	Publish Publisher
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives flush failures. Default slog.Default().
	Logger *slog.Logger
}

// DecisionCounter counts, at ingestion, what happened to each hit: kept
// pseudonymous, kept anonymous or dropped, and why. Hits that never reach
// NATS (dropped, bots, rejected requests) are counted only here. Counting
// is lock-free once a (site, hour, outcome, reason) counter exists: a read
// lock on one of 16 shards, a map lookup and an atomic add. Counters live
// in memory per site and hour and are written to the store by Flush (Run
// calls it every FlushInterval and once more when it stops); a crash loses
// at most one interval.
type DecisionCounter struct {
	cfg     DecisionConfig
	seed    maphash.Seed
	shards  [numShards]decisionShard
	flushMu sync.Mutex
	// unpublished are the hours whose Publish failed (under flushMu).
	unpublished map[siteHour][]byte
}

type decisionShard struct {
	mu sync.RWMutex
	m  map[cellKey]*atomic.Uint64
	_  [32]byte // keep shards on separate cache lines
}

// cellKey identifies one counter.
type cellKey struct {
	site    string
	reason  string
	hour    uint32
	outcome consent.Outcome
	decided bool        // counted by CountDecision: part of consent rates
	granted consent.Set // with decided
}

// NewDecisionCounter returns a counter writing to cfg.Store. It starts
// nothing; call Run.
func NewDecisionCounter(cfg DecisionConfig) (*DecisionCounter, error) {
	if cfg.Store == nil {
		return nil, fmt.Errorf("%w: Store is required", ErrInvalidConfig)
	}
	if cfg.FlushInterval < 0 || cfg.Retention < 0 {
		return nil, fmt.Errorf("%w: negative FlushInterval or Retention", ErrInvalidConfig)
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = defaultDecisionFlush
	}
	if cfg.Retention == 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	d := &DecisionCounter{cfg: cfg, seed: maphash.MakeSeed()}
	for i := range d.shards {
		d.shards[i].m = map[cellKey]*atomic.Uint64{}
	}
	return d, nil
}

// Count counts one hit of site (empty when the request was rejected before
// a site was known) with outcome and reason, for hits that were not
// decided by consent: a bot ("bot"), a rejected request ("bad write key",
// "oversized"…). reason is a short constant, never personal data (at most
// 64 bytes are kept).
func (d *DecisionCounter) Count(site string, outcome consent.Outcome, reason string) {
	d.count(cellKey{site: site, reason: reason, outcome: outcome}, 1)
}

// CountN counts n hits like Count (the rejected events of a batch).
func (d *DecisionCounter) CountN(site string, outcome consent.Outcome, reason string, n uint64) {
	if n > 0 {
		d.count(cellKey{site: site, reason: reason, outcome: outcome}, n)
	}
}

// CountDecision counts one hit of site that reached the consent decision
// dec (kept pseudonymous, anonymous, or dropped for lack of consent): its
// outcome and reason, and each granted purpose for the consent rates.
func (d *DecisionCounter) CountDecision(site string, dec consent.Decision) {
	d.count(cellKey{site: site, reason: dec.Reason, outcome: dec.Outcome, decided: true, granted: dec.Granted}, 1)
}

func (d *DecisionCounter) count(k cellKey, n uint64) {
	k.hour = uint32(d.cfg.Now().UnixMilli() / msPerHour)
	if len(k.reason) > maxReasonLen {
		k.reason = k.reason[:maxReasonLen]
	}
	sh := &d.shards[maphash.Comparable(d.seed, k)%numShards]
	sh.mu.RLock()
	c := sh.m[k]
	sh.mu.RUnlock()
	if c == nil {
		c = sh.create(k)
	}
	c.Add(n)
}

// create returns the counter of k, made under the shard's write lock.
func (sh *decisionShard) create(k cellKey) *atomic.Uint64 {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if c := sh.m[k]; c != nil {
		return c
	}
	if len(sh.m) >= maxCellsPerShard {
		k.reason, k.granted = reasonOther, consent.Set{}
		if c := sh.m[k]; c != nil {
			return c
		}
	}
	k.site, k.reason = strings.Clone(k.site), strings.Clone(k.reason)
	c := new(atomic.Uint64)
	sh.m[k] = c
	return c
}

// siteHour names one stored decision set.
type siteHour struct {
	site string
	hour uint32
}

// Flush adds the counts since the last Flush to the stored hours. On
// failure the counts are kept for the next Flush.
func (d *DecisionCounter) Flush(ctx context.Context) error {
	d.flushMu.Lock()
	defer d.flushMu.Unlock()
	cur := uint32(d.cfg.Now().UnixMilli() / msPerHour)
	type taken struct {
		c *atomic.Uint64
		n uint64
	}
	var took []taken
	deltas := map[siteHour]*decisionSet{}
	for i := range d.shards {
		sh := &d.shards[i]
		sh.mu.Lock()
		for k, c := range sh.m {
			n := c.Swap(0)
			if n == 0 {
				if k.hour+2 < cur {
					delete(sh.m, k)
				}
				continue
			}
			took = append(took, taken{c, n})
			sk := siteHour{k.site, k.hour}
			ds := deltas[sk]
			if ds == nil {
				ds = newDecisionSet()
				deltas[sk] = ds
			}
			ds.addCell(k, n)
		}
		sh.mu.Unlock()
	}
	if len(deltas) == 0 {
		d.publish(ctx, nil)
		return nil
	}
	err := d.write(ctx, deltas)
	if err != nil {
		for _, t := range took {
			t.c.Add(t.n)
		}
		return fmt.Errorf("rollup: flush decisions: %w", err)
	}
	return nil
}

// write adds deltas to the stored hours.
func (d *DecisionCounter) write(ctx context.Context, deltas map[siteHour]*decisionSet) error {
	entries := make([]storage.RollupEntry, 0, len(deltas))
	for sk, delta := range deltas {
		v, err := d.cfg.Store.Rollup(ctx, storage.RollupDecisions, sk.site, sk.hour)
		switch {
		case errors.Is(err, storage.ErrNotFound):
		case err != nil:
			return err
		default:
			stored, err := decodeDecisions(v)
			if err != nil {
				d.cfg.Logger.Warn("rollup: stored decision counters do not decode; starting them again", "site", sk.site, "err", err)
			} else {
				delta.merge(stored)
			}
		}
		entries = append(entries, storage.RollupEntry{
			Kind: storage.RollupDecisions, Site: sk.site, Index: sk.hour,
			Value:     delta.appendBinary(nil),
			ExpiresAt: indexStart(storage.RollupDecisions, sk.hour+1).Add(d.cfg.Retention),
		})
	}
	if err := d.cfg.Store.PutRollups(ctx, entries, nil); err != nil {
		return err
	}
	d.publish(ctx, entries)
	return nil
}

// publish hands Publish the hours just written and those whose
// publication failed before; a failure keeps the hour for the next flush.
// It is called under flushMu.
func (d *DecisionCounter) publish(ctx context.Context, written []storage.RollupEntry) {
	if d.cfg.Publish == nil {
		return
	}
	if d.unpublished == nil {
		d.unpublished = map[siteHour][]byte{}
	}
	for _, e := range written {
		d.unpublished[siteHour{e.Site, e.Index}] = e.Value
	}
	for sk, v := range d.unpublished {
		if err := d.cfg.Publish(ctx, sk.site, sk.hour, v); err != nil {
			d.cfg.Logger.Warn("rollup: decision counters not shared with the other nodes; retrying at the next flush", "err", err)
			return
		}
		delete(d.unpublished, sk)
	}
}

// Run flushes every FlushInterval until ctx is done, then flushes once
// more (with up to 10 s of its own) and returns that flush's error.
func (d *DecisionCounter) Run(ctx context.Context) error {
	t := time.NewTicker(d.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			return d.Flush(fctx)
		case <-t.C:
			if err := d.Flush(ctx); err != nil && ctx.Err() == nil {
				d.cfg.Logger.Warn("rollup: decision counters not written; retrying", "err", err)
			}
		}
	}
}

// decisionKey is one (outcome, reason) pair.
type decisionKey struct {
	outcome consent.Outcome
	reason  string
}

// decisionSet is the decision counters of one site and hour.
type decisionSet struct {
	reasons  map[decisionKey]uint64
	purposes map[string]uint64 // granted purposes of decided hits
	decided  uint64            // hits counted by CountDecision
	size     int               // encoded size (decoded sets)
}

func newDecisionSet() *decisionSet {
	return &decisionSet{reasons: map[decisionKey]uint64{}, purposes: map[string]uint64{}}
}

// addCell adds n hits of cell k.
func (s *decisionSet) addCell(k cellKey, n uint64) {
	s.reasons[decisionKey{k.outcome, k.reason}] += n
	if !k.decided {
		return
	}
	s.decided += n
	for _, p := range k.granted.Names() {
		s.purposes[p] += n
	}
}

// merge adds o to s.
func (s *decisionSet) merge(o *decisionSet) {
	for k, v := range o.reasons {
		s.reasons[k] += v
	}
	for k, v := range o.purposes {
		s.purposes[k] += v
	}
	s.decided += o.decided
}

// decisionsVersion is the first byte of encoded decision counters.
const decisionsVersion = 1

// appendBinary appends the stored form (uvarints unless said):
//
//	version byte (1)
//	n, n × (outcome byte, len, reason, count)
//	m, m × (len, purpose, count)
//	decided
func (s *decisionSet) appendBinary(dst []byte) []byte {
	dst = append(dst, decisionsVersion)
	dst = binary.AppendUvarint(dst, uint64(len(s.reasons)))
	for k, v := range s.reasons {
		dst = append(dst, byte(k.outcome))
		dst = binary.AppendUvarint(dst, uint64(len(k.reason)))
		dst = append(dst, k.reason...)
		dst = binary.AppendUvarint(dst, v)
	}
	dst = binary.AppendUvarint(dst, uint64(len(s.purposes)))
	for k, v := range s.purposes {
		dst = binary.AppendUvarint(dst, uint64(len(k)))
		dst = append(dst, k...)
		dst = binary.AppendUvarint(dst, v)
	}
	return binary.AppendUvarint(dst, s.decided)
}

// decodeDecisions parses the stored form.
func decodeDecisions(v []byte) (*decisionSet, error) {
	if len(v) == 0 || v[0] != decisionsVersion {
		return nil, fmt.Errorf("%w: unknown decisions version", ErrCorrupt)
	}
	d := decoder{b: v[1:]}
	s := newDecisionSet()
	s.size = len(v)
	for range d.count(3) {
		if len(d.b) == 0 {
			d.err = fmt.Errorf("truncated")
			break
		}
		o := consent.Outcome(d.b[0])
		d.b = d.b[1:]
		r := d.bytes()
		n := d.uvarint()
		if d.err == nil {
			s.reasons[decisionKey{o, string(r)}] += n
		}
	}
	for range d.count(2) {
		p := d.bytes()
		n := d.uvarint()
		if d.err == nil {
			s.purposes[string(p)] += n
		}
	}
	s.decided = d.uvarint()
	if d.err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, d.err)
	}
	return s, nil
}
