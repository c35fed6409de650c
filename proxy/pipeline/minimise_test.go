package pipeline

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/plugins/geoip/geodb"
	"github.com/vigie-dev/vigie/plugins/geoip/geodb/geodbtest"
	"github.com/vigie-dev/vigie/proxy/pseudonymize"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
)

// anonymousFields is everything an anonymous event may hold, by message
// (full proto field names). Written once: a field added to the contract
// later is refused on anonymous events until it is listed here.
var anonymousFields = map[protoreflect.FullName][]protoreflect.Name{
	"vigie.v1.Event":  {"id", "site", "type", "name", "timestamp_ms", "received_at_ms", "mode", "source", "library", "page", "device", "geo"},
	"vigie.v1.Page":   {"path", "referrer_host"},
	"vigie.v1.Device": {"class", "bot"},
	"vigie.v1.Geo":    {"country", "region"},
}

// assertOnlyAllowed fails for every populated field of m (and of its
// messages) not in anonymousFields.
func assertOnlyAllowed(t *testing.T, m protoreflect.Message) {
	t.Helper()
	allowed, known := anonymousFields[m.Descriptor().FullName()]
	if !known {
		t.Errorf("anonymous event holds a %s", m.Descriptor().FullName())
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if !slices.Contains(allowed, fd.Name()) {
			t.Errorf("anonymous event holds %s.%s = %v", m.Descriptor().Name(), fd.Name(), v)
		}
		if fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap() {
			assertOnlyAllowed(t, v.Message())
		}
		return true
	})
}

// received is the receipt time of the tests: not on an hour boundary.
var received = time.Date(2026, 11, 26, 12, 34, 56, 789e6, time.UTC)

// processAt runs Process with req filled in (received, a client address).
func processAt(t *testing.T, p *Pipeline, s *Site, body string, at time.Time) (Result, *vigiev1.Event) {
	t.Helper()
	m := decode(t, body)
	res := p.Process(s, &m, &Request{ReceivedAt: at, RemoteIP: "192.0.2.99", UserAgent: ua, Source: "segment"})
	if res.Outcome != Stored {
		return res, nil
	}
	ev := &vigiev1.Event{}
	if err := proto.Unmarshal(res.Record.Data, ev); err != nil {
		t.Fatal(err)
	}
	return res, ev
}

// newSitePipeline is newPipeline with sc (ID and Policy filled in) and an
// optional GeoIP database.
func newSitePipeline(t *testing.T, sc SiteConfig, geo *geodb.DB) (*Pipeline, *Site) {
	t.Helper()
	sc.ID = "shop"
	if sc.Policy.Identifying.Len() == 0 {
		sc.Policy = consent.DefaultPolicy()
	}
	p, err := New(Config{
		Keys:      []pseudonymize.Key{{ID: "k1", Secret: bytes.Repeat([]byte{7}, 32)}},
		Sites:     []SiteConfig{sc},
		Retention: map[string]time.Duration{"analytics": 395 * 24 * time.Hour, "marketing": 200 * 24 * time.Hour, "anonymous": 760 * 24 * time.Hour},
		GeoIP:     geo,
	})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := p.Site("shop")
	return p, s
}

