package crm_test

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/plugins/builtin"
	"github.com/vigie-dev/vigie/plugins/crm/brevo/brevotest"
	"github.com/vigie-dev/vigie/plugins/crm/hubspot/hubspottest"
	"github.com/vigie-dev/vigie/plugins/crm/webhook/webhooktest"
	"github.com/vigie-dev/vigie/proxy"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/proxytest"
	"github.com/vigie-dev/vigie/proxy/register"
)

// TestMain lets this test binary serve the built-in plugins (crm,
// segments) when Vigie re-executes it as "<binary> plugin <name>".
func TestMain(m *testing.M) {
	builtin.MaybeRun(os.Args)
	os.Exit(m.Run())
}

const hubspotToken = "pat-eu1-3b6c1f2a-0b9d-4c3e-a7f6-5d2c1b0a9e8f"

// newSecret is a Standard Webhooks signing secret.
func newSecret() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

// segmentsPlugin scores 5 points per docs page and puts readers of the
// docs in segment "reader".
func segmentsPlugin() config.Plugin {
	return config.Plugin{Name: "segments", Config: map[string]any{
		"segments": []any{map[string]any{"name": "reader", "when": `profile.count("page", "/docs*", "30d") >= 1`}},
		"scoring":  []any{map[string]any{"name": "docs", "points": 5, "when": `event.type == "page" && event.page.path.startsWith("/docs")`}},
	}}
}

// destination is a crm plugin entry for the fakes on 127.0.0.1.
func destination(name, connector string, block map[string]any, env ...string) config.Plugin {
	return config.Plugin{Name: name, Builtin: "crm", Env: env, Config: map[string]any{
		"connector":     connector,
		"allow_private": true, // the fakes listen on 127.0.0.1
		"fields":        map[string]any{"firstname": "trait.first_name", "company": "trait.company"},
		"rate_limit":    map[string]any{"per_second": 1000, "burst": 100},
		"backoff":       map[string]any{"min": "50ms", "max": "300ms"},
		connector:       block,
	}}
}

// start starts Vigie with the segments plugin and the destinations.
func start(t *testing.T, dests ...config.Plugin) *proxytest.Instance {
	t.Helper()
	return proxytest.Start(t, func(c *config.Config) {
		c.PluginRuntime = config.PluginRuntime{
			MaxDeliver:        4,
			Backoff:           []config.Duration{config.Duration(50 * time.Millisecond)},
			CallTimeout:       config.Duration(5 * time.Second),
			BatchSize:         50,
			MaxRestarts:       1000,
			RestartBackoff:    config.Duration(20 * time.Millisecond),
			MaxRestartBackoff: config.Duration(200 * time.Millisecond),
		}
		c.Plugins = append([]config.Plugin{segmentsPlugin()}, dests...)
	})
}

const (
	withMarketing    = `{"analytics":true,"personalization":true,"marketing":true}`
	withoutMarketing = `{"analytics":true,"personalization":true}`
)

func post(t *testing.T, in *proxytest.Instance, path, body string) {
	t.Helper()
	if code, b := in.Post(path, "demo", body); code != http.StatusOK {
		t.Fatalf("%s: %d %s", path, code, b)
	}
}

// person reads a docs page, with consent.
func person(t *testing.T, in *proxytest.Instance, user, consentJSON string) {
	t.Helper()
	post(t, in, "/v1/page", fmt.Sprintf(`{"userId":%q,"properties":{"path":"/docs/start","url":"https://shop.example/docs/start"},"context":{"consent":%s}}`,
		user, consentJSON))
}

func identify(t *testing.T, in *proxytest.Instance, user, email, consentJSON string) {
	t.Helper()
	post(t, in, "/v1/identify", fmt.Sprintf(`{"userId":%q,"traits":{"email":%q,"first_name":"Ada","company":"Acme","last_name":%q,"plan":%q},"context":{"consent":%s}}`,
		user, email, unmappedName, unmappedPlan, consentJSON))
}

