package plugins

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
)

// Names of the runtime's own making; streams and subjects are declared in
// package streams.
const (
	enrichConsumer  = "enrich"
	reasonWithdrawn = "consent-withdrawn"
)

// matches reports whether ev passes filter f.
func matches(f sdk.Filter, ev *vigiev1.Event) bool {
	return matchAny(f.Sites, ev.GetSite()) && matchAny(f.Types, ev.GetType()) && matchAny(f.Names, ev.GetName())
}

// matchAny reports whether s matches one of the patterns (exact, or prefix
// for a pattern ending in '*'); no pattern matches everything.
func matchAny(patterns []string, s string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if p == s || (strings.HasSuffix(p, "*") && strings.HasPrefix(s, p[:len(p)-1])) {
			return true
		}
	}
	return false
}

// subjectFilters returns the NATS subject filters of a manifest filter on
// prefix (sites and types narrowed on the server when they are exact).
func subjectFilters(prefix string, f sdk.Filter) []string {
	sites, types := exactOrAll(f.Sites), exactOrAll(f.Types)
	var out []string
	for _, s := range sites {
		for _, t := range types {
			out = append(out, prefix+s+"."+t)
		}
	}
	return out
}

// exactOrAll returns the patterns as subject tokens, or ["*"] when any is
// a prefix pattern or there is none.
func exactOrAll(ps []string) []string {
	if len(ps) == 0 {
		return []string{"*"}
	}
	for _, p := range ps {
		if strings.HasSuffix(p, "*") || strings.ContainsAny(p, ". >") {
			return []string{"*"}
		}
	}
	return ps
}

// decode decodes an event message; a message that does not decode can never
// succeed and is dead-lettered at once.
func decode(m jetstream.Msg) (*vigiev1.Event, error) {
	ev := &vigiev1.Event{}
	if err := proto.Unmarshal(m.Data(), ev); err != nil {
		return nil, fmt.Errorf("%w: undecodable event: %v", errPermanent, err)
	}
	return ev, nil
}

// fromPlugin reports whether ev was emitted by plugin name.
func fromPlugin(ev *vigiev1.Event, name string) bool { return ev.GetSource() == "plugin:"+name }

// enrich is the enrich stage: every event passes through the enrichers in
// configuration order (each sees only what its filter and purposes allow)
// and is published on vigie.enriched.<site>.<type>, with or without
// enrichers.
func (rt *Runtime) enrich(ctx context.Context, msgs []jetstream.Msg) []error {
	errs := make([]error, len(msgs))
	evs := make([]*vigiev1.Event, len(msgs))
	// raw is an event's message as received while no enricher changed it:
	// published as it is, without encoding it again.
	raw := make([][]byte, len(msgs))
	for i, m := range msgs {
		evs[i], errs[i] = decode(m)
		raw[i] = m.Data()
	}
	for _, p := range rt.enrichers {
		var idx []int
		var batch []*vigiev1.Event
		_, m, _, _ := p.snapshot()
		if p.enrichIdle() {
			continue // it would return every event unchanged
		}
		for i, ev := range evs {
			if errs[i] == nil && matches(m.Filter, ev) && grantsAll(ev.GetPurposes(), m.Purposes) && !fromPlugin(ev, p.spec.Name) {
				idx = append(idx, i)
				batch = append(batch, proto.Clone(ev).(*vigiev1.Event))
			}
		}
		if len(batch) == 0 {
			continue
		}
		if st, _, _, _ := p.snapshot(); st == StateFailed {
			rt.metrics.skipped.WithLabelValues(p.spec.Name).Add(float64(len(batch)))
			continue // best effort: a failed enricher does not hold events back
		}
		// At most BatchSize events per call (the stage fetches more).
		for from := 0; from < len(batch); from += rt.cfg.BatchSize {
			to := min(from+rt.cfg.BatchSize, len(batch))
			rt.enrichWith(ctx, p, batch[from:to], idx[from:to], evs, raw, errs)
		}
	}
	rt.publishEvents(ctx, evs, raw, errs)
	return errs
}

