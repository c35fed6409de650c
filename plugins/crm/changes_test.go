package crm

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/plugins/crm/delivery"
	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

func TestItemsToChanges(t *testing.T) {
	m := &mapper{purposes: []string{"marketing"}, segments: []string{"hot-lead"},
		fields: map[string]string{"firstname": "trait.first_name", "company": "trait.company", "country": "profile.country",
			"score": "score", "segs": "segments", "since": "profile.first_seen"}}
	contact := &sdk.Contact{Email: "ada@example.org", FirstName: "Ada", Traits: []byte(`{"plan":"pro"}`)}
	prof := &sdk.Profile{Site: "demo", Subject: "s1", Score: 12, Segments: []string{"hot-lead", "other"}, Country: "FR",
		FirstSeenMs: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC).UnixMilli()}
	identify := &vigiev1.Event{Id: "e1", Site: "demo", Subject: "s1", Traits: []byte(`{"company":"Acme"}`)}
	privacy := func(a vigiev1.PrivacyAction, f func(*vigiev1.PrivacyEvent)) *vigiev1.SyncItem {
		pe := &vigiev1.PrivacyEvent{Site: "demo", Subject: "s1", Action: a, RequestId: "r1"}
		if f != nil {
			f(pe)
		}
		return &vigiev1.SyncItem{Item: &vigiev1.SyncItem_Privacy{Privacy: pe}}
	}
	with := func(it *vigiev1.SyncItem, c *sdk.Contact) *vigiev1.SyncItem { it.Contact = c; return it }
	segment := func(name string, tr vigiev1.Transition) *vigiev1.SyncItem {
		return &vigiev1.SyncItem{Item: &vigiev1.SyncItem_SegmentChange{SegmentChange: &vigiev1.SegmentChange{
			Site: "demo", Subject: "s1", Segment: name, Transition: tr, EventId: "e2"}}}
	}
	for _, tc := range []struct {
		name string
		item *vigiev1.SyncItem
		kind delivery.Kind // "": no change
	}{
		{"identify with contact", &vigiev1.SyncItem{Item: &vigiev1.SyncItem_Identify{Identify: identify}, Contact: contact, Profile: prof}, delivery.KindUpsert},
		{"identify without contact", &vigiev1.SyncItem{Item: &vigiev1.SyncItem_Identify{Identify: identify}}, ""},
		{"resync", &vigiev1.SyncItem{Item: &vigiev1.SyncItem_Resync{Resync: &vigiev1.Resync{Site: "demo", Subject: "s1", RunId: "run"}}, Contact: contact, Profile: prof}, delivery.KindUpsert},
		{"synced segment entered", segment("hot-lead", vigiev1.Transition_TRANSITION_ENTERED), delivery.KindSegmentEntered},
		{"synced segment exited", segment("hot-lead", vigiev1.Transition_TRANSITION_EXITED), delivery.KindSegmentExited},
		{"other segment", segment("other", vigiev1.Transition_TRANSITION_ENTERED), ""},
		{"consent still granted", with(privacy(vigiev1.PrivacyAction_PRIVACY_ACTION_CONSENT_CHANGED, func(pe *vigiev1.PrivacyEvent) {
			pe.Purposes = []string{"analytics", "marketing"}
		}), contact), delivery.KindConsentChanged},
		{"consent withdrawn", with(privacy(vigiev1.PrivacyAction_PRIVACY_ACTION_CONSENT_CHANGED, nil), contact), delivery.KindUnsubscribe},
		{"consent withdrawn, never synced", privacy(vigiev1.PrivacyAction_PRIVACY_ACTION_CONSENT_CHANGED, nil), ""},
		{"objection to marketing", with(privacy(vigiev1.PrivacyAction_PRIVACY_ACTION_OBJECT, func(pe *vigiev1.PrivacyEvent) {
			pe.Objected = []string{"marketing"}
		}), contact), delivery.KindUnsubscribe},
		{"objection to another purpose", with(privacy(vigiev1.PrivacyAction_PRIVACY_ACTION_OBJECT, func(pe *vigiev1.PrivacyEvent) {
			pe.Objected = []string{"personalization"}
		}), contact), ""},
		{"objection lifted", with(privacy(vigiev1.PrivacyAction_PRIVACY_ACTION_OBJECT, func(pe *vigiev1.PrivacyEvent) { pe.Lifted = true }), contact), ""},
		{"restriction", with(privacy(vigiev1.PrivacyAction_PRIVACY_ACTION_RESTRICT, nil), contact), delivery.KindUnsubscribe},
		{"rectification", with(privacy(vigiev1.PrivacyAction_PRIVACY_ACTION_RECTIFY, nil), contact), delivery.KindUpsert},
		{"erasure", with(privacy(vigiev1.PrivacyAction_PRIVACY_ACTION_ERASURE, nil), contact), delivery.KindDelete},
		{"erasure, never synced", privacy(vigiev1.PrivacyAction_PRIVACY_ACTION_ERASURE, nil), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch, ok, why := m.change(tc.item)
			if tc.kind == "" {
				if ok || why == "" {
					t.Fatalf("change %+v (ok %v, why %q), want none with a reason", ch, ok, why)
				}
				return
			}
			if !ok || ch.Kind != tc.kind {
				t.Fatalf("change %+v (ok %v, %q), want %s", ch, ok, why, tc.kind)
			}
			if err := ch.Validate(); err != nil && ch.Kind != delivery.KindSegmentEntered && ch.Kind != delivery.KindSegmentExited {
				t.Errorf("invalid change: %v", err)
			}
		})
	}
	ch, _, _ := m.change(&vigiev1.SyncItem{Item: &vigiev1.SyncItem_Identify{Identify: identify}, Contact: contact, Profile: prof})
	want := map[string]any{"firstname": "Ada", "company": "Acme", "country": "FR", "score": 12.0, "segs": "hot-lead", "since": "2026-03-01"}
	for k, v := range want {
		if ch.Properties[k] != v {
			t.Errorf("property %s = %#v, want %#v", k, ch.Properties[k], v)
		}
	}
	if len(ch.Properties) != len(want) || !slices.Equal(ch.Segments, []string{"hot-lead"}) || ch.Score == nil || *ch.Score != 12 {
		t.Errorf("upsert %+v", ch)
	}
	// Idempotency: the same item makes the same change id; a resync run
	// another.
	again, _, _ := m.change(&vigiev1.SyncItem{Item: &vigiev1.SyncItem_Identify{Identify: identify}, Contact: contact, Profile: prof})
	rs, _, _ := m.change(&vigiev1.SyncItem{Item: &vigiev1.SyncItem_Resync{Resync: &vigiev1.Resync{Site: "demo", Subject: "s1", RunId: "run"}}, Contact: contact, Profile: prof})
	if again.ID() != ch.ID() || rs.ID() == ch.ID() {
		t.Errorf("change ids: %s %s %s", ch.ID(), again.ID(), rs.ID())
	}
}