// unmappedName and unmappedPlan are traits no destination maps (a vaulted
// one and a plain one): they must reach no CRM.
const (
	unmappedName = "Lovelacecanary"
	unmappedPlan = "plancanary-gold"
)

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// segmentSize is the size of segment reader.
func segmentSize(t *testing.T, in *proxytest.Instance) int {
	t.Helper()
	_, b := in.Admin("/admin/v1/segments?site=demo")
	var v struct {
		Segments []struct {
			Name string
			Size int
		}
	}
	_ = json.Unmarshal(b, &v)
	for _, s := range v.Segments {
		if s.Name == "reader" {
			return s.Size
		}
	}
	return 0
}

// destinations reads GET /admin/v1/destinations.
type destView struct {
	Name, Connector, State, LastError string
	Purposes                          []string
	Backlog                           uint64
	Delivered, Failed, Retried        uint64
	DeadLetters                       int `json:"dead_letters"`
	Plugin                            struct{ State string }
	Resync                            *struct {
		Run, State        string
		Listed, Published int
		Delivered         int
	}
}

func destinations(t testing.TB, in *proxytest.Instance) map[string]destView {
	t.Helper()
	code, b := in.Admin("/admin/v1/destinations")
	if code != 200 {
		t.Fatalf("destinations: %d %s", code, b)
	}
	var v struct{ Destinations []destView }
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	out := map[string]destView{}
	for _, d := range v.Destinations {
		out[d.Name] = d
	}
	return out
}

func adminDo(t *testing.T, in *proxytest.Instance, method, path, body string) (int, []byte) {
	t.Helper()
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	return in.Do(method, path, b, http.Header{"Authorization": {"Bearer " + in.AdminToken()}})
}

// upserts are the contact.upserted messages the receiver recorded, by
// e-mail.
func upserts(r *webhooktest.Receiver) map[string]int {
	out := map[string]int{}
	for _, m := range r.Messages() {
		if m.Message.Type != "contact.upserted" {
			continue
		}
		var d struct{ Email string }
		_ = json.Unmarshal(m.Message.Data, &d)
		out[d.Email]++
	}
	return out
}

func types(r *webhooktest.Receiver, email string) []string {
	var out []string
	for _, m := range r.Messages() {
		var d struct{ Email string }
		_ = json.Unmarshal(m.Message.Data, &d)
		if d.Email == email {
			out = append(out, m.Message.Type)
		}
	}
	return out
}

