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

	"github.com/vigie-dev/vigie/internal/canarytest"
	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/proxytest"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// The canaries (package canarytest is their one home), by the names this
// package's tests use.
const (
	canaryEmail = canarytest.Email
	canaryIP    = canarytest.IP
	canaryUA    = canarytest.UA
	canaryAnon  = canarytest.Anon
	canaryUser  = canarytest.User
)

var (
	canaryVariants  = canarytest.Variants
	canaryPayloads  = canarytest.Payloads
	variantPayloads = canarytest.VariantPayloads
)

func findCanary(where string, b []byte, t *testing.T) {
	t.Helper()
	canarytest.Find(t, where, b)
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
		texts = append(texts, v.Send)
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
