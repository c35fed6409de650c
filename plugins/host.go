package plugins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
)

// hostServices are the host services of one plugin. The SDK checks each
// call against the manifest's capabilities before it gets here; this type
// scopes the key-value store to the plugin and applies consent.
type hostServices struct {
	rt *Runtime
	p  *proc
}

var _ sdk.Host = (*hostServices)(nil)

// ProfileGet implements sdk.Host.
func (h *hostServices) ProfileGet(ctx context.Context, site, subject string) (*sdk.Profile, error) {
	prof, err := h.rt.profile(ctx, site, subject)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, sdk.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return prof.Proto(time.Now().UnixMilli()), nil
}

// KVGet implements sdk.Host.
func (h *hostServices) KVGet(ctx context.Context, key string) ([]byte, error) {
	v, err := h.rt.cfg.Store.KVGet(ctx, h.p.spec.Name, key)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, sdk.ErrNotFound
	}
	return v, err
}

// KVPut implements sdk.Host.
func (h *hostServices) KVPut(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	return h.rt.cfg.Store.KVPut(ctx, h.p.spec.Name, key, value, ttl)
}

// KVDelete implements sdk.Host.
func (h *hostServices) KVDelete(ctx context.Context, key string) error {
	return h.rt.cfg.Store.KVDelete(ctx, h.p.spec.Name, key)
}

// ContactResolve implements sdk.Host: the vaulted traits of a subject whose
// latest consent grants every purpose the plugin declared (checkManifest
// makes sure it declared at least one).
func (h *hostServices) ContactResolve(ctx context.Context, site, subject string) (*sdk.Contact, error) {
	c, err := h.rt.contact(ctx, h.p, site, subject, nil)
	if err != nil {
		return nil, err
	}
	item := &vigiev1.SyncItem{Item: &vigiev1.SyncItem_Identify{Identify: &vigiev1.Event{Site: site}}, Contact: c}
	if err := h.rt.auditContacts(ctx, h.p, "host", []*vigiev1.SyncItem{item}); err != nil {
		return nil, err
	}
	rec := storage.SyncRecord{Plugin: h.p.spec.Name, Kind: "contact_resolve", Fields: contactFields(c), AtMs: time.Now().UnixMilli()}
	if herr := h.rt.cfg.Store.AddSyncHistory(ctx, site, subject, rec, h.rt.cfg.SyncHistoryTTL); herr != nil {
		h.rt.log.Warn("sync history not recorded", "plugin", h.p.spec.Name, "err", herr)
	}
	return c, nil
}

// Emit implements sdk.Host: the event is stored and published like any
// other (vigie.events.<site>.<type>), with a new id and source
// "plugin:<name>"; it is not delivered back to the plugin that emitted it.
func (h *hostServices) Emit(ctx context.Context, ev *sdk.Event) error {
	ev = proto.Clone(ev).(*sdk.Event)
	if !slices.Contains(h.rt.cfg.Sites, ev.GetSite()) {
		return fmt.Errorf("%w: emit: unknown site %q", sdk.ErrInvalidPlugin, ev.GetSite())
	}
	if !knownType(ev.GetType()) {
		return fmt.Errorf("%w: emit: unknown event type %q", sdk.ErrInvalidPlugin, ev.GetType())
	}
	if ev.GetMode() == vigiev1.Mode_MODE_PSEUDONYMOUS && ev.GetSubject() == "" {
		return fmt.Errorf("%w: emit: a pseudonymous event needs a subject", sdk.ErrInvalidPlugin)
	}
	if ev.GetMode() != vigiev1.Mode_MODE_PSEUDONYMOUS {
		ev.Subject, ev.AnonymousId, ev.UserId, ev.GroupId, ev.PreviousId, ev.Purposes = "", "", "", "", "", nil
		ev.Mode = vigiev1.Mode_MODE_ANONYMOUS
	}
	now := time.Now()
	ev.Id = ulid.MustNew(ulid.Timestamp(now), ulid.DefaultEntropy()).String()
	ev.Source = "plugin:" + h.p.spec.Name
	ev.ReceivedAtMs = now.UnixMilli()
	if ev.TimestampMs == 0 {
		ev.TimestampMs = ev.ReceivedAtMs
	}
	data, err := proto.Marshal(ev)
	if err != nil {
		return fmt.Errorf("emit: %w", err)
	}
	_, err = h.rt.cfg.Store.Append(ctx, []storage.Record{{
		Site: ev.Site, ID: ev.Id, Time: time.UnixMilli(ev.TimestampMs), Type: ev.Type,
		Subject: ev.Subject, TTL: h.rt.cfg.EmitTTL, Data: data,
		Topic: "vigie.events." + ev.Site + "." + ev.Type,
	}})
	if err == nil {
		h.rt.metrics.emitted.WithLabelValues(h.p.spec.Name).Inc()
	}
	return err
}