// enrichWith gives batch (copies of the events at idx) to enricher p and
// puts back what it returns, or its error, in evs, raw and errs.
func (rt *Runtime) enrichWith(ctx context.Context, p *proc, batch []*vigiev1.Event, idx []int, evs []*vigiev1.Event, raw [][]byte, errs []error) {
	var out []*vigiev1.Event
	err := p.call(ctx, func(cctx context.Context, c *sdk.Client) error {
		var err error
		out, err = c.Enrich(cctx, batch)
		return err
	})
	if err != nil {
		for _, i := range idx {
			errs[i] = &pluginError{plugin: p.spec.Name, err: err}
		}
		return
	}
	p.processed.Add(int64(len(batch)))
	rt.metrics.processed.WithLabelValues(p.spec.Name).Add(float64(len(batch)))
	byID := make(map[string]*vigiev1.Event, len(out))
	for _, ev := range out {
		byID[ev.GetId()] = ev
	}
	for _, i := range idx {
		if got := byID[evs[i].GetId()]; got != nil {
			evs[i], raw[i] = keepIdentity(evs[i], got), nil
		}
	}
}

// keepIdentity returns the enriched event with everything consent and
// pseudonymization decided copied back from the original: an enricher adds
// fields, it cannot change who an event is about or what it may be used for.
func keepIdentity(orig, got *vigiev1.Event) *vigiev1.Event {
	got.Id, got.Site, got.Type = orig.Id, orig.Site, orig.Type
	got.Mode, got.Purposes, got.Subject = orig.Mode, orig.Purposes, orig.Subject
	got.AnonymousId, got.UserId, got.GroupId, got.PreviousId = orig.AnonymousId, orig.UserId, orig.GroupId, orig.PreviousId
	got.KeyId, got.Source, got.IpPrefix = orig.KeyId, orig.Source, orig.IpPrefix
	got.TimestampMs, got.ReceivedAtMs = orig.TimestampMs, orig.ReceivedAtMs
	got.VaultedTraits = orig.VaultedTraits
	got.Sensitive = orig.Sensitive // an enricher cannot clear the mark
	return got
}

// publishEvents publishes the events without an error on the enriched
// subjects (async, then waits for every ack); a failed publish becomes that
// event's error. An event with a raw encoding is published as that.
func (rt *Runtime) publishEvents(ctx context.Context, evs []*vigiev1.Event, raw [][]byte, errs []error) {
	futs := make([]jetstream.PubAckFuture, len(evs))
	for i, ev := range evs {
		if errs[i] != nil {
			continue
		}
		data := raw[i]
		if data == nil {
			var err error
			if data, err = proto.Marshal(ev); err != nil {
				errs[i] = fmt.Errorf("%w: %v", errPermanent, err)
				continue
			}
		}
		msg := nats.NewMsg(rt.enrichedSubject(ev))
		msg.Data = data
		msg.Header.Set(nats.MsgIdHdr, ev.GetId())
		futs[i], errs[i] = rt.cfg.JetStream.PublishMsgAsync(msg)
	}
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for i, f := range futs {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			errs[i] = fmt.Errorf("publish enriched: %w", err)
		case <-timeout.C:
			errs[i] = errors.New("publish enriched: timed out")
		case <-ctx.Done():
			errs[i] = ErrNotRunning
		}
	}
}

// segment is a segmenter's handler: it profiles the subject of each
// pseudonymous event whose consent grants a profile purpose, gives the
// event and the profile to the plugin and applies its decisions. A
// subject whose consent no longer grants any profile purpose loses its
// profile (and leaves its segments).
func (rt *Runtime) segment(p *proc) handler { return rt.segmentWith(p, true) }