// testGeo is a GeoIP database knowing 192.0.2.0/24 (Paris) and nothing else.
func testGeo(t *testing.T) *geodb.DB {
	t.Helper()
	path := geodbtest.City(t, t.TempDir(), map[string]geodbtest.Place{
		"192.0.2.0/24": {Country: "FR", CountryName: "France", Continent: "EU", Region: "IDF", City: "Paris", TimeZone: "Europe/Paris", Postal: "75001"},
	})
	db, err := geodb.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// TestAnonymousEventKeepsOnlyAllowedFields sends hits that carry
// everything a client can send, without consent and with a refusal, and
// checks that their anonymous events hold only the allowed fields, with
// coarse times, an id whose time is the coarse receipt time, and the
// country resolved at ingestion.
func TestAnonymousEventKeepsOnlyAllowedFields(t *testing.T) {
	p, s := newSitePipeline(t, SiteConfig{}, testGeo(t))
	full := `"userId":"u-1","anonymousId":"a-1","groupId":"g-1","previousId":"p-1","messageId":"m-%s",
	  "timestamp":"2026-11-26T12:30:01.123Z","sentAt":"2026-11-26T12:30:02Z",
	  "context":{%s"userAgent":"` + ua + `","ip":"192.0.2.77","locale":"fr-FR","library":{"name":"lib","version":"1"},
	    "campaign":{"name":"c","source":"s","medium":"m","term":"t","content":"x"},
	    "page":{"url":"https://shop.example/orders/123456?utm_source=nl&gclid=abc","path":"/orders/123456","referrer":"https://ref.example/a?b=c","title":"T","search":"?q=1"}},
	  "properties":{"price":3},"traits":{"email":"a@b.example","plan":"pro"}`
	for _, state := range []struct{ name, consent string }{{"absent", ""}, {"denied", `"consent":{"analytics":false,"marketing":false},`}} {
		for _, typ := range []string{"track", "page", "screen", "identify", "group", "alias"} {
			t.Run(state.name+"/"+typ, func(t *testing.T) {
				body := strings.Replace(full, "%s", state.name+typ, 1)
				body = `{"type":"` + typ + `","event":"Buy","name":"Home",` + strings.Replace(body, "%s", state.consent, 1) + `}`
				res, ev := processAt(t, p, s, body, received)
				if ev == nil {
					t.Fatalf("not stored: %v", res.Outcome)
				}
				assertOnlyAllowed(t, ev.ProtoReflect())
				hour := received.Truncate(time.Hour)
				if ev.GetReceivedAtMs() != hour.UnixMilli() || ev.GetTimestampMs() != time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC).UnixMilli() {
					t.Errorf("times %d %d, want the hour %d", ev.GetTimestampMs(), ev.GetReceivedAtMs(), hour.UnixMilli())
				}
				id, err := ulid.Parse(ev.GetId())
				if err != nil || id.Time() != uint64(hour.UnixMilli()) || !res.Record.Time.Equal(hour) || res.Record.ID != ev.GetId() {
					t.Errorf("id %s (time %d), record time %v: want the hour", ev.GetId(), id.Time(), res.Record.Time)
				}
				if ev.GetGeo().GetCountry() != "FR" || ev.GetGeo().GetRegion() != "" {
					t.Errorf("geo %v, want the country only", ev.GetGeo())
				}
				if p := ev.GetPage().GetPath(); p != "" && p != "/orders/[id]" {
					t.Errorf("path %q, want the order number as [id]", p)
				}
				if res.Record.Subject != "" || res.Record.Vault != nil {
					t.Errorf("record subject %q vault %q", res.Record.Subject, res.Record.Vault)
				}
			})
		}
	}
}

// TestAnonymousTimeGranularity: the site's granularity applies, and
// pseudonymous events keep full precision.
func TestAnonymousTimeGranularity(t *testing.T) {
	p, s := newSitePipeline(t, SiteConfig{TimeGranularity: 15 * time.Minute}, nil)
	_, anon := processAt(t, p, s, `{"type":"track","event":"E","anonymousId":"a"}`, received)
	if want := time.Date(2026, 11, 26, 12, 30, 0, 0, time.UTC).UnixMilli(); anon.GetReceivedAtMs() != want || anon.GetTimestampMs() != want {
		t.Errorf("anonymous times %d %d, want %d", anon.GetTimestampMs(), anon.GetReceivedAtMs(), want)
	}
	_, pseudo := processAt(t, p, s, `{"type":"track","event":"E","anonymousId":"a","context":{"consent":{"analytics":true}}}`, received)
	if pseudo.GetReceivedAtMs() != received.UnixMilli() || pseudo.GetIpPrefix() != "192.0.2.0/24" || pseudo.GetGeo() != nil {
		t.Errorf("pseudonymous event: received %d prefix %q geo %v", pseudo.GetReceivedAtMs(), pseudo.GetIpPrefix(), pseudo.GetGeo())
	}
}

