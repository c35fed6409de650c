package sdk

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

func TestStatusRoundTrip(t *testing.T) {
	for _, sentinel := range []error{
		ErrCapability, ErrNotFound, ErrNotImplemented, ErrNoHost, ErrInvalidPlugin,
		context.Canceled, context.DeadlineExceeded,
	} {
		t.Run(sentinel.Error(), func(t *testing.T) {
			wrapped := fmt.Errorf("doing x: %w", sentinel)
			back := fromStatus(toStatus(wrapped))
			if !errors.Is(back, sentinel) {
				t.Errorf("lost sentinel: %v", back)
			}
			if got := back.Error(); !strings.Contains(got, "doing x") {
				t.Errorf("lost message: %q", got)
			}
		})
	}
	t.Run("plain error", func(t *testing.T) {
		back := fromStatus(toStatus(errors.New("boom")))
		if back == nil || !strings.Contains(back.Error(), "boom") {
			t.Fatalf("got %v", back)
		}
		for _, s := range []error{ErrCapability, ErrNotFound, ErrNoHost} {
			if errors.Is(back, s) {
				t.Errorf("plain error became %v", s)
			}
		}
	})
	if toStatus(nil) != nil || fromStatus(nil) != nil {
		t.Error("nil must stay nil")
	}
}

type nopEnricher struct{}

func (nopEnricher) Enrich(_ context.Context, ev []*Event) ([]*Event, error) { return ev, nil }

func TestNormalize(t *testing.T) {
	ok := Manifest{Name: "geo-ip_v2", Version: "1"}
	tests := []struct {
		name    string
		p       Plugin
		wantErr bool
		kinds   []Kind
	}{
		{"valid", Plugin{Manifest: ok, Enricher: nopEnricher{}}, false, []Kind{KindEnricher}},
		{"author kinds ignored", Plugin{Manifest: Manifest{Name: "a", Version: "1", Kinds: []Kind{KindSyncer}}, Enricher: nopEnricher{}}, false, []Kind{KindEnricher}},
		{"no hook", Plugin{Manifest: ok}, true, nil},
		{"no name", Plugin{Manifest: Manifest{Version: "1"}, Enricher: nopEnricher{}}, true, nil},
		{"upper-case name", Plugin{Manifest: Manifest{Name: "Geo", Version: "1"}, Enricher: nopEnricher{}}, true, nil},
		// The host refuses '.' in plugin names (NATS subject tokens): so
		// does the SDK, with the same rule (ValidName).
		{"dot in name", Plugin{Manifest: Manifest{Name: "geo.v2", Version: "1"}, Enricher: nopEnricher{}}, true, nil},
		{"name too long", Plugin{Manifest: Manifest{Name: strings.Repeat("a", 65), Version: "1"}, Enricher: nopEnricher{}}, true, nil},
		{"no version", Plugin{Manifest: Manifest{Name: "a"}, Enricher: nopEnricher{}}, true, nil},
		{"unknown capability", Plugin{Manifest: Manifest{Name: "a", Version: "1", Capabilities: []Capability{"root"}}, Enricher: nopEnricher{}}, true, nil},
		{"bad schema", Plugin{Manifest: Manifest{Name: "a", Version: "1", ConfigSchema: []byte("{")}, Enricher: nopEnricher{}}, true, nil},
		{"good schema", Plugin{Manifest: Manifest{Name: "a", Version: "1", ConfigSchema: []byte(`{"type":"object"}`)}, Enricher: nopEnricher{}}, false, []Kind{KindEnricher}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := tc.p.normalize()
			if tc.wantErr {
				if !errors.Is(err, ErrInvalidPlugin) {
					t.Fatalf("err = %v, want ErrInvalidPlugin", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(p.Manifest.Kinds) != fmt.Sprint(tc.kinds) || p.Manifest.ProtocolVersion != ProtocolVersion {
				t.Errorf("kinds %v version %d", p.Manifest.Kinds, p.Manifest.ProtocolVersion)
			}
		})
	}
}

// FuzzManifestWire checks that any manifest a plugin may send survives the
// conversion to the Go Manifest and back unchanged.
func FuzzManifestWire(f *testing.F) {
	seed, _ := proto.Marshal(manifestToProto(&Manifest{
		Name: "a", Version: "1", Kinds: []Kind{KindEnricher}, Purposes: []string{"analytics"},
		Capabilities: []Capability{CapKV}, Filter: Filter{Sites: []string{"s"}, Types: []string{"page"}, Names: []string{"x*"}},
		ConfigSchema: []byte(`{}`), ProtocolVersion: 1,
	}))
	f.Add(seed)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var pm vigiev1.Manifest
		if proto.Unmarshal(b, &pm) != nil {
			return
		}
		pm.ProtoReflect().SetUnknown(nil)
		if pm.Filter != nil {
			pm.Filter.ProtoReflect().SetUnknown(nil)
		}
		m := manifestFromProto(&pm)
		back := manifestToProto(&m)
		if pm.Filter == nil {
			back.Filter = nil // an absent filter comes back empty
		}
		if !proto.Equal(&pm, back) {
			t.Fatalf("round trip changed manifest:\n%v\n%v", &pm, back)
		}
		_ = m.capMask()
	})
}

// TestValidNameMatchesPattern keeps ValidName and NamePattern (used in
// JSON Schemas) the same rule.
func TestValidNameMatchesPattern(t *testing.T) {
	re := regexp.MustCompile(NamePattern)
	for _, s := range []string{"", "a", "geo-ip_2", "A", "a.b", "a b", "é", "a>", "a*", strings.Repeat("a", 64), strings.Repeat("a", 65)} {
		if ValidName(s) != re.MatchString(s) {
			t.Errorf("%q: ValidName %v, pattern %v", s, ValidName(s), re.MatchString(s))
		}
	}
}
