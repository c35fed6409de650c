package segments

import (
	"encoding/json"
	"testing"

	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// day is one day in milliseconds.
const day = int64(msPerDay)

// mustJSON marshals v for a configuration section.
func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// configured returns a Segmenter configured with cfg.
func configured(t testing.TB, cfg Config) *Segmenter {
	t.Helper()
	s := New()
	if err := s.Configure(t.Context(), mustJSON(t, cfg)); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	return s
}

// seg is a segment with default purposes.
func seg(name, when string) SegmentConfig { return SegmentConfig{Name: name, When: when} }

// rule is a scoring rule with default purposes.
func rule(name, when string, points int64) ScoreConfig {
	return ScoreConfig{Name: name, When: when, Points: points}
}

// pageEvent is a pseudonymous page view granting purposes.
func pageEvent(path string, purposes ...string) *sdk.Event {
	return &sdk.Event{
		Id: "ev-1", Site: "shop", Subject: "subj-1", Type: "page", TimestampMs: 100 * day,
		Purposes: purposes, Page: &vigiev1.Page{Path: path},
	}
}

// trackEvent is a pseudonymous track event with JSON properties.
func trackEvent(name, props string, purposes ...string) *sdk.Event {
	return &sdk.Event{
		Id: "ev-2", Site: "shop", Subject: "subj-1", Type: "track", Name: name, TimestampMs: 100 * day,
		Purposes: purposes, Properties: []byte(props),
	}
}

// profile is a profile of subj-1 on shop.
func profile(score int64, segments ...string) *sdk.Profile {
	return &sdk.Profile{Site: "shop", Subject: "subj-1", Score: score, Segments: segments, FirstSeenMs: 90 * day}
}

// change is the SegmentChange expected for ev.
func change(ev *sdk.Event, segment string, t vigiev1.Transition) *sdk.SegmentChange {
	return &sdk.SegmentChange{
		Site: ev.GetSite(), Subject: ev.GetSubject(), Segment: segment,
		Transition: t, AtMs: ev.GetTimestampMs(), EventId: ev.GetId(),
	}
}

const (
	entered = vigiev1.Transition_TRANSITION_ENTERED
	exited  = vigiev1.Transition_TRANSITION_EXITED
)
