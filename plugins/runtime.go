// Package plugins is Vigie's plugin runtime: it launches each configured
// plugin as a separate process with hashicorp/go-plugin (through package
// sdk: gRPC only, automatic mutual TLS, no host environment, checksum of
// external binaries, children that die with the host), checks its
// manifest, and feeds it from NATS JetStream with a durable pull consumer.
//
// Events flow through three stages:
//
//	vigie.events.<site>.<type>     → enrichers, in configuration order
//	vigie.enriched.<site>.<type>   → segmenters (profiles, scores, segments)
//	  (vigie.enriched.<site>.<partition>.<type> in cluster mode, see partitions.go)
//	vigie.segments.<site>.<seg>.*  → syncers (with identify events)
//
// The runtime declares the streams it reads and writes (package streams)
// and its durable consumers at start, and again whenever an error says one
// is missing (NATS restarted on an empty store): it carries on rather than
// failing forever. NATS being down at start delays the consumers, not
// Start.
//
// Delivery is at least once: a message is acked after the plugin returns,
// naked with exponential backoff on error, and after Config.MaxDeliver
// deliveries copied to the dead-letter stream (vigie.dead.<plugin>) with
// the error, from where Replay re-queues it. A plugin process that dies or
// hangs is restarted with backoff; its unacknowledged messages are
// delivered again, one at a time, so that a poison event is isolated.
// Ingestion never waits for plugins: it only writes to VIGIE_EVENTS.
//
// A Runtime follows the configure, start, stop lifecycle: New validates,
// Start launches, Stop stops every consumer and process.
package plugins

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// Runtime runs the configured plugins.
type Runtime struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics

	procs map[string]*proc // by name
	order []*proc          // configuration order

	mu        sync.Mutex
	enrichers []*proc
	consumers map[string][]*consumer // by plugin name ("" for the enrich stage)

	// decl declares the streams; recoverMu serializes recover.
	decl      *streams.Declarer
	recoverMu sync.Mutex

	flushMu  sync.Mutex
	loopStop context.CancelFunc // stops serve goroutines
	procStop context.CancelFunc
	loops    sync.WaitGroup // serve goroutines
	supers   sync.WaitGroup
	stages   [3]stage // enrich, segment, sync: stopped in this order
	started  bool

	// Background jobs (resync.go): they stop with the consumers.
	jobCtx    context.Context
	jobStop   context.CancelFunc
	jobs      sync.WaitGroup
	resyncing map[string]bool // by plugin, under mu

	// home is cluster mode's shared profiles (partitions.go).
	home profileHome
}

// Stages, in the order events flow through them and in which Stop stops
// them: each stage stops only once the one upstream is quiet, so no message
// is delivered to a pull request that its consumer has just abandoned
// (JetStream would count it as delivered and resend it only after AckWait).
const (
	stageEnrich = iota
	stageSegment
	stageSync
)

// stage is the consumers of one stage.
type stage struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New validates cfg and returns a runtime that has not started.
func New(cfg Config) (*Runtime, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	rt := &Runtime{cfg: cfg, log: cfg.Logger, procs: map[string]*proc{}, consumers: map[string][]*consumer{},
		decl: streams.NewDeclarer(cfg.Streams)}
	rt.metrics = newMetrics(cfg.Registerer)
	for _, s := range cfg.Plugins {
		p := newProc(rt, s)
		rt.procs[s.Name] = p
		rt.order = append(rt.order, p)
	}
	return rt, nil
}

// effective is the manifest m of a plugin as configured by s: the
// purposes of its configuration added to its own.
func effective(s Spec, m sdk.Manifest) sdk.Manifest {
	for _, p := range s.Purposes {
		if !slices.Contains(m.Purposes, p) {
			m.Purposes = append(slices.Clip(m.Purposes), p)
		}
	}
	return m
}

// checkManifest refuses a manifest (effective) that does not fit its
// configuration.
func (rt *Runtime) checkManifest(s Spec, m sdk.Manifest) error {
	if s.Path == "" && m.Name != s.builtinName() {
		return fmt.Errorf("%w: configured as built-in %q but the plugin's manifest says %q", ErrManifest, s.builtinName(), m.Name)
	}
	if s.Path != "" && m.Name != s.Name {
		return fmt.Errorf("%w: configured as %q but the plugin's manifest says %q", ErrManifest, s.Name, m.Name)
	}
	if len(m.Kinds) == 0 {
		return fmt.Errorf("%w: %q serves no hook", ErrManifest, s.Name)
	}
	for _, p := range m.Purposes {
		if len(rt.cfg.Purposes) > 0 && !slices.Contains(rt.cfg.Purposes, p) {
			return fmt.Errorf("%w: %q needs purpose %q, which is not configured", ErrManifest, s.Name, p)
		}
	}
	if m.Has(sdk.CapContactsResolve) && len(m.Purposes) == 0 {
		return fmt.Errorf("%w: %q asks for contacts.resolve without declaring the purposes it needs them for", ErrManifest, s.Name)
	}
	if rt.cfg.CheckManifest != nil {
		if err := rt.cfg.CheckManifest(s, m); err != nil {
			return fmt.Errorf("%w: %w", ErrManifest, err)
		}
	}
	return nil
}

