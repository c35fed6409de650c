package consent_test

import (
	"testing"

	"github.com/vigie-dev/vigie/consent"
)

func TestLimit(t *testing.T) {
	p := consent.DefaultPolicy()
	all := consent.Decide(p, consent.Signal{Source: consent.SourcePayload,
		Granted: consent.NewSet(consent.Analytics, consent.Marketing)})
	mk := consent.NewSet(consent.Marketing)
	for _, tc := range []struct {
		name       string
		objected   consent.Set
		restricted bool
		want       consent.Outcome
		granted    string
	}{
		{"nothing recorded", consent.Set{}, false, consent.Pseudonymous, "analytics,marketing,necessary"},
		{"objection to marketing beats the payload's grant", mk, false, consent.Pseudonymous, "analytics,necessary"},
		{"objection to every granted purpose", consent.NewSet(consent.Analytics, consent.Marketing), false, consent.Anonymous, "necessary"},
		{"restriction", consent.Set{}, true, consent.Anonymous, "necessary"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := consent.Limit(p, all, tc.objected, tc.restricted)
			if d.Outcome != tc.want || d.Granted.String() != tc.granted {
				t.Errorf("got %v, want %v granted %s", d, tc.want, tc.granted)
			}
		})
	}
	drop := p
	drop.Unconsented = consent.Drop
	if d := consent.Limit(drop, all, consent.Set{}, true); d.Outcome != consent.Drop {
		t.Errorf("restricted under a drop policy: %v", d)
	}
}