// TestCRMSyncEndToEnd runs Vigie with three destinations (a signed
// webhook, a fake HubSpot, a fake Brevo), each its own plugin process:
// consented subjects arrive exactly once each with their segments and
// score, subjects without marketing consent never arrive, a withdrawal
// unsubscribes, and an erasure deletes them downstream with the
// destinations' steps done in the privacy request.
func TestCRMSyncEndToEnd(t *testing.T) {
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
	t.Setenv("HUBSPOT_TOKEN", hubspotToken)
	t.Setenv("BREVO_API_KEY", "xkeysib-test-key")
	t.Setenv("WEBHOOK_SECRET", secret)
	in := start(t,
		destination("crm-webhook", "webhook", map[string]any{"url": recv.URL, "secrets": []any{map[string]any{"env": "WEBHOOK_SECRET"}}}, "WEBHOOK_SECRET"),
		destination("crm-hubspot", "hubspot", map[string]any{"base_url": hs.URL, "token": map[string]any{"env": "HUBSPOT_TOKEN"}}, "HUBSPOT_TOKEN"),
		destination("crm-brevo", "brevo", map[string]any{"base_url": bv.URL + "/v3", "api_key": map[string]any{"env": "BREVO_API_KEY"}}, "BREVO_API_KEY"),
	)
	dumpOnFailure(t, in)
	yes := []string{"ada@example.org", "grace@example.org", "hedy@example.org"}
	no := []string{"no1@example.org", "no2@example.org"}
	for i := range yes {
		person(t, in, fmt.Sprint("yes-", i), withMarketing)
	}
	for i := range no {
		person(t, in, fmt.Sprint("no-", i), withoutMarketing)
	}
	// The profiles are scored and segmented before they identify, so that
	// the upsert carries them.
	waitFor(t, "5 readers", 30*time.Second, func() bool { return segmentSize(t, in) == 5 })
	for i, e := range yes {
		identify(t, in, fmt.Sprint("yes-", i), e, withMarketing)
	}
	for i, e := range no {
		identify(t, in, fmt.Sprint("no-", i), e, withoutMarketing)
	}
	waitFor(t, "the consented contacts in every destination", 45*time.Second, func() bool {
		return hs.Contacts() == 3 && bv.Contacts() == 3 && len(upserts(recv)) == 3
	})
	for _, e := range yes {
		c, ok := hs.Contact(e)
		if !ok || c.Properties["vigie_segment_reader"] != "true" || c.Properties["vigie_score"] != "5" ||
			c.Properties["firstname"] != "Ada" || c.Properties["company"] != "Acme" || c.Properties["vigie_marketing_consent"] != "true" {
			t.Errorf("HubSpot contact %s: %+v", e, c.Properties)
		}
		b, ok := bv.Contact(e)
		if !ok || fmt.Sprint(b.Attributes["VIGIE_SCORE"]) != "5" || fmt.Sprint(b.Attributes["COMPANY"]) != "Acme" {
			t.Errorf("Brevo contact %s: %+v", e, b)
		}
	}
	// Only what the mapping names leaves Vigie: the unmapped traits are in
	// no contact and no webhook body.
	for _, e := range yes {
		c, _ := hs.Contact(e)
		b, _ := bv.Contact(e)
		if got := fmt.Sprint(c.Properties, b.Attributes); strings.Contains(got, unmappedName) || strings.Contains(got, unmappedPlan) {
			t.Errorf("an unmapped trait reached a CRM for %s: %s", e, got)
		}
	}
	for _, m := range recv.Messages() {
		if strings.Contains(string(m.Body), unmappedName) || strings.Contains(string(m.Body), unmappedPlan) {
			t.Errorf("an unmapped trait reached the webhook: %s", m.Body)
		}
	}
	if l, ok := bv.ListByName("Vigie: reader"); !ok {
		t.Error("no Brevo list for segment reader")
	} else {
		for _, e := range yes {
			if c, _ := bv.Contact(e); !slices.Contains(c.ListIDs, l.ID) {
				t.Errorf("Brevo contact %s not in the reader list", e)
			}
		}
	}
	time.Sleep(500 * time.Millisecond) // what should not arrive has had time to
	// Exactly once each: one contact per person, one upsert message each.
	if hs.Creates() != 3 || bv.Creates() != 3 {
		t.Errorf("contacts created: HubSpot %d, Brevo %d; want 3 each", hs.Creates(), bv.Creates())
	}
	for e, n := range upserts(recv) {
		if n != 1 || !slices.Contains(yes, e) {
			t.Errorf("webhook: %d upserts of %q", n, e)
		}
	}
	for _, e := range no {
		if _, ok := hs.Contact(e); ok {
			t.Errorf("HubSpot got %s, who did not consent to marketing", e)
		}
		if _, ok := bv.Contact(e); ok {
			t.Errorf("Brevo got %s, who did not consent to marketing", e)
		}
		if got := types(recv, e); len(got) > 0 {
			t.Errorf("webhook got %v for %s, who did not consent to marketing", got, e)
		}
	}
	// Withdrawal: yes-0 takes marketing back.
	post(t, in, "/v1/track", `{"userId":"yes-0","event":"Settings Saved","context":{"consent":`+withoutMarketing+`}}`)
	waitFor(t, "the withdrawal downstream", 30*time.Second, func() bool {
		c, _ := hs.Contact(yes[0])
		b, _ := bv.Contact(yes[0])
		return c.Properties["vigie_marketing_consent"] == "false" && b.EmailBlacklisted &&
			slices.Contains(types(recv, yes[0]), "contact.unsubscribed")
	})

	// Erasure of yes-1: deleted downstream, each destination's step done.
	code, b := adminDo(t, in, "POST", "/admin/v1/privacy/requests",
		`{"type":"erase","site":"demo","identifier":{"kind":"email","value":"`+yes[1]+`"}}`)
	if code != http.StatusAccepted {
		t.Fatalf("erase: %d %s", code, b)
	}
	var req struct{ ID string }
	_ = json.Unmarshal(b, &req)
	var steps map[string][2]string
	waitFor(t, "the erasure", 60*time.Second, func() bool {
		_, b := in.Admin("/admin/v1/privacy/requests/" + req.ID)
		var v struct {
			Status string
			Steps  []struct{ Name, Status, Detail string }
		}
		_ = json.Unmarshal(b, &v)
		steps = map[string][2]string{}
		for _, s := range v.Steps {
			steps[s.Name] = [2]string{s.Status, s.Detail}
		}
		return v.Status == "done" || v.Status == "partial" || v.Status == "failed"
	})
	for _, d := range []string{"crm-webhook", "crm-hubspot", "crm-brevo"} {
		if st := steps["plugin:"+d]; st[0] != "done" || !strings.Contains(st[1], "deleted downstream") {
			t.Errorf("step plugin:%s = %v, want done, deleted downstream", d, st)
		}
	}
	if _, ok := hs.Contact(yes[1]); ok || !slices.Contains(hs.GDPRDeletes(), yes[1]) {
		t.Errorf("HubSpot still has %s (gdpr-deletes %v)", yes[1], hs.GDPRDeletes())
	}
	if _, ok := bv.Contact(yes[1]); ok || !slices.Contains(bv.Deletes(), yes[1]) {
		t.Errorf("Brevo still has %s (deletes %v)", yes[1], bv.Deletes())
	}
	if !slices.Contains(types(recv, yes[1]), "contact.deleted") {
		t.Errorf("webhook got no contact.deleted for %s: %v", yes[1], types(recv, yes[1]))
	}
	// An erasure of someone no destination ever had reaches none of them.
	code, b = adminDo(t, in, "POST", "/admin/v1/privacy/requests",
		`{"type":"erase","site":"demo","identifier":{"kind":"email","value":"`+no[0]+`"}}`)
	if code != http.StatusAccepted {
		t.Fatalf("erase: %d %s", code, b)
	}
	_ = json.Unmarshal(b, &req)
	waitFor(t, "the second erasure", 60*time.Second, func() bool {
		_, b := in.Admin("/admin/v1/privacy/requests/" + req.ID)
		return strings.Contains(string(b), `"status":"done"`) && !strings.Contains(string(b), `"status":"running"`)
	})
	if slices.Contains(hs.GDPRDeletes(), no[0]) || slices.Contains(bv.Deletes(), no[0]) {
		t.Errorf("a destination was told of %s, whom it never had", no[0])
	}

	// Health: every destination ok, nothing dead-lettered; no secret and
	// no address in the logs.
	for name, d := range destinations(t, in) {
		if d.State != "ok" || d.DeadLetters != 0 || d.Delivered == 0 || !slices.Equal(d.Purposes, []string{"marketing"}) {
			t.Errorf("destination %s: %+v", name, d)
		}
	}
	logs := in.Logs()
	for _, s := range append(append([]string{hubspotToken, secret, "xkeysib-test-key"}, yes...), no...) {
		if strings.Contains(logs, s) {
			t.Errorf("the logs hold %q", s)
		}
	}
	code, metrics := in.Do("GET", "/metrics", nil, nil)
	if code != 200 || !strings.Contains(string(metrics), `vigie_destination_delivered_total{connector="hubspot",destination="crm-hubspot"}`) {
		t.Errorf("metrics: %d, no delivered count for crm-hubspot", code)
	}
}