// Start creates the streams, launches every plugin, waits (until ctx is
// done) for each one's first start, and starts the consumers (with no
// plugin, the enrich stage alone). A plugin
// that does not start is reported and retried; it does not stop Start.
// Neither does NATS being unreachable: streams and consumers are then
// declared, in the background, once it is back.
func (rt *Runtime) Start(ctx context.Context) error {
	if rt.started {
		return fmt.Errorf("plugins: already started")
	}
	rt.started = true
	// Without any plugin the enrich stage still runs, as a pass-through:
	// the enriched stream is where the built-in consumers (the console's
	// rollups) read every event, whatever plugins are configured.
	if !rt.connected() {
		rt.log.Warn("nats unreachable; streams and consumers will be declared once it is back")
	} else if err := rt.decl.Ensure(ctx, rt.cfg.JetStream); err != nil {
		rt.log.Warn("streams not declared yet; retrying in the background", "err", err)
	}
	pctx, pstop := context.WithCancel(context.Background())
	lctx, lstop := context.WithCancel(context.Background())
	rt.procStop, rt.loopStop = pstop, lstop
	rt.mu.Lock()
	rt.jobCtx, rt.jobStop = context.WithCancel(context.Background())
	rt.mu.Unlock()
	for i := range rt.stages {
		rt.stages[i].ctx, rt.stages[i].cancel = context.WithCancel(context.Background())
	}
	for _, p := range rt.order {
		rt.supers.Add(1)
		go func() {
			defer rt.supers.Done()
			p.run(pctx)
		}()
	}
	// Wait for each plugin's first start, so the enricher chain is known.
	wctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	for _, p := range rt.order {
		for {
			st, _, _, _ := p.snapshot()
			if st == StateRunning || st == StateFailed || wctx.Err() != nil {
				break
			}
			sleep(wctx, 20*time.Millisecond)
		}
	}
	rt.refreshEnrichers()
	enrich := &consumer{rt: rt, durable: enrichConsumer, stream: streams.Events, stage: stageEnrich,
		filters: []string{streams.EventsPrefix + ">"}, handle: rt.enrich}
	if err := rt.openConsumer(ctx, "", enrich); err != nil {
		// NATS is not there yet, or not ready: keep trying in the
		// background.
		rt.loops.Add(1)
		go func() {
			defer rt.loops.Done()
			rt.startConsumers(lctx, "", enrich)
		}()
	}
	for _, p := range rt.order {
		rt.loops.Add(1)
		go func() {
			defer rt.loops.Done()
			rt.serve(lctx, p)
		}()
	}
	// Housekeeping publishes segment changes: it stops with the last stage.
	last := &rt.stages[stageSync]
	last.wg.Add(1)
	go func() {
		defer last.wg.Done()
		rt.housekeeping(last.ctx)
	}()
	return nil
}

// refreshEnrichers recomputes the enricher chain from the manifests.
func (rt *Runtime) refreshEnrichers() {
	var es []*proc
	for _, p := range rt.order {
		if _, m, _, _ := p.snapshot(); slices.Contains(m.Kinds, sdk.KindEnricher) {
			es = append(es, p)
		}
	}
	rt.mu.Lock()
	rt.enrichers = es
	rt.mu.Unlock()
}