// TestAnonymousIDsDoNotTellOrder: anonymous events of one hour share the
// id's time part, and its random part is not monotonic, so neither ids nor
// keys (which sort by id) tell in which order they came.
func TestAnonymousIDsDoNotTellOrder(t *testing.T) {
	p, s := newSitePipeline(t, SiteConfig{}, nil)
	var ids []string
	for i := range 64 {
		_, ev := processAt(t, p, s, `{"type":"track","event":"E","anonymousId":"a"}`, received.Add(time.Duration(i)*time.Millisecond))
		ids = append(ids, ev.GetId())
	}
	if slices.IsSorted(ids) {
		t.Fatalf("anonymous ids sort in arrival order: %v", ids)
	}
	if slices.Sort(ids); len(slices.Compact(ids)) != 64 {
		t.Fatal("anonymous ids repeat")
	}
}

// TestAnonymousRegionWhenAsked: region only with SiteConfig.Region, never
// city or postal code; no GeoIP database, no location.
func TestAnonymousRegionWhenAsked(t *testing.T) {
	geo := testGeo(t)
	cases := []struct {
		name          string
		region        bool
		db            *geodb.DB
		ip            string
		country, want string
	}{
		{"region asked", true, geo, "192.0.2.8", "FR", "IDF"},
		{"country only", false, geo, "192.0.2.8", "FR", ""},
		{"unknown network", true, geo, "198.51.100.1", "", ""},
		{"no database", true, nil, "192.0.2.8", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, s := newSitePipeline(t, SiteConfig{Region: tc.region}, tc.db)
			_, ev := processAt(t, p, s, `{"type":"page","anonymousId":"a","context":{"ip":"`+tc.ip+`"}}`, received)
			if ev.GetGeo().GetCountry() != tc.country || ev.GetGeo().GetRegion() != tc.want || ev.GetGeo().GetCity() != "" || ev.GetIpPrefix() != "" {
				t.Errorf("geo %v prefix %q, want country %q region %q", ev.GetGeo(), ev.GetIpPrefix(), tc.country, tc.want)
			}
		})
	}
}

// TestAnonymousPathMarkers: identifier-like path parts of anonymous
// events become [id] (the site's own patterns too); pseudonymous events
// keep their path as the scrubber left it.
func TestAnonymousPathMarkers(t *testing.T) {
	p, s := newSitePipeline(t, SiteConfig{IDPathPatterns: []string{`^cust-[a-z]+$`}}, nil)
	cases := []struct{ path, want string }{
		{"/orders/1234567/invoice", "/orders/[id]/invoice"},
		{"/account/cust-bob", "/account/[id]"},
		{"/t/550e8400-e29b-41d4-a716-446655440000", "/t/[token]"},
		{"/u/jane@example.org", "/u/[email]"},
		{"/p/a3f9c2e1b7", "/p/[id]"},
		{"/blog/2026/11/spring-sale-2026", "/blog/2026/11/spring-sale-2026"},
	}
	for _, tc := range cases {
		_, ev := processAt(t, p, s, `{"type":"page","anonymousId":"a","context":{"page":{"path":"`+tc.path+`"}}}`, received)
		if got := ev.GetPage().GetPath(); got != tc.want {
			t.Errorf("anonymous path %q = %q, want %q", tc.path, got, tc.want)
		}
	}
	_, ev := processAt(t, p, s, `{"type":"page","anonymousId":"a","context":{"consent":{"analytics":true},"page":{"path":"/orders/1234567"}}}`, received)
	if got := ev.GetPage().GetPath(); got != "/orders/1234567" {
		t.Errorf("pseudonymous path %q, want it kept", got)
	}
}

