package proxy_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/vigie-dev/vigie/proxy/proxytest"
)

var (
	pixelRe = regexp.MustCompile(`src="(http://[^"]+/e/o/[^"]+)"`)
	clickRe = regexp.MustCompile(`href="(http://[^"]+/e/c/[^"]+)"`)
)

func TestEmailTrackingFollowsConsent(t *testing.T) {
	in := proxytest.Start(t)
	if code, b := in.Post("/v1/identify", "demo", `{"userId":"user-42","traits":{"email":"ada@example.org"},"context":{"consent":{"analytics":true,"marketing":true}}}`); code != 200 {
		t.Fatalf("identify: %d %s", code, b)
	}
	html := `<html><body><p>Hello</p><a href="https://shop.example/pricing?utm_source=news">Pricing</a>
<a href="mailto:help@shop.example">Write to us</a> <a href="https://shop.example/unsubscribe?u=1">Unsubscribe</a></body></html>`
	body, _ := json.Marshal(map[string]any{"site": "demo", "campaign": "spring", "html": html,
		"recipients": []string{"user-42", "user-9"}, "honeypot": false})
	code, out := in.Do("POST", "/admin/v1/email/rewrite", body, http.Header{"Authorization": {"Bearer " + in.AdminToken()}})
	if code != 200 {
		t.Fatalf("rewrite: %d %s", code, out)
	}
	var rw struct {
		Messages []struct {
			Recipient, HTML string
			Links           int
		}
	}
	if err := json.Unmarshal(out, &rw); err != nil || len(rw.Messages) != 2 {
		t.Fatalf("rewrite answer: %s", out)
	}
	msg := rw.Messages[0].HTML
	if rw.Messages[0].Links != 1 || !strings.Contains(msg, `href="mailto:help@shop.example"`) ||
		!strings.Contains(msg, `href="https://shop.example/unsubscribe?u=1"`) || strings.Contains(msg, "user-42") {
		t.Fatalf("rewritten message: %s", msg)
	}
	get := func(url, ua string) (int, http.Header) {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("User-Agent", ua)
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	// The consenting recipient opens and clicks.
	code, h := get(pixelRe.FindStringSubmatch(msg)[1], browserUA)
	if code != 200 || h.Get("Content-Type") != "image/gif" {
		t.Fatalf("open: %d %v", code, h)
	}
	click := clickRe.FindStringSubmatch(msg)[1]
	if code, h := get(click, browserUA); code != http.StatusFound || h.Get("Location") != "https://shop.example/pricing?utm_source=news" {
		t.Fatalf("click: %d %v", code, h)
	}
	// A tampered token never redirects.
	if code, h := get(click[:len(click)-3]+"AAA", browserUA); code != http.StatusBadRequest || h.Get("Location") != "" {
		t.Fatalf("tampered click: %d %v", code, h)
	}
	// The other recipient gave no consent: an anonymous, campaign-level open.
	if code, _ := get(pixelRe.FindStringSubmatch(rw.Messages[1].HTML)[1], "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 (via ggpht.com GoogleImageProxy)"); code != 200 {
		t.Fatalf("anonymous open: %d", code)
	}

	var identifyUser string
	var opens, clicks []map[string]any
	for _, ev := range adminEvents(t, in, "site=demo") {
		switch ev["name"] {
		case "Email Opened":
			opens = append(opens, ev)
		case "Email Link Clicked":
			clicks = append(clicks, ev)
		}
		if ev["type"] == "identify" {
			identifyUser, _ = ev["user_id"].(string)
		}
	}
	// The open without consent is a campaign-level counter, not an event.
	if len(opens) != 1 || len(clicks) != 1 {
		t.Fatalf("opens %d clicks %d, want the consenting recipient's only", len(opens), len(clicks))
	}
	consented := opens[0]
	if consented["user_id"] != identifyUser || consented["mode"] != "pseudonymous" {
		t.Fatalf("consenting recipient's open not linked to them: %v (identify user %s)", consented, identifyUser)
	}
	em := consented["email"].(map[string]any)
	if em["campaign"] != "spring" || em["class"] != "human" {
		t.Fatalf("open: %v", em)
	}
	if counts := emailCounts(t, in, "spring"); len(counts) != 1 || counts[0].Kind != "open" || counts[0].Class != "privacy_proxy" || counts[0].Count != 1 {
		t.Fatalf("Gmail image proxy open without consent: counters %+v", counts)
	}
	if ce := clicks[0]["email"].(map[string]any); ce["link"] != "https://shop.example/pricing?utm_source=news" || clicks[0]["user_id"] != identifyUser {
		t.Fatalf("click: %v", clicks[0])
	}
}