// scripted is a connector answering results from a script.
type scripted struct {
	delivery.Noop
	results func(delivery.Change) delivery.Result
}

func (s *scripted) Deliver(_ context.Context, cs []delivery.Change) ([]delivery.Result, error) {
	out := make([]delivery.Result, len(cs))
	for i, c := range cs {
		out[i] = s.results(c)
	}
	return out, nil
}

func TestOutcomes(t *testing.T) {
	conn := &scripted{}
	d := &Destination{conn: conn, cfg: Config{Connector: "webhook", RetryFor: delivery.Duration(time.Hour),
		Backoff: Backoff{Min: delivery.Duration(time.Second), Max: delivery.Duration(4 * time.Second)}},
		m: mapper{purposes: []string{"marketing"}}}
	item := func(atMs int64) *sdk.SyncItem {
		return &vigiev1.SyncItem{Item: &vigiev1.SyncItem_SegmentChange{SegmentChange: &vigiev1.SegmentChange{
			Site: "demo", Subject: "s1", Segment: "x", EventId: "e", AtMs: atMs}}}
	}
	now := time.Now().UnixMilli()
	for _, tc := range []struct {
		name    string
		res     delivery.Result
		atMs    int64
		calls   int // deliveries in a row with this result
		check   func(sdk.SyncOutcome) bool
		explain string
	}{
		{"done", delivery.Result{Outcome: delivery.Done}, now, 1, func(o sdk.SyncOutcome) bool { return o.Err == nil && !o.NotSupported }, "done"},
		{"not supported", delivery.Result{Outcome: delivery.NotSupported, Reason: "no e-mail"}, now, 1,
			func(o sdk.SyncOutcome) bool { return o.Err == nil && o.NotSupported && o.Detail == "no e-mail" }, "not supported with the reason"},
		{"final", delivery.Result{Outcome: delivery.Failed, Status: 400, Reason: "webhook POST: HTTP 400: bad"}, now, 1,
			func(o sdk.SyncOutcome) bool { return o.Permanent && o.Err.Error() == "webhook POST: HTTP 400: bad" }, "permanent with status and excerpt"},
		{"first retryable failure", delivery.Result{Outcome: delivery.Failed, Retryable: true, Status: 500, Reason: "HTTP 500"}, now, 1,
			func(o sdk.SyncOutcome) bool { return o.Err != nil && !o.Permanent && o.RetryAfter == 0 }, "counted (the host's backoff)"},
		{"destination down", delivery.Result{Outcome: delivery.Failed, Retryable: true, Status: 500, Reason: "HTTP 500"}, now, 3,
			func(o sdk.SyncOutcome) bool {
				return o.Err != nil && !o.Permanent && o.RetryAfter >= time.Second && o.RetryAfter <= 4*time.Second
			}, "deferred with backoff"},
		{"retry-after", delivery.Result{Outcome: delivery.Failed, Retryable: true, Status: 429, RetryAfter: time.Minute, Reason: "HTTP 429"}, now, 1,
			func(o sdk.SyncOutcome) bool { return o.RetryAfter == time.Minute }, "deferred as the destination asked"},
		{"too old", delivery.Result{Outcome: delivery.Failed, Retryable: true, Status: 503, Reason: "HTTP 503"}, now - 2*time.Hour.Milliseconds(), 3,
			func(o sdk.SyncOutcome) bool { return o.Permanent }, "dead-lettered after retry_for"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d.streak = 0
			conn.results = func(c delivery.Change) delivery.Result { r := tc.res; r.ID = c.ID(); return r }
			var o sdk.SyncOutcome
			for range tc.calls {
				o = d.SyncBatch(context.Background(), []*sdk.SyncItem{item(tc.atMs)})[0]
			}
			if !tc.check(o) {
				t.Errorf("outcome %+v, want %s", o, tc.explain)
			}
		})
	}
}
