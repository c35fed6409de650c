package crm_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/internal/canarytest"
	"github.com/vigie-dev/vigie/plugins/crm/brevo/brevotest"
	"github.com/vigie-dev/vigie/plugins/crm/hubspot/hubspottest"
	"github.com/vigie-dev/vigie/plugins/crm/webhook/webhooktest"
)

// recorder is a reverse proxy in front of a fake CRM that keeps every
// request (method, URL, headers but Authorization, body) it forwards.
type recorder struct {
	*httptest.Server
	mu   sync.Mutex
	reqs [][]byte
}

func newRecorder(t *testing.T, target string) *recorder {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		h := r.Header.Clone()
		h.Del("Authorization")
		hj, _ := json.Marshal(h)
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, []byte(r.Method+" "+r.URL.String()+" "+string(hj)+" "+string(body)))
		rec.mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(rec.Close)
	return rec
}

// all is every request recorded, joined.
func (r *recorder) all() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Join(r.reqs, []byte("\n"))
}

// TestCRMCanariesOnlyMappedConsented sends people under granted, absent
// and denied marketing consent with personal data of every class in
// their traits, properties, context, URLs and event names, to three CRM
// destinations (HubSpot, Brevo, a webhook), and has two CRMs reject a
// contact with an error body echoing its e-mail, a phone and an IP. What
// reaches each CRM is only the mapped fields of consented people, their
// scrubbed values as scrubbed (the e-mail is the contact's key); nothing
// of the absent or denied people; and no canary, nor any contact's
// e-mail, is in the dead letters, the destinations' status, the audit
// trail, the logs (plugin stderr included), Badger or the raw files.
func TestCRMCanariesOnlyMappedConsented(t *testing.T) {
	secret := newSecret()
	recv, err := webhooktest.New(secret)
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Close()
	hs := hubspottest.New(hubspotToken)
	defer hs.Close()
	bv := brevotest.New("xkeysib-test-key")
	defer bv.Close()
	hsRec, bvRec := newRecorder(t, hs.URL), newRecorder(t, bv.URL)
	t.Setenv("HUBSPOT_TOKEN", hubspotToken)
	t.Setenv("BREVO_API_KEY", "xkeysib-test-key")
	t.Setenv("WEBHOOK_SECRET", secret)
	in := start(t,
		destination("crm-webhook", "webhook", map[string]any{"url": recv.URL, "secrets": []any{map[string]any{"env": "WEBHOOK_SECRET"}}}, "WEBHOOK_SECRET"),
		destination("crm-hubspot", "hubspot", map[string]any{"base_url": hsRec.URL, "token": map[string]any{"env": "HUBSPOT_TOKEN"}}, "HUBSPOT_TOKEN"),
		destination("crm-brevo", "brevo", map[string]any{"base_url": bvRec.URL + "/v3", "api_key": map[string]any{"env": "BREVO_API_KEY"}}, "BREVO_API_KEY"),
	)
	dumpOnFailure(t, in)

	// Two CRMs reject a consented contact, echoing its e-mail in several
	// encodings, a phone and an address.
	echo := func(email string) string {
		return "Email address " + email + " (" + strings.ToUpper(url.QueryEscape(email)) + ", " + strings.ReplaceAll(email, "@", `\u0040`) +
			", " + strings.ReplaceAll(email, "@", `\\u0040`) + ") reachable at " + canarytest.Phone + " from " + canarytest.IP + " is invalid"
	}
	hs.RejectEmail("crm-granted-2@example.org", echo("crm-granted-2@example.org"))
	bv.RejectEmail("crm-granted-2@example.org")
	bvBody, _ := json.Marshal(map[string]string{"code": "invalid_parameter", "message": echo("crm-granted-2@example.org")})
	bv.Inject("POST /v3/contacts", brevotest.Reply{Status: http.StatusBadRequest, Body: string(bvBody)})

	all := strings.Join(canarytest.Texts(), " ; ")
	j, _ := json.Marshal(all)
	q := url.QueryEscape(all)
	states := map[string]string{"granted": withMarketing, "absent": "", "denied": `{"analytics":true,"personalization":true,"marketing":false}`}
	const perState = 3
	for state, c := range states {
		consentJSON := ""
		if c != "" {
			consentJSON = `,"consent":` + c
		}
		for i := range perState {
			user := fmt.Sprintf("crm-%s-%d", state, i)
			ctx := `"context":{"ip":"` + canarytest.IP + `","userAgent":"` + canarytest.UA + `","page":{"url":"https://shop.example/docs/` +
				url.PathEscape(canarytest.Email) + `?email=` + q + `","title":` + string(j) + `,"referrer":"https://mail.example/?to=` + q + `"},
			  "campaign":{"name":` + string(j) + `}` + consentJSON + `}`
			post(t, in, "/v1/page", `{"userId":"`+user+`","name":`+string(j)+`,"properties":{"path":"/docs/start","note":`+string(j)+`,"email":"`+canarytest.Email+`","url":"https://shop.example/docs/start?email=`+q+`"},`+ctx+`}`)
			post(t, in, "/v1/track", `{"userId":"`+user+`","event":`+string(j)+`,"properties":{"note":`+string(j)+`,"phone":"`+canarytest.Phone+`",`+canarytest.Numbers+`},`+ctx+`}`)
			v := canarytest.Variants[i%len(canarytest.Variants)]
			traits, _ := json.Marshal(map[string]any{"email": user + "@example.org", "first_name": canarytest.First, "company": "Acme " + all,
				"last_name": canarytest.Last, "phone": canarytest.Phone, "bio": all, "note": v.Send, "address": map[string]any{"street": "1 rue Canary"}})
			post(t, in, "/v1/identify", `{"userId":"`+user+`","traits":`+string(traits)+`,`+ctx+`}`)
		}
	}
	waitFor(t, "the consented contacts delivered or dead-lettered", 45*time.Second, func() bool {
		d := destinations(t, in)
		return hs.Contacts() >= perState-1 && bv.Contacts() >= perState-2 && len(upserts(recv)) == perState &&
			d["crm-hubspot"].DeadLetters > 0 && d["crm-brevo"].DeadLetters > 0
	})
	time.Sleep(500 * time.Millisecond) // what should not arrive has had time to

	// What the CRMs got: consented people only, mapped fields only.
	others := []string{"crm-absent", "crm-denied"}
	var webhookBodies [][]byte
	for _, m := range recv.Messages() {
		webhookBodies = append(webhookBodies, m.Body)
	}
	for name, b := range map[string][]byte{"HubSpot": hsRec.all(), "Brevo": bvRec.all(), "the webhook": bytes.Join(webhookBodies, []byte("\n"))} {
		// The mapped first name is sent: find the rest.
		canarytest.FindExtra(t, "what "+name+" received", bytes.ReplaceAll(b, []byte(canarytest.First), nil), others...)
		if !bytes.Contains(b, []byte("crm-granted-0@example.org")) || !bytes.Contains(b, []byte("Acme")) {
			t.Errorf("%s did not receive the consented contact and its mapped company", name)
		}
	}
	c, ok := hs.Contact("crm-granted-0@example.org")
	if !ok || c.Properties["firstname"] != canarytest.First || !strings.HasPrefix(c.Properties["company"], "Acme ") || !strings.Contains(c.Properties["company"], "[email]") {
		t.Errorf("HubSpot contact: %+v", c.Properties)
	}

	// Where the contacts' e-mails have no business: dead letters, status,
	// audit, logs, Badger, files.
	people := []string{"crm-granted", "crm-absent", "crm-denied"}
	for _, path := range []string{"/admin/v1/destinations", "/admin/v1/destinations/crm-hubspot", "/admin/v1/destinations/crm-brevo",
		"/admin/v1/destinations/crm-webhook", "/admin/v1/audit", "/admin/v1/plugins", "/admin/v1/stats", "/admin/v1/segments?site=demo"} {
		code, b := in.Admin(path)
		if code != 200 {
			t.Errorf("%s: %d %s", path, code, b)
		}
		canarytest.FindExtra(t, path, b, people...)
	}
	canarytest.ScanStreams(t, in.Server.Bus().JetStream(), "", people...)
	canarytest.FindExtra(t, "server and plugin logs", []byte(in.Logs()), people...)
	err = in.Server.Store().ScanAllVersions(func(k, v []byte) error {
		canarytest.FindExtra(t, "badger key", k, people...)
		canarytest.FindExtra(t, "badger value of "+string(bytes.ToValidUTF8(k[:min(len(k), 24)], nil)), v, people...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	in.Stop()
	canarytest.ScanDir(t, in.Config.DataDir, people...)
}

// TestDestinationAdminHostileNames: the destinations' admin routes given
// names no destination has (empty-looking, encoded slashes and dots, NUL,
// invalid UTF-8, 8 KiB, an e-mail) answer a JSON 404 naming the problem,
// never a Go error, path or address, and leave the real destination alone.
func TestDestinationAdminHostileNames(t *testing.T) {
	secret := newSecret()
	recv, err := webhooktest.New(secret)
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Close()
	in := start(t, webhookDest(t, "crm-webhook", recv, secret))
	names := []string{"%20", "..%2F..%2Fetc", "crm-webhook%00", "crm-webhook%2Fx", "%FF%FE", strings.Repeat("a", 8<<10),
		url.PathEscape(canarytest.Email), "CRM-WEBHOOK", "segments"}
	for _, name := range names {
		for _, r := range []struct{ method, path string }{
			{"GET", "/admin/v1/destinations/" + name},
			{"POST", "/admin/v1/destinations/" + name + "/resync"},
			{"POST", "/admin/v1/destinations/" + name + "/replay"},
			{"DELETE", "/admin/v1/destinations/" + name + "/dead-letters"},
		} {
			code, b := adminDo(t, in, r.method, r.path, "")
			var e struct{ Code, Error string }
			if code != http.StatusNotFound || json.Unmarshal(b, &e) != nil || e.Code != "unknown_destination" || e.Error == "" {
				t.Errorf("%s %.80s: %d %.300s", r.method, r.path, code, b)
			}
			for _, leak := range []string{"/tmp", in.Config.DataDir, "127.0.0.1", "nats:", "runtime error"} {
				if bytes.Contains(b, []byte(leak)) {
					t.Errorf("%s %.80s: the answer shows %q", r.method, r.path, leak)
				}
			}
			canarytest.Find(t, "the logs after "+r.method+" "+r.path[:min(len(r.path), 80)], []byte(in.Logs()))
		}
	}
	if d := destinations(t, in)["crm-webhook"]; d.Name != "crm-webhook" || d.DeadLetters != 0 {
		t.Errorf("the real destination: %+v", d)
	}
}
