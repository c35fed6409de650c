package proxy_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/proxy/proxytest"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// emailGet fetches a tracking URL without following redirects.
func emailGet(t *testing.T, url string) (int, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("User-Agent", browserUA)
	req.Header.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// identifyConsenting sends identify for userID with marketing consent and
// returns the pseudonym Vigie stored for them.
func identifyConsenting(t *testing.T, in *proxytest.Instance, userID string) string {
	t.Helper()
	identified := func() map[string]bool {
		seen := map[string]bool{}
		for _, ev := range adminEvents(t, in, "site=demo") {
			if p, _ := ev["user_id"].(string); ev["type"] == "identify" && p != "" {
				seen[p] = true
			}
		}
		return seen
	}
	before := identified()
	if code, b := in.Post("/v1/identify", "demo", `{"userId":"`+userID+`","context":{"consent":{"analytics":true,"marketing":true}}}`); code != 200 {
		t.Fatalf("identify: %d %s", code, b)
	}
	for p := range identified() {
		if !before[p] {
			return p
		}
	}
	t.Fatal("identify event not stored")
	return ""
}

// mergeTagCampaign rewrites a one-link campaign in merge-tag mode and
// returns its pixel and click URLs, still holding the merge tag.
func mergeTagCampaign(t *testing.T, in *proxytest.Instance, campaign, tag string) (pixel, click string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"site": "demo", "campaign": campaign, "merge_tag": tag, "honeypot": false,
		"html": `<html><body><a href="https://shop.example/sale">Sale</a></body></html>`})
	code, out := in.Do("POST", "/admin/v1/email/rewrite", body, http.Header{"Authorization": {"Bearer " + in.AdminToken()}})
	if code != 200 {
		t.Fatalf("rewrite: %d %s", code, out)
	}
	var rw struct{ HTML string }
	if err := json.Unmarshal(out, &rw); err != nil {
		t.Fatal(err)
	}
	pm, cm := pixelRe.FindStringSubmatch(rw.HTML), clickRe.FindStringSubmatch(rw.HTML)
	if pm == nil || cm == nil || !strings.Contains(pm[1], "?r="+tag) {
		t.Fatalf("rewritten: %s", rw.HTML)
	}
	return strings.ReplaceAll(pm[1], "&amp;", "&"), strings.ReplaceAll(cm[1], "&amp;", "&")
}

// emailEventsOf returns the e-mail events stored under subject, read from
// Badger through the subject index, and checks no other Badger value holds
// an e-mail event naming subject.
func emailEventsOf(t *testing.T, in *proxytest.Instance, subject string) []*vigiev1.Event {
	t.Helper()
	raw, err := in.Server.Store().SubjectEvents(t.Context(), subject)
	if err != nil {
		t.Fatal(err)
	}
	var out []*vigiev1.Event
	for _, b := range raw {
		ev := &vigiev1.Event{}
		if err := proto.Unmarshal(b, ev); err != nil {
			t.Fatal(err)
		}
		if ev.Source == "email" {
			out = append(out, ev)
		}
	}
	indexed := len(out)
	found := 0
	err = in.Server.Store().ScanAllVersions(func(k, v []byte) error {
		if bytes.Contains(v, []byte(subject)) && (bytes.Contains(v, []byte("Email Opened")) || bytes.Contains(v, []byte("Email Link Clicked"))) {
			found++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found != indexed {
		t.Fatalf("badger holds %d e-mail values naming the subject, its index %d", found, indexed)
	}
	return out
}

// campaignEvents counts the stored opens and clicks of campaign, split by
// whether they name a person.
func campaignEvents(t *testing.T, in *proxytest.Instance, campaign string) (anonOpens, anonClicks int, users map[string]int) {
	t.Helper()
	users = map[string]int{}
	for _, ev := range adminEvents(t, in, "site=demo") {
		em, _ := ev["email"].(map[string]any)
		if em == nil || em["campaign"] != campaign {
			continue
		}
		if u, _ := ev["user_id"].(string); u != "" {
			users[u]++
			continue
		}
		if ev["mode"] != "MODE_ANONYMOUS" || ev["subject"] != nil {
			t.Fatalf("e-mail event neither anonymous nor attributed: %v", ev)
		}
		switch ev["name"] {
		case "Email Opened":
			anonOpens++
		case "Email Link Clicked":
			anonClicks++
		}
	}
	return anonOpens, anonClicks, users
}

// The defect: GET /e/o/<merge-tag campaign token>?r=<victim's user id> used
// to record an open under the victim's pseudonym. An unsigned r now counts
// at campaign level only; the pixel still answers and the link still
// redirects.
func TestEmailMergeTagRecipientCannotBeForged(t *testing.T) {
	in := proxytest.Start(t)
	victim := identifyConsenting(t, in, "user-42")
	pixel, click := mergeTagCampaign(t, in, "forged", "*|VIGIE|*")
	for _, forged := range []string{"user-42", "user-42 ", victim} {
		pixelURL := strings.Replace(pixel, "*|VIGIE|*", url.QueryEscape(forged), 1)
		clickURL := strings.Replace(click, "*|VIGIE|*", url.QueryEscape(forged), 1)
		if code, h := emailGet(t, pixelURL); code != 200 || h.Get("Content-Type") != "image/gif" {
			t.Fatalf("open: %d %v", code, h)
		}
		if code, h := emailGet(t, clickURL); code != http.StatusFound || h.Get("Location") != "https://shop.example/sale" {
			t.Fatalf("click: %d %v", code, h)
		}
	}
	if evs := emailEventsOf(t, in, victim); len(evs) != 0 {
		t.Fatalf("forged r attributed %d e-mail events to the victim: %v", len(evs), evs)
	}
	opens, clicks, users := campaignEvents(t, in, "forged")
	if opens != 3 || clicks != 3 || len(users) != 0 {
		t.Fatalf("campaign level: %d opens, %d clicks, attributed %v; want 3, 3, none", opens, clicks, users)
	}
}
