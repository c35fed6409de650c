package segments

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

func TestSegmentMembership(t *testing.T) {
	mk := "marketing"
	cfg := Config{
		Segments: []SegmentConfig{
			seg("pricing", `event.type == "page" && event.page.path.startsWith("/pricing")`),
			seg("fr", `profile.country == "FR"`),
			{Name: "analytics-only", When: `true`, Purposes: []string{"analytics"}},
			{Name: "blog-readers", Site: "blog", When: `true`},
			{Name: "shop-visitors", Site: "shop", When: `true`},
		},
	}
	s := configured(t, cfg)
	tests := []struct {
		name    string
		ev      *sdk.Event
		prof    *sdk.Profile
		want    []string // "segment:entered" / "segment:exited", in config order
		wantNil bool
	}{
		{name: "enters when true and not in", ev: pageEvent("/pricing/team", mk), prof: profile(0),
			want: []string{"pricing:entered", "shop-visitors:entered"}},
		{name: "no change when true and already in", ev: pageEvent("/pricing", mk), prof: profile(0, "pricing", "shop-visitors"),
			want: nil},
		{name: "exits when false and in", ev: pageEvent("/about", mk), prof: profile(0, "pricing", "shop-visitors"),
			want: []string{"pricing:exited"}},
		{name: "no change when false and not in", ev: pageEvent("/about", mk), prof: profile(0, "shop-visitors"),
			want: nil},
		{name: "profile fields are visible", ev: pageEvent("/", mk), prof: &sdk.Profile{Country: "FR", Segments: []string{"shop-visitors"}},
			want: []string{"fr:entered"}},
		{name: "missing purposes exit every segment the subject is in", ev: pageEvent("/pricing", "analytics"),
			prof: profile(0, "pricing", "fr", "shop-visitors"),
			want: []string{"pricing:exited", "fr:exited", "analytics-only:entered", "shop-visitors:exited"}},
		{name: "no purposes at all: exits, never enters", ev: pageEvent("/pricing"), prof: profile(0, "pricing"),
			want: []string{"pricing:exited"}},
		{name: "segment of another site is ignored even when in it", ev: pageEvent("/", mk), prof: profile(0, "blog-readers"),
			want: []string{"shop-visitors:entered"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := s.Segment(t.Context(), tc.ev, tc.prof)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range res.Changes {
				tr := "entered"
				if c.GetTransition() == exited {
					tr = "exited"
				}
				got = append(got, c.GetSegment()+":"+tr)
				want := change(tc.ev, c.GetSegment(), c.GetTransition())
				if !proto.Equal(c, want) {
					t.Errorf("change = %v, want %v", c, want)
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("changes = %v, want %v", got, tc.want)
			}
			if res.Update != nil {
				t.Errorf("update = %v, want nil (no scoring rules)", res.Update)
			}
		})
	}
}

func TestScoring(t *testing.T) {
	cfg := Config{
		Scoring: []ScoreConfig{
			rule("demo", `event.type == "track" && event.name == "Demo Requested"`, 10),
			rule("pricing-view", `event.type == "page" && event.page.path.startsWith("/pricing")`, 3),
			rule("unsubscribe", `event.name == "Unsubscribed"`, -5),
			{Name: "blog-only", Site: "blog", When: `true`, Points: 100},
			{Name: "analytics-visit", When: `event.type == "page"`, Points: 1, Purposes: []string{"analytics"}},
			rule("sees-score-before-delta", `profile.score == 7`, 1000),
		},
		Segments: []SegmentConfig{
			seg("hot", `profile.score >= 10`),
		},
	}
	s := configured(t, cfg)
	tests := []struct {
		name      string
		ev        *sdk.Event
		prof      *sdk.Profile
		wantDelta int64
		wantHot   vigiev1.Transition // 0: no change
	}{
		{name: "demo request scores and enters via the new score", ev: trackEvent("Demo Requested", "", "marketing"),
			prof: profile(0), wantDelta: 10, wantHot: entered},
		{name: "pricing view", ev: pageEvent("/pricing", "marketing"), prof: profile(0), wantDelta: 3},
		{name: "pricing view with analytics too sums rules", ev: pageEvent("/pricing", "marketing", "analytics"),
			prof: profile(0), wantDelta: 4},
		{name: "negative points push the subject out", ev: trackEvent("Unsubscribed", "", "marketing"),
			prof: profile(12, "hot"), wantDelta: -5, wantHot: exited},
		{name: "score before this event feeds scoring rules", ev: pageEvent("/pricing", "marketing"),
			prof: profile(7), wantDelta: 1003, wantHot: entered},
		{name: "no purpose granted: no points", ev: trackEvent("Demo Requested", "", "analytics"),
			prof: profile(0), wantDelta: 0},
		{name: "no rule true: nil update", ev: pageEvent("/about", "marketing"), prof: profile(0), wantDelta: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := proto.Clone(tc.prof)
			res, err := s.Segment(t.Context(), tc.ev, tc.prof)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantDelta == 0 && res.Update != nil {
				t.Errorf("update = %v, want nil", res.Update)
			}
			if got := res.Update.GetScoreDelta(); got != tc.wantDelta {
				t.Errorf("score delta = %d, want %d", got, tc.wantDelta)
			}
			var got vigiev1.Transition
			if len(res.Changes) == 1 {
				got = res.Changes[0].GetTransition()
			} else if len(res.Changes) > 1 {
				t.Fatalf("changes = %v", res.Changes)
			}
			if got != tc.wantHot {
				t.Errorf("hot transition = %v, want %v", got, tc.wantHot)
			}
			if !proto.Equal(before, tc.prof) {
				t.Errorf("Segment modified its input profile")
			}
		})
	}
}