// TestPseudonymRotation: analytics-only pseudonyms change with the period
// and cannot be matched across it; personalization or marketing keeps
// them stable; the ledger's subject is stable whatever the events get.
func TestPseudonymRotation(t *testing.T) {
	day1, day2 := received, received.Add(24*time.Hour)
	analytics := `{"type":"track","event":"E","userId":"u-1","anonymousId":"a-1","context":{"consent":{"analytics":true}},"traits":{"email":"a@b.example"}}`
	marketing := `{"type":"track","event":"E","userId":"u-1","anonymousId":"a-1","context":{"consent":{"analytics":true,"marketing":true}}}`
	cases := []struct {
		name     string
		rotation pseudonymize.Rotation
		body     string
		a, b     time.Time
		same     bool
	}{
		{"never", pseudonymize.RotateNever, analytics, day1, day2, true},
		{"daily, same day", pseudonymize.RotateDaily, analytics, day1, day1.Add(time.Hour), true},
		{"daily, next day", pseudonymize.RotateDaily, analytics, day1, day2, false},
		{"monthly, same month", pseudonymize.RotateMonthly, analytics, day1, day2, true},
		{"monthly, next month", pseudonymize.RotateMonthly, analytics, day1, day1.AddDate(0, 1, 0), false},
		{"daily, marketing stays stable", pseudonymize.RotateDaily, marketing, day1, day2, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, s := newSitePipeline(t, SiteConfig{Rotation: tc.rotation}, nil)
			ra, a := processAt(t, p, s, tc.body, tc.a)
			rb, b := processAt(t, p, s, tc.body, tc.b)
			if (a.GetUserId() == b.GetUserId()) != tc.same || (a.GetAnonymousId() == b.GetAnonymousId()) != tc.same || (a.GetSubject() == b.GetSubject()) != tc.same {
				t.Errorf("pseudonyms %s/%s %s/%s: same = %v, want %v", a.GetUserId(), b.GetUserId(), a.GetAnonymousId(), b.GetAnonymousId(), !tc.same, tc.same)
			}
			stable := s.pseudo.ID("shop", pseudonymize.UserID, "u-1")
			if ra.Subject != stable || rb.Subject != stable {
				t.Errorf("ledger subject %q %q, want the stable %q", ra.Subject, rb.Subject, stable)
			}
			rotated := tc.rotation != pseudonymize.RotateNever && tc.body == analytics
			if rotated && (a.GetUserId() == stable || !strings.HasPrefix(a.GetKeyId(), "k1@") || ra.Record.Vault != nil || len(a.GetVaultedTraits()) > 0) {
				t.Errorf("rotated event: user %q key %q vault %q %v", a.GetUserId(), a.GetKeyId(), ra.Record.Vault, a.GetVaultedTraits())
			}
			if !rotated && a.GetKeyId() != "k1" {
				t.Errorf("key id %q, want k1", a.GetKeyId())
			}
		})
	}
}