func dumpOnFailure(t *testing.T, in *proxytest.Instance) {
	t.Cleanup(func() {
		if t.Failed() {
			_, b := in.Admin("/admin/v1/destinations")
			t.Logf("destinations: %s", b)
			_, b = in.Admin("/admin/v1/plugins")
			t.Logf("plugins: %.3000s", b)
			logs := in.Logs()
			if len(logs) > 20000 {
				logs = logs[len(logs)-20000:]
			}
			t.Logf("logs: %s", logs)
		}
	})
}

// webhookDest is a webhook destination to recv with secret.
func webhookDest(t *testing.T, name string, recv *webhooktest.Receiver, secret string) config.Plugin {
	env := strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "_SECRET"
	t.Setenv(env, secret)
	return destination(name, "webhook", map[string]any{"url": recv.URL, "secrets": []any{map[string]any{"env": env}}}, env)
}

// identified posts n consented people (a docs page, then their identify)
// and returns their addresses.
func identified(t *testing.T, in *proxytest.Instance, prefix string, n int) []string {
	t.Helper()
	var out []string
	for i := range n {
		user := fmt.Sprintf("%s-%d", prefix, i)
		person(t, in, user, withMarketing)
		out = append(out, user+"@example.org")
	}
	waitFor(t, "the readers segmented", 30*time.Second, func() bool { return segmentSize(t, in) >= n })
	for i, e := range out {
		identify(t, in, fmt.Sprintf("%s-%d", prefix, i), e, withMarketing)
	}
	return out
}

