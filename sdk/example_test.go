package sdk_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"

	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/sdk/sdktest"
)

// readingTime estimates reading time from a "words" property.
type readingTime struct{}

func (readingTime) Enrich(ctx context.Context, events []*sdk.Event) ([]*sdk.Event, error) {
	for _, ev := range events {
		var props map[string]any
		if json.Unmarshal(ev.GetProperties(), &props) != nil {
			continue
		}
		if words, ok := props["words"].(float64); ok {
			props["reading_minutes"] = int(words/200) + 1
			ev.Properties, _ = json.Marshal(props)
		}
	}
	sdk.HostFrom(ctx).Log(ctx, slog.LevelDebug, "enriched", slog.Int("events", len(events)))
	return events, nil
}

// An Enricher adds fields to a batch of events. In the plugin's main:
//
//	sdk.Serve(sdk.Plugin{Manifest: manifest, Enricher: readingTime{}})
func ExampleEnricher() {
	ctx := sdk.ContextWithHost(context.Background(), sdktest.NewHost())
	out, _ := readingTime{}.Enrich(ctx, []*sdk.Event{
		{Id: "1", Type: "page", Properties: []byte(`{"words":900}`)},
	})
	fmt.Println(string(out[0].GetProperties()))
	// Output: {"reading_minutes":5,"words":900}
}

// pricingSegment puts subjects who look at /pricing in segment "pricing",
// scoring 10 points for each visit.
type pricingSegment struct{}

func (pricingSegment) Segment(ctx context.Context, ev *sdk.Event, p *sdk.Profile) (*sdk.SegmentResult, error) {
	if !strings.HasPrefix(ev.GetPage().GetPath(), "/pricing") {
		return nil, nil
	}
	res := &sdk.SegmentResult{Update: &sdk.ProfileUpdate{ScoreDelta: 10}}
	for _, s := range p.GetSegments() {
		if s == "pricing" {
			return res, nil // already in: no change to report
		}
	}
	res.Changes = append(res.Changes, &sdk.SegmentChange{
		Site: ev.GetSite(), Subject: ev.GetSubject(), Segment: "pricing",
		Transition: vigiev1.Transition_TRANSITION_ENTERED, AtMs: ev.GetTimestampMs(), EventId: ev.GetId(),
	})
	return res, nil
}

// A Segmenter sees each event with its subject's profile and returns
// profile updates and segment transitions. In the plugin's main:
//
//	sdk.Serve(sdk.Plugin{Manifest: manifest, Segmenter: pricingSegment{}})
func ExampleSegmenter() {
	ev := &sdk.Event{Id: "e1", Site: "shop", Subject: "p1", Type: "page", Page: &vigiev1.Page{Path: "/pricing"}}
	res, _ := pricingSegment{}.Segment(context.Background(), ev, &sdk.Profile{Site: "shop", Subject: "p1"})
	fmt.Println(res.Update.GetScoreDelta(), res.Changes[0].GetSegment(), res.Changes[0].GetTransition())
	// Output: 10 pricing TRANSITION_ENTERED
}

// crmSync mirrors segment membership into a CRM and deletes erased
// contacts. Here the "CRM" is the plugin's key-value store.
type crmSync struct{}

func (crmSync) Sync(ctx context.Context, it *sdk.SyncItem) error {
	host := sdk.HostFrom(ctx)
	switch {
	case it.GetSegmentChange() != nil:
		c := it.GetSegmentChange()
		return host.KVPut(ctx, c.GetSubject()+"/"+c.GetSegment(), []byte(c.GetTransition().String()), 0)
	case it.GetPrivacy().GetAction() == vigiev1.PrivacyAction_PRIVACY_ACTION_ERASURE:
		return host.KVDelete(ctx, it.GetPrivacy().GetSubject()+"/pricing")
	}
	return nil
}

// A Syncer performs side effects for segment changes, identify and
// privacy events. In the plugin's main:
//
//	sdk.Serve(sdk.Plugin{
//		Manifest: sdk.Manifest{Name: "crm", Version: "1.0.0",
//			Purposes:     []string{"marketing"}, // required with contacts.resolve
//			Capabilities: []sdk.Capability{sdk.CapKV, sdk.CapContactsResolve}},
//		Syncer: crmSync{},
//	})
func ExampleSyncer() {
	host := sdktest.NewHost()
	ctx := sdk.ContextWithHost(context.Background(), host)
	_ = crmSync{}.Sync(ctx, &sdk.SyncItem{Item: &vigiev1.SyncItem_SegmentChange{SegmentChange: &sdk.SegmentChange{
		Subject: "p1", Segment: "pricing", Transition: vigiev1.Transition_TRANSITION_ENTERED}}})
	fmt.Println(len(host.KV()))
	_ = crmSync{}.Sync(ctx, &sdk.SyncItem{Item: &vigiev1.SyncItem_Privacy{Privacy: &vigiev1.PrivacyEvent{
		Subject: "p1", Action: vigiev1.PrivacyAction_PRIVACY_ACTION_ERASURE}}})
	fmt.Println(len(host.KV()))
	// Output:
	// 1
	// 0
}

// wpmConfig is the configuration of the reading-time plugin.
type wpmConfig struct {
	WordsPerMinute int `json:"wpm"`
}

// configurable keeps its configuration.
type configurable struct{ cfg wpmConfig }

func (c *configurable) Configure(_ context.Context, raw []byte) error {
	cfg := wpmConfig{WordsPerMinute: 200}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &cfg); err != nil {
			return fmt.Errorf("reading-time: %w", err)
		}
	}
	if cfg.WordsPerMinute <= 0 {
		return fmt.Errorf("reading-time: wpm must be positive, got %d", cfg.WordsPerMinute)
	}
	c.cfg = cfg
	return nil
}

// A Configurer receives the plugin's section of the Vigie configuration as
// JSON before any hook runs; an error stops the plugin from loading and is
// shown in GET /admin/v1/plugins. In vigie.yaml:
//
//	plugins:
//	  - name: reading-time
//	    path: ./reading-time
//	    sha256: <sha256sum of the binary>
//	    config: {wpm: 250}
func ExampleConfigurer() {
	c := &configurable{}
	fmt.Println(c.Configure(context.Background(), []byte(`{"wpm":250}`)), c.cfg.WordsPerMinute)
	fmt.Println(c.Configure(context.Background(), []byte(`{"wpm":0}`)))
	// Output:
	// <nil> 250
	// reading-time: wpm must be positive, got 0
}

// A plugin's main describes the plugin and serves its hooks; Serve does
// not return.
func ExampleServe() {
	sdk.Serve(sdk.Plugin{
		Manifest: sdk.Manifest{
			Name:         "reading-time",
			Version:      "1.0.0",
			Description:  "Adds reading_minutes to page events.",
			Filter:       sdk.Filter{Types: []string{"page"}},
			Purposes:     []string{"analytics"},
			ConfigSchema: []byte(`{"type":"object","properties":{"wpm":{"type":"integer"}}}`),
		},
		Enricher: readingTime{},
	})
}
