package crm

import (
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/vigie-dev/vigie/plugins/crm/delivery"
	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// mapper turns sync items into changes for one destination.
type mapper struct {
	purposes []string
	segments []string // empty: every segment
	fields   map[string]string
}

// change is the change of one sync item for the destination, or none
// with the reason (a done item needing nothing downstream).
func (m *mapper) change(it *sdk.SyncItem) (delivery.Change, bool, string) {
	c := it.GetContact()
	switch x := it.GetItem().(type) {
	case *vigiev1.SyncItem_Identify:
		ev := x.Identify
		return m.upsert(c, it.GetProfile(), ev.GetTraits(), ev.GetSite(), ev.GetSubject(), ev.GetId(), ev.GetTimestampMs())
	case *vigiev1.SyncItem_Resync:
		r := x.Resync
		return m.upsert(c, it.GetProfile(), nil, r.GetSite(), r.GetSubject(), "resync:"+r.GetRunId(), r.GetAtMs())
	case *vigiev1.SyncItem_SegmentChange:
		sc := x.SegmentChange
		if len(m.segments) > 0 && !slices.Contains(m.segments, sc.GetSegment()) {
			return delivery.Change{}, false, "segment not synced to this destination"
		}
		kind := delivery.KindSegmentEntered
		if sc.GetTransition() == vigiev1.Transition_TRANSITION_EXITED {
			kind = delivery.KindSegmentExited
		}
		return delivery.Change{Kind: kind, Site: sc.GetSite(), Subject: sc.GetSubject(), EventID: sc.GetEventId(),
			At: at(sc.GetAtMs()), Email: c.GetEmail(), Segment: sc.GetSegment()}, true, ""
	case *vigiev1.SyncItem_Privacy:
		return m.privacy(x.Privacy, c, it.GetProfile())
	}
	return delivery.Change{}, false, "nothing to sync"
}

// privacy is the change of a privacy event.
func (m *mapper) privacy(pe *vigiev1.PrivacyEvent, c *sdk.Contact, prof *sdk.Profile) (delivery.Change, bool, string) {
	base := delivery.Change{Site: pe.GetSite(), Subject: pe.GetSubject(), EventID: "privacy:" + pe.GetRequestId(),
		At: at(pe.GetAtMs()), Email: c.GetEmail()}
	reduce := func(kind delivery.Kind, none string) (delivery.Change, bool, string) {
		if base.Email == "" {
			return delivery.Change{}, false, none
		}
		base.Kind = kind
		return base, true, ""
	}
	const never = "this destination was never given the person's contact details: nothing to do downstream"
	switch pe.GetAction() {
	case vigiev1.PrivacyAction_PRIVACY_ACTION_ERASURE:
		return reduce(delivery.KindDelete, "nothing to delete: "+never)
	case vigiev1.PrivacyAction_PRIVACY_ACTION_CONSENT_CHANGED:
		if !grantsAll(pe.GetPurposes(), m.purposes) {
			return reduce(delivery.KindUnsubscribe, never)
		}
		base.Kind, base.Purposes = delivery.KindConsentChanged, slices.Clone(pe.GetPurposes())
		return base, true, ""
	case vigiev1.PrivacyAction_PRIVACY_ACTION_OBJECT:
		if pe.GetLifted() {
			return delivery.Change{}, false, "objection lifted: the contact's next update syncs it again"
		}
		if !slices.ContainsFunc(pe.GetObjected(), func(p string) bool { return slices.Contains(m.purposes, p) }) {
			return delivery.Change{}, false, "objection to purposes this destination does not use"
		}
		return reduce(delivery.KindUnsubscribe, never)
	case vigiev1.PrivacyAction_PRIVACY_ACTION_RESTRICT:
		if pe.GetLifted() {
			return delivery.Change{}, false, "restriction lifted: the contact's next update syncs it again"
		}
		return reduce(delivery.KindUnsubscribe, never)
	case vigiev1.PrivacyAction_PRIVACY_ACTION_RECTIFY:
		return m.upsert(c, prof, nil, pe.GetSite(), pe.GetSubject(), "rectify:"+pe.GetRequestId(), pe.GetAtMs())
	}
	return delivery.Change{}, false, "nothing to sync"
}

// upsert is the upsert of a contact with its mapped properties, current
// segments and score. A trait comes from the vault (the contact) or, for
// an identify event, from the event's own traits (those that are not
// personal enough to be vaulted, scrubbed).
func (m *mapper) upsert(c *sdk.Contact, prof *sdk.Profile, eventTraits []byte, site, subject, eventID string, atMs int64) (delivery.Change, bool, string) {
	if c.GetEmail() == "" {
		return delivery.Change{}, false, "no contact details: consent does not allow them, or no e-mail address is known"
	}
	ch := delivery.Change{Kind: delivery.KindUpsert, Site: site, Subject: subject, EventID: eventID, At: at(atMs),
		Email: c.GetEmail(), Properties: map[string]any{}}
	if prof != nil {
		for _, s := range prof.GetSegments() {
			if len(m.segments) == 0 || slices.Contains(m.segments, s) {
				ch.Segments = append(ch.Segments, s)
			}
		}
		score := float64(prof.GetScore())
		ch.Score = &score
	}
	traits := map[string]any{}
	_ = json.Unmarshal(eventTraits, &traits)
	var vaulted map[string]any
	_ = json.Unmarshal(c.GetTraits(), &vaulted)
	for k, v := range vaulted {
		traits[k] = v
	}
	for prop, src := range m.fields {
		if v, ok := source(src, c, traits, prof, ch.Segments); ok {
			ch.Properties[prop] = v
		}
	}
	return ch, true, ""
}

// source is the value of a field mapping's source, if there is one.
func source(src string, c *sdk.Contact, traits map[string]any, prof *sdk.Profile, segments []string) (any, bool) {
	nonEmpty := func(s string) (any, bool) { return s, s != "" }
	day := func(ms int64) (any, bool) {
		if ms <= 0 {
			return nil, false
		}
		return time.UnixMilli(ms).UTC().Format(time.DateOnly), true
	}
	switch {
	case src == "score":
		if prof == nil {
			return nil, false
		}
		return float64(prof.GetScore()), true
	case src == "segments":
		if prof == nil {
			return nil, false
		}
		return strings.Join(segments, ";"), true
	case strings.HasPrefix(src, "profile."):
		if prof == nil {
			return nil, false
		}
		switch strings.TrimPrefix(src, "profile.") {
		case "country":
			return nonEmpty(prof.GetCountry())
		case "campaign":
			return nonEmpty(prof.GetLastCampaign().GetName())
		case "first_seen":
			return day(prof.GetFirstSeenMs())
		case "last_seen":
			return day(prof.GetLastSeenMs())
		}
	case strings.HasPrefix(src, "trait."):
		name := strings.TrimPrefix(src, "trait.")
		switch strings.ToLower(strings.ReplaceAll(name, "_", "")) {
		case "email":
			return nonEmpty(c.GetEmail())
		case "phone":
			return nonEmpty(c.GetPhone())
		case "firstname":
			return nonEmpty(c.GetFirstName())
		case "lastname":
			return nonEmpty(c.GetLastName())
		}
		switch v := traits[name].(type) {
		case string:
			return nonEmpty(v)
		case float64, bool:
			return v, true
		}
	}
	return nil, false
}

// at is a time from Unix milliseconds (zero for 0).
func at(ms int64) time.Time {
	if ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
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
