package pipeline

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/proxy/collect"
	"github.com/vigie-dev/vigie/proxy/pseudonymize"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

func newPipeline(t testing.TB, pol consent.Policy) (*Pipeline, *Site) {
	t.Helper()
	p, err := New(Config{
		Keys:  []pseudonymize.Key{{ID: "k1", Secret: bytes.Repeat([]byte{7}, 32)}},
		Sites: []SiteConfig{{ID: "shop", Policy: pol}},
		Retention: map[string]time.Duration{
			"necessary": 30 * 24 * time.Hour, "analytics": 395 * 24 * time.Hour,
			"marketing": 200 * 24 * time.Hour, "personalization": 100 * 24 * time.Hour, "anonymous": 760 * 24 * time.Hour,
		},
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

func decode(t testing.TB, body string) collect.Message {
	t.Helper()
	m, err := collect.DecodeMessage([]byte(body), "")
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return m
}

func process(t testing.TB, p *Pipeline, s *Site, body string, hdr http.Header) (Result, *vigiev1.Event) {
	t.Helper()
	m := decode(t, body)
	r := Request{ReceivedAt: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC), RemoteIP: "192.0.2.99", Source: "segment", Signals: s.RequestSignals(hdr)}
	res := p.Process(s, &m, &r)
	if res.Outcome != Stored {
		return res, nil
	}
	ev := &vigiev1.Event{}
	if err := proto.Unmarshal(res.Record.Data, ev); err != nil {
		t.Fatal(err)
	}
	return res, ev
}

const ua = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15"

func TestProcessPseudonymous(t *testing.T) {
	p, s := newPipeline(t, consent.DefaultPolicy())
	res, ev := process(t, p, s, `{"type":"identify","userId":"u-1","anonymousId":"a-1","messageId":"m1",
	  "context":{"consent":{"analytics":true,"marketing":true},"userAgent":"`+ua+`","ip":"2001:db8:1:2::5",
	    "page":{"url":"https://shop.example/p?utm_source=nl&gclid=abc123&sid=zz","referrer":"https://ref.example/a?b=c"}},
	  "traits":{"email":"x@example.org","plan":"pro","firstName":"Ann"}}`, nil)
	if ev == nil {
		t.Fatalf("not stored: %+v", res)
	}
	if ev.GetMode() != vigiev1.Mode_MODE_PSEUDONYMOUS || strings.Join(ev.GetPurposes(), ",") != "analytics,marketing,necessary" {
		t.Fatalf("mode/purposes: %v %v", ev.GetMode(), ev.GetPurposes())
	}
	if ev.GetUserId() != s.pseudo.ID("shop", pseudonymize.UserID, "u-1") || ev.GetSubject() != ev.GetUserId() || ev.GetAnonymousId() == "a-1" {
		t.Fatalf("ids: %v", ev)
	}
	if ev.GetIpPrefix() != "2001:db8:1::/48" || ev.GetDevice().GetBrowser() != "Safari" || ev.GetDevice().GetClass() != "desktop" {
		t.Fatalf("ip/device: %s %v", ev.GetIpPrefix(), ev.GetDevice())
	}
	if ev.GetCampaign().GetSource() != "nl" || ev.GetCampaign().GetClickIds()["gclid"] != s.pseudo.ID("shop", pseudonymize.ClickID, "abc123") {
		t.Fatalf("campaign with marketing: %v", ev.GetCampaign())
	}
	if strings.Contains(ev.GetPage().GetUrl(), "sid=") || strings.Contains(ev.GetPage().GetUrl(), "gclid") {
		t.Fatalf("url keeps a non-allowed param: %s", ev.GetPage().GetUrl())
	}
	if bytes.Contains(ev.GetTraits(), []byte("example.org")) || !bytes.Contains(ev.GetTraits(), []byte("pro")) {
		t.Fatalf("clean traits: %s", ev.GetTraits())
	}
	if !bytes.Contains(res.Record.Vault, []byte("x@example.org")) || len(ev.GetVaultedTraits()) != 2 {
		t.Fatalf("vault: %s %v", res.Record.Vault, ev.GetVaultedTraits())
	}
	if res.Record.TTL != 395*24*time.Hour || res.Record.Subject != ev.GetSubject() || res.Record.Topic != "vigie.events.shop.identify" || len(res.Record.Dedup) == 0 {
		t.Fatalf("record: %+v", res.Record)
	}
}

func TestProcessAnonymousKeepsNoIdentifier(t *testing.T) {
	p, s := newPipeline(t, consent.DefaultPolicy())
	res, ev := process(t, p, s, `{"type":"track","event":"Buy","userId":"u-1","anonymousId":"a-1",
	  "context":{"userAgent":"`+ua+`","locale":"fr-FR","page":{"url":"https://shop.example/p?utm_source=nl&gclid=abc","path":"/p","referrer":"https://ref.example/a?b=c","title":"T"}},
	  "properties":{"price":3}}`, nil)
	if ev == nil {
		t.Fatalf("not stored: %+v", res)
	}
	if ev.GetMode() != vigiev1.Mode_MODE_ANONYMOUS || ev.GetSubject() != "" || ev.GetUserId() != "" || ev.GetAnonymousId() != "" || res.Record.Subject != "" {
		t.Fatalf("anonymous event has ids: %v", ev)
	}
	if ev.GetPage().GetPath() != "/p" || ev.GetPage().GetReferrerHost() != "ref.example" || ev.GetPage().GetUrl() != "" || ev.GetPage().GetReferrer() != "" || ev.GetPage().GetTitle() != "" {
		t.Fatalf("anonymous page: %v", ev.GetPage())
	}
	if ev.GetProperties() != nil || ev.GetCampaign() != nil || ev.GetLocale() != "" || ev.GetDevice().GetBrowser() != "" || ev.GetDevice().GetClass() != "desktop" {
		t.Fatalf("anonymous keeps too much: %v", ev)
	}
	if res.Record.TTL != 760*24*time.Hour || ev.GetName() != "Buy" {
		t.Fatalf("ttl %v name %q", res.Record.TTL, ev.GetName())
	}
}

func TestProcessOutcomes(t *testing.T) {
	drop := consent.DefaultPolicy()
	drop.Unconsented = consent.Drop
	cases := []struct {
		name   string
		pol    consent.Policy
		body   string
		hdr    http.Header
		want   Outcome
		noGCLD bool
		ttl    time.Duration
	}{
		{"drop policy without consent", drop, `{"type":"track","event":"E","anonymousId":"a"}`, nil, Dropped, false, 0},
		{"drop policy with consent", drop, `{"type":"track","event":"E","anonymousId":"a","context":{"consent":{"analytics":true}}}`, nil, Stored, false, 395 * 24 * time.Hour},
		{"bot UA", consent.DefaultPolicy(), `{"type":"track","event":"E","anonymousId":"a","context":{"userAgent":"Googlebot/2.1 (+http://www.google.com/bot.html)"}}`, nil, Bot, false, 0},
		{"GPC strips click ids", consent.DefaultPolicy(), `{"type":"page","anonymousId":"a","context":{"consent":{"analytics":true,"marketing":true},"page":{"url":"https://s.example/?gclid=x"}}}`, http.Header{"Sec-Gpc": {"1"}}, Stored, true, 395 * 24 * time.Hour},
		{"personalization only", consent.DefaultPolicy(), `{"type":"track","event":"E","anonymousId":"a","context":{"consent":{"personalization":true}}}`, nil, Stored, false, 100 * 24 * time.Hour},
		{"invalid consent is none", drop, `{"type":"track","event":"E","anonymousId":"a","context":{"consent":{"analytics":"yes"}}}`, nil, Dropped, false, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, s := newPipeline(t, c.pol)
			res, ev := process(t, p, s, c.body, c.hdr)
			if res.Outcome != c.want {
				t.Fatalf("outcome %v, want %v (%v)", res.Outcome, c.want, res.Decision)
			}
			if ev == nil {
				return
			}
			if c.noGCLD && len(ev.GetCampaign().GetClickIds()) > 0 {
				t.Fatalf("click ids kept despite GPC: %v", ev.GetCampaign())
			}
			if res.Record.TTL != c.ttl {
				t.Fatalf("ttl %v, want %v", res.Record.TTL, c.ttl)
			}
		})
	}
}

func TestPseudonymsAreStablePerSiteAndKind(t *testing.T) {
	p, s := newPipeline(t, consent.DefaultPolicy())
	body := `{"type":"track","event":"E","userId":"same","anonymousId":"same","context":{"consent":{"analytics":true}}}`
	_, a := process(t, p, s, body, nil)
	_, b := process(t, p, s, body, nil)
	if a.GetUserId() != b.GetUserId() || a.GetUserId() == a.GetAnonymousId() || a.GetId() == b.GetId() {
		t.Fatalf("pseudonyms: %s %s %s; ids %s %s", a.GetUserId(), b.GetUserId(), a.GetAnonymousId(), a.GetId(), b.GetId())
	}
}

func TestPageFromPropertiesForServerSDKs(t *testing.T) {
	p, s := newPipeline(t, consent.DefaultPolicy())
	_, ev := process(t, p, s, `{"type":"page","anonymousId":"a","name":"Home",
	  "properties":{"path":"/pricing","url":"https://shop.example/pricing?utm_source=x&email=a@b.example","referrer":"https://news.example/a","title":"Pricing","n":3}}`, nil)
	if ev == nil {
		t.Fatal("not stored")
	}
	pg := ev.GetPage()
	if pg.GetPath() != "/pricing" || pg.GetReferrerHost() != "news.example" || pg.GetUrl() != "" {
		t.Fatalf("anonymous page from properties: %v", pg)
	}
	for _, raw := range []string{``, `[]`, `{"path":3,"url":{"x":1}}`, `{"path":"/a"`, `{"path":"/a"}x`, `{"path":"/a","path":"/b"}`} {
		if got := pageFromProperties([]byte(raw)); got != (collect.Page{}) {
			t.Errorf("pageFromProperties(%q) = %+v", raw, got)
		}
	}
}

func FuzzPageFromProperties(f *testing.F) {
	for _, s := range []string{`{"path":"/a","url":"https://x.example/?q=1"}`, `{}`, `[1]`, `{"path":[{"a":1}],"title":"t"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		// Never panics, and reads nothing out of invalid JSON.
		if p := pageFromProperties(raw); p != (collect.Page{}) && !jsontext.Value(raw).IsValid() {
			t.Fatalf("fields %+v read from invalid JSON %q", p, raw)
		}
	})
}

// TestProcessScrubsEveryField puts personal data of every class into every
// field Process keeps and checks that none of it is in the encoded event,
// and that Result.Scrubbed counts it by class.
func TestProcessScrubsEveryField(t *testing.T) {
	p, s := newPipeline(t, consent.DefaultPolicy())
	items := map[pseudonymize.Class]string{
		pseudonymize.ClassEmail:      "jane.doe%2540example.org",
		pseudonymize.ClassPhone:      "+33\u00a06\u00a012\u00a034\u00a056\u00a078",
		pseudonymize.ClassCard:       "4111 1111 1111 1111",
		pseudonymize.ClassIBAN:       "FR76 3000 6000 0112 3456 7890 189",
		pseudonymize.ClassNationalID: "185057800608491",
		pseudonymize.ClassIP:         "2001:db8:abcd:12:3456:789a:bcde:f012",
		pseudonymize.ClassSecret:     "password=hunter2",
		pseudonymize.ClassName:       "Dear Janetha Canaryson",
	}
	leaks := []string{"jane.doe", "12\u00a034\u00a056", "1111 1111 1111", "0112 3456", "185057800608491", "3456:789a", "hunter2", "Janetha", "Canaryson",
		"198.51.100.73", "u8c2f9a", "a1b2c3d4e5f6a7b8"}
	for class, item := range items {
		t.Run(class.String(), func(t *testing.T) {
			q, pe := url.QueryEscape(item), url.PathEscape(item)
			body := `{"type":"track","event":"Bought ` + item + `","userId":"u-1","messageId":"m-` + class.String() + `",
			  "context":{"consent":{"analytics":true,"marketing":true},"locale":"` + item + `","library":{"name":"lib","version":"` + item + `"},
			    "page":{"url":"https://shop.example/p/` + pe + `?utm_term=` + q + `&utm_content=` + q + `&ref=u8c2f9a&pk_vid=a1b2c3d4e5f6a7b8#` + q + `",
			      "path":"/p/` + pe + `","referrer":"http://198.51.100.73/r/` + pe + `","title":"Order ` + item + `"},
			    "campaign":{"name":"` + item + `","source":"u8c2f9a","medium":"` + item + `","term":"` + item + `","content":"` + item + `"}},
			  "properties":{"note":"` + item + `","list":["` + item + `"],"nested":{"k":"` + item + `"},"link":"https://x.example/` + pe + `","n":4111111111111111}}`
			res, ev := process(t, p, s, body, nil)
			if ev == nil {
				t.Fatalf("not stored: %+v", res)
			}
			for _, leak := range leaks {
				if bytes.Contains(res.Record.Data, []byte(leak)) {
					t.Errorf("stored event holds %q: %v", leak, ev)
				}
			}
			if res.Scrubbed.Of(class) < 5 || res.Scrubbed.Of(pseudonymize.ClassTrackerID) < 2 || res.Scrubbed.Of(pseudonymize.ClassCard) < 1 {
				t.Errorf("counts %+v: want several %s, the tracker ids and the card number", res.Scrubbed, class)
			}
			if ev.GetPage().GetReferrerHost() != "ip.invalid" || ev.GetCampaign().GetSource() != "[id]" {
				t.Errorf("referrer host %q, campaign source %q", ev.GetPage().GetReferrerHost(), ev.GetCampaign().GetSource())
			}
		})
	}
	// Anonymous events keep the referrer host: an IP there is personal too.
	_, ev := process(t, p, s, `{"type":"page","anonymousId":"a","context":{"page":{"url":"https://s.example/","referrer":"http://[2001:db8::7]:8080/x"}}}`, nil)
	if ev.GetPage().GetReferrerHost() != "ip.invalid:8080" {
		t.Errorf("anonymous referrer host %q", ev.GetPage().GetReferrerHost())
	}
	// Nothing personal, nothing counted.
	res, _ := process(t, p, s, benchTrack, nil)
	if res.Scrubbed.Total() != 0 {
		t.Errorf("clean event counted %+v", res.Scrubbed)
	}
}