// segmentWith is segment; with flush false it leaves the segment changes
// it committed pending (cluster mode publishes them once the profiles are
// written back, partitions.go).
func (rt *Runtime) segmentWith(p *proc, flush bool) handler {
	return func(ctx context.Context, msgs []jetstream.Msg) []error {
		_, m, _, _ := p.snapshot()
		b := &segBatch{rt: rt, p: p, m: m, errs: make([]error, len(msgs)), now: time.Now().UnixMilli(),
			inRun: map[string]struct{}{}, inDel: map[string]struct{}{}}
		for i, msg := range msgs {
			b.add(ctx, i, msg)
		}
		// The run and the deletions left name different subjects.
		b.observe(ctx)
		b.deleteProfiles(ctx)
		b.segment(ctx)
		if !flush {
			return b.errs
		}
		if err := rt.flushChanges(ctx); err != nil {
			rt.log.Warn("segment changes not published yet", "err", err)
			rt.recover(ctx, err)
		}
		return b.errs
	}
}

// segBatch is one fetched batch in a segmenter's hands.
//
// Events are observed in runs (one transaction each). A run is cut only
// where the profile of a subject already in it is deleted, so that each
// subject's order is kept: the events of visitors who do not grant a
// profiling purpose (each one deletes an absent profile) do not cut it.
// Cutting at each of them made one write transaction per event on a site
// where half the visitors refuse, each queued behind the ingestion's
// commits in Badger's write pipeline; and since every transaction,
// read-only or not, waits for the commits in flight when it starts, those
// deletions are themselves batched: deleted together, in one transaction,
// before the run takes an event of one of their subjects, and at the end.
// The run and the deletions waiting never name the same subject.
type segBatch struct {
	rt   *Runtime
	p    *proc
	m    sdk.Manifest
	errs []error // one per message
	now  int64   // Unix ms, for the profiles given to the plugin
	// idx and items are the events for the plugin, with their profiles.
	idx   []int
	items []*vigiev1.SegmentInput
	// run holds the events waiting to be observed (runIdx: their
	// messages; inRun: their subjects).
	runIdx []int
	run    []*vigiev1.Event
	inRun  map[string]struct{}
	// dels holds the profiles waiting to be deleted (delIdx: the messages
	// asking it; inDel: their subjects).
	delIdx []int
	dels   []storage.ProfileRef
	inDel  map[string]struct{}
}

// add takes message i: into the run, into the deletions, or nowhere.
func (b *segBatch) add(ctx context.Context, i int, msg jetstream.Msg) {
	ev, err := decode(msg)
	if err != nil {
		b.errs[i] = err
		return
	}
	if ev.GetMode() != vigiev1.Mode_MODE_PSEUDONYMOUS || ev.GetSubject() == "" ||
		fromPlugin(ev, b.p.spec.Name) || !matches(b.m.Filter, ev) || machineEmail(ev) {
		return
	}
	key := ev.GetSite() + "\x00" + ev.GetSubject()
	if !grantsAny(ev.GetPurposes(), b.rt.cfg.ProfilePurposes) {
		if _, ok := b.inRun[key]; ok {
			b.observe(ctx)
		}
		b.delIdx = append(b.delIdx, i)
		if _, ok := b.inDel[key]; !ok {
			b.dels = append(b.dels, storage.ProfileRef{Site: ev.GetSite(), Subject: ev.GetSubject()})
			b.inDel[key] = struct{}{}
		}
		return
	}
	if sensitiveEvent(ev) {
		return // never profiled, segmented or modelled
	}
	if _, ok := b.inDel[key]; ok {
		b.deleteProfiles(ctx)
	}
	b.runIdx, b.run = append(b.runIdx, i), append(b.run, ev)
	b.inRun[key] = struct{}{}
}

// deleteProfiles deletes the profiles waiting, in one call.
func (b *segBatch) deleteProfiles(ctx context.Context) {
	if len(b.dels) == 0 {
		return
	}
	clear(b.inDel)
	if _, err := b.rt.cfg.Store.DeleteProfiles(ctx, b.dels, reasonWithdrawn); err != nil {
		for _, i := range b.delIdx {
			b.errs[i] = err
		}
	}
	b.delIdx, b.dels = b.delIdx[:0], b.dels[:0]
}

