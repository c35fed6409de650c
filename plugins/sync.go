package plugins

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
)

// A syncer gets four kinds of items: segment changes, identify events,
// privacy events and the items of a full resync. Contact details are
// attached (for a plugin with contacts.resolve) in two cases:
//
//   - to add or update a contact downstream (an identify event, a segment
//     entry, a resync item, a consent change still granting the plugin's
//     purposes, a rectification, a lifted objection or restriction): when
//     the subject's current consent grants every purpose of the plugin
//     (contact);
//   - to carry out a reduction downstream (a segment exit, a consent
//     withdrawal, an objection, a restriction): when the plugin was given
//     the subject's contact before, as its sync history says
//     (givenContact); an erasure's contact was captured by the privacy
//     request before the vault was shredded (ErasureContacts).
//
// A destination that never had the contact is never sent it for a
// reduction: that would disclose a person to a recipient that did not
// know them.

// ErasureContacts is implemented by a Config.Privacy that captured, before
// an erasure shredded the vault, the contact details the erasure must
// still reach downstream (package privacy does).
type ErasureContacts interface {
	// ErasureContact returns the contact details of erasure requestID on
	// site that plugin was given before, or sdk.ErrNotFound when it was
	// given none (or they are gone: the request is complete).
	ErasureContact(ctx context.Context, site, requestID, plugin string) (*sdk.Contact, error)
}

// resyncConsumer is the durable consumer of plugin's resync items.
func resyncConsumer(plugin string) string { return "sync-" + plugin + "-resync" }

// retryLater is an item failure that is the destination's rather than the
// item's (down, throttling, paused): the item is delivered again after
// `after`, and the failure does not count towards MaxDeliver.
type retryLater struct {
	err   error
	after time.Duration
}

func (e *retryLater) Error() string { return e.err.Error() }
func (e *retryLater) Unwrap() error { return e.err }

// maxRetryLater caps how long a plugin may ask an item to wait.
const maxRetryLater = 24 * time.Hour

// itemError is the error of an item plugin p failed, classified by its
// outcome: permanent (dead-lettered at once, the plugin's message as the
// reason), the destination's (retryLater), or the item's own.
func itemError(p *proc, o sdk.SyncOutcome) error {
	e := &pluginError{plugin: p.spec.Name, err: o.Err}
	switch {
	case o.Permanent:
		return fmt.Errorf("%w: %w", errPermanent, e)
	case o.RetryAfter > 0:
		return &retryLater{err: e, after: min(o.RetryAfter, maxRetryLater)}
	}
	return e
}

// sync is a syncer's handler.
func (rt *Runtime) sync(p *proc) handler {
	return func(ctx context.Context, msgs []jetstream.Msg) []error {
		errs := make([]error, len(msgs))
		_, m, _, _ := p.snapshot()
		var idx []int
		var items []*vigiev1.SyncItem
		for i, msg := range msgs {
			item, err := rt.syncItem(ctx, p, m, subjectOf(msg), msg.Data())
			if err != nil {
				errs[i] = err
				continue
			}
			if item != nil {
				idx = append(idx, i)
				items = append(items, item)
			}
		}
		if len(items) == 0 {
			return errs
		}
		if err := rt.auditContacts(ctx, p, "sync", items); err != nil {
			for _, i := range idx {
				errs[i] = err
			}
			return errs
		}
		// Contact details are in the sync history from the moment they
		// leave the vault for the plugin, not once it succeeded with them:
		// an erasure arriving meanwhile must know the destination has
		// them (package privacy captures its contacts from the history).
		for _, it := range items {
			if it.GetContact() != nil {
				rt.recordSync(ctx, p, it)
			}
		}
		var outs []sdk.SyncOutcome
		err := p.call(ctx, func(cctx context.Context, c *sdk.Client) error {
			var err error
			outs, err = c.SyncOutcomes(cctx, items)
			return err
		})
		var erIdx []int
		var erasures []*vigiev1.PrivacyEvent
		var erOuts []sdk.SyncOutcome
		for k, i := range idx {
			switch {
			case err != nil:
				errs[i] = err
			case outs[k].Err != nil:
				errs[i] = itemError(p, outs[k])
			default:
				p.processed.Add(1)
				rt.metrics.processed.WithLabelValues(p.spec.Name).Inc()
				if items[k].GetContact() == nil {
					rt.recordSync(ctx, p, items[k])
				}
				if pe := items[k].GetPrivacy(); pe != nil && (isErasureEvent(pe) || listensPrivacy(m)) {
					erIdx, erasures, erOuts = append(erIdx, i), append(erasures, pe), append(erOuts, outs[k])
				}
			}
		}
		// Erasures (every privacy event for a PrivacyListener) synced:
		// the Forget hook, then the acknowledgement.
		for k, ferr := range rt.forgetBatch(ctx, p, m, erasures, erOuts) {
			errs[erIdx[k]] = ferr
		}
		return errs
	}
}

