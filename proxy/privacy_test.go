package proxy_test

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/proxytest"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// Canaries: known personal data sent in every field Vigie reads.
const (
	canaryEmail = "jane.canary@example.org"
	canaryIP    = "198.51.100.73"
	canaryIP6   = "2001:db8:abcd:12:3456:789a:bcde:f012"
	canaryUA    = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.6167.85 Safari/537.36 CanaryBuild/4242"
	canaryAnon  = "anon-canary-7f3a9c"
	canaryUser  = "user-canary-55821"
	canaryGroup = "group-canary-9911"
	canaryPhone = "+33 6 12 34 56 78"
	canaryPhon2 = "0612345678"
	canaryFirst = "Janetha"
	canaryLast  = "Canaryson"
	canaryToken = "sk_live_9f8e7d6c5b4a39281706f5e4d3c2b1a0"
)

func canaryPayloads() []string {
	esc := url.QueryEscape(canaryEmail)
	pageURL := "https://shop.example/users/" + canaryEmail + "/orders?email=" + esc + "&phone=" + url.QueryEscape(canaryPhone) + "&utm_source=mail&session=" + canaryToken + "#" + canaryEmail
	ctx := `"context":{"ip":"` + canaryIP + `","userAgent":"` + canaryUA + `","locale":"fr-FR",
	  "page":{"url":"` + pageURL + `","path":"/users/` + canaryEmail + `/orders","referrer":"https://mail.example/inbox?to=` + esc + `","title":"Orders of ` + canaryEmail + `","search":"?email=` + esc + `"},
	  "campaign":{"name":"spring ` + canaryEmail + `","source":"news","content":"call ` + canaryPhone + `"},
	  "consent":{"analytics":true,"personalization":true,"marketing":true},
	  "traits":{"email":"` + canaryEmail + `"}}`
	props := `"properties":{"email":"` + canaryEmail + `","phone":"` + canaryPhone + `","name":"` + canaryFirst + ` ` + canaryLast + `",
	  "note":"write to ` + canaryEmail + ` or call ` + canaryPhone + ` / ` + canaryPhon2 + `","nested":{"contact_email":"` + canaryEmail + `","ok":"fine"},
	  "link":"https://shop.example/x?email=` + esc + `","api_key":"` + canaryToken + `","plan":"pro"}`
	traits := `"traits":{"email":"` + canaryEmail + `","phone":"` + canaryPhone + `","firstName":"` + canaryFirst + `","lastName":"` + canaryLast + `",
	  "address":{"street":"1 rue Canary","city":"Paris"},"plan":"pro","bio":"reach me at ` + canaryEmail + `"}`
	ids := `"anonymousId":"` + canaryAnon + `","userId":"` + canaryUser + `"`
	return []string{
		`{"type":"track","event":"Ordered by ` + canaryEmail + `",` + ids + `,"messageId":"` + canaryEmail + `",` + ctx + `,` + props + `}`,
		`{"type":"page","name":"Orders",` + ids + `,` + ctx + `,` + props + `}`,
		`{"type":"identify",` + ids + `,` + ctx + `,` + traits + `}`,
		`{"type":"group","groupId":"` + canaryGroup + `",` + ids + `,` + ctx + `,` + traits + `}`,
		`{"type":"alias","previousId":"` + canaryAnon + `","userId":"` + canaryUser + `",` + ctx + `}`,
		`{"type":"track","event":"v6",` + ids + `,"context":{"ip":"` + canaryIP6 + `","consent":{"analytics":true,"personalization":true}}}`,
	}
}

func canaries() []string {
	out := []string{canaryEmail, url.QueryEscape(canaryEmail), canaryIP, canaryIP6, canaryUA, "CanaryBuild",
		canaryAnon, canaryUser, canaryGroup, canaryPhone, canaryPhon2, "612345678", canaryFirst, canaryLast,
		"1 rue Canary", canaryToken}
	for _, v := range canaryVariants {
		out = append(out, v.find...)
	}
	return append(out, canaryNumberFinds...)
}

