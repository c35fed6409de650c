package plugins

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
)

// Every plugin receives the erasures (vigie.privacy.<site>.erase): a syncer
// through Sync on its "sync-<name>-privacy" consumer, every other plugin on
// its own "privacy-<name>" consumer. A plugin serving the Forgetter hook is
// then given them through Forget. A plugin serving the PrivacyListener hook
// (sdk.KindPrivacy) is given every privacy event of its sites instead
// (consent changes, objections, restrictions, rectifications, erasures),
// through the same call. The outcome of an erasure for each plugin is
// reported to Config.Privacy, which records it as a step of the erasure
// request:
//
//	done           Sync and/or Forget succeeded, or the plugin keeps
//	               nothing (no Forget hook, no kv capability)
//	not_supported  no Forget hook but the kv capability: what it keeps in
//	               its key-value space is not erased by it
//	skipped        the erasure's site is outside the plugin's filter
//	failed         dead-lettered after MaxDeliver tries (the reason given)

// Outcomes of a plugin's handling of an erasure (PrivacyAck.Status).
const (
	AckDone         = "done"
	AckNotSupported = "not_supported"
	AckSkipped      = "skipped"
	AckFailed       = "failed"
)

// PrivacyAck is one plugin's acknowledgement of an erasure.
type PrivacyAck struct {
	// Plugin is the plugin's name.
	Plugin string
	// Site and RequestID identify the erasure (PrivacyEvent.request_id).
	Site, RequestID string
	// Status is AckDone, AckNotSupported, AckSkipped or AckFailed.
	Status string
	// Detail says why, in words (no identifier).
	Detail string
	// Node is, for a node-scoped plugin (Runtime.NodeScoped), the node
	// whose instance handled the erasure: each node's instance forgets
	// what its own key-value space holds, so the erasure waits for every
	// node's. Empty otherwise: one instance's acknowledgement stands for
	// the plugin.
	Node string
}

// PrivacyAcker receives each plugin's acknowledgement of each erasure. An
// error (the acknowledgement could not be recorded) makes the runtime
// deliver the erasure to the plugin again later.
type PrivacyAcker interface {
	PrivacyAck(ctx context.Context, a PrivacyAck) error
}

// Names returns the names of the configured plugins, in configuration
// order.
func (rt *Runtime) Names() []string {
	out := make([]string, len(rt.order))
	for i, p := range rt.order {
		out[i] = p.spec.Name
	}
	return out
}

// privacyConsumer is the privacy consumer of a plugin that is not a
// syncer: erasures, or every privacy event for a PrivacyListener. One
// durable serves the plugin on every node, except in cluster mode for a
// plugin with a key-value space, whose durable is its node's
// (Config.Node): each node's instance forgets what its own space holds.
func (rt *Runtime) privacyConsumer(p *proc, m sdk.Manifest) *consumer {
	filter := streams.PrivacyKindSubjects(streams.KindErase)
	if listensPrivacy(m) {
		filter = streams.PrivacyPrefix + ">"
	}
	durable := "privacy-" + p.spec.Name
	if rt.nodeScoped(m) {
		durable += "-" + rt.cfg.Node
	}
	return &consumer{rt: rt, durable: durable, stream: streams.Privacy, stage: stageSync,
		filters: []string{filter}, owner: p,
		handle: rt.forget(p), onDead: rt.privacyDead(p)}
}

// nodeScoped reports whether a plugin with manifest m hears the privacy
// events on its node's own consumer (cluster mode, a key-value space, not
// a syncer): see privacyConsumer.
func (rt *Runtime) nodeScoped(m sdk.Manifest) bool {
	return rt.cfg.Node != "" && m.Has(sdk.CapKV) && !slices.Contains(m.Kinds, sdk.KindSyncer)
}

// NodeScoped reports whether plugin name's erasures are acknowledged by
// every node's instance (PrivacyAck.Node), not by one for all: cluster
// mode, and the plugin, started at least once, has a key-value space and
// is not a syncer.
func (rt *Runtime) NodeScoped(name string) bool {
	p := rt.procs[name]
	if p == nil {
		return false
	}
	_, m, _, _ := p.snapshot()
	return rt.nodeScoped(m)
}