// TestCRMDestinationDownGetsEverythingAfterwards: a destination answering
// 503 for a while gets every contact once it is back, each exactly once
// (same webhook-id on every attempt), none dead-lettered: the failures
// were the destination's, deferred without counting against the items.
func TestCRMDestinationDownGetsEverythingAfterwards(t *testing.T) {
	secret := newSecret()
	recv, err := webhooktest.New(secret)
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Close()
	recv.Always(&webhooktest.Reply{Status: http.StatusServiceUnavailable})
	in := start(t, webhookDest(t, "crm-down", recv, secret))
	dumpOnFailure(t, in)
	emails := identified(t, in, "down", 8)
	// Down for longer than max_deliver (4) tries at the runtime's backoff.
	// Down until every item (8 segment entries, consent changes and
	// identifies) was deferred, several times for most: longer than
	// max_deliver (4) tries at the runtime's backoff (50ms).
	waitFor(t, "deliveries deferred while the destination is down", 30*time.Second, func() bool {
		return destinations(t, in)["crm-down"].Retried >= 3*8*2
	})
	if got := len(recv.Messages()); got != 0 {
		t.Fatalf("%d messages recorded while down", got)
	}
	recv.Always(nil)
	waitFor(t, "every contact after the outage", 30*time.Second, func() bool { return len(upserts(recv)) == len(emails) })
	time.Sleep(500 * time.Millisecond)
	for _, e := range emails {
		if n := upserts(recv)[e]; n != 1 {
			t.Errorf("%s upserted %d times", e, n)
		}
	}
	// Every attempt of a change carried the same webhook-id: the receiver
	// recorded each once, whatever the attempts.
	ids, retried := map[string]bool{}, 0
	for _, m := range recv.Messages() {
		if ids[m.ID] {
			t.Errorf("webhook-id %s recorded twice", m.ID)
		}
		ids[m.ID] = true
		if recv.Deliveries(m.ID) > 1 {
			retried++
		}
	}
	if retried < 8 {
		t.Errorf("only %d messages were attempted during the outage", retried)
	}
	d := destinations(t, in)["crm-down"]
	if d.DeadLetters != 0 || d.State != "ok" {
		t.Errorf("after the outage: %+v", d)
	}
}