// canaryVariants are personal data of every class the scrubber covers, in
// several encodings and notations each: send is the text as a site or SDK
// sends it, find the (ASCII) strings that must never be found anywhere.
var canaryVariants = []struct {
	class, send string
	find        []string
}{
	{"email", "rita.canary+news%2540example.org", []string{"rita.canary"}},
	{"email", "liam.canary%252540example.org", []string{"liam.canary"}},
	{"email", `noa.canary\u0040example.org`, []string{"noa.canary"}},
	{"email", "eva.canary&#64;example.org", []string{"eva.canary"}},
	{"email", "ugo.canary (at) example (dot) org", []string{"ugo.canary"}},
	{"email", "ZOE.CANARY@EXAMPLE.ORG", []string{"zoe.canary"}},
	{"email", "o'canary.ivy@example.org", []string{"canary.ivy"}},
	{"phone", "+49\u00a0171\u00a09876543", []string{"9876543"}},
	{"phone", "0044 20 7946 0958", []string{"7946 0958", "79460958"}},
	{"phone", "(415) 555-0137 x12", []string{"555-0137", "5550137"}},
	{"phone", "06\u202f98\u202f76\u202f54\u202f31", []string{"698765431"}},
	{"phone", "0171-234 56 78", []string{"234 56 78", "2345678"}},
	{"card", "4111 1111 1111 1111", []string{"1111 1111 1111", "4111111111111111"}},
	{"card", "3782-822463-10005", []string{"822463", "378282246310005"}},
	{"iban", "FR76 3000 6000 0112 3456 7890 189", []string{"0112 3456 7890", "30006000011234567890189"}},
	{"iban", "gb82west12345698765432", []string{"12345698765432"}},
	{"national_id", "NIR 1 85 05 78 006 084 91", []string{"006 084 91", "185057800608491"}},
	{"national_id", "SSN 078-05-1120", []string{"078-05-1120", "078051120"}},
	{"national_id", "NINO AB 12 34 56 C", []string{"AB 12 34 56 C", "AB123456C"}},
	{"national_id", "DNI 12345678Z", []string{"12345678Z"}},
	{"national_id", "CF RSSMRA85T10A562S", []string{"RSSMRA85T10A562S"}},
	{"national_id", "NN 85.07.30-033.28", []string{"85.07.30-033.28", "85073003328"}},
	{"ip", "2001:db8:cafe::17", []string{"2001:db8:cafe::17", "cafe::17"}},
	{"ip", "198.51.100.74", []string{"198.51.100.74"}},
	{"secret", "password=Hunter2Canary", []string{"Hunter2Canary"}},
	{"secret", "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJjYW5hcnkiOjF9.c2lnbmF0dXJlY2FuYXJ5", []string{"eyJjYW5hcnkiOjF9", "c2lnbmF0dXJlY2FuYXJ5"}},
	{"secret", "AKIACANARYKEY0000042", []string{"CANARYKEY"}},
	{"name", "Dear " + canaryFirst + " " + canaryLast, nil},
	{"name", "Mme Ysolde Canarique", []string{"Ysolde", "Canarique"}},
	{"name", "Name: Oswin Canarez", []string{"Oswin", "Canarez"}},
}

// canaryNumbers are personal data sent as JSON numbers (a phone in E.164
// without its '+', a card, a NIR, a German tax id), found by
// canaryNumberFinds.
const canaryNumbers = `"n1":33698765431,"n2":5555555555554444,"n3":185057800608491,"n4":86095742719`

var canaryNumberFinds = []string{"5555555555554444", "86095742719",
	// other trackers' ids and identifier-like referral values
	"9f8e7d6c5b4a3921", "1357924680", "cnry4u8x2", "9f8e7d6c5b4a3922", "1357924681", "cnryajs77",
	// values of personal-data keys in other languages
	"Canariel", "Canarovic", "Canaritz", "Canarita", "Canarine", "Canaryco", "Canarius",
	// hosts that are IP addresses in other forms
	"3325256714", "0xC6336449"}