// syncItem builds the SyncItem of one message, or nil when the plugin must
// not receive it.
func (rt *Runtime) syncItem(ctx context.Context, p *proc, m sdk.Manifest, subject string, data []byte) (*vigiev1.SyncItem, error) {
	resolve := m.Has(sdk.CapContactsResolve)
	switch {
	case strings.HasPrefix(subject, streams.PrivacyPrefix):
		return rt.privacyItem(ctx, p, m, data, resolve)
	case strings.HasPrefix(subject, streams.SyncPrefix):
		return rt.resyncItem(ctx, p, m, data, resolve)
	case strings.HasPrefix(subject, streams.SegmentsPrefix):
		c := &vigiev1.SegmentChange{}
		if err := proto.Unmarshal(data, c); err != nil {
			return nil, fmt.Errorf("%w: undecodable segment change: %v", errPermanent, err)
		}
		if !matchAny(m.Filter.Sites, c.GetSite()) || c.GetSubject() == "" {
			// No subject: an erasure's exit in cluster mode, which
			// only corrects the segment sizes (storage.Config.SharedSegments).
			return nil, nil
		}
		item := &vigiev1.SyncItem{Item: &vigiev1.SyncItem_SegmentChange{SegmentChange: c}}
		if c.GetTransition() != vigiev1.Transition_TRANSITION_ENTERED {
			// Leaving is always passed on so the downstream system can
			// forget; with the contact only where it is known already.
			if resolve {
				ct, err := rt.givenContact(ctx, p, c.GetSite(), []string{c.GetSubject()})
				if err != nil {
					return nil, err
				}
				item.Contact = ct
			}
			return item, nil
		}
		// Entering needs the subject's consent for the plugin's purposes.
		prof, err := rt.profile(ctx, c.GetSite(), c.GetSubject())
		if errors.Is(err, storage.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if !grantsAll(prof.Purposes, m.Purposes) {
			return nil, nil
		}
		if resolve {
			if item.Contact, err = rt.resolved(ctx, p, c.GetSite(), c.GetSubject(), prof.Purposes); err != nil {
				return nil, err
			}
		}
		return item, nil
	}
	ev := &vigiev1.Event{}
	if err := proto.Unmarshal(data, ev); err != nil {
		return nil, fmt.Errorf("%w: undecodable event: %v", errPermanent, err)
	}
	if ev.GetMode() != vigiev1.Mode_MODE_PSEUDONYMOUS || fromPlugin(ev, p.spec.Name) || !matches(m.Filter, ev) ||
		!grantsAll(ev.GetPurposes(), m.Purposes) || sensitiveEvent(ev) {
		return nil, nil
	}
	item := &vigiev1.SyncItem{Item: &vigiev1.SyncItem_Identify{Identify: ev}}
	var err error
	if resolve {
		if item.Contact, err = rt.resolved(ctx, p, ev.GetSite(), ev.GetSubject(), ev.GetPurposes()); err != nil {
			return nil, err
		}
	}
	if item.Profile, err = rt.syncProfile(ctx, m, ev.GetSite(), ev.GetSubject()); err != nil {
		return nil, err
	}
	return item, nil
}

// privacyItem is the item of a privacy event: always passed on (it tells
// the downstream system what to stop or forget), with the contact as the
// rules above say.
func (rt *Runtime) privacyItem(ctx context.Context, p *proc, m sdk.Manifest, data []byte, resolve bool) (*vigiev1.SyncItem, error) {
	pe := &vigiev1.PrivacyEvent{}
	if err := proto.Unmarshal(data, pe); err != nil {
		return nil, fmt.Errorf("%w: undecodable privacy event: %v", errPermanent, err)
	}
	if !matchAny(m.Filter.Sites, pe.GetSite()) {
		if pe.GetAction() == vigiev1.PrivacyAction_PRIVACY_ACTION_ERASURE {
			return nil, rt.ack(ctx, p, pe, AckSkipped, "site outside the plugin's filter")
		}
		return nil, nil
	}
	item := &vigiev1.SyncItem{Item: &vigiev1.SyncItem_Privacy{Privacy: pe}}
	site, subjects := pe.GetSite(), pe.GetSubjects()
	if len(subjects) == 0 && pe.GetSubject() != "" {
		subjects = []string{pe.GetSubject()}
	}
	if !resolve || len(subjects) == 0 {
		return item, nil
	}
	var err error
	var granted []string // nil: the subject's latest profiled event's
	switch pe.GetAction() {
	case vigiev1.PrivacyAction_PRIVACY_ACTION_ERASURE:
		ec, ok := rt.cfg.Privacy.(ErasureContacts)
		if !ok || pe.GetRequestId() == "" {
			return item, nil
		}
		c, err := ec.ErasureContact(ctx, site, pe.GetRequestId(), p.spec.Name)
		if err != nil && !errors.Is(err, sdk.ErrNotFound) {
			return nil, err
		}
		item.Contact = c
		return item, nil
	case vigiev1.PrivacyAction_PRIVACY_ACTION_CONSENT_CHANGED:
		if !grantsAll(pe.GetPurposes(), m.Purposes) {
			item.Contact, err = rt.givenContact(ctx, p, site, subjects)
			return item, err
		}
		granted = pe.GetPurposes()
	case vigiev1.PrivacyAction_PRIVACY_ACTION_OBJECT, vigiev1.PrivacyAction_PRIVACY_ACTION_RESTRICT:
		if !pe.GetLifted() {
			item.Contact, err = rt.givenContact(ctx, p, site, subjects)
			return item, err
		}
	}
	// Adding or updating: current consent decides.
	for _, subj := range subjects {
		if item.Contact, err = rt.resolved(ctx, p, site, subj, granted); err != nil || item.Contact != nil {
			break
		}
	}
	if err == nil && pe.GetAction() == vigiev1.PrivacyAction_PRIVACY_ACTION_RECTIFY {
		item.Profile, err = rt.syncProfile(ctx, m, site, pe.GetSubject())
	}
	return item, err
}

// resyncItem is the item of one subject of a full resync: given only
// while the subject's current consent grants the plugin's purposes, and
// for a plugin resolving contacts only with a contact to push.
func (rt *Runtime) resyncItem(ctx context.Context, p *proc, m sdk.Manifest, data []byte, resolve bool) (*vigiev1.SyncItem, error) {
	r := &vigiev1.Resync{}
	if err := proto.Unmarshal(data, r); err != nil {
		return nil, fmt.Errorf("%w: undecodable resync item: %v", errPermanent, err)
	}
	if !matchAny(m.Filter.Sites, r.GetSite()) {
		return nil, nil
	}
	prof, err := rt.profile(ctx, r.GetSite(), r.GetSubject())
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil // gone since the job listed it
	}
	if err != nil {
		return nil, err
	}
	if !grantsAll(prof.Purposes, m.Purposes) {
		return nil, nil
	}
	item := &vigiev1.SyncItem{Item: &vigiev1.SyncItem_Resync{Resync: r}}
	if resolve {
		if item.Contact, err = rt.resolved(ctx, p, r.GetSite(), r.GetSubject(), prof.Purposes); err != nil || item.Contact == nil {
			return nil, err
		}
	}
	if m.Has(sdk.CapProfilesRead) {
		item.Profile = prof.Proto(time.Now().UnixMilli())
	}
	return item, nil
}