// observe observes the run and keeps, for the plugin, the events whose
// consent grants its purposes and that it did not decide on before.
func (b *segBatch) observe(ctx context.Context) {
	if len(b.run) == 0 {
		return
	}
	clear(b.inRun)
	res, err := b.rt.cfg.Store.ObserveEventsFor(ctx, b.p.spec.Name, b.run)
	for k, i := range b.runIdx {
		switch {
		case err != nil:
			b.errs[i] = err
		case errors.Is(res[k].Err, storage.ErrNotFound):
			// Seen before, and the profile was deleted since (a
			// later event withdrew consent): nothing to segment.
		case res[k].Err != nil:
			b.errs[i] = res[k].Err
		case res[k].Applied:
			// Delivered again (an acknowledgement lost, a partition
			// moved after the owner wrote the profile back): the plugin
			// decided on it already, and its own state (the response
			// model's counts) would count it twice.
		case grantsAll(b.run[k].GetPurposes(), b.m.Purposes):
			b.idx = append(b.idx, i)
			b.items = append(b.items, &vigiev1.SegmentInput{Event: b.run[k], Profile: res[k].Profile.Proto(b.now)})
		}
	}
	b.runIdx, b.run = b.runIdx[:0], b.run[:0]
}

// segment gives the kept events to the plugin and applies its decisions.
func (b *segBatch) segment(ctx context.Context) {
	if len(b.items) == 0 {
		return
	}
	p := b.p
	var results []sdk.SegmentResult
	var itemErrs []error
	err := p.call(ctx, func(cctx context.Context, c *sdk.Client) error {
		var err error
		results, itemErrs, err = c.SegmentBatch(cctx, b.items)
		return err
	})
	var outIdx []int
	var outcomes []storage.SegmentOutcome
	for k, i := range b.idx {
		if err != nil {
			b.errs[i] = err
			continue
		}
		if itemErrs[k] != nil {
			b.errs[i] = itemErrs[k]
			continue
		}
		ev := b.items[k].GetEvent()
		o := storage.SegmentOutcome{
			Plugin: p.spec.Name, Site: ev.GetSite(), Subject: ev.GetSubject(), EventID: ev.GetId(),
			Changes: results[k].Changes, AtMs: ev.GetTimestampMs(),
		}
		if u := results[k].Update; u != nil {
			o.ScoreDelta, o.Attributes = u.GetScoreDelta(), u.GetAttributes()
		}
		outIdx, outcomes = append(outIdx, i), append(outcomes, o)
	}
	if len(outcomes) == 0 {
		return
	}
	applied, aerr := b.rt.cfg.Store.ApplySegments(ctx, outcomes)
	for k, i := range outIdx {
		switch {
		case aerr != nil:
			b.errs[i] = aerr
		case applied[k].Err != nil && !errors.Is(applied[k].Err, storage.ErrNotFound):
			b.errs[i] = applied[k].Err
		default:
			p.processed.Add(1)
			b.rt.metrics.processed.WithLabelValues(p.spec.Name).Inc()
		}
	}
}

// machineEmail reports whether ev is an e-mail open or click made by a
// machine (a privacy proxy prefetching images, a security scanner following
// links): such events are kept but neither profiled nor segmented, so they
// count in no segment and no score.
func machineEmail(ev *vigiev1.Event) bool {
	c := ev.GetEmail().GetClass()
	return c != "" && c != "human"
}

// sensitiveEvent reports whether the pipeline detected special categories
// of data (GDPR Art. 9) in ev: such an event is stored (anonymous unless
// the site's policy and the visitor's explicit consent allow more) but
// never given to a segmenter (no profile, no segment, no model) nor to a
// syncer, whatever its consent.
func sensitiveEvent(ev *vigiev1.Event) bool { return len(ev.GetSensitive()) > 0 }