// consentStates are the consent a payload carries: granted, absent and
// denied (the last two give anonymous events).
var consentStates = map[string]string{
	"granted": `,"consent":{"analytics":true,"personalization":true,"marketing":true}`,
	"absent":  ``,
	"denied":  `,"consent":{"analytics":false,"personalization":false,"marketing":false}`,
}

// variantPayloads put every canary variant in every field Vigie reads, for
// each consent state, with ids of their own (so that the consent ledger
// entries of one state do not change another's decisions).
func variantPayloads() []string {
	var texts []string
	for _, v := range canaryVariants {
		texts = append(texts, v.send)
	}
	all := strings.Join(texts, " ; ")
	q := url.QueryEscape(all)
	var segs []string
	for _, t := range texts {
		segs = append(segs, url.PathEscape(t))
	}
	path := "/p/" + strings.Join(segs, "/")
	// JSON-quoted all (its \u escapes are text, so the backslash is escaped).
	jq, _ := json.Marshal(all)
	j := string(jq)
	var keys []string
	for _, t := range texts {
		k, _ := json.Marshal(t)
		keys = append(keys, string(k)+":1")
	}
	var out []string
	for _, state := range []string{"granted", "absent", "denied"} {
		ids := `"anonymousId":"` + canaryAnon + `-` + state + `","userId":"` + canaryUser + `-` + state + `"`
		pageURL := "https://shop.example" + path + "?utm_term=" + q + "&utm_content=" + q + "&utm_campaign=" + q +
			"&pk_vid=9f8e7d6c5b4a3921&_ga=GA1.2.1357924680.1700000000&ref=cnry4u8x2&email=" + q + "#" + url.PathEscape(all)
		pageJ, _ := json.Marshal(pageURL)
		refJ, _ := json.Marshal("http://198.51.100.74:8080" + path + "?q=" + q)
		pathJ, _ := json.Marshal(path)
		ctx := `"context":{"ip":"` + canaryIP + `","userAgent":"` + canaryUA + `","locale":` + j + `,"library":{"name":"canary-sdk","version":` + j + `},
		  "page":{"url":` + string(pageJ) + `,"path":` + string(pathJ) + `,"referrer":` + string(refJ) + `,"title":` + j + `,"search":"?utm_term=` + q + `"},
		  "campaign":{"name":` + j + `,"source":"cnry4u8x2","medium":` + j + `,"term":` + j + `,"content":` + j + `}` + consentStates[state] + `}`
		props := `"properties":{"note":` + j + `,"nested":{"deep":[` + j + `,{"k":` + j + `}]},` + strings.Join(keys, ",") + `,` + canaryNumbers + `,
		  "link":"http://3325256714/x?utm_source=` + q + `","img":"http://0xC6336449/i.png",
		  "prenom":"Canariel","nom":"Canarovic","vorname":"Canaritz","nombre":"Canarita","adresse":"12 rue Canarine","customer":"Canaryco","full_name":"Canarius Maximus",
		  "_pk_id.1.ab12":"9f8e7d6c5b4a3922.1700000000.","_ga":"GA1.2.1357924681.1700000000","ajs_anonymous_id":"cnryajs77","plan":"pro"}`
		traits := `"traits":{"bio":` + j + `,"company":{"note":` + j + `},` + strings.Join(keys, ",") + `,` + canaryNumbers + `,
		  "prenom":"Canariel","telefono":"+34 612 34 56 78","_ga":"GA1.2.1357924681.1700000000","password":"Hunter2Canary","plan":"pro"}`
		msgID := func(typ string) string { return `"messageId":"` + canaryEmail + `-` + state + `-` + typ + `"` }
		out = append(out,
			`{"type":"track","event":`+j+`,`+ids+`,`+msgID("track")+`,`+ctx+`,`+props+`}`,
			`{"type":"page","name":`+j+`,`+ids+`,`+msgID("page")+`,`+ctx+`,`+props+`}`,
			`{"type":"screen","name":`+j+`,`+ids+`,`+msgID("screen")+`,`+ctx+`,`+props+`}`,
			`{"type":"identify",`+ids+`,`+msgID("identify")+`,`+ctx+`,`+traits+`}`,
		)
	}
	return out
}

