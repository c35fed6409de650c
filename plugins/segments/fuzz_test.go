package segments

import (
	"errors"
	"testing"

	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// FuzzConfigure feeds arbitrary configuration bytes to Configure: it must
// never panic, must refuse with ErrConfig or accept, and an accepted
// configuration must evaluate an event without panicking.
func FuzzConfigure(f *testing.F) {
	for _, seed := range []string{
		``, `null`, `{}`, `[]`, `{"segments":null}`,
		`{"segments":[{"name":"a","when":"true"}]}`,
		`{"segments":[{"name":"a","when":"profile.count(\"page\", \"/p*\", \"7d\") >= 3 && profile.country == \"FR\""}]}`,
		`{"segments":[{"name":"a","when":"has(event.props().x) && event.props().x > 1","purposes":["analytics"]}]}`,
		`{"scoring":[{"name":"r","when":"event.type == \"page\"","points":-5}]}`,
		`{"scoring":[{"name":"r","when":"profile.count(\"page\", \"9d\") > 0","points":1}]}`,
		`{"segments":[{"name":"a","when":"((((((((((true))))))))))"}]}`,
		`{"segments":[{"name":"a","when":"[1,2].all(x, [3].exists(y, x < y))"}]}`,
		`{"segments":[{"name":"a","when":"event.traits().?k.orValue(0) == 0 && profile.days_since_first_seen() > 1"}]}`,
		`{"segments":[{"name":"a","when":"\u0000"}]}`,
	} {
		f.Add([]byte(seed))
	}
	ev := &vigiev1.Event{Id: "e", Site: "s", Subject: "x", Type: "page", Purposes: []string{"marketing", "analytics"},
		Page: &vigiev1.Page{Path: "/pricing"}, Properties: []byte(`{"x":2}`), Traits: []byte(`{"k":1}`)}
	p := &vigiev1.Profile{Counters: []*vigiev1.Counter{{Type: "page", Key: "/pricing", Window: "7d", Count: 3}}, Segments: []string{"a"}}
	f.Fuzz(func(t *testing.T, config []byte) {
		s := New()
		err := s.Configure(t.Context(), config)
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("error %v does not wrap ErrConfig", err)
			}
			return
		}
		if _, err := s.Segment(t.Context(), ev, p); err != nil && !errors.Is(err, ErrEval) {
			t.Fatalf("error %v does not wrap ErrEval", err)
		}
	})
}

// FuzzProperties feeds arbitrary JSON properties to an expression reading
// them: never a panic, only ErrEval.
func FuzzProperties(f *testing.F) {
	for _, seed := range []string{``, `{}`, `null`, `[]`, `{"plan":"pro"}`, `{"plan":1}`, `{"plan":{"a":[1,2]}}`, `{"plan":`, `"x"`} {
		f.Add([]byte(seed))
	}
	s := New()
	if err := s.Configure(f.Context(), []byte(`{"segments":[{"name":"a","when":"has(event.props().plan) && event.props().plan == \"pro\""}]}`)); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, props []byte) {
		ev := &vigiev1.Event{Purposes: []string{"marketing"}, Properties: props}
		if _, err := s.Segment(t.Context(), ev, nil); err != nil && !errors.Is(err, ErrEval) {
			t.Fatalf("error %v does not wrap ErrEval", err)
		}
	})
}
