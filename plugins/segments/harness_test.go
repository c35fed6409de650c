package segments

import (
	"strings"
	"testing"

	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/sdk/sdktest"
)

// TestHarness runs the plugin as Vigie does, over the SDK's gRPC
// transport, configured with a lead-scoring setup.
func TestHarness(t *testing.T) {
	cfg := Config{
		Segments: []SegmentConfig{
			{Name: "pricing-interest", Description: "looked at pricing 3 times this week, in France",
				When: `profile.count("page", "/pricing*", "7d") >= 3 && profile.country == "FR"`},
			{Name: "sales-ready", When: `profile.score >= 10`, Purposes: []string{"marketing"}},
		},
		Scoring: []ScoreConfig{
			rule("demo-requested", `event.type == "track" && event.name == "Demo Requested"`, 10),
			rule("pricing-view", `event.type == "page" && event.page.path.startsWith("/pricing")`, 3),
			rule("unsubscribed", `event.type == "track" && event.name == "Unsubscribed"`, -5),
			rule("big-plan", `event.type == "track" && has(event.props().seats) && event.props().seats >= 50`, 5),
		},
	}
	h := sdktest.Start(t, sdktest.Config{Plugin: Plugin(), PluginConfig: mustJSON(t, cfg)})
	pricingFR := func(views int64, score int64, segments ...string) *sdk.Profile {
		p := profile(score, segments...)
		p.Country = "FR"
		p.Counters = append(p.Counters, &vigiev1.Counter{Type: "page", Key: "/pricing", Window: "7d", Count: views})
		return p
	}
	demo := trackEvent("Demo Requested", `{"seats":80}`, "marketing")
	third := pageEvent("/pricing", "personalization")
	unsub := trackEvent("Unsubscribed", "", "marketing")
	withdrawn := pageEvent("/pricing", "analytics")
	h.RunSegment(t, []sdktest.SegmentCase{
		{Name: "third pricing view enters pricing-interest, marketing not granted", Event: third, Profile: pricingFR(3, 0),
			Want: &sdk.SegmentResult{Update: &sdk.ProfileUpdate{ScoreDelta: 3},
				Changes: []*sdk.SegmentChange{change(third, "pricing-interest", entered)}}},
		{Name: "demo request with big plan enters sales-ready", Event: demo, Profile: profile(0),
			Want: &sdk.SegmentResult{Update: &sdk.ProfileUpdate{ScoreDelta: 15},
				Changes: []*sdk.SegmentChange{change(demo, "sales-ready", entered)}}},
		{Name: "unsubscribe drops below the threshold", Event: unsub, Profile: profile(12, "sales-ready"),
			Want: &sdk.SegmentResult{Update: &sdk.ProfileUpdate{ScoreDelta: -5},
				Changes: []*sdk.SegmentChange{change(unsub, "sales-ready", exited)}}},
		{Name: "consent withdrawn exits both, scores nothing", Event: withdrawn,
			Profile: pricingFR(5, 40, "pricing-interest", "sales-ready"),
			Want: &sdk.SegmentResult{Changes: []*sdk.SegmentChange{
				change(withdrawn, "pricing-interest", exited), change(withdrawn, "sales-ready", exited)}}},
		{Name: "unchanged membership reports nothing", Event: pageEvent("/about", "marketing"), Profile: profile(20, "sales-ready"),
			Want: &sdk.SegmentResult{}},
		{Name: "evaluation error fails the event", Event: trackEvent("Demo Requested", `"not an object"`, "marketing"), Profile: profile(0),
			WantErr: `scoring rule "big-plan"`},
	})
}

func TestHarnessRefusesBadConfig(t *testing.T) {
	c := sdktest.Start(t, sdktest.Config{Plugin: Plugin()})
	err := c.Configure(t.Context(), []byte(`{"segments":[{"name":"x","when":"profile.nope"}]}`))
	if err == nil {
		t.Fatal("bad configuration accepted over gRPC")
	}
	if want := `segment "x": ERROR: <input>:1:8: undefined field 'nope'`; !strings.Contains(err.Error(), want) {
		t.Errorf("err = %q, want it to contain %q", err, want)
	}
}