// TestClickIDs: with marketing, click ids are stored as pseudonyms unless
// the site exports them; without it they are removed; URLs never hold
// them.
func TestClickIDs(t *testing.T) {
	body := func(c string) string {
		return `{"type":"page","anonymousId":"a","context":{"consent":` + c + `,"page":{"url":"https://s.example/p?gclid=G-123&fbclid=F-456&utm_source=ads"}}}`
	}
	cases := []struct {
		name   string
		export []string
		c      string
		want   map[string]string // "" = pseudonym of the value
	}{
		{"hashed", nil, `{"analytics":true,"marketing":true}`, map[string]string{"gclid": "", "fbclid": ""}},
		{"gclid exported", []string{"gclid"}, `{"analytics":true,"marketing":true}`, map[string]string{"gclid": "G-123", "fbclid": ""}},
		{"no marketing", []string{"gclid"}, `{"analytics":true}`, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, s := newSitePipeline(t, SiteConfig{ExportClickIDs: tc.export}, nil)
			_, ev := processAt(t, p, s, body(tc.c), received)
			got := ev.GetCampaign().GetClickIds()
			if len(got) != len(tc.want) {
				t.Fatalf("click ids %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				raw := map[string]string{"gclid": "G-123", "fbclid": "F-456"}[k]
				if v == "" {
					v = s.pseudo.ID("shop", pseudonymize.ClickID, raw)
				}
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
			if u := ev.GetPage().GetUrl(); strings.Contains(u, "clid") || strings.Contains(ev.GetPage().GetSearch(), "clid") {
				t.Errorf("URL keeps click ids: %s", u)
			}
		})
	}
}

// TestCNILExempt: on a site in CNIL exemption mode decisions are limited
// to analytics, no user id or traits are kept, identify/group/alias are
// not kept, the prefix is /16, and e-mail hits are only counted.
func TestCNILExempt(t *testing.T) {
	p, s := newSitePipeline(t, SiteConfig{CNILExempt: true}, nil)
	res, ev := processAt(t, p, s, `{"type":"track","event":"E","userId":"u-1","anonymousId":"a-1","groupId":"g",
	  "context":{"consent":{"analytics":true,"marketing":true,"personalization":true},"page":{"url":"https://s.example/?gclid=x"}}}`, received)
	if ev == nil {
		t.Fatalf("not stored: %v", res.Outcome)
	}
	if strings.Join(ev.GetPurposes(), ",") != "analytics,necessary" || ev.GetUserId() != "" || ev.GetGroupId() != "" ||
		ev.GetAnonymousId() == "" || ev.GetSubject() != ev.GetAnonymousId() || res.Subject != ev.GetAnonymousId() {
		t.Errorf("event purposes %v user %q group %q anonymous %q subject %q ledger %q", ev.GetPurposes(), ev.GetUserId(), ev.GetGroupId(), ev.GetAnonymousId(), ev.GetSubject(), res.Subject)
	}
	if ev.GetIpPrefix() != "192.0.0.0/16" || len(ev.GetCampaign().GetClickIds()) > 0 {
		t.Errorf("prefix %q click ids %v", ev.GetIpPrefix(), ev.GetCampaign().GetClickIds())
	}
	if res, _ := processAt(t, p, s, `{"type":"track","event":"E","anonymousId":"a-1","context":{"consent":{"marketing":true}}}`, received); res.Decision.Outcome != consent.Anonymous {
		t.Errorf("marketing only: %v, want anonymous", res.Decision)
	}
	for _, typ := range []string{"identify", "group", "alias"} {
		if res, _ := processAt(t, p, s, `{"type":"`+typ+`","userId":"u","anonymousId":"a","groupId":"g","previousId":"p","traits":{"plan":"x"},"context":{"consent":{"analytics":true}}}`, received); res.Outcome != NotKept {
			t.Errorf("%s: outcome %v, want NotKept", typ, res.Outcome)
		}
	}
	granted, _ := consent.ParseSet("necessary", "analytics", "marketing")
	if r := p.ProcessEmail(s, EmailHit{Campaign: "c", Recipient: "r", Granted: granted, Time: received, Class: "human"}); r.Outcome != Counted {
		t.Errorf("e-mail with marketing on a cnil_exempt site: %v, want Counted", r.Outcome)
	}
}

// TestProcessEmailCountsAnonymousHits: a hit that may not be attributed is
// a counter (hour, kind, class, scrubbed link without ids), never an
// event; a recipient with marketing consent gets an event; each decision
// has its reason.
func TestProcessEmailCountsAnonymousHits(t *testing.T) {
	p, s := newSitePipeline(t, SiteConfig{}, nil)
	res := p.ProcessEmail(s, EmailHit{Click: true, Campaign: "spring jane@example.org", Link: "https://shop.example/o/1234567?email=a@b.example&utm_source=nl",
		Class: "scanner", Time: received, ClientIP: "192.0.2.9", UserAgent: ua})
	want := storage.EmailCount{Site: "shop", Campaign: "spring [email]", Kind: "click", Class: "scanner",
		Link: "https://shop.example/o/[id]?utm_source=nl", Hour: received.Truncate(time.Hour), TTL: 760 * 24 * time.Hour}
	if res.Outcome != Counted || res.Count != want || res.Record.Data != nil {
		t.Fatalf("anonymous hit: %v %+v, want counter %+v", res.Outcome, res.Count, want)
	}
	if res.Applied.Reason != reasonEmailCounted {
		t.Errorf("anonymous hit's reason %q", res.Applied.Reason)
	}
	granted, _ := consent.ParseSet("necessary", "marketing")
	res = p.ProcessEmail(s, EmailHit{Campaign: "spring", Recipient: "rcpt", Granted: granted, Class: "human", Time: received, ClientIP: "192.0.2.9"})
	if res.Outcome != Stored || res.Record.Subject != "rcpt" {
		t.Fatalf("consented hit: %v subject %q", res.Outcome, res.Record.Subject)
	}
	if res.Applied.Reason != reasonEmailGranted {
		t.Errorf("consented hit's reason %q (the overview's decisions list it)", res.Applied.Reason)
	}
}