// TestCRMResyncAfterWipe: a full resync after the CRM lost everything
// restores every consented contact with its segments and score, with its
// progress in the destination's status.
func TestCRMResyncAfterWipe(t *testing.T) {
	hs := hubspottest.New(hubspotToken)
	defer hs.Close()
	t.Setenv("HUBSPOT_TOKEN", hubspotToken)
	in := start(t, destination("crm-hubspot", "hubspot", map[string]any{"base_url": hs.URL, "token": map[string]any{"env": "HUBSPOT_TOKEN"}}, "HUBSPOT_TOKEN"))
	dumpOnFailure(t, in)
	emails := identified(t, in, "resync", 6)
	person(t, in, "nomarketing", withoutMarketing)
	identify(t, in, "nomarketing", "nomarketing@example.org", withoutMarketing)
	waitFor(t, "the contacts in HubSpot", 30*time.Second, func() bool { return hs.Contacts() == len(emails) })
	hs.Wipe()
	code, b := adminDo(t, in, "POST", "/admin/v1/destinations/crm-hubspot/resync", "")
	if code != http.StatusAccepted {
		t.Fatalf("resync: %d %s", code, b)
	}
	waitFor(t, "the contacts back in HubSpot", 30*time.Second, func() bool { return hs.Contacts() == len(emails) })
	for _, e := range emails {
		c, _ := hs.Contact(e)
		if c.Properties["vigie_segment_reader"] != "true" || c.Properties["vigie_score"] != "5" {
			t.Errorf("resynced %s: %+v", e, c.Properties)
		}
	}
	if _, ok := hs.Contact("nomarketing@example.org"); ok {
		t.Error("the resync pushed a subject without marketing consent")
	}
	waitFor(t, "the resync's progress", 10*time.Second, func() bool {
		r := destinations(t, in)["crm-hubspot"].Resync
		return r != nil && r.State == "done" && r.Published == len(emails) && r.Delivered == len(emails)
	})
	r := destinations(t, in)["crm-hubspot"].Resync
	if r.Listed != len(emails)+1 {
		t.Errorf("resync listed %d profiles, want %d", r.Listed, len(emails)+1)
	}
	// Bad requests are answered in the API's terms.
	if code, b := adminDo(t, in, "POST", "/admin/v1/destinations/nope/resync", ""); code != http.StatusNotFound || !strings.Contains(string(b), "unknown_destination") {
		t.Errorf("unknown destination: %d %s", code, b)
	}
	if code, _ := adminDo(t, in, "GET", "/admin/v1/destinations/crm-hubspot/resync", ""); code != http.StatusMethodNotAllowed {
		t.Errorf("GET resync: %d, want 405", code)
	}
}

// TestCRMFailingDestinationDoesNotSlowAnother: two destinations side by
// side, one answering 500 to everything: the healthy one gets every
// contact while the other is still failing, its lag reported.
func TestCRMFailingDestinationDoesNotSlowAnother(t *testing.T) {
	goodSecret := newSecret()
	good, err := webhooktest.New(goodSecret)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	badSecret := newSecret()
	bad, err := webhooktest.New(badSecret)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	bad.Always(&webhooktest.Reply{Status: http.StatusInternalServerError})
	bad.SetDelay(200 * time.Millisecond) // slow answers too
	in := start(t, webhookDest(t, "crm-bad", bad, badSecret), webhookDest(t, "crm-good", good, goodSecret))
	dumpOnFailure(t, in)
	const n = 20
	started := time.Now()
	emails := identified(t, in, "side", n)
	sent := time.Now()
	waitFor(t, "the healthy destination's contacts", 30*time.Second, func() bool { return len(upserts(good)) == len(emails) })
	lag := time.Since(sent)
	t.Logf("healthy destination: %d contacts %v after the last identify (%v after the first event) while the other failed", n, lag.Round(time.Millisecond), time.Since(started).Round(time.Millisecond))
	if len(bad.Messages()) != 0 || len(upserts(good)) != n {
		t.Fatalf("the failing destination recorded %d messages; the healthy one %d upserts", len(bad.Messages()), len(upserts(good)))
	}
	waitFor(t, "the failing destination's failures in its status", 30*time.Second, func() bool {
		return destinations(t, in)["crm-bad"].Failed > 0
	})
	d := destinations(t, in)
	if d["crm-good"].Failed != 0 || d["crm-good"].Retried != 0 {
		t.Errorf("the healthy destination had failures: %+v", d["crm-good"])
	}
}