func TestFunctions(t *testing.T) {
	prof := &sdk.Profile{
		FirstSeenMs: 90 * day,
		Segments:    []string{"vip"},
		Counters: []*vigiev1.Counter{
			{Type: "page", Key: "/pricing", Window: "7d", Count: 2},
			{Type: "page", Key: "/pricing/team", Window: "7d", Count: 1},
			{Type: "page", Key: "/pricing", Window: "30d", Count: 9},
			{Type: "page", Key: "/about", Window: "7d", Count: 4},
			{Type: "track", Key: "/pricing", Window: "7d", Count: 50},
			{Type: "identify", Key: "", Window: "1d", Count: 1},
		},
	}
	ev := trackEvent("Signup", `{"plan":"pro","seats":3,"tags":["a","b"],"nested":{"x":true}}`, "marketing")
	ev.Traits = []byte(`{"industry":"retail"}`)
	tests := []struct {
		when string
		want bool
	}{
		{`profile.count("page", "/pricing", "7d") == 2`, true},
		{`profile.count("page", "/pricing*", "7d") == 3`, true},
		{`profile.count("page", "*", "7d") == 7`, true},
		{`profile.count("page", "7d") == 7`, true},
		{`profile.count("page", "/pricing", "30d") == 9`, true},
		{`profile.count("page", "/pric", "7d") == 0`, true},
		{`profile.count("identify", "1d") == 1`, true},
		{`profile.count("screen", "7d") == 0`, true},
		{`profile.in_segment("vip") && !profile.in_segment("other")`, true},
		{`"vip" in profile.segments`, true},
		{`profile.days_since_first_seen() == 10`, true},
		{`event.props().plan == "pro"`, true},
		{`event.props().seats == 3 && event.props().seats > 2`, true},
		{`"b" in event.props().tags && event.props().nested.x == true`, true},
		{`has(event.props().missing)`, false},
		{`event.props().?missing.orValue("none") == "none"`, true},
		{`event.traits().industry == "retail"`, true},
		{`event.name.lowerAscii() == "signup"`, true},
	}
	for _, tc := range tests {
		t.Run(tc.when, func(t *testing.T) {
			s := configured(t, Config{Segments: []SegmentConfig{seg("s", tc.when)}})
			res, err := s.Segment(t.Context(), ev, prof)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(res.Changes) == 1; got != tc.want {
				t.Errorf("entered = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDaysSinceFirstSeen(t *testing.T) {
	s := configured(t, Config{Segments: []SegmentConfig{seg("s", `profile.days_since_first_seen() >= 2`)}})
	tests := []struct {
		name        string
		ts, receive int64
		first       int64
		want        bool
	}{
		{name: "exactly two days", ts: 12 * day, first: 10 * day, want: true},
		{name: "one ms short", ts: 12*day - 1, first: 10 * day, want: false},
		{name: "falls back to received time", ts: 0, receive: 20 * day, first: 10 * day, want: true},
		{name: "unknown first seen is zero days", ts: 12 * day, first: 0, want: false},
		{name: "event before first seen is zero days", ts: 5 * day, first: 10 * day, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev := pageEvent("/", "marketing")
			ev.TimestampMs, ev.ReceivedAtMs = tc.ts, tc.receive
			res, err := s.Segment(t.Context(), ev, &sdk.Profile{FirstSeenMs: tc.first})
			if err != nil {
				t.Fatal(err)
			}
			if got := len(res.Changes) == 1; got != tc.want {
				t.Fatalf("entered = %v, want %v", got, tc.want)
			}
			wantAt := tc.ts
			if wantAt == 0 {
				wantAt = tc.receive
			}
			if tc.want && res.Changes[0].GetAtMs() != wantAt {
				t.Errorf("at_ms = %d, want %d", res.Changes[0].GetAtMs(), wantAt)
			}
		})
	}
}

func TestKeyMatches(t *testing.T) {
	tests := []struct {
		pattern, key string
		want         bool
	}{
		{"/pricing", "/pricing", true},
		{"/pricing", "/pricing/", false},
		{"/pricing*", "/pricing", true},
		{"/pricing*", "/pricing/team", true},
		{"/pricing*", "/pric", false},
		{"*", "", true},
		{"*", "anything", true},
		{"", "", true},
		{"", "x", false},
	}
	for _, tc := range tests {
		if got := keyMatches(tc.pattern, tc.key); got != tc.want {
			t.Errorf("keyMatches(%q, %q) = %v, want %v", tc.pattern, tc.key, got, tc.want)
		}
	}
}

func TestEvalErrors(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		ev      *sdk.Event
		wantErr string
	}{
		{name: "missing property key", cfg: Config{Segments: []SegmentConfig{seg("needs-plan", `event.props().plan == "pro"`)}},
			ev: trackEvent("x", `{}`, "marketing"), wantErr: `segment "needs-plan": no such key: plan`},
		{name: "properties not an object", cfg: Config{Segments: []SegmentConfig{seg("p", `has(event.props().plan)`)}},
			ev: trackEvent("x", `[1]`, "marketing"), wantErr: "properties: not a JSON object"},
		{name: "window from data", cfg: Config{Scoring: []ScoreConfig{rule("dyn-window", `profile.count("page", event.name) > 0`, 1)}},
			ev: trackEvent("2d", "", "marketing"), wantErr: `scoring rule "dyn-window": count: unknown window "2d"`},
		{name: "cost limit", cfg: Config{Segments: []SegmentConfig{seg("slow",
			`[0,1,2,3,4,5,6,7,8,9].all(a, [0,1,2,3,4,5,6,7,8,9].all(b, [0,1,2,3,4,5,6,7,8,9].all(c, [0,1,2,3,4,5,6,7,8,9].all(d, [0,1,2,3,4,5,6,7,8,9].all(e, a+b+c+d+e >= 0)))))`)}},
			ev: pageEvent("/", "marketing"), wantErr: "cost limit exceeded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := configured(t, tc.cfg)
			_, err := s.Segment(t.Context(), tc.ev, profile(0))
			if !errors.Is(err, ErrEval) {
				t.Fatalf("err = %v, want ErrEval", err)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err = %q, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestCancelledContext(t *testing.T) {
	s := configured(t, Config{Segments: []SegmentConfig{seg("all", `true`)}})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := s.Segment(ctx, pageEvent("/", "marketing"), profile(0))
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrEval) {
		t.Fatalf("err = %v, want ErrEval wrapping context.Canceled", err)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name   string
		config string
		want   []string // substrings, all required
	}{
		{name: "undeclared reference with position",
			config: `{"segments":[{"name":"pricing-interest","when":"profile.count(\"page\", \"7d\") > 1 && nope"}]}`,
			want:   []string{`segment "pricing-interest": ERROR: <input>:1:36: undeclared reference to 'nope'`}},
		{name: "unknown field with position",
			config: `{"scoring":[{"name":"r","when":"event.nope == 1","points":1}]}`,
			want:   []string{`scoring rule "r": ERROR: <input>:1:6: undefined field 'nope'`}},
		{name: "syntax error", config: `{"segments":[{"name":"s","when":"event.type ==="}]}`,
			want: []string{`segment "s": ERROR: <input>:1:`}},
		{name: "non-bool", config: `{"segments":[{"name":"s","when":"profile.score + 1"}]}`,
			want: []string{`segment "s": expression must be bool, not int`}},
		{name: "dyn is not bool", config: `{"segments":[{"name":"s","when":"event.props().vip"}]}`,
			want: []string{`segment "s": expression must be bool, not dyn`}},
		{name: "literal window", config: `{"segments":[{"name":"s","when":"profile.count(\"page\", \"/x\", \"2w\") > 0"}]}`,
			want: []string{`segment "s": ERROR: <input>:1:29: unknown counter window "2w"`}},
		{name: "duplicate segment", config: `{"segments":[{"name":"s","when":"true"},{"name":"s","when":"false"}]}`,
			want: []string{`segment "s": duplicate name`}},
		{name: "invalid names", config: `{"segments":[{"name":"Big","when":"true"},{"name":"a.b","when":"true"},{"name":"","when":"true"},` +
			`{"name":"` + strings.Repeat("x", 65) + `","when":"true"}]}`,
			want: []string{`segment "Big": name must be`, `segment "a.b": name must be`, `segment "": name must be`, `segment "xxxxx`}},
		{name: "empty when", config: `{"segments":[{"name":"s"}]}`, want: []string{`segment "s": when is required`}},
		{name: "zero points", config: `{"scoring":[{"name":"r","when":"true"}]}`, want: []string{`scoring rule "r": points must be non-zero`}},
		{name: "duplicate rule", config: `{"scoring":[{"name":"r","when":"true","points":1},{"name":"r","when":"true","points":2}]}`,
			want: []string{`scoring rule "r": duplicate name`}},
		{name: "empty purpose", config: `{"segments":[{"name":"s","when":"true","purposes":[""]}]}`, want: []string{`segment "s": empty purpose`}},
		{name: "unknown member", config: `{"segments":[],"segmentz":[]}`, want: []string{"segmentz"}},
		{name: "wrong shape", config: `{"segments":{"name":"s"}}`, want: []string{"segments"}},
		{name: "not json", config: `segments:`, want: []string{"invalid configuration"}},
		{name: "all problems at once", config: `{"segments":[{"name":"a","when":"x"},{"name":"b","when":"1"}],"scoring":[{"name":"c","when":"y","points":1}]}`,
			want: []string{`segment "a"`, `segment "b"`, `scoring rule "c"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate([]byte(tc.config))
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("err = %v, want ErrConfig", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %q\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func TestSegmentNameAllowsNATSSafeNames(t *testing.T) {
	name := strings.Repeat("a", 64)
	for _, n := range []string{"a", "lead_score-10", name} {
		if err := Validate(mustJSON(t, Config{Segments: []SegmentConfig{seg(n, "true")}})); err != nil {
			t.Errorf("name %q refused: %v", n, err)
		}
	}
}

func TestConfigureKeepsPreviousOnError(t *testing.T) {
	s := configured(t, Config{Segments: []SegmentConfig{seg("all", "true")}})
	if err := s.Configure(t.Context(), []byte(`{"segments":[{"name":"bad","when":"nope"}]}`)); err == nil {
		t.Fatal("bad configuration accepted")
	}
	res, err := s.Segment(t.Context(), pageEvent("/", "marketing"), profile(0))
	if err != nil || len(res.Changes) != 1 || res.Changes[0].GetSegment() != "all" {
		t.Fatalf("after a refused Configure: %v, %v; want the previous segment", res, err)
	}
	for _, empty := range []string{"", "null", "{}"} {
		if err := s.Configure(t.Context(), []byte(empty)); err != nil {
			t.Fatalf("Configure(%q): %v", empty, err)
		}
		res, err := s.Segment(t.Context(), pageEvent("/", "marketing"), profile(0))
		if err != nil || len(res.Changes) != 0 || res.Update != nil {
			t.Fatalf("Configure(%q) then Segment: %v, %v; want nothing", empty, res, err)
		}
	}
}

func TestUnconfiguredAndNilInputs(t *testing.T) {
	res, err := New().Segment(t.Context(), pageEvent("/", "marketing"), profile(0))
	if err != nil || res == nil || res.Update != nil || len(res.Changes) != 0 {
		t.Fatalf("unconfigured: %v, %v", res, err)
	}
	s := configured(t, Config{Segments: []SegmentConfig{{Name: "all", When: "profile.score == 0", Purposes: []string{"x"}}}})
	res, err = s.Segment(t.Context(), &sdk.Event{Purposes: []string{"x"}}, nil)
	if err != nil || len(res.Changes) != 1 {
		t.Fatalf("nil profile: %v, %v", res, err)
	}
}

func TestNames(t *testing.T) {
	cfg := Config{Segments: []SegmentConfig{
		{Name: "a", Site: "shop", Description: "first", When: "true"},
		{Name: "b", When: "false", Purposes: []string{"analytics"}},
	}, Scoring: []ScoreConfig{rule("r", "true", 1)}}
	got, err := Names(mustJSON(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(cfg.Segments) {
		t.Fatalf("got %d segments, want %d", len(got), len(cfg.Segments))
	}
	for i, sc := range cfg.Segments {
		g := got[i]
		if g.Name != sc.Name || g.Site != sc.Site || g.Description != sc.Description || g.When != sc.When {
			t.Errorf("segment %d = %+v, want %+v", i, g, sc)
		}
		want := sc.Purposes
		if want == nil {
			want = defaultPurposes
		}
		if strings.Join(g.Purposes, ",") != strings.Join(want, ",") {
			t.Errorf("segment %d purposes = %v, want %v", i, g.Purposes, want)
		}
	}
	if _, err := Names([]byte(`{"segments":[{"name":"x","when":"1"}]}`)); !errors.Is(err, ErrConfig) {
		t.Errorf("Names of an invalid config: err = %v, want ErrConfig", err)
	}
}

// TestWithScoreCopiesEveryField guards withScore against fields added to
// Profile later.
func TestWithScoreCopiesEveryField(t *testing.T) {
	p := &vigiev1.Profile{
		Site: "s", Subject: "x", FirstSeenMs: 1, LastSeenMs: 2,
		Counters: []*vigiev1.Counter{{Type: "page", Key: "/", Window: "1d", Count: 1}},
		Segments: []string{"a"}, Score: 3, LastCampaign: &vigiev1.Campaign{Name: "c"},
		Country: "FR", Attributes: []byte(`{}`),
	}
	fields := p.ProtoReflect().Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		if !p.ProtoReflect().Has(fields.Get(i)) {
			t.Fatalf("test profile leaves field %s unset: update the test and withScore", fields.Get(i).Name())
		}
	}
	got := withScore(p, 42)
	if got.GetScore() != 42 {
		t.Errorf("score = %d, want 42", got.GetScore())
	}
	got.Score = p.GetScore()
	if !proto.Equal(got, p) {
		t.Errorf("copy differs:\n got %s\nwant %s", prototext.Format(got), prototext.Format(p))
	}
}

func TestManifest(t *testing.T) {
	p := Plugin()
	m := p.Manifest
	if m.Name != "segments" || m.Version != Version || m.Description == "" || len(m.Purposes) != 0 || len(m.Capabilities) != 0 {
		t.Errorf("manifest = %+v", m)
	}
	if p.Segmenter == nil || p.Configurer == nil || p.Enricher != nil || p.Syncer != nil {
		t.Errorf("hooks: %+v", p)
	}
	var schema map[string]any
	if err := json.Unmarshal(m.ConfigSchema, &schema); err != nil {
		t.Fatalf("config schema: %v", err)
	}
	props, _ := schema["properties"].(map[string]any)
	if _, ok := props["segments"]; !ok {
		t.Errorf("schema has no segments property")
	}
	if _, ok := props["scoring"]; !ok {
		t.Errorf("schema has no scoring property")
	}
}

func TestConcurrentSegment(t *testing.T) {
	s := configured(t, Config{
		Segments: []SegmentConfig{seg("pro", `has(event.props().plan) && event.props().plan == "pro"`)},
		Scoring:  []ScoreConfig{rule("any", "true", 1)},
	})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				plan := "free"
				if (g+i)%2 == 0 {
					plan = "pro"
				}
				res, err := s.Segment(context.Background(), trackEvent("x", `{"plan":"`+plan+`"}`, "marketing"), profile(0))
				if err != nil {
					t.Error(err)
					return
				}
				if got := len(res.Changes) == 1; got != (plan == "pro") {
					t.Errorf("plan %s: changes %v", plan, res.Changes)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestCostTrackingOnlyWhenUnbounded(t *testing.T) {
	tests := []struct {
		when string
		want bool
	}{
		{`event.type == "page" && event.page.path.startsWith("/pricing")`, false},
		{`profile.count("page", "/pricing*", "7d") >= 3 && profile.country == "FR"`, false},
		{`event.name.lowerAscii().contains("demo")`, false},
		{`profile.counters.exists(c, c.count > 10)`, true},
		{`has(event.props().tags) && event.props().tags.exists(t, t == "x")`, true},
	}
	for _, tc := range tests {
		c, err := compile(mustJSON(t, Config{Segments: []SegmentConfig{seg("s", tc.when)}}))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.segments[0].costTracked; got != tc.want {
			t.Errorf("%s: cost tracked = %v, want %v", tc.when, got, tc.want)
		}
	}
}
