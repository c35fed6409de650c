package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/proxytest"
	"github.com/vigie-dev/vigie/proxy/reaction"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
)

// gmailProxyUA is Gmail's image proxy fetching a pixel: a machine open.
const gmailProxyUA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 (via ggpht.com GoogleImageProxy)"

// responseConsent grants everything the model may use.
const responseConsent = `{"analytics":true,"personalization":true,"marketing":true}`

// responseServer starts Vigie with the default plugins (the segments
// plugin with a newsletter segment) and the response plugin: contact type
// newsletter, message types promo (opens, clicks, Order Completed within
// 7 days) and digest; its state written at every change.
func responseServer(t *testing.T, opts ...proxytest.Option) *proxytest.Instance {
	t.Helper()
	all := append([]proxytest.Option{func(c *config.Config) {
		c.Plugins = []config.Plugin{
			{Name: "geoip"},
			{Name: "segments", Config: map[string]any{"segments": []any{
				map[string]any{"name": "newsletter", "when": `profile.count("track", "Newsletter Signed Up", "30d") >= 1`},
			}}},
			{Name: "response", Config: map[string]any{
				"contact_types": []any{map[string]any{"name": "newsletter", "segments": []any{"newsletter"}}},
				"message_types": []any{map[string]any{"name": "promo"}, map[string]any{"name": "digest"}},
				"half_life":     "0",
				"flush_events":  1,
			}},
		}
		c.PluginRuntime.Backoff = []config.Duration{config.Duration(200 * time.Millisecond)}
	}}, opts...)
	return proxytest.Start(t, all...)
}

// track sends a track event of user with properties and the payload's
// consent.
func track(t *testing.T, in *proxytest.Instance, user, event, props string) {
	t.Helper()
	if props == "" {
		props = "{}"
	}
	body := `{"userId":"` + user + `","event":"` + event + `","properties":` + props + `,"context":{"consent":` + responseConsent + `}}`
	if code, b := in.Post("/v1/track", "demo", body); code != 200 {
		t.Fatalf("track %s: %d %s", event, code, b)
	}
}

// rewriteAnswer is the part of the rewrite API's answer the tests read.
type rewriteAnswer struct {
	Messages []struct {
		Recipient, HTML string
	}
	HeldOut  []string       `json:"held_out"`
	Holdout  float64        `json:"holdout"`
	Recorded map[string]int `json:"recorded"`
}

// rewrite prepares a campaign through the admin API.
func rewrite(t *testing.T, in *proxytest.Instance, req map[string]any) rewriteAnswer {
	t.Helper()
	req["site"], req["html"] = "demo", `<p>Spring sale</p><a href="https://shop.example/sale">Sale</a>`
	body, _ := json.Marshal(req)
	code, out := in.Do("POST", "/admin/v1/email/rewrite", body, http.Header{"Authorization": {"Bearer " + in.AdminToken()}})
	if code != 200 {
		t.Fatalf("rewrite: %d %s", code, out)
	}
	var a rewriteAnswer
	if err := json.Unmarshal(out, &a); err != nil {
		t.Fatal(err)
	}
	return a
}

// modelTable reads GET /admin/v1/response/model.
func modelTable(t *testing.T, in *proxytest.Instance) reaction.Table {
	t.Helper()
	code, b := in.Admin("/admin/v1/response/model?site=demo")
	if code != 200 {
		t.Fatalf("model: %d %s", code, b)
	}
	var tb reaction.Table
	if err := json.Unmarshal(b, &tb); err != nil {
		t.Fatal(err)
	}
	return tb
}

// cellOf returns one cell of a table.
func cellOf(tb reaction.Table, ct, mt string) reaction.Cell {
	for _, c := range tb.Cells {
		if c.ContactType == ct && c.MessageType == mt {
			return c
		}
	}
	return reaction.Cell{}
}

