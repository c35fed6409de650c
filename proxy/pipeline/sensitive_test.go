package pipeline

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/proxy/pseudonymize"
	"github.com/vigie-dev/vigie/proxy/sensitive"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

func sensitivePipeline(t *testing.T, pol sensitive.Policy) (*Pipeline, *Site) {
	t.Helper()
	if err := consent.Register(consent.Sensitive); err != nil {
		t.Fatal(err)
	}
	p, err := New(Config{
		Keys:      []pseudonymize.Key{{ID: "k1", Secret: bytes.Repeat([]byte{7}, 32)}},
		Sites:     []SiteConfig{{ID: "shop", Policy: consent.DefaultPolicy(), Sensitive: &pol}},
		Retention: map[string]time.Duration{"necessary": 30 * 24 * time.Hour, "analytics": 395 * 24 * time.Hour, "personalization": 100 * 24 * time.Hour, "anonymous": 760 * 24 * time.Hour},
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := p.Site("shop")
	if err != nil {
		t.Fatal(err)
	}
	return p, s
}

// TestSensitiveActions: each action's effect on what Process keeps.
func TestSensitiveActions(t *testing.T) {
	pol := sensitive.DefaultPolicy()
	pol.Actions[sensitive.Health] = sensitive.DropField
	pol.Actions[sensitive.Religion] = sensitive.DropEvent
	pol.Actions[sensitive.SexLife] = sensitive.RequireConsent
	pol.Paths = []sensitive.PathRule{{Pattern: "/clinic/*", Category: sensitive.Health}}
	p, s := sensitivePipeline(t, pol)
	const granted = `"consent":{"analytics":true,"personalization":true}`
	const grantedSensitive = `"consent":{"analytics":true,"personalization":true,"sensitive":true}`
	track := func(consent, page, props string) string {
		return `{"type":"track","event":"Form Sent","anonymousId":"a-1","context":{` + consent + `,"page":` + page + `},"properties":` + props + `}`
	}
	for _, tt := range []struct {
		name      string
		body      string
		outcome   Outcome
		mode      vigiev1.Mode
		marks     []string
		props     string // properties kept ("" none)
		path      string
		purposes  string
		retention time.Duration
	}{
		{"nothing sensitive", track(granted, `{"path":"/shoes"}`, `{"size":42}`), Stored, vigiev1.Mode_MODE_PSEUDONYMOUS, nil, `{"size":42}`, "/shoes", "analytics,necessary,personalization", 395 * 24 * time.Hour},
		{"drop_field: a health property goes", track(granted, `{"path":"/form"}`, `{"size":42,"medical_history":"x"}`), Stored, vigiev1.Mode_MODE_PSEUDONYMOUS, []string{"health"}, `{"size":42}`, "/form", "analytics,necessary,personalization", 395 * 24 * time.Hour},
		{"drop_field: a health value's member goes", track(granted, `{"path":"/form"}`, `{"size":42,"note":"chemotherapy on Monday"}`), Stored, vigiev1.Mode_MODE_PSEUDONYMOUS, []string{"health"}, `{"size":42}`, "/form", "analytics,necessary,personalization", 395 * 24 * time.Hour},
		{"drop_field: a sensitive path goes", track(granted, `{"path":"/clinic/rdv","url":"https://shop.example/clinic/rdv?x=1"}`, `{"size":42}`), Stored, vigiev1.Mode_MODE_PSEUDONYMOUS, []string{"health"}, `{"size":42}`, "", "analytics,necessary,personalization", 395 * 24 * time.Hour},
		{"drop_event", track(granted, `{"path":"/mosque-visits"}`, `{}`), DroppedSensitive, 0, nil, "", "", "", 0},
		{"anonymous by default", track(granted, `{"path":"/trade-union/join"}`, `{"size":42}`), Stored, vigiev1.Mode_MODE_ANONYMOUS, []string{"trade_union"}, "", "/trade-union/join", "", 760 * 24 * time.Hour},
		{"require_consent without it", track(granted, `{"path":"/lgbt/events"}`, `{"size":42}`), Stored, vigiev1.Mode_MODE_ANONYMOUS, []string{"sex_life"}, "", "/lgbt/events", "", 760 * 24 * time.Hour},
		{"require_consent with it", track(grantedSensitive, `{"path":"/lgbt/events"}`, `{"size":42}`), Stored, vigiev1.Mode_MODE_PSEUDONYMOUS, []string{"sex_life"}, `{"size":42}`, "/lgbt/events", "analytics,necessary,personalization,sensitive", 395 * 24 * time.Hour},
		{"the strictest wins", track(grantedSensitive, `{"path":"/lgbt/trade-union"}`, `{"size":42}`), Stored, vigiev1.Mode_MODE_ANONYMOUS, []string{"trade_union", "sex_life"}, "", "/lgbt/trade-union", "", 760 * 24 * time.Hour},
		{"no consent: anonymous, still marked", track(`"consent":{}`, `{"path":"/trade-union"}`, `{}`), Stored, vigiev1.Mode_MODE_ANONYMOUS, []string{"trade_union"}, "", "/trade-union", "", 760 * 24 * time.Hour},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, ev := process(t, p, s, tt.body, nil)
			if res.Outcome != tt.outcome {
				t.Fatalf("outcome %v, want %v (%s)", res.Outcome, tt.outcome, res.Sensitive.String())
			}
			if ev == nil {
				if res.Sensitive.Categories == 0 {
					t.Error("dropped event without findings")
				}
				return
			}
			if ev.GetMode() != tt.mode || !slices.Equal(ev.GetSensitive(), tt.marks) {
				t.Errorf("mode %v sensitive %v, want %v %v", ev.GetMode(), ev.GetSensitive(), tt.mode, tt.marks)
			}
			if string(ev.GetProperties()) != tt.props || ev.GetPage().GetPath() != tt.path {
				t.Errorf("properties %s path %q, want %s %q", ev.GetProperties(), ev.GetPage().GetPath(), tt.props, tt.path)
			}
			if tt.path == "" && (ev.GetPage().GetUrl() != "" || ev.GetPage().GetSearch() != "") {
				t.Errorf("page kept: %v", ev.GetPage())
			}
			if got := strings.Join(ev.GetPurposes(), ","); got != tt.purposes {
				t.Errorf("purposes %q, want %q", got, tt.purposes)
			}
			if res.Record.TTL != tt.retention {
				t.Errorf("TTL %v, want %v", res.Record.TTL, tt.retention)
			}
			if tt.mode == vigiev1.Mode_MODE_ANONYMOUS && (ev.GetSubject() != "" || ev.GetAnonymousId() != "" || res.Record.Subject != "") {
				t.Errorf("anonymous event with an identifier: %v", ev)
			}
			// The consent decision stays the visitor's, for the ledger.
			if strings.Contains(tt.body, `"analytics":true`) && res.Decision.Outcome != consent.Pseudonymous {
				t.Errorf("decision %v", res.Decision)
			}
		})
	}
}