func findCanary(where string, b []byte, t *testing.T) {
	t.Helper()
	for _, c := range canaries() {
		if bytes.Contains(b, []byte(c)) || bytes.Contains(bytes.ToLower(b), []byte(strings.ToLower(c))) {
			t.Errorf("%s contains personal datum %q", where, c)
		}
	}
}

// idRun is a run of digits anonymous paths must not keep.
var idRun = regexp.MustCompile(`[0-9]{6,}`)

// checkAnonymous fails for what an anonymous event must not hold: an IP
// prefix, an identifier, a time finer than the hour (in its fields or its
// id), an IP-literal host, an identifier-like path part, an e-mail event.
func checkAnonymous(t *testing.T, ev *vigiev1.Event) {
	t.Helper()
	if ev.GetIpPrefix() != "" || ev.GetSubject() != "" || ev.GetAnonymousId() != "" || ev.GetUserId() != "" || ev.GetEmail() != nil {
		t.Errorf("anonymous event %s keeps prefix %q subject %q email %v", ev.GetId(), ev.GetIpPrefix(), ev.GetSubject(), ev.GetEmail())
	}
	const hour = int64(time.Hour / time.Millisecond)
	id, err := ulid.Parse(ev.GetId())
	if ev.GetTimestampMs()%hour != 0 || ev.GetReceivedAtMs()%hour != 0 || err != nil || int64(id.Time()) != ev.GetReceivedAtMs() {
		t.Errorf("anonymous event %s: times %d %d (id time %d), want whole hours", ev.GetId(), ev.GetTimestampMs(), ev.GetReceivedAtMs(), id.Time())
	}
	host := ev.GetPage().GetReferrerHost()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		t.Errorf("anonymous event %s: referrer host %q is an IP address", ev.GetId(), host)
	}
	if idRun.MatchString(ev.GetPage().GetPath()) {
		t.Errorf("anonymous event %s: path %q keeps an identifier", ev.GetId(), ev.GetPage().GetPath())
	}
}

