package site_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// TestPreferencePageInChromium: a recipient opens the preference link of
// an e-mail on a phone-sized screen, sees the choice the ledger holds,
// withdraws marketing, sees it saved, and the person's next event (and
// e-mail open) follows it; a tampered link shows a not-found page.
func TestPreferencePageInChromium(t *testing.T) {
	in := proxytest.Start(t)
	admin := http.Header{"Authorization": {"Bearer " + in.AdminToken()}}
	track := func(name, consentJSON string) {
		t.Helper()
		ctx := ""
		if consentJSON != "" {
			ctx = `,"context":{"consent":` + consentJSON + `}`
		}
		if code, b := in.Post("/v1/track", "demo", `{"userId":"user-7","event":"`+name+`"`+ctx+`}`); code != 200 {
			t.Fatalf("track: %d %s", code, b)
		}
	}
	track("Signed Up", `{"analytics":true,"marketing":true}`)

	// The e-mail as the campaign tool prepares it: its List-Unsubscribe
	// header is the preference link.
	body, _ := json.Marshal(map[string]any{"site": "demo", "campaign": "spring", "recipients": []string{"user-7"},
		"html": `<html><body><a href="https://shop.example/">Shop</a></body></html>`})
	code, b := in.Do("POST", "/admin/v1/email/rewrite", body, admin)
	var rw struct {
		Messages []struct {
			HTML    string
			Headers map[string]string
		}
	}
	if err := json.Unmarshal(b, &rw); code != 200 || err != nil || len(rw.Messages) != 1 {
		t.Fatalf("rewrite: %d %s", code, b)
	}
	link := strings.Trim(rw.Messages[0].Headers["List-Unsubscribe"], "<>")
	if !strings.HasPrefix(link, in.URL+"/p/") {
		t.Fatalf("List-Unsubscribe: %q", link)
	}

	ctx := browser(t)
	var mu sync.Mutex
	var requested []string
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			mu.Lock()
			requested = append(requested, e.Request.URL)
			mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	checked := func(id string) bool {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById(`+jsString(id)+`).checked`))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if err := chromedp.Do(ctx,
		chromedp.EmulateViewport(375, 667, chromedp.EmulateMobile),
		chromedp.Navigate(link),
		chromedp.WaitVisible("#save"),
	); err != nil {
		t.Fatal(err)
	}
	if !checked("purpose-analytics") || !checked("purpose-marketing") || checked("purpose-personalization") {
		t.Fatal("the page does not show the ledger's choice (analytics and marketing granted)")
	}
	disabled, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("purpose-necessary").disabled`))
	if err != nil || !disabled {
		t.Fatalf("necessary can be unticked: %v", err)
	}
	// It fits a phone's width.
	fits, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth <= window.innerWidth`))
	if err != nil || !fits {
		t.Fatalf("the page scrolls sideways on a 375 px screen: %v", err)
	}

	// Withdraw marketing and save.
	if err := chromedp.Do(ctx, chromedp.Click("#purpose-marketing"), chromedp.Click("#save"), chromedp.WaitVisible("#status")); err != nil {
		t.Fatal(err)
	}
	status, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("status").textContent`))
	if err != nil || !strings.Contains(status, "saved") {
		t.Fatalf("no saved state: %q %v", status, err)
	}
	if !checked("purpose-analytics") || checked("purpose-marketing") {
		t.Fatal("the saved page does not show the new choice")
	}
	// Reloading the link shows it too (it is in the ledger, not the page).
	if err := chromedp.Do(ctx, chromedp.Navigate(link), chromedp.WaitVisible("#save")); err != nil {
		t.Fatal(err)
	}
	if checked("purpose-marketing") {
		t.Fatal("the choice did not last")
	}
	if cs := cookies(t, ctx); len(cs) != 0 {
		t.Fatalf("the preference page set cookies: %+v", cs)
	}
	mu.Lock()
	for _, u := range requested {
		if !strings.HasPrefix(u, in.URL+"/") {
			t.Errorf("the page loaded %s", u)
		}
	}
	mu.Unlock()

	// Enforced on the person's next event and e-mail open.
	track("Came Back", "")
	var evs []struct {
		Name     string
		Purposes []string
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, b := in.Admin("/admin/v1/events?site=demo&limit=1000")
		var res struct {
			Events []struct {
				Name     string
				Purposes []string
			}
		}
		if err := json.Unmarshal(b, &res); code != 200 || err != nil {
			t.Fatalf("events: %d %s", code, b)
		}
		evs = res.Events
		if slices.ContainsFunc(evs, func(e struct {
			Name     string
			Purposes []string
		}) bool {
			return e.Name == "Came Back"
		}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the next event was not stored")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, e := range evs {
		if e.Name == "Came Back" && (!slices.Contains(e.Purposes, "analytics") || slices.Contains(e.Purposes, "marketing")) {
			t.Fatalf("the next event does not follow the page: %+v", e)
		}
	}
	pixel := between(rw.Messages[0].HTML, `src="`, `"`)
	if code, _ := in.Do("GET", strings.TrimPrefix(pixel, in.URL), nil, http.Header{"User-Agent": {"Mozilla/5.0 (Windows NT 10.0; Win64; x64) Microsoft Outlook 16.0"}}); code != 200 {
		t.Fatalf("open pixel: %d", code)
	}
	time.Sleep(200 * time.Millisecond)
	code, b = in.Admin("/admin/v1/events?site=demo&limit=1000")
	if code != 200 || personalOpen(t, b) {
		t.Fatalf("an open was attributed to a person who withdrew marketing: %s", b)
	}

	// A tampered link: a not-found page, not an error.
	u, _ := url.Parse(link)
	tampered := u.String()[:len(u.String())-2] + "xx"
	if err := chromedp.Do(ctx, chromedp.Navigate(tampered)); err != nil {
		t.Fatal(err)
	}
	h1, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("h1").textContent`))
	if err != nil || h1 != "This link does not work" {
		t.Fatalf("tampered link: %q %v", h1, err)
	}
	if code, _ := in.Do("GET", strings.TrimPrefix(tampered, in.URL), nil, nil); code != 404 {
		t.Fatalf("tampered link status %d", code)
	}
}

// personalOpen reports whether the events JSON b holds an Email Opened
// event with a subject.
func personalOpen(t *testing.T, b []byte) bool {
	t.Helper()
	var res struct {
		Events []struct {
			Name    string
			Subject string
		}
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	for _, e := range res.Events {
		if e.Name == "Email Opened" && e.Subject != "" {
			return true
		}
	}
	return false
}

func between(s, from, to string) string {
	i := strings.Index(s, from)
	if i < 0 {
		return ""
	}
	s = s[i+len(from):]
	if j := strings.Index(s, to); j >= 0 {
		return s[:j]
	}
	return s
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