// serve waits until p has run once, then starts its segmenter and syncer
// consumers.
func (rt *Runtime) serve(lctx context.Context, p *proc) {
	if _, err := p.waitReady(lctx); err != nil {
		return
	}
	rt.refreshEnrichers()
	_, m, _, _ := p.snapshot()
	var cs []*consumer
	switch {
	case slices.Contains(m.Kinds, sdk.KindSegmenter) && rt.cfg.Partitions != nil:
		rt.loops.Add(1)
		go func() {
			defer rt.loops.Done()
			rt.runPartitions(lctx, p, m)
		}()
	case slices.Contains(m.Kinds, sdk.KindSegmenter):
		cs = append(cs, &consumer{rt: rt, durable: "segment-" + p.spec.Name, stream: streams.Enriched, stage: stageSegment,
			filters: enrichedFilters(m.Filter, false, ""), owner: p, handle: rt.segment(p)})
	}
	if slices.Contains(m.Kinds, sdk.KindSyncer) {
		cs = append(cs,
			&consumer{rt: rt, durable: "sync-" + p.spec.Name + "-segments", stream: streams.Segments, stage: stageSync,
				filters: []string{streams.SegmentsPrefix + ">"}, owner: p, handle: rt.sync(p)},
			&consumer{rt: rt, durable: "sync-" + p.spec.Name + "-privacy", stream: streams.Privacy, stage: stageSync,
				filters: []string{streams.PrivacyPrefix + ">"}, owner: p, handle: rt.sync(p), onDead: rt.privacyDead(p)},
			&consumer{rt: rt, durable: "sync-" + p.spec.Name + "-identify", stream: streams.Enriched, stage: stageSync,
				filters: []string{streams.EnrichedFilter("*", "identify", rt.cfg.Partitions != nil, "*")}, owner: p, handle: rt.sync(p)},
			&consumer{rt: rt, durable: resyncConsumer(p.spec.Name), stream: streams.Dead, stage: stageSync,
				filters: []string{streams.SyncSubjects(p.spec.Name)}, owner: p, handle: rt.sync(p)})
	} else {
		// Every plugin hears of erasures; syncers through Sync above.
		cs = append(cs, rt.privacyConsumer(p, m))
	}
	rt.startConsumers(lctx, p.spec.Name, cs...)
	if slices.Contains(m.Kinds, sdk.KindSyncer) {
		rt.resumeResync(lctx, p)
	}
}

// startConsumers opens and runs each of cs (see openConsumer), retrying
// until it succeeds or lctx is done.
func (rt *Runtime) startConsumers(lctx context.Context, plugin string, cs ...*consumer) {
	for _, c := range cs {
		for lctx.Err() == nil {
			err := rt.openConsumer(lctx, plugin, c)
			if err == nil {
				break
			}
			if !errors.Is(err, ErrBusDown) {
				rt.log.Error("consumer not created; retrying", "plugin", plugin, "consumer", c.durable, "err", err)
				rt.recover(lctx, err)
			}
			sleep(lctx, 2*time.Second)
		}
	}
}

// openConsumer declares the streams if that never succeeded yet, then
// starts c (see startConsumer). It returns ErrBusDown at once when NATS is
// not connected.
func (rt *Runtime) openConsumer(ctx context.Context, plugin string, c *consumer) error {
	if !rt.connected() {
		return ErrBusDown
	}
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := rt.decl.Ensure(octx, rt.cfg.JetStream); err != nil {
		return err
	}
	return rt.startConsumer(octx, plugin, c)
}

// startConsumer opens c and its replay consumer and runs both in c's
// stage (unless that stage is already stopping).
func (rt *Runtime) startConsumer(ctx context.Context, plugin string, c *consumer) error {
	if err := c.open(ctx); err != nil {
		return err
	}
	replay := &consumer{rt: rt, durable: c.durable + "-replay", stream: streams.Dead, stage: c.stage,
		filters: []string{streams.ReplaySubject(c.durable)}, owner: c.owner, handle: c.handle, part: c.part}
	if err := replay.open(ctx); err != nil {
		return err
	}
	st := &rt.stages[c.stage]
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if st.ctx.Err() != nil {
		return nil // stopping: Stop cancels under rt.mu, so no Add races its Wait
	}
	rt.consumers[plugin] = append(rt.consumers[plugin], c, replay)
	for _, cc := range []*consumer{c, replay} {
		st.wg.Add(1)
		ctx := st.ctx
		if c.part != nil {
			ctx = c.part.ctx
			c.part.wg.Add(1)
		}
		go func() {
			defer st.wg.Done()
			if c.part != nil {
				defer c.part.wg.Done()
			}
			cc.run(ctx)
		}()
	}
	return nil
}

// connected reports whether the NATS connection is up.
func (rt *Runtime) connected() bool {
	nc := rt.cfg.JetStream.Conn()
	return nc != nil && nc.IsConnected()
}