// noRedirect is a client that does not follow redirects.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func TestPrivacyNoPersonalDataAtRest(t *testing.T) {
	// The built-in plugins run, plus a plugin that records its whole input:
	// what plugins receive is searched too.
	recFile := filepath.Join(t.TempDir(), "plugin-input.txt")
	in := proxytest.Start(t, func(c *config.Config) {
		c.TrustedProxies = []string{"127.0.0.0/8"} // so that X-Forwarded-For carries the canary address
		c.Plugins = []config.Plugin{
			{Name: "geoip"},
			{Name: "segments", Config: map[string]any{"segments": []any{
				map[string]any{"name": "everyone", "when": "true"},
			}}},
			{Name: "recorder", Config: map[string]any{"file": recFile}},
		}
	})
	var batch strings.Builder
	batch.WriteString(`{"batch":[`)
	for i, p := range canaryPayloads() {
		if i > 0 {
			batch.WriteString(",")
		}
		batch.WriteString(p)
		path := "/v1/" + strings.SplitN(strings.SplitN(p, `"type":"`, 2)[1], `"`, 2)[0]
		if code, body := in.Post(path, "demo", p); code != 200 {
			t.Fatalf("%s: %d %s", path, code, body)
		}
	}
	batch.WriteString(`]}`)
	if code, body := in.Post("/v1/batch", "demo", batch.String()); code != 200 {
		t.Fatalf("batch: %d %s", code, body)
	}
	// The pixel too, with personal data in its URL and referrer.
	in.Do("GET", "/v1/p.gif?k=demo&aid="+canaryAnon+"&consent=analytics,personalization&url="+url.QueryEscape("https://shop.example/?email="+canaryEmail)+"&ref="+url.QueryEscape("https://x.example/"+canaryEmail), nil,
		map[string][]string{"User-Agent": {canaryUA}, "X-Forwarded-For": {canaryIP}})

	// Every variant of every class in every field, under each consent
	// state, and through the pixel (its url, ref, title and name).
	for _, p := range variantPayloads() {
		path := "/v1/" + strings.SplitN(strings.SplitN(p, `"type":"`, 2)[1], `"`, 2)[0]
		if code, body := in.Post(path, "demo", p); code != 200 {
			t.Fatalf("%s: %d %s", path, code, body)
		}
	}
	var texts []string
	for _, v := range canaryVariants {
		texts = append(texts, v.send)
	}
	all := strings.Join(texts, " ; ")
	for state, c := range map[string]string{"granted": "analytics,personalization,marketing", "absent": "", "denied": "analytics:0,personalization:0,marketing:0"} {
		pix := "/v1/p.gif?k=demo&aid=" + canaryAnon + "-pixel-" + state + "&consent=" + c + "&name=" + url.QueryEscape(all) + "&title=" + url.QueryEscape(all) +
			"&url=" + url.QueryEscape("https://shop.example/"+url.PathEscape(all)+"?utm_term="+url.QueryEscape(all)+"&pk_vid=9f8e7d6c5b4a3921&ref=cnry4u8x2") +
			"&ref=" + url.QueryEscape("http://[2001:db8:cafe::17]/"+url.PathEscape(all))
		if code, body := in.Do("GET", pix, nil, map[string][]string{"User-Agent": {canaryUA}, "X-Forwarded-For": {canaryIP}}); code != 200 {
			t.Fatalf("pixel %s: %d %s", state, code, body)
		}
	}

	// A tracked e-mail to the canary user, opened and clicked from the
	// canary address and user agent.
	rw, _ := json.Marshal(map[string]any{"site": "demo", "campaign": "spring " + canaryEmail, "recipients": []string{canaryUser},
		"html": `<html><body><a href="https://shop.example/offer?email=` + url.QueryEscape(canaryEmail) + `&utm_source=mail">Offer</a></body></html>`})
	code, rwBody := in.Do("POST", "/admin/v1/email/rewrite", rw, map[string][]string{"Authorization": {"Bearer " + in.AdminToken()}})
	if code != 200 {
		t.Fatalf("email rewrite: %d %s", code, rwBody)
	}
	var rwOut struct{ Messages []struct{ HTML string } }
	if err := json.Unmarshal(rwBody, &rwOut); err != nil || len(rwOut.Messages) != 1 {
		t.Fatalf("email rewrite: %s", rwBody)
	}
	findCanary("tracked e-mail", []byte(rwOut.Messages[0].HTML), t)
	for _, re := range []*regexp.Regexp{regexp.MustCompile(`src="http://[^"]+(/e/o/[^"]+)"`), regexp.MustCompile(`href="http://[^"]+(/e/c/[^"]+)"`)} {
		m := re.FindStringSubmatch(rwOut.Messages[0].HTML)
		if m == nil {
			t.Fatalf("no tracking URL in %s", rwOut.Messages[0].HTML)
		}
		req, _ := http.NewRequest("GET", in.URL+m[1], nil)
		req.Header = http.Header{"User-Agent": {canaryUA}, "X-Forwarded-For": {canaryIP}}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}

	// The snippet: a consent sets the identifier cookie, and a later hit
	// with it does not set it again (its expiry stays the consent's).
	cookie, _ := postSnippetStatus(t, in, snippetBatch("Consent Updated", `{"analytics":true}`), "")
	if cookie == nil {
		t.Fatal("no identifier cookie after consent")
	}
	if again, _ := postSnippetStatus(t, in, snippetBatch("Later", ""), cookie.Value); again != nil {
		t.Errorf("a later hit extended the identifier cookie: %+v", again)
	}

	// Every payload twice (alone, then in the batch), the pixel and the
	// two snippet hits, less the repeated track whose messageId is
	// deduplicated. The e-mail open and click are not events: the
	// recipient's ledger entry (from the last payload) denies marketing,
	// so they are campaign-level counters.
	n := len(canaryPayloads())*2 + 1 - 1 + len(variantPayloads()) + 3 + 2
	msgs := waitStream(t, in, n)
	evs := adminEvents(t, in, "site=demo")
	if len(evs) != n {
		t.Fatalf("stored %d events, want %d", len(evs), n)
	}
	// The events still carry what is useful, in reduced form.
	var sawPrefix, sawBrowser, sawVault bool
	anonymous := 0
	for _, m := range msgs {
		if m.Event.GetMode() == vigiev1.Mode_MODE_ANONYMOUS {
			anonymous++
			checkAnonymous(t, m.Event)
		}
		findCanary("NATS message on "+m.Subject, m.Data, t)
		sawPrefix = sawPrefix || m.Event.GetIpPrefix() == "198.51.100.0/24"
		// The canary UA's unusual product token makes the browser "Other".
		sawBrowser = sawBrowser || (m.Event.GetDevice().GetBrowser() == "Other" && m.Event.GetDevice().GetOs() == "Windows")
		sawVault = sawVault || len(m.Event.GetVaultedTraits()) > 0
	}
	if !sawPrefix || !sawBrowser || !sawVault {
		t.Errorf("reduced data missing: ip prefix %v, browser %v, vaulted traits %v", sawPrefix, sawBrowser, sawVault)
	}
	// The absent and denied payloads and pixels are anonymous events.
	if want := 2*len(variantPayloads())/3 + 2; anonymous < want {
		t.Errorf("%d anonymous events, want at least %d", anonymous, want)
	}
	_, adminBody := in.Admin("/admin/v1/events?limit=1000")
	findCanary("admin API", adminBody, t)
	counts := emailCounts(t, in, "spring [email]")
	if len(counts) != 2 || counts[0].Count+counts[1].Count != 2 {
		t.Errorf("e-mail counters %+v, want the open and the click", counts)
	}
	_, countsBody := in.Admin("/admin/v1/email/counts?site=demo")
	findCanary("admin e-mail counts", countsBody, t)

	// Plugin input: every event enriched, segmented and the segment
	// changes and identify events synced.
	var input []byte
	deadline := time.Now().Add(30 * time.Second)
	for {
		input, _ = os.ReadFile(recFile)
		if bytes.Count(input, []byte("enrich ")) >= n &&
			bytes.Contains(input, []byte("segment_change")) && bytes.Contains(input, []byte("identify")) {
			break
		}
		if time.Now().After(deadline) {
			_, pl := in.Admin("/admin/v1/plugins")
			t.Fatalf("the recording plugin did not get every event:\n%s\nplugins: %s", input, pl)
		}
		time.Sleep(50 * time.Millisecond)
	}
	findCanary("plugin input", input, t)
	for _, stream := range []string{streams.Enriched, streams.Segments, streams.Privacy, streams.Dead} {
		st, err := in.Server.Bus().JetStream().Stream(t.Context(), stream)
		if err != nil {
			t.Fatal(err)
		}
		info, _ := st.Info(t.Context())
		for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
			if m, err := st.GetMsg(t.Context(), seq); err == nil {
				findCanary("NATS message on "+m.Subject, m.Data, t)
			}
		}
	}
	_, segBody := in.Admin("/admin/v1/segments?site=demo")
	findCanary("admin segments", segBody, t)
	_, plBody := in.Admin("/admin/v1/plugins")
	findCanary("admin plugins", plBody, t)
	_, statsBody := in.Admin("/admin/v1/stats")
	findCanary("admin stats", statsBody, t)
	_, metricsBody := in.Do("GET", "/metrics", nil, nil)
	findCanary("metrics", metricsBody, t)

	// Every version of every key, decoded (Badger compresses its tables).
	versions := 0
	err := in.Server.Store().ScanAllVersions(func(k, v []byte) error {
		versions++
		findCanary("badger key", k, t)
		findCanary("badger value of "+string(bytes.ToValidUTF8(k[:min(len(k), 24)], nil)), v, t)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if versions < n {
		t.Fatalf("scanned only %d versions", versions)
	}
	findCanary("server logs", []byte(in.Logs()), t)

	// Then the raw files, after a clean shutdown has flushed everything.
	in.Stop()
	files := in.DataFiles()
	if len(files) == 0 {
		t.Fatal("no data files")
	}
	for name, b := range files {
		findCanary("file "+name, b, t)
	}
}