// waitCell waits until a cell's counts are exposures/responses.
func waitCell(t *testing.T, in *proxytest.Instance, ct, mt string, exposures, responses float64) reaction.Table {
	t.Helper()
	var tb reaction.Table
	deadline := time.Now().Add(45 * time.Second)
	for {
		tb = modelTable(t, in)
		c := cellOf(tb, ct, mt)
		if c.Exposures == exposures && c.Responses == responses {
			return tb
		}
		if time.Now().After(deadline) {
			t.Fatalf("cell %s×%s is %v/%v, want %v/%v", ct, mt, c.Exposures, c.Responses, exposures, responses)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// subjectOf returns user's pseudonym on demo, read from the stored event
// of a track it sends (once per user).
func subjectOf(t *testing.T, in *proxytest.Instance, user string) string {
	t.Helper()
	name := "Who " + user
	for _, ev := range adminEvents(t, in, "site=demo&name="+strings.ReplaceAll(name, " ", "+")) {
		return ev["user_id"].(string)
	}
	track(t, in, user, name, "")
	for _, ev := range adminEvents(t, in, "site=demo&name="+strings.ReplaceAll(name, " ", "+")) {
		return ev["user_id"].(string)
	}
	t.Fatalf("no event of %s", user)
	return ""
}

// getStatus GETs url with a user agent, not following redirects.
func getStatus(t *testing.T, url, ua string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("User-Agent", ua)
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestResponseCampaign is a campaign with a holdout through the rewrite
// API, and the model it teaches: Email Sent events for consenting
// recipients (holdout ones marked), the same split on a retry, cells that
// move with human opens and conversions but not machine opens or
// sensitive events, the next best message among the candidates with the
// means and intervals behind it, the holdout uplift, and the
// recommendation in the profile for a CRM.
func TestResponseCampaign(t *testing.T) {
	in := responseServer(t)
	var users, news, others []string
	for i := range 20 {
		for _, kind := range []string{"n", "o"} {
			u := fmt.Sprintf("%s-user-%02d", kind, i)
			users = append(users, u)
			if code, b := in.Post("/v1/identify", "demo", `{"userId":"`+u+`","traits":{"plan":"free"},"context":{"consent":`+responseConsent+`}}`); code != 200 {
				t.Fatalf("identify: %d %s", code, b)
			}
			if kind == "n" {
				news = append(news, u)
				track(t, in, u, "Newsletter Signed Up", "")
			} else {
				others = append(others, u)
			}
		}
	}
	st := in.Server.Store()
	pseudo := func(u string) string { return subjectOf(t, in, u) }
	waitFor(t, "the newsletter segment", 45*time.Second, func() bool {
		sizes, _ := st.SegmentSizes(context.Background(), "demo")
		return sizes["newsletter"] == int64(len(news))
	})

	req := map[string]any{"campaign": "spring", "message_type": "promo", "holdout": 0.25,
		"recipients": append(slices.Clone(users), "no-consent-1")}
	a := rewrite(t, in, req)
	sent := map[string]bool{}
	for _, m := range a.Messages {
		sent[m.Recipient] = true
	}
	for _, h := range a.HeldOut {
		if sent[h] {
			t.Fatalf("%s is both sent and held out", h)
		}
	}
	if len(sent)+len(a.HeldOut) != len(users)+1 || a.Holdout != 0.25 || len(a.HeldOut) == 0 || len(a.HeldOut) > 20 {
		t.Fatalf("%d sent, %d held out (%v) of %d", len(sent), len(a.HeldOut), a.HeldOut, len(users)+1)
	}
	held := func(u string) bool { return slices.Contains(a.HeldOut, u) }
	consentingHeld := len(a.HeldOut)
	if held("no-consent-1") {
		consentingHeld--
	}
	if a.Recorded["email_sent"]+a.Recorded["holdout"] != len(users) || a.Recorded["holdout"] != consentingHeld {
		t.Fatalf("recorded %v: want %d exposures, %d of them holdout (the recipient without consent: none)", a.Recorded, len(users), consentingHeld)
	}
	// A retry gives the same split and records nothing twice.
	if b := rewrite(t, in, req); !slices.Equal(b.HeldOut, a.HeldOut) || b.Recorded["email_sent"]+b.Recorded["holdout"] != 0 {
		t.Fatalf("retry: held out %v (was %v), recorded %v", b.HeldOut, a.HeldOut, b.Recorded)
	}
	var sentEvents, holdoutEvents int
	for _, ev := range adminEvents(t, in, "site=demo&name=Email+Sent") {
		var props map[string]any
		raw, _ := json.Marshal(ev["properties"])
		_ = json.Unmarshal(raw, &props)
		if props["message_type"] != "promo" || props["campaign"] != "spring" || ev["mode"] != "pseudonymous" {
			t.Fatalf("Email Sent event %v", ev)
		}
		if props["holdout"] == true {
			holdoutEvents++
		} else {
			sentEvents++
		}
	}
	if sentEvents != a.Recorded["email_sent"] || holdoutEvents != a.Recorded["holdout"] {
		t.Fatalf("stored %d sent and %d holdout events, recorded %v", sentEvents, holdoutEvents, a.Recorded)
	}

	count := func(list []string, pred func(string) bool) (n int) {
		for _, u := range list {
			if pred(u) {
				n++
			}
		}
		return n
	}
	treatedNews := float64(count(news, func(u string) bool { return !held(u) }))
	treatedOthers := float64(count(others, func(u string) bool { return !held(u) }))
	waitCell(t, in, "newsletter", "promo", treatedNews, 0)
	waitCell(t, in, "other", "promo", treatedOthers, 0)

	// Human opens by the newsletter readers; Gmail's image proxy fetches
	// the others' pixels (machine opens).
	for _, m := range a.Messages {
		ua := gmailProxyUA
		if strings.HasPrefix(m.Recipient, "n-") {
			ua = browserUA
		}
		if m.Recipient == "no-consent-1" {
			continue
		}
		if code := getStatus(t, pixelRe.FindStringSubmatch(m.HTML)[1], ua); code != 200 {
			t.Fatalf("open: %d", code)
		}
	}
	waitCell(t, in, "newsletter", "promo", treatedNews, treatedNews)
	if c := cellOf(modelTable(t, in), "other", "promo"); c.Responses != 0 {
		t.Fatalf("machine opens moved the model: %v responses", c.Responses)
	}

	// A sensitive-flagged conversion never enters; an ordinary one does.
	var treatedOther, heldOther string
	for _, u := range others {
		if held(u) && heldOther == "" {
			heldOther = u
		}
		if !held(u) && treatedOther == "" {
			treatedOther = u
		}
	}
	track(t, in, treatedOther, "Order Completed", `{"total":40,"sensitive":true}`)
	track(t, in, treatedOther, "Order Completed", `{"total":40}`)
	waitCell(t, in, "other", "promo", treatedOthers, 1)
	time.Sleep(300 * time.Millisecond)
	if c := cellOf(modelTable(t, in), "other", "promo"); c.Responses != 1 {
		t.Fatalf("%v responses after one sensitive and one ordinary conversion, want 1", c.Responses)
	}

	// The holdout arm: held-out recipients' exposures, and a conversion.
	if heldOther != "" {
		track(t, in, heldOther, "Order Completed", `{"total":10}`)
	}
	var ups []reaction.Uplift
	waitFor(t, "the holdout arm", 45*time.Second, func() bool {
		code, b := in.Admin("/admin/v1/response/uplift?site=demo&message_type=promo")
		if code != 200 {
			t.Fatalf("uplift: %d %s", code, b)
		}
		var out struct{ Uplift []reaction.Uplift }
		_ = json.Unmarshal(b, &out)
		ups = out.Uplift
		var n, c float64
		for _, u := range ups {
			n += u.Holdout.Exposures
			c += u.Holdout.Conversions
		}
		wantC := 0.0
		if heldOther != "" {
			wantC = 1
		}
		return n == float64(a.Recorded["holdout"]) && c == wantC
	})
	if len(ups) != 2 || ups[0].ContactType != "newsletter" || ups[1].Draws == 0 || !(ups[1].Lower <= ups[1].Mean && ups[1].Mean <= ups[1].Upper) {
		t.Fatalf("uplift %+v", ups)
	}

	// The next best message for a reader, for a segment, with the means
	// and intervals behind it.
	for _, q := range []string{"user_id=n-user-00", "subject=" + pseudo("n-user-00"), "segment=newsletter"} {
		code, b := in.Admin("/admin/v1/response/next?site=demo&" + q)
		if code != 200 {
			t.Fatalf("next %s: %d %s", q, code, b)
		}
		var p reaction.Pick
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		if p.ContactType != "newsletter" || (p.MessageType != "promo" && p.MessageType != "digest") || len(p.Candidates) != 2 || p.Method != "thompson_sampling" {
			t.Fatalf("next %s: %s", q, b)
		}
		promo := p.Candidates[0]
		if promo.MessageType != "promo" || promo.Exposures != treatedNews || !(promo.Lower < promo.Mean && promo.Mean < promo.Upper) || promo.Mean < 0.5 {
			t.Fatalf("next %s: promo candidate %+v", q, promo)
		}
	}
	for _, tc := range []struct {
		query, code string
		status      int
	}{
		{"", "invalid_request", 400},
		{"segment=newsletter&user_id=x", "invalid_request", 400},
		{"segment=newsletter&candidates=promo,nope", "unknown_message_type", 400},
		{"user_id=nobody", "unknown_subject", 404},
		{"site=nope&segment=x", "unknown_site", 400},
	} {
		path := "/admin/v1/response/next?site=demo&" + tc.query
		if strings.HasPrefix(tc.query, "site=") {
			path = "/admin/v1/response/next?" + tc.query
		}
		code, b := in.Admin(path)
		if code != tc.status || decodeErr(t, b)["code"] != tc.code {
			t.Errorf("next %s: %d %s, want %d %s", tc.query, code, b, tc.status, tc.code)
		}
	}
	if code, b := in.Admin("/admin/v1/response/uplift?site=demo&message_type=nope"); code != 400 || decodeErr(t, b)["field"] != "message_type" {
		t.Errorf("uplift of an unknown type: %d %s", code, b)
	}

	// The recommendation is in the profile, for a CRM field mapping.
	p, err := st.Profile(context.Background(), "demo", pseudo("n-user-00"))
	if err != nil {
		t.Fatal(err)
	}
	var attrs map[string]any
	_ = json.Unmarshal(p.Attributes, &attrs)
	if mt := attrs["next_message_type"]; mt != "promo" && mt != "digest" {
		t.Fatalf("profile attributes %s", p.Attributes)
	}
}

// TestResponseObjection: an objection to marketing through a privacy
// request removes the subject's contribution from the model, and its
// later events keep it out, although they still grant personalization and
// report exposures; the rewrite API records no exposure for it any more.
func TestResponseObjection(t *testing.T) {
	in := responseServer(t)
	for _, u := range []string{"obj-a", "obj-b"} {
		if code, b := in.Post("/v1/identify", "demo", `{"userId":"`+u+`","context":{"consent":`+responseConsent+`}}`); code != 200 {
			t.Fatalf("identify: %d %s", code, b)
		}
	}
	a := rewrite(t, in, map[string]any{"campaign": "c1", "message_type": "promo", "recipients": []string{"obj-a", "obj-b"}})
	if a.Recorded["email_sent"] != 2 {
		t.Fatalf("recorded %v", a.Recorded)
	}
	for _, m := range a.Messages {
		if code := getStatus(t, pixelRe.FindStringSubmatch(m.HTML)[1], browserUA); code != 200 {
			t.Fatalf("open: %d", code)
		}
	}
	before := waitCell(t, in, "other", "promo", 2, 2)
	subjA := subjectOf(t, in, "obj-a")

	id := privacyRequest(t, in, `{"type":"object","site":"demo","identifier":{"kind":"user_id","value":"obj-a"}}`)
	if v := waitRequest(t, in, id); v.Status != "done" {
		t.Fatalf("objection: %+v", v.Raw)
	}
	after := waitCell(t, in, "other", "promo", 1, 1)
	if cb, ca := cellOf(before, "other", "promo"), cellOf(after, "other", "promo"); ca.Mean == cb.Mean && ca.Upper == cb.Upper {
		t.Errorf("the posterior did not change: %+v → %+v", cb, ca)
	}

	// Later: obj-a reports an exposure and converts; its events still grant
	// personalization (the objection removed marketing only).
	track(t, in, "obj-a", "Email Sent", `{"message_type":"promo","campaign":"esp-1"}`)
	track(t, in, "obj-a", "Order Completed", `{"total":12}`)
	var later map[string]any
	for _, ev := range adminEvents(t, in, "site=demo&name=Email+Sent") {
		if ev["source"] != "email" && later == nil {
			later = ev
		}
	}
	if ps := fmt.Sprint(later["purposes"]); strings.Contains(ps, "marketing") || !strings.Contains(ps, "personalization") {
		t.Fatalf("obj-a's later event grants %s, want personalization without marketing", ps)
	}
	// The rewrite API records nothing for obj-a any more.
	b := rewrite(t, in, map[string]any{"campaign": "c2", "message_type": "promo", "recipients": []string{"obj-a", "obj-b"}})
	if b.Recorded["email_sent"] != 1 {
		t.Fatalf("recorded %v after the objection, want obj-b only", b.Recorded)
	}
	// Nor is obj-a's open of it tracked as theirs.
	for _, m := range b.Messages {
		if m.Recipient == "obj-a" {
			if code := getStatus(t, pixelRe.FindStringSubmatch(m.HTML)[1], browserUA); code != 200 {
				t.Fatalf("open: %d", code)
			}
		}
	}
	opens := 0
	for _, ev := range adminEvents(t, in, "site=demo&name=Email+Opened") {
		if ev["user_id"] == subjA {
			opens++
		}
	}
	if opens != 1 {
		t.Fatalf("%d opens of obj-a linked to them, want the one before the objection", opens)
	}
	// obj-b's new exposure is counted after obj-a's events (one consumer,
	// in order): then obj-a's are known to have been left out.
	waitCell(t, in, "other", "promo", 2, 1)
	time.Sleep(300 * time.Millisecond)
	if c := cellOf(modelTable(t, in), "other", "promo"); c.Exposures != 2 || c.Responses != 1 {
		t.Fatalf("after obj-a's later events: %v/%v, want obj-b's 2/1", c.Exposures, c.Responses)
	}
	if code, body := in.Admin("/admin/v1/response/next?site=demo&user_id=obj-a"); code != http.StatusConflict && code != http.StatusNotFound {
		t.Errorf("next for the objected subject: %d %s, want it refused", code, body)
	}
}

// TestResponseRoutesWithoutThePlugin: the routes say the plugin is not
// enabled.
func TestResponseRoutesWithoutThePlugin(t *testing.T) {
	in := proxytest.Start(t)
	for _, p := range []string{"/admin/v1/response/model", "/admin/v1/response/next?segment=x", "/admin/v1/response/uplift?message_type=x"} {
		if code, b := in.Admin(p); code != 404 || decodeErr(t, b)["code"] != "not_configured" {
			t.Errorf("%s: %d %s", p, code, b)
		}
	}
	body, _ := json.Marshal(map[string]any{"site": "demo", "campaign": "c", "html": "<p>x</p>", "merge_tag": "*|VIGIE|*", "message_type": "promo"})
	if code, b := in.Do("POST", "/admin/v1/email/rewrite", body, http.Header{"Authorization": {"Bearer " + in.AdminToken()}}); code != 400 || decodeErr(t, b)["field"] != "message_type" {
		t.Errorf("message_type with a merge tag: %d %s", code, b)
	}
	body, _ = json.Marshal(map[string]any{"site": "demo", "campaign": "c", "html": "<p>x</p>", "recipients": []string{"u"}, "message_type": "promo", "holdout": 0.9})
	if code, b := in.Do("POST", "/admin/v1/email/rewrite", body, http.Header{"Authorization": {"Bearer " + in.AdminToken()}}); code != 400 || decodeErr(t, b)["field"] != "holdout" {
		t.Errorf("holdout 0.9: %d %s", code, b)
	}
}

// TestIdleProfilePurgePublishesExits: a profile without an event for
// profile_ttl is purged with its segment exits published and its
// segments' sizes lowered; the retention outlook counted it before.
func TestIdleProfilePurgePublishesExits(t *testing.T) {
	in := proxytest.Start(t, func(c *config.Config) {
		c.Plugins = []config.Plugin{{Name: "segments", Config: map[string]any{"segments": []any{map[string]any{"name": "everyone", "when": "true"}}}}}
		c.PluginRuntime.ProfileTTL = config.Duration(time.Hour)
	})
	if code, b := in.Post("/v1/identify", "demo", `{"userId":"idle-1","context":{"consent":`+responseConsent+`}}`); code != 200 {
		t.Fatalf("identify: %d %s", code, b)
	}
	subject := subjectOf(t, in, "idle-1")
	st := in.Server.Store()
	// Every event profiled (subjectOf's track included), so that none comes
	// after the purge to make the profile again.
	waitFor(t, "the profile in segment everyone", 45*time.Second, func() bool {
		p, err := st.Profile(context.Background(), "demo", subject)
		return err == nil && slices.Contains(p.Segments, "everyone") && p.Count("track", "Who idle-1", 24*time.Hour, time.Now().UnixMilli()) == 1
	})

	code, b := in.Admin("/admin/v1/retention/next")
	if code != 200 {
		t.Fatalf("retention: %d %s", code, b)
	}
	var out struct {
		Horizon   string
		NextPurge time.Time `json:"next_purge"`
		Kinds     []storage.Upcoming
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	found := map[string]storage.Upcoming{}
	for _, k := range out.Kinds {
		found[k.Kind+"/"+k.Class] = k
	}
	if p := found["profiles/"]; out.Horizon != "7d" || out.NextPurge.IsZero() || p.Due != 1 || p.Ends != storage.EndsByPurge || p.Next.IsZero() {
		t.Fatalf("retention outlook %s", b)
	}
	if e, ok := found["events/"]; !ok || e.Ends != storage.EndsByTTL {
		t.Errorf("no events row (none ends within 7 days): %s", b)
	}
	if strings.Contains(string(b), subject) || strings.Contains(string(b), "idle-1") {
		t.Fatalf("the outlook names someone: %s", b)
	}

	rep, err := st.PurgeExpired(context.Background(), time.Now().Add(2*time.Hour))
	if err != nil || rep.Total() == 0 {
		t.Fatalf("purge: %v %v", rep, err)
	}
	if _, err := st.Profile(context.Background(), "demo", subject); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("profile after the purge: %v", err)
	}
	waitFor(t, "the idle exit on VIGIE_SEGMENTS", 30*time.Second, func() bool {
		for _, m := range allStreamMessages(t, in)[streams.Segments] {
			c := &vigiev1.SegmentChange{}
			if proto.Unmarshal(m.Data, c) == nil && c.GetSubject() == subject && c.GetTransition() == vigiev1.Transition_TRANSITION_EXITED &&
				c.GetEventId() == storage.ReasonIdle {
				return true
			}
		}
		return false
	})
	if sizes, _ := st.SegmentSizes(context.Background(), "demo"); sizes["everyone"] != 0 {
		t.Fatalf("segment sizes after the purge: %v", sizes)
	}
}
