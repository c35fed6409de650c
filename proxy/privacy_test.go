package proxy_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/proxytest"
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
	return []string{canaryEmail, url.QueryEscape(canaryEmail), canaryIP, canaryIP6, canaryUA, "CanaryBuild",
		canaryAnon, canaryUser, canaryGroup, canaryPhone, canaryPhon2, "612345678", canaryFirst, canaryLast,
		"1 rue Canary", canaryToken}
}

func findCanary(where string, b []byte, t *testing.T) {
	t.Helper()
	for _, c := range canaries() {
		if bytes.Contains(b, []byte(c)) || bytes.Contains(bytes.ToLower(b), []byte(strings.ToLower(c))) {
			t.Errorf("%s contains personal datum %q", where, c)
		}
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

	// Every payload twice (alone, then in the batch), the pixel and the
	// e-mail open and click, less the repeated track whose messageId is
	// deduplicated.
	n := len(canaryPayloads())*2 + 1 - 1 + 2
	msgs := waitStream(t, in, n)
	evs := adminEvents(t, in, "site=demo")
	if len(evs) != n {
		t.Fatalf("stored %d events, want %d", len(evs), n)
	}
	// The events still carry what is useful, in reduced form.
	var sawPrefix, sawBrowser, sawVault bool
	for _, m := range msgs {
		findCanary("NATS message on "+m.Subject, m.Data, t)
		sawPrefix = sawPrefix || m.Event.GetIpPrefix() == "198.51.100.0/24"
		// The canary UA's unusual product token makes the browser "Other".
		sawBrowser = sawBrowser || (m.Event.GetDevice().GetBrowser() == "Other" && m.Event.GetDevice().GetOs() == "Windows")
		sawVault = sawVault || len(m.Event.GetVaultedTraits()) > 0
	}
	if !sawPrefix || !sawBrowser || !sawVault {
		t.Errorf("reduced data missing: ip prefix %v, browser %v, vaulted traits %v", sawPrefix, sawBrowser, sawVault)
	}
	_, adminBody := in.Admin("/admin/v1/events?limit=1000")
	findCanary("admin API", adminBody, t)

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
	for _, stream := range []string{streams.Enriched, streams.Segments, streams.Dead} {
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