// Log implements sdk.Host.
func (h *hostServices) Log(ctx context.Context, level slog.Level, msg string, attrs ...slog.Attr) {
	h.p.log.LogAttrs(ctx, level, msg, attrs...)
}

// knownType reports whether t is an event type.
func knownType(t string) bool {
	switch t {
	case "track", "page", "screen", "identify", "group", "alias":
		return true
	}
	return false
}

// contact returns the vaulted contact details of subject for plugin p (this
// node's vault, then in cluster mode the shared one: ResolveTraits), when
// the purposes granted (those of the event at hand, or when nil those of the
// subject's latest profiled event) include all of p's purposes.
func (rt *Runtime) contact(ctx context.Context, p *proc, site, subject string, granted []string) (*sdk.Contact, error) {
	_, m, _, _ := p.snapshot()
	if len(m.Purposes) == 0 {
		return nil, sdk.ErrNotFound
	}
	if granted == nil {
		prof, err := rt.profile(ctx, site, subject)
		if errors.Is(err, storage.ErrNotFound) {
			return nil, sdk.ErrNotFound
		}
		if err != nil {
			return nil, err
		}
		granted = prof.Purposes
	}
	if !grantsAll(granted, m.Purposes) {
		return nil, sdk.ErrNotFound
	}
	// An objection to one of the plugin's purposes, or a restriction,
	// stops contact resolution whatever the events said.
	if no, err := rt.restricted(ctx, site, subject, m.Purposes); err != nil || no {
		if err != nil {
			return nil, err
		}
		return nil, sdk.ErrNotFound
	}
	raw, err := rt.cfg.Store.ResolveTraits(ctx, subject, site)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, sdk.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return ContactFromTraits(raw), nil
}

// ContactFromTraits maps vaulted traits (Segment's reserved trait names,
// camelCase or snake_case) to a Contact; the rest stays in Traits.
func ContactFromTraits(raw []byte) *sdk.Contact {
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return &sdk.Contact{}
	}
	c := &sdk.Contact{}
	take := func(keys ...string) string {
		for _, k := range keys {
			if v, ok := m[k].(string); ok {
				delete(m, k)
				return v
			}
		}
		return ""
	}
	c.Email = take("email", "Email", "e-mail")
	c.Phone = take("phone", "Phone", "mobile")
	c.FirstName = take("firstName", "first_name", "firstname")
	c.LastName = take("lastName", "last_name", "lastname")
	if c.FirstName == "" && c.LastName == "" {
		if name := take("name", "Name"); name != "" {
			c.FirstName, c.LastName = splitName(name)
		}
	}
	if len(m) > 0 {
		c.Traits, _ = json.Marshal(m)
	}
	return c
}

// splitName splits "Ada Lovelace" into first and last name.
func splitName(s string) (string, string) {
	for i := len(s) - 1; i > 0; i-- {
		if s[i] == ' ' {
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}

// grantsAll reports whether granted contains every purpose of need.
func grantsAll(granted, need []string) bool {
	for _, n := range need {
		if !slices.Contains(granted, n) {
			return false
		}
	}
	return true
}

// grantsAny reports whether granted contains at least one of want.
func grantsAny(granted, want []string) bool {
	for _, w := range want {
		if slices.Contains(granted, w) {
			return true
		}
	}
	return false
}