// TestDestinationConfigurationRefused: Vigie refuses to start with a
// destination it could only fail with, naming the field.
func TestDestinationConfigurationRefused(t *testing.T) {
	t.Setenv("SET_SECRET", newSecret())
	hook := func(url string, extra map[string]any, env ...string) config.Plugin {
		p := config.Plugin{Name: "crm-x", Builtin: "crm", Env: env, Config: map[string]any{
			"connector": "webhook", "webhook": map[string]any{"url": url, "secrets": []any{map[string]any{"env": "SET_SECRET"}}}}}
		for k, v := range extra {
			p.Config[k] = v
		}
		return p
	}
	for _, tc := range []struct {
		name   string
		plugin config.Plugin
		want   string
	}{
		{"loopback without allow_private", hook("https://127.0.0.1/h", nil, "SET_SECRET"), "plugins[0].config.webhook.url:"},
		{"metadata service", hook("https://169.254.169.254/", map[string]any{"allow_private": true}, "SET_SECRET"), "plugins[0].config.webhook.url:"},
		{"bad mapping", hook("https://hooks.example.com/h", map[string]any{"fields": map[string]any{"a": "nope"}}, "SET_SECRET"), "plugins[0].config.fields.a:"},
		{"secret's variable not passed on", hook("https://hooks.example.com/h", nil), "plugins[0].env: list SET_SECRET"},
		{"variable missing from Vigie's environment", hook("https://hooks.example.com/h", nil, "SET_SECRET", "UNSET_VARIABLE_X"), "plugins[0].env: UNSET_VARIABLE_X is not set"},
		{"builtin with a path", config.Plugin{Name: "crm-x", Builtin: "crm", Path: "/bin/true", SHA256: strings.Repeat("0", 64)}, "plugins[0].builtin"},
		{"unknown builtin", config.Plugin{Name: "crm-x", Builtin: "salesforce"}, `"salesforce" is not a built-in`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Plugins = []config.Plugin{tc.plugin}
			_, err := proxy.New(cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("proxy.New: %v, want %q", err, tc.want)
			}
		})
	}
}

// TestDestinationsInTheRegister: each destination is a recipient of its
// purposes' activities, a processor given contact details, with a
// transfer outside the EEA when it keeps the data in the US.
func TestDestinationsInTheRegister(t *testing.T) {
	cfg := config.Default()
	cfg.Plugins = []config.Plugin{
		{Name: "crm-hubspot", Builtin: "crm", Env: []string{"T"}, Config: map[string]any{"connector": "hubspot",
			"hubspot": map[string]any{"token": map[string]any{"env": "T"}}}},
		{Name: "crm-hubspot-eu", Builtin: "crm", Env: []string{"T"}, Config: map[string]any{"connector": "hubspot", "location": "EU",
			"hubspot": map[string]any{"token": map[string]any{"env": "T"}}}},
		{Name: "crm-brevo", Builtin: "crm", Env: []string{"T"}, Config: map[string]any{"connector": "brevo",
			"brevo": map[string]any{"api_key": map[string]any{"env": "T"}}}},
	}
	reg := register.Build(register.Input{Config: cfg, Plugins: register.Plugins(cfg, nil)})
	for _, a := range reg.Activities {
		var names []string
		for _, r := range a.Recipients.Value {
			if strings.Contains(r.Name, "CRM destination") {
				names = append(names, r.Name)
				if r.Kind != register.Processor || !r.PersonalData {
					t.Errorf("%s: %+v", r.Name, r)
				}
			}
		}
		var transfers []string
		for _, tr := range a.Transfers.Value.List {
			transfers = append(transfers, tr.Recipient+" → "+tr.Country)
		}
		switch a.Reference.Value {
		case "vigie-marketing":
			if len(names) != 3 || len(transfers) != 1 || !strings.Contains(transfers[0], "crm-hubspot,") || !strings.HasSuffix(transfers[0], "US") {
				t.Errorf("marketing: recipients %v, transfers %v", names, transfers)
			}
		default:
			if len(names) != 0 {
				t.Errorf("%s lists %v", a.Reference.Value, names)
			}
		}
	}
}