// TestSensitiveTraitsNeverVaulted: an identify with a sensitive trait kept
// anonymous vaults nothing; with drop_field, the trait goes and the rest
// is vaulted as usual.
func TestSensitiveTraitsNeverVaulted(t *testing.T) {
	pl, site := sensitivePipeline(t, sensitive.DefaultPolicy())
	body := `{"type":"identify","userId":"u-1","context":{"consent":{"analytics":true,"personalization":true}},"traits":{"email":"a@example.org","religion":"x","plan":"pro"}}`
	res, ev := process(t, pl, site, body, nil)
	if ev == nil || ev.GetMode() != vigiev1.Mode_MODE_ANONYMOUS || len(res.Record.Vault) != 0 || len(ev.GetTraits()) != 0 {
		t.Fatalf("anonymous identify: %v vault %d", ev, len(res.Record.Vault))
	}
	pol := sensitive.DefaultPolicy()
	pol.Actions[sensitive.Religion] = sensitive.DropField
	pl, site = sensitivePipeline(t, pol)
	res, ev = process(t, pl, site, body, nil)
	if ev == nil || ev.GetMode() != vigiev1.Mode_MODE_PSEUDONYMOUS || len(res.Record.Vault) == 0 || string(ev.GetTraits()) != `{"plan":"pro"}` {
		t.Fatalf("drop_field identify: %v traits %s vault %d", ev, ev.GetTraits(), len(res.Record.Vault))
	}
	if bytes.Contains(res.Record.Vault, []byte("religion")) {
		t.Error("the sensitive trait reached the vault")
	}
}

// TestSensitivePageFromProperties: a server-side page call's page (in its
// properties) is scanned, and drop_field removes it there too.
func TestSensitivePageFromProperties(t *testing.T) {
	pol := sensitive.DefaultPolicy()
	pol.Actions[sensitive.Health] = sensitive.DropField
	p, s := sensitivePipeline(t, pol)
	res, ev := process(t, p, s, `{"type":"page","name":"Diabetes","anonymousId":"a","context":{"consent":{"analytics":true}},
	  "properties":{"path":"/diabetes","url":"https://shop.example/diabetes","title":"Diabetes","plan":"x"}}`, nil)
	if ev == nil || !slices.Equal(ev.GetSensitive(), []string{"health"}) {
		t.Fatalf("%v %s", ev, res.Sensitive.String())
	}
	if ev.GetPage() != nil || ev.GetName() != "" || string(ev.GetProperties()) != `{"plan":"x"}` {
		t.Errorf("page %v name %q properties %s", ev.GetPage(), ev.GetName(), ev.GetProperties())
	}
}

// TestSensitiveOff: with every layer off and no paths, nothing is
// detected.
func TestSensitiveOff(t *testing.T) {
	off := sensitive.DefaultPolicy()
	off.Names, off.Values, off.Page = false, false, false
	p, s := sensitivePipeline(t, off)
	_, ev := process(t, p, s, `{"type":"track","event":"x","anonymousId":"a","context":{"consent":{"analytics":true},"page":{"path":"/oncology"}},"properties":{"diagnosis":"x"}}`, nil)
	if ev == nil || len(ev.GetSensitive()) != 0 || ev.GetMode() != vigiev1.Mode_MODE_PSEUDONYMOUS {
		t.Fatalf("%v", ev)
	}
	var back vigiev1.Event
	if err := proto.Unmarshal(mustMarshal(t, ev), &back); err != nil {
		t.Fatal(err)
	}
}

func mustMarshal(t *testing.T, ev *vigiev1.Event) []byte {
	t.Helper()
	b, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