// listensPrivacy reports whether a plugin serves the PrivacyListener hook.
func listensPrivacy(m sdk.Manifest) bool { return slices.Contains(m.Kinds, sdk.KindPrivacy) }

// isErasure decodes an erasure message; other messages give nil.
func isErasure(subject string, data []byte) (*vigiev1.PrivacyEvent, error) {
	return privacyEvent(subject, data, false)
}

// privacyEvent decodes a privacy message: an erasure, or with all any
// privacy event; other messages give nil.
func privacyEvent(subject string, data []byte, all bool) (*vigiev1.PrivacyEvent, error) {
	if streams.StreamOf(subject) != streams.Privacy {
		return nil, nil
	}
	pe := &vigiev1.PrivacyEvent{}
	if err := proto.Unmarshal(data, pe); err != nil {
		return nil, fmt.Errorf("%w: undecodable privacy event: %v", errPermanent, err)
	}
	if !all && pe.GetAction() != vigiev1.PrivacyAction_PRIVACY_ACTION_ERASURE {
		return nil, nil
	}
	return pe, nil
}

// isErasureEvent reports whether pe is an erasure.
func isErasureEvent(pe *vigiev1.PrivacyEvent) bool {
	return pe.GetAction() == vigiev1.PrivacyAction_PRIVACY_ACTION_ERASURE
}

// forget is the handler of a privacy-<name> consumer: erasures of the
// plugin's sites go to its Forget hook, if it has one.
func (rt *Runtime) forget(p *proc) handler {
	return func(ctx context.Context, msgs []jetstream.Msg) []error {
		errs := make([]error, len(msgs))
		_, m, _, _ := p.snapshot()
		var idx []int
		var evs []*vigiev1.PrivacyEvent
		all := listensPrivacy(m)
		for i, msg := range msgs {
			pe, err := privacyEvent(subjectOf(msg), msg.Data(), all)
			if err != nil || pe == nil {
				errs[i] = err
				continue
			}
			if !matchAny(m.Filter.Sites, pe.GetSite()) {
				if isErasureEvent(pe) {
					errs[i] = rt.ack(ctx, p, pe, AckSkipped, "site outside the plugin's filter")
				}
				continue
			}
			idx, evs = append(idx, i), append(evs, pe)
		}
		for k, err := range rt.forgetBatch(ctx, p, m, evs, nil) {
			errs[idx[k]] = err
		}
		return errs
	}
}

// forgetBatch gives erasures (and, to a PrivacyListener, any privacy
// events) to p's Forget hook (when it has one) and reports each erasure's
// outcome; outs, when given, are a syncer's outcomes for the same events
// (not supported, or what was done downstream). It returns one error per
// event.
func (rt *Runtime) forgetBatch(ctx context.Context, p *proc, m sdk.Manifest, evs []*vigiev1.PrivacyEvent, outs []sdk.SyncOutcome) []error {
	errs := make([]error, len(evs))
	if len(evs) == 0 {
		return errs
	}
	status, detail := AckDone, "forgotten by the plugin"
	switch {
	case slices.Contains(m.Kinds, sdk.KindForgetter), listensPrivacy(m):
		err := p.call(ctx, func(cctx context.Context, c *sdk.Client) error { return c.Forget(cctx, evs) })
		if err != nil {
			for i := range errs {
				errs[i] = &pluginError{plugin: p.spec.Name, err: err}
			}
			return errs
		}
	case slices.Contains(m.Kinds, sdk.KindSyncer):
		detail = "synced to the plugin"
		if m.Has(sdk.CapKV) {
			status, detail = AckNotSupported, "synced, but the plugin has a key-value space and no Forget hook"
		}
	case m.Has(sdk.CapKV):
		status, detail = AckNotSupported, "the plugin has a key-value space and no Forget hook"
	default:
		detail = "the plugin keeps no personal data (no Forget hook, no key-value space)"
	}
	for i, pe := range evs {
		if !isErasureEvent(pe) {
			continue
		}
		st, d := status, detail
		if i < len(outs) {
			switch {
			case outs[i].NotSupported:
				st, d = AckNotSupported, outs[i].Detail
			case outs[i].Detail != "" && st == AckDone:
				d = outs[i].Detail
			}
		}
		errs[i] = rt.ack(ctx, p, pe, st, d)
	}
	return errs
}

