package proxy_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/proxy"
	"github.com/vigie-dev/vigie/proxy/email"
	"github.com/vigie-dev/vigie/proxy/keyring"
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
		if ev["mode"] != "anonymous" || ev["subject"] != nil {
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

// recipientTokens asks POST /admin/v1/email/tokens.
func recipientTokens(t *testing.T, in *proxytest.Instance, body string) (int, map[string]string, []byte) {
	t.Helper()
	code, out := in.Do("POST", "/admin/v1/email/tokens", []byte(body), http.Header{"Authorization": {"Bearer " + in.AdminToken()}})
	if code != 200 {
		return code, nil, out
	}
	var res struct {
		Tokens []struct {
			UserID     string `json:"user_id"`
			VigieToken string `json:"vigie_token"`
		} `json:"tokens"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, tk := range res.Tokens {
		m[tk.UserID] = tk.VigieToken
	}
	return code, m, out
}

// hitWith fetches the pixel and follows the link of a merge-tag campaign
// with r, and checks both answer as for anyone.
func hitWith(t *testing.T, pixel, click, tag, r string) {
	t.Helper()
	if code, h := emailGet(t, strings.Replace(pixel, tag, url.QueryEscape(r), 1)); code != 200 || h.Get("Content-Type") != "image/gif" {
		t.Fatalf("open: %d %v", code, h)
	}
	if code, h := emailGet(t, strings.Replace(click, tag, url.QueryEscape(r), 1)); code != http.StatusFound || h.Get("Location") != "https://shop.example/sale" {
		t.Fatalf("click: %d %v", code, h)
	}
}

// offlineSigner is the signer of the instance's keyring as on disk.
func offlineSigner(t *testing.T, in *proxytest.Instance) *email.Signer {
	t.Helper()
	mk, err := keyring.ParseMasterKey(in.MasterKey())
	if err != nil {
		t.Fatal(err)
	}
	kr, _, err := keyring.Open(in.Config.DataDir, mk, keyring.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := proxy.EmailSigner(kr)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A recipient value from POST /admin/v1/email/tokens attributes a
// merge-tag hit to exactly that recipient; a tampered, truncated,
// other-site or expired value counts at campaign level only; across key
// rotation old values keep working until their key is retired.
func TestEmailRecipientValues(t *testing.T) {
	in := proxytest.Start(t)
	alice := identifyConsenting(t, in, "user-42")
	bob := identifyConsenting(t, in, "user-43")
	const tag = "*|VIGIE|*"

	code, toks, out := recipientTokens(t, in, `{"site":"demo","user_ids":["user-42","user-43"],"expires_in":"365d"}`)
	if code != 200 || len(toks) != 2 {
		t.Fatalf("tokens: %d %s", code, out)
	}
	for _, leak := range []string{"user-42", alice} {
		if strings.Contains(toks["user-42"], leak) {
			t.Fatalf("value %s holds %q in clear", toks["user-42"], leak)
		}
	}
	pixel, click := mergeTagCampaign(t, in, "signed", tag)
	hitWith(t, pixel, click, tag, toks["user-42"])
	if evs := emailEventsOf(t, in, alice); len(evs) != 2 || evs[0].UserId != alice || evs[0].Email.Campaign != "signed" {
		t.Fatalf("alice's e-mail events: %v", evs)
	}
	if evs := emailEventsOf(t, in, bob); len(evs) != 0 {
		t.Fatalf("bob got alice's hits: %v", evs)
	}

	good := toks["user-42"]
	signer := offlineSigner(t, in)
	otherSite, _ := signer.SignRecipient("other", alice, time.Time{})
	expired, _ := signer.SignRecipient("demo", alice, time.Now().Add(-time.Minute))
	parts := strings.Split(good, ".")
	flipped := []byte(parts[0])
	flipped[5] ^= 'A' ^ 'B'
	sig := []byte(parts[2])
	if sig[4] == 'A' { // a different character, whatever the signature is
		sig[4] = 'B'
	} else {
		sig[4] = 'A'
	}
	pixel, click = mergeTagCampaign(t, in, "invalid", tag)
	for i, tt := range []struct{ name, r string }{
		{"tampered payload", string(flipped) + "." + parts[1] + "." + parts[2]},
		{"tampered signature", parts[0] + "." + parts[1] + "." + string(sig)},
		{"truncated", good[:len(good)-4]},
		{"other site", otherSite},
		{"expired", expired},
		{"clear user id", "user-42"},
		{"pseudonym", alice},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.r == good {
				t.Fatal("case does not change the value")
			}
			hitWith(t, pixel, click, tag, tt.r)
			if evs := emailEventsOf(t, in, alice); len(evs) != 2 {
				t.Fatalf("attributed: alice has %d e-mail events, want still 2", len(evs))
			}
			if opens, clicks, users := campaignEvents(t, in, "invalid"); opens != i+1 || clicks != i+1 || len(users) != 0 {
				t.Fatalf("campaign level: %d opens, %d clicks, attributed %v", opens, clicks, users)
			}
		})
	}

	// Rotation: values signed with the previous key still attribute; new
	// values are signed with the new key (and bind the recipient's new
	// pseudonym, which gets its consent at their next identify).
	in.Stop()
	mk, err := keyring.ParseMasterKey(in.MasterKey())
	if err != nil {
		t.Fatal(err)
	}
	kr, _, err := keyring.Open(in.Config.DataDir, mk, keyring.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kr.Rotate(); err != nil {
		t.Fatal(err)
	}
	in.Restart()
	alice2 := identifyConsenting(t, in, "user-42")
	_, toks2, out := recipientTokens(t, in, `{"site":"demo","user_ids":["user-42"]}`)
	if !strings.Contains(toks2["user-42"], ".k2.") {
		t.Fatalf("not signed with the new key: %s", out)
	}
	pixel, click = mergeTagCampaign(t, in, "rotated", tag)
	hitWith(t, pixel, click, tag, good)
	hitWith(t, pixel, click, tag, toks2["user-42"])
	if _, _, users := campaignEvents(t, in, "rotated"); users[alice] != 2 || users[alice2] != 2 || len(users) != 2 {
		t.Fatalf("after rotation: %v (old pseudonym %s, new %s)", users, alice, alice2)
	}

	// Retirement: the old key's values identify nobody any more.
	in.Stop()
	if kr, _, err = keyring.Open(in.Config.DataDir, mk, keyring.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := kr.Retire("k1"); err != nil {
		t.Fatal(err)
	}
	in.Restart()
	pixel, click = mergeTagCampaign(t, in, "retired", tag)
	hitWith(t, pixel, click, tag, good)
	hitWith(t, pixel, click, tag, toks2["user-42"])
	if opens, clicks, users := campaignEvents(t, in, "retired"); opens != 1 || clicks != 1 || users[alice2] != 2 || len(users) != 1 {
		t.Fatalf("after retirement: %d opens, %d clicks at campaign level, attributed %v", opens, clicks, users)
	}
}

func TestEmailTokensAPIErrors(t *testing.T) {
	in := proxytest.Start(t)
	tests := []struct {
		name, body string
		status     int
		field      string
	}{
		{"unknown site", `{"site":"nope","user_ids":["u"]}`, 400, ""},
		{"no ids", `{"site":"demo","user_ids":[]}`, 400, "user_ids"},
		{"empty id", `{"site":"demo","user_ids":["u1",""]}`, 400, "user_ids[1]"},
		{"blank id", `{"site":"demo","user_ids":["  "]}`, 400, "user_ids[0]"},
		{"id not a string", `{"site":"demo","user_ids":[42]}`, 400, "user_ids"},
		{"bad expiry", `{"site":"demo","user_ids":["u"],"expires_in":"soon"}`, 400, "expires_in"},
		{"negative expiry", `{"site":"demo","user_ids":["u"],"expires_in":"-1d"}`, 400, "expires_in"},
		{"unknown field", `{"site":"demo","userIds":["u"]}`, 400, "userIds"},
		{"not JSON", `site=demo`, 400, ""},
		{"not UTF-8", "{\"site\":\"demo\",\"user_ids\":[\"ab\xff\"]}", 400, ""},
		{"too many ids", `{"site":"demo","user_ids":[` + strings.Repeat(`"u",`, 10000) + `"u"]}`, 400, "user_ids"},
		{"too large", `{"site":"demo","user_ids":["` + strings.Repeat("u", 5<<20) + `"]}`, 413, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, body := recipientTokens(t, in, tt.body)
			if code != tt.status {
				t.Fatalf("status %d, want %d: %s", code, tt.status, body)
			}
			e := decodeErr(t, body)
			if f, _ := e["field"].(string); f != tt.field {
				t.Fatalf("field %q, want %q: %s", f, tt.field, body)
			}
			for _, leak := range []string{"json:", "http:", "/", "\\u00ff"} {
				if strings.Contains(e["error"].(string), leak) {
					t.Fatalf("error body leaks %q: %s", leak, body)
				}
			}
		})
	}
	if code, _ := in.Do("POST", "/admin/v1/email/tokens", []byte(`{"site":"demo","user_ids":["u"]}`), nil); code != http.StatusUnauthorized {
		t.Fatalf("no admin token: %d", code)
	}
}