// TestCRMErasureFailureInThePrivacyRequest: a destination that refuses
// the deletion for good shows its step failed with the HTTP status and
// the answer's excerpt, and the erasure is dead-lettered for a replay.
func TestCRMErasureFailureInThePrivacyRequest(t *testing.T) {
	hs := hubspottest.New(hubspotToken)
	defer hs.Close()
	t.Setenv("HUBSPOT_TOKEN", hubspotToken)
	in := start(t, destination("crm-hubspot", "hubspot", map[string]any{"base_url": hs.URL, "token": map[string]any{"env": "HUBSPOT_TOKEN"}}, "HUBSPOT_TOKEN"))
	dumpOnFailure(t, in)
	emails := identified(t, in, "refused", 1)
	waitFor(t, "the contact in HubSpot", 30*time.Second, func() bool { return hs.Contacts() == 1 })
	hs.Inject(hubspottest.PathGDPRDelete, hubspottest.Reply{Status: http.StatusForbidden,
		Body: `{"status":"error","message":"This app hasn't been granted all required scopes for ` + emails[0] + `","category":"MISSING_SCOPES"}`})
	code, b := adminDo(t, in, "POST", "/admin/v1/privacy/requests",
		`{"type":"erase","site":"demo","identifier":{"kind":"email","value":"`+emails[0]+`"}}`)
	if code != http.StatusAccepted {
		t.Fatalf("erase: %d %s", code, b)
	}
	var req struct{ ID string }
	_ = json.Unmarshal(b, &req)
	var step struct{ Name, Status, Detail string }
	waitFor(t, "the destination's step", 60*time.Second, func() bool {
		_, b := in.Admin("/admin/v1/privacy/requests/" + req.ID)
		var v struct {
			Steps []struct{ Name, Status, Detail string }
		}
		_ = json.Unmarshal(b, &v)
		for _, s := range v.Steps {
			if s.Name == "plugin:crm-hubspot" {
				step = s
			}
		}
		return step.Status == "failed" || step.Status == "done"
	})
	if step.Status != "failed" || !strings.Contains(step.Detail, "HTTP 403") || !strings.Contains(step.Detail, "MISSING_SCOPES") || strings.Contains(step.Detail, emails[0]) {
		t.Errorf("failed step's detail %q: want the status and the excerpt, without the address", step.Detail)
	}
	d := destinations(t, in)["crm-hubspot"]
	if d.DeadLetters != 1 {
		t.Fatalf("dead letters: %+v", d)
	}
	// Discarded from the admin API.
	code, b = adminDo(t, in, "DELETE", "/admin/v1/destinations/crm-hubspot/dead-letters", "")
	if code != 200 || !strings.Contains(string(b), `"discarded":1`) {
		t.Fatalf("discard: %d %s", code, b)
	}
	if d := destinations(t, in)["crm-hubspot"]; d.DeadLetters != 0 {
		t.Errorf("after discard: %+v", d)
	}
}
