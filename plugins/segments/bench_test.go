package segments

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// BenchmarkSegment evaluates 5 segments and 5 scoring rules per event,
// with one JSON property lookup and one profile copy (score change).
func BenchmarkSegment(b *testing.B) {
	cfg := Config{
		Segments: []SegmentConfig{
			seg("pricing-interest", `profile.count("page", "/pricing*", "7d") >= 3 && profile.country == "FR"`),
			seg("sales-ready", `profile.score >= 10`),
			seg("new-visitor", `profile.days_since_first_seen() < 7`),
			seg("campaign-spring", `has(profile.last_campaign) && profile.last_campaign.name == "spring"`),
			seg("returning", `profile.count("page", "30d") > 10 && !profile.in_segment("new-visitor")`),
		},
		Scoring: []ScoreConfig{
			rule("demo-requested", `event.type == "track" && event.name == "Demo Requested"`, 10),
			rule("pricing-view", `event.type == "page" && event.page.path.startsWith("/pricing")`, 3),
			rule("unsubscribed", `event.type == "track" && event.name == "Unsubscribed"`, -5),
			rule("big-plan", `event.type == "track" && has(event.props().seats) && event.props().seats >= 50`, 5),
			rule("from-ads", `event.campaign.medium == "cpc"`, 1),
		},
	}
	s := configured(b, cfg)
	ev := trackEvent("Demo Requested", `{"seats":80,"plan":"pro","currency":"EUR"}`, "marketing", "analytics")
	ev.Campaign = &vigiev1.Campaign{Name: "spring", Medium: "cpc"}
	p := profile(4, "new-visitor")
	p.Country = "FR"
	p.LastCampaign = ev.Campaign
	for _, k := range []string{"/", "/pricing", "/pricing/team", "/blog/a", "/blog/b", "/docs"} {
		for _, w := range []string{"1d", "7d", "30d"} {
			p.Counters = append(p.Counters, &vigiev1.Counter{Type: "page", Key: k, Window: w, Count: 2})
		}
	}
	// Steady state: the subject is already in the segments that are true,
	// as after the host applied the previous event's changes.
	steady := proto.Clone(p).(*vigiev1.Profile)
	steady.Segments = []string{"pricing-interest", "sales-ready", "campaign-spring", "returning"}
	for _, bc := range []struct {
		name        string
		p           *vigiev1.Profile
		wantChanges int
	}{{"steady", steady, 0}, {"changes", p, 4}} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := b.Context()
			b.ReportAllocs()
			for b.Loop() {
				res, err := s.Segment(ctx, ev, bc.p)
				if err != nil || res.Update.GetScoreDelta() != 16 || len(res.Changes) != bc.wantChanges {
					b.Fatalf("%v %v", res, err)
				}
			}
		})
	}
}