// resolved is contact, with "no contact" as nil.
func (rt *Runtime) resolved(ctx context.Context, p *proc, site, subject string, granted []string) (*sdk.Contact, error) {
	c, err := rt.contact(ctx, p, site, subject, granted)
	if errors.Is(err, sdk.ErrNotFound) {
		return nil, nil
	}
	return c, err
}

// syncProfile is the profile attached to a sync item for a plugin with
// profiles.read (nil without, or when the subject has none).
func (rt *Runtime) syncProfile(ctx context.Context, m sdk.Manifest, site, subject string) (*sdk.Profile, error) {
	if !m.Has(sdk.CapProfilesRead) || subject == "" {
		return nil, nil
	}
	prof, err := rt.profile(ctx, site, subject)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return prof.Proto(time.Now().UnixMilli()), nil
}

// givenContact returns the vaulted contact details of the first of
// subjects that plugin p was given contact details of before (its sync
// history), for carrying out a reduction downstream; nil when p never had
// any.
func (rt *Runtime) givenContact(ctx context.Context, p *proc, site string, subjects []string) (*sdk.Contact, error) {
	for _, subj := range subjects {
		hist, err := rt.cfg.Store.SyncHistory(ctx, site, subj)
		if err != nil {
			return nil, err
		}
		given := false
		for _, r := range hist {
			if r.Plugin == p.spec.Name && len(r.Fields) > 0 {
				given = true
				break
			}
		}
		if !given {
			continue
		}
		raw, err := rt.cfg.Store.ResolveTraits(ctx, subj, site)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return ContactFromTraits(raw), nil
	}
	return nil, nil
}