// recover declares the streams and every running consumer (with its replay
// twin) again when cause says one is missing (streams.IsMissing), at most
// once per streams.DefaultInterval however many consumers and publishers
// report it. Consumers not running yet are retried by startConsumers.
func (rt *Runtime) recover(ctx context.Context, cause error) {
	if !streams.IsMissing(cause) || ctx.Err() != nil {
		return
	}
	rt.recoverMu.Lock()
	defer rt.recoverMu.Unlock()
	ran, err := rt.decl.Redeclare(ctx, rt.cfg.JetStream)
	if !ran {
		return
	}
	if err != nil {
		rt.log.Warn("a stream or consumer is missing; streams not declared again yet", "cause", cause, "err", err)
		return
	}
	rt.mu.Lock()
	var cs []*consumer
	for _, list := range rt.consumers {
		cs = append(cs, list...)
	}
	rt.mu.Unlock()
	failed := 0
	for _, c := range cs {
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := c.open(octx); err != nil {
			failed++
			rt.log.Warn("consumer not declared again yet", "consumer", c.durable, "err", err)
		}
		cancel()
	}
	rt.log.Warn("a stream or consumer was missing; declared them again", "cause", cause, "consumers", len(cs), "failed", failed)
}

// housekeeping publishes segment changes left over by a crash and refreshes
// the lag gauges.
func (rt *Runtime) housekeeping(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		if err := rt.flushChanges(ctx); err != nil && ctx.Err() == nil {
			rt.log.Warn("segment changes not published yet", "err", err)
			rt.recover(ctx, err)
		}
		rt.refreshLag(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// flushChanges publishes committed segment changes (Nats-Msg-Id makes a
// republished one a duplicate JetStream drops) and deletes them.
func (rt *Runtime) flushChanges(ctx context.Context) error {
	if rt.cfg.Partitions != nil {
		// Cluster mode: not while a batch's changes may still be taken
		// back (its profiles not written to KV yet, partitions.go).
		rt.home.apply.Lock()
		defer rt.home.apply.Unlock()
	}
	rt.flushMu.Lock()
	defer rt.flushMu.Unlock()
	for {
		pend, err := rt.cfg.Store.PendingChanges(ctx, 256)
		if err != nil || len(pend) == 0 {
			return err
		}
		futs := make([]jetstream.PubAckFuture, len(pend))
		for i, pc := range pend {
			data, err := proto.Marshal(pc.Change)
			if err != nil {
				return err
			}
			msg := nats.NewMsg(streams.SegmentSubject(pc.Change))
			msg.Data = data
			msg.Header.Set(nats.MsgIdHdr, changeID(pc.Change))
			if futs[i], err = rt.cfg.JetStream.PublishMsgAsync(msg); err != nil {
				return err
			}
		}
		var done [][]byte
		for i, f := range futs {
			select {
			case <-f.Ok():
				done = append(done, pend[i].Key)
				rt.metrics.changes.WithLabelValues(pend[i].Change.GetSite(), streams.SegmentSubject(pend[i].Change)[len(streams.SegmentsPrefix):]).Inc()
			case err := <-f.Err():
				_ = rt.cfg.Store.AckPendingChanges(done)
				return err
			case <-time.After(10 * time.Second):
				_ = rt.cfg.Store.AckPendingChanges(done)
				return fmt.Errorf("publish segment change: timed out")
			}
		}
		if err := rt.cfg.Store.AckPendingChanges(done); err != nil {
			return err
		}
	}
}

// changeID is a segment change's Nats-Msg-Id.
func changeID(c *vigiev1.SegmentChange) string {
	return fmt.Sprintf("seg:%s:%s:%s:%d", c.GetEventId(), c.GetSubject(), c.GetSegment(), c.GetTransition())
}

// Stop stops the consumers (messages being handled are naked for later),
// then every plugin process, and waits for all of them until ctx is done.
func (rt *Runtime) Stop(ctx context.Context) error {
	if rt.loopStop == nil {
		return nil
	}
	rt.loopStop()
	rt.mu.Lock()
	rt.jobStop()
	rt.mu.Unlock()
	done := make(chan struct{})
	go func() {
		rt.loops.Wait()
		rt.jobs.Wait()
		for i := range rt.stages {
			st := &rt.stages[i]
			rt.mu.Lock()
			st.cancel()
			rt.mu.Unlock()
			st.wg.Wait()
		}
		rt.procStop()
		rt.supers.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		rt.mu.Lock()
		for i := range rt.stages {
			rt.stages[i].cancel()
		}
		rt.mu.Unlock()
		rt.procStop()
		for _, p := range rt.order {
			p.kill(true) // past the deadline: no grace left
		}
		return fmt.Errorf("plugins: stop: %w", ctx.Err())
	}
}