// ack reports one plugin's outcome for an erasure to Config.Privacy.
func (rt *Runtime) ack(ctx context.Context, p *proc, pe *vigiev1.PrivacyEvent, status, detail string) error {
	if rt.cfg.Privacy == nil || pe.GetRequestId() == "" {
		return nil
	}
	a := PrivacyAck{Plugin: p.spec.Name, Site: pe.GetSite(), RequestID: pe.GetRequestId(), Status: status, Detail: detail}
	if _, m, _, _ := p.snapshot(); rt.nodeScoped(m) {
		a.Node = rt.cfg.Node
	}
	err := rt.cfg.Privacy.PrivacyAck(ctx, a)
	if err != nil {
		return fmt.Errorf("privacy acknowledgement not recorded: %w", err)
	}
	return nil
}

// privacyDead reports an erasure dead-lettered for p as failed.
func (rt *Runtime) privacyDead(p *proc) func(ctx context.Context, m jetstream.Msg, cause error) {
	return func(ctx context.Context, m jetstream.Msg, cause error) {
		pe, err := isErasure(subjectOf(m), m.Data())
		if err != nil || pe == nil {
			return
		}
		reason := cause.Error()
		if len(reason) > 512 {
			reason = reason[:512]
		}
		if err := rt.ack(context.WithoutCancel(ctx), p, pe, AckFailed, "dead-lettered: "+reason); err != nil {
			rt.log.Warn("failed erasure not recorded", "plugin", p.spec.Name, "err", err)
		}
	}
}

// restricted reports whether subject's ledger entry on site forbids giving
// its contact details to a plugin needing purposes: processing restricted,
// an objection to one of them, or a current choice denying one of them
// (the ledger holds the latest explicit choice, newer than the event or
// profile the purposes were read from when a withdrawal followed them).
func (rt *Runtime) restricted(ctx context.Context, site, subject string, purposes []string) (bool, error) {
	e, err := rt.cfg.Store.Consent(ctx, site, subject)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if e.Restricted {
		return true, nil
	}
	for _, o := range slices.Concat(e.Objected, e.Denied) {
		if slices.Contains(purposes, o) {
			return true, nil
		}
	}
	return false, nil
}

// recordSync adds what a plugin was given about a subject to the subject's
// sync history (an access request lists it); errors are logged only.
func (rt *Runtime) recordSync(ctx context.Context, p *proc, item *vigiev1.SyncItem) {
	var site, subject, kind, detail string
	switch it := item.GetItem().(type) {
	case *vigiev1.SyncItem_SegmentChange:
		c := it.SegmentChange
		site, subject, detail = c.GetSite(), c.GetSubject(), c.GetSegment()
		kind = "segment_entered"
		if c.GetTransition() == vigiev1.Transition_TRANSITION_EXITED {
			kind = "segment_exited"
		}
	case *vigiev1.SyncItem_Identify:
		site, subject, kind, detail = it.Identify.GetSite(), it.Identify.GetSubject(), "identify", it.Identify.GetId()
	case *vigiev1.SyncItem_Resync:
		site, subject, kind, detail = it.Resync.GetSite(), it.Resync.GetSubject(), "resync", it.Resync.GetRunId()
	case *vigiev1.SyncItem_Privacy:
		// The privacy events themselves are not kept per subject: an
		// erasure would only write history to erase again.
		return
	}
	if subject == "" {
		return
	}
	rec := storage.SyncRecord{Plugin: p.spec.Name, Kind: kind, Detail: detail, Fields: contactFields(item.GetContact()), AtMs: time.Now().UnixMilli()}
	if err := rt.cfg.Store.AddSyncHistory(ctx, site, subject, rec, rt.cfg.SyncHistoryTTL); err != nil && ctx.Err() == nil {
		rt.log.Warn("sync history not recorded", "plugin", p.spec.Name, "err", err)
	}
}
