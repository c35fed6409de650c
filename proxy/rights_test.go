package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/proxy"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/keyring"
	"github.com/vigie-dev/vigie/proxy/preflight"
	"github.com/vigie-dev/vigie/proxy/proxytest"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// preferenceToken asks the admin API for user's preference token.
func preferenceToken(t *testing.T, in *proxytest.Instance, user string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"site": "demo", "user_ids": []string{user}})
	code, b := in.Do("POST", "/admin/v1/email/tokens", body, http.Header{"Authorization": {"Bearer " + in.AdminToken()}})
	var res struct {
		Tokens []struct {
			VigiePreference string `json:"vigie_preference"`
		}
	}
	if err := json.Unmarshal(b, &res); code != 200 || err != nil || len(res.Tokens) != 1 || res.Tokens[0].VigiePreference == "" {
		t.Fatalf("tokens: %d %s", code, b)
	}
	return res.Tokens[0].VigiePreference
}

// userEvents are the stored events of user (by its user_id pseudonym),
// oldest first.
func userEvents(t *testing.T, in *proxytest.Instance, name string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, ev := range adminEvents(t, in, "site=demo") {
		if ev["name"] == name {
			out = append(out, ev)
		}
	}
	slices.Reverse(out)
	return out
}

func purposesOf(ev map[string]any) []string {
	var out []string
	ps, _ := ev["purposes"].([]any)
	for _, p := range ps {
		out = append(out, p.(string))
	}
	return out
}

var nonceRE = regexp.MustCompile(`name="nonce" value="([^"]+)"`)

// form posts an urlencoded body to the preference page.
func form(t *testing.T, in *proxytest.Instance, tok string, v url.Values, hdr http.Header) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("POST", in.URL+"/p/"+tok, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String(), resp.Header
}

// TestPreferencePage: the signed link shows the ledger's choice, a form
// post with the page's nonce changes it (enforced on the person's next
// event, announced on VIGIE_PRIVACY, audited), a one-click POST denies
// marketing, and a bad token or a forged post changes nothing.
func TestPreferencePage(t *testing.T) {
	in := proxytest.Start(t)
	track := func(name, consentJSON string) {
		t.Helper()
		ctx := ""
		if consentJSON != "" {
			ctx = `,"context":{"consent":` + consentJSON + `}`
		}
		if code, b := in.Post("/v1/track", "demo", `{"userId":"user-42","event":"`+name+`"`+ctx+`}`); code != 200 {
			t.Fatalf("track: %d %s", code, b)
		}
	}
	track("Banner", `{"analytics":true,"marketing":true}`)
	tok := preferenceToken(t, in, "user-42")

	resp, err := http.Get(in.URL + "/p/" + tok)
	if err != nil {
		t.Fatal(err)
	}
	var page bytes.Buffer
	_, _ = page.ReadFrom(resp.Body)
	resp.Body.Close()
	html := page.String()
	if resp.StatusCode != 200 || !strings.Contains(html, `value="analytics" checked`) || !strings.Contains(html, `value="marketing" checked`) ||
		strings.Contains(html, `value="personalization" checked`) {
		t.Fatalf("page: %d\n%s", resp.StatusCode, html)
	}
	h := resp.Header
	if h.Get("Set-Cookie") != "" || h.Get("Referrer-Policy") != "no-referrer" || !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") ||
		strings.Contains(html, "<script") || strings.Contains(html, "src=") || strings.Contains(html, "http://") || strings.Contains(html, "https://") {
		t.Fatalf("the page tracks or loads something: %v\n%s", h, html)
	}
	nonce := nonceRE.FindStringSubmatch(html)[1]

	// Forged posts change nothing: no nonce, another page's nonce, a
	// cross-site post.
	other := preferenceToken(t, in, "user-43")
	otherPage, _ := http.Get(in.URL + "/p/" + other)
	var ob bytes.Buffer
	_, _ = ob.ReadFrom(otherPage.Body)
	otherPage.Body.Close()
	otherNonce := nonceRE.FindStringSubmatch(ob.String())[1]
	for _, c := range []struct {
		name string
		v    url.Values
		hdr  http.Header
	}{
		{"no nonce", url.Values{"purpose": {"personalization"}, "action": {"save"}}, nil},
		{"another page's nonce", url.Values{"nonce": {otherNonce}, "purpose": {"personalization"}}, nil},
		{"cross-site", url.Values{"nonce": {nonce}, "purpose": {"personalization"}}, http.Header{"Sec-Fetch-Site": {"cross-site"}}},
	} {
		code, body, _ := form(t, in, tok, c.v, c.hdr)
		if code != 403 || !strings.Contains(body, "nothing was changed") {
			t.Errorf("%s: %d\n%s", c.name, code, body)
		}
	}

	// A real change: analytics only.
	code, body, _ := form(t, in, tok, url.Values{"nonce": {nonce}, "purpose": {"analytics"}, "action": {"save"}}, nil)
	if code != 200 || !strings.Contains(body, "Your choices are saved") || !strings.Contains(body, `value="analytics" checked`) ||
		strings.Contains(body, `value="marketing" checked`) {
		t.Fatalf("save: %d\n%s", code, body)
	}
	track("After page", "")
	evs := userEvents(t, in, "After page")
	if len(evs) != 1 || !slices.Contains(purposesOf(evs[0]), "analytics") || slices.Contains(purposesOf(evs[0]), "marketing") {
		t.Fatalf("the next event does not follow the page's choice: %v", evs)
	}

	// One-click (RFC 8058), as a mail client sends it: marketing denied.
	// First grant it again through the banner.
	track("Banner again", `{"analytics":true,"marketing":true}`)
	req, _ := http.NewRequest("POST", in.URL+"/p/"+tok, strings.NewReader("List-Unsubscribe=One-Click"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	oc, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	oc.Body.Close()
	if oc.StatusCode != 200 || oc.Header.Get("Location") != "" || oc.Header.Get("Set-Cookie") != "" {
		t.Fatalf("one-click: %d %v", oc.StatusCode, oc.Header)
	}
	track("After one-click", "")
	evs = userEvents(t, in, "After one-click")
	if len(evs) != 1 || !slices.Contains(purposesOf(evs[0]), "analytics") || slices.Contains(purposesOf(evs[0]), "marketing") {
		t.Fatalf("one-click unsubscription not enforced: %v", evs)
	}
	// Multipart, the other body RFC 8058 allows.
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	_ = mw.WriteField("List-Unsubscribe", "One-Click")
	mw.Close()
	code, _ = in.Do("POST", "/p/"+other, mp.Bytes(), http.Header{"Content-Type": {mw.FormDataContentType()}})
	if code != 200 {
		t.Fatalf("multipart one-click: %d", code)
	}

	// Tampered, truncated or foreign tokens: a 404 page, never a 500.
	flip := []byte(tok)
	flip[5] ^= 1
	for _, bad := range []string{string(flip), tok[:len(tok)-3], "x", strings.Repeat("a", 900), url.PathEscape("<script>")} {
		for _, m := range []string{"GET", "POST"} {
			code, b := in.Do(m, "/p/"+bad, []byte("List-Unsubscribe=One-Click"), http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})
			if code != 404 || !strings.Contains(string(b), "This link does not work") {
				t.Errorf("%s %.30q: %d %s", m, bad, code, b)
			}
		}
	}

	// Every recorded choice went through the outbox to VIGIE_PRIVACY.
	waitOutboxEmpty(t, in)
	privacy := streamMsgsOf(t, in, streams.Privacy)
	var withoutMarketing int
	for _, m := range privacy {
		pe := &vigiev1.PrivacyEvent{}
		if err := proto.Unmarshal(m, pe); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(pe.GetPurposes(), "marketing") {
			withoutMarketing++
		}
	}
	if withoutMarketing < 3 {
		t.Fatalf("%d privacy events without marketing, want the page's, the one-click's and the multipart one's", withoutMarketing)
	}

	// The audit trail has the page's changes: fields are purpose names.
	code, b := in.Admin("/admin/v1/audit?action=preference.unsubscribe")
	var au struct {
		Entries []struct {
			Actor, Action, Site string
			Fields              []string
			Count               int
		}
	}
	if err := json.Unmarshal(b, &au); code != 200 || err != nil || len(au.Entries) != 2 ||
		au.Entries[0].Actor != "preference_page" || !slices.Equal(au.Entries[0].Fields, []string{"marketing"}) {
		t.Fatalf("audit: %d %s", code, b)
	}
	if strings.Contains(string(b), "user-42") || strings.Contains(string(b), tok) {
		t.Fatalf("audit names the person: %s", b)
	}
}

// streamMsgsOf returns the payloads of every message of stream.
func streamMsgsOf(t *testing.T, in *proxytest.Instance, stream string) [][]byte {
	t.Helper()
	ctx := context.Background()
	st, err := in.Server.Bus().JetStream().Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		if m, err := st.GetMsg(ctx, seq); err == nil {
			out = append(out, m.Data)
		}
	}
	return out
}

// TestRewriteCarriesListUnsubscribe: per-recipient messages get their own
// preference link in List-Unsubscribe; merge-tag mode gets the ESP's
// placeholder.
func TestRewriteCarriesListUnsubscribe(t *testing.T) {
	in := proxytest.Start(t)
	admin := http.Header{"Authorization": {"Bearer " + in.AdminToken()}}
	post := func(req map[string]any) (int, []byte) {
		req["site"], req["campaign"] = "demo", "spring"
		req["html"] = `<html><body><a href="https://shop.example/a">A</a></body></html>`
		body, _ := json.Marshal(req)
		return in.Do("POST", "/admin/v1/email/rewrite", body, admin)
	}
	code, b := post(map[string]any{"recipients": []string{"user-42", "user-43"}, "base_url": "https://track.example/t/"})
	var res struct {
		Messages []struct {
			Recipient string
			Headers   map[string]string
		}
	}
	if err := json.Unmarshal(b, &res); code != 200 || err != nil || len(res.Messages) != 2 {
		t.Fatalf("rewrite: %d %s", code, b)
	}
	seen := map[string]bool{}
	for _, m := range res.Messages {
		lu := m.Headers["List-Unsubscribe"]
		if !strings.HasPrefix(lu, "<https://track.example/t/p/") || m.Headers["List-Unsubscribe-Post"] != "List-Unsubscribe=One-Click" || seen[lu] {
			t.Fatalf("headers of %s: %v", m.Recipient, m.Headers)
		}
		seen[lu] = true
		tok := strings.TrimSuffix(strings.TrimPrefix(lu, "<https://track.example/t/p/"), ">")
		if code, _ := in.Do("GET", "/p/"+tok, nil, nil); code != 200 {
			t.Fatalf("the link of %s does not open its page: %d", m.Recipient, code)
		}
	}
	code, b = post(map[string]any{"merge_tag": "*|VIGIE|*", "preference_merge_tag": "*|VIGIE_PREF|*", "base_url": "https://track.example/t/"})
	var mt struct{ Headers map[string]string }
	if err := json.Unmarshal(b, &mt); code != 200 || err != nil || mt.Headers["List-Unsubscribe"] != "<https://track.example/t/p/*|VIGIE_PREF|*>" {
		t.Fatalf("merge-tag rewrite: %d %s", code, b)
	}
	for _, bad := range []map[string]any{
		{"recipients": []string{"u"}, "preference_merge_tag": "*|P|*"},
		{"merge_tag": "*|VIGIE|*", "preference_merge_tag": "a>b"},
	} {
		if code, b := post(bad); code != 400 || decodeErr(t, b)["field"] != "preference_merge_tag" {
			t.Errorf("%v: %d %s", bad, code, b)
		}
	}
}

// TestContactResolutionsAreAudited: contact details given to a plugin are
// in the audit trail with the plugin, site, field names and count, never
// a value or a pseudonym; the listing filters and pages.
func TestContactResolutionsAreAudited(t *testing.T) {
	rec := filepath.Join(t.TempDir(), "crm.txt")
	in := proxytest.Start(t, func(c *config.Config) {
		c.Plugins = []config.Plugin{{Name: "crm", Config: map[string]any{"file": rec}}}
	})
	for i := range 3 {
		body := fmt.Sprintf(`{"type":"identify","userId":"user-%d","traits":{"email":"p%d@example.org","firstName":"Ada","plan":"pro"},"context":{"consent":{"analytics":true,"marketing":true}}}`, i, i)
		if code, b := in.Post("/v1/identify", "demo", body); code != 200 {
			t.Fatalf("identify: %d %s", code, b)
		}
	}
	type entry struct {
		At     time.Time
		Actor  string
		Action string
		Site   string
		Fields []string
		Count  int
	}
	list := func(q string) ([]entry, string, int, []byte) {
		code, b := in.Admin("/admin/v1/audit" + q)
		var res struct {
			Entries []entry
			Next    string
		}
		_ = json.Unmarshal(b, &res)
		return res.Entries, res.Next, code, b
	}
	var entries []entry
	var raw []byte
	deadline := time.Now().Add(20 * time.Second)
	for {
		var code int
		entries, _, code, raw = list("?action=contacts.resolve")
		total := 0
		for _, e := range entries {
			total += e.Count
		}
		if code == 200 && total >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("contact resolutions not audited: %d %s\n%s", code, raw, in.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, e := range entries {
		if e.Actor != "plugin:crm" || e.Site != "demo" || !slices.Equal(e.Fields, []string{"email", "first_name"}) || e.At.IsZero() {
			t.Fatalf("entry: %+v", e)
		}
	}
	crm, _ := os.ReadFile(rec)
	if !strings.Contains(string(crm), "p0@example.org") {
		t.Fatalf("the plugin did not get the contacts:\n%s", crm)
	}
	if bytes.Contains(raw, []byte("example.org")) || bytes.Contains(raw, []byte("Ada")) || bytes.Contains(raw, []byte("user-")) {
		t.Fatalf("the audit trail holds values: %s", raw)
	}
	for _, ev := range adminEvents(t, in, "site=demo") {
		if s, _ := ev["subject"].(string); s != "" && bytes.Contains(raw, []byte(s)) {
			t.Fatalf("the audit trail holds a pseudonym: %s", raw)
		}
	}

	// Filters and paging.
	future := url.QueryEscape(time.Now().Add(time.Hour).Format(time.RFC3339))
	if got, _, code, _ := list("?from=" + future); code != 200 || len(got) != 0 {
		t.Fatalf("from the future: %d %v", code, got)
	}
	if got, _, _, _ := list("?action=nothing"); len(got) != 0 {
		t.Fatalf("unknown action: %v", got)
	}
	all, _, _, _ := list("")
	var paged []entry
	after := ""
	for range 10 {
		page, next, code, b := list("?limit=1&after=" + after)
		if code != 200 {
			t.Fatalf("page: %d %s", code, b)
		}
		paged = append(paged, page...)
		if next == "" {
			break
		}
		after = next
	}
	if len(paged) != len(all) {
		t.Fatalf("paged %d entries, listed %d", len(paged), len(all))
	}
	for _, q := range []string{"?from=yesterday", "?to=1", "?limit=0", "?limit=5000", "?after=nope"} {
		if _, _, code, b := list(q); code != 400 {
			t.Errorf("%s: %d %s", q, code, b)
		} else {
			decodeErr(t, b)
		}
	}
	if code, _ := in.Do("GET", "/admin/v1/audit", nil, nil); code != 401 {
		t.Errorf("audit without a token: %d", code)
	}
}

// TestRegisterEndpoint: the running server's register lists every
// purpose, every plugin with what its manifest says, and every retention.
func TestRegisterEndpoint(t *testing.T) {
	in := proxytest.Start(t, func(c *config.Config) {
		c.Organization = config.Organization{Name: "Shop SAS", Contact: "privacy@shop.example"}
		c.Plugins = append(config.DefaultPlugins(), config.Plugin{Name: "crm", Config: map[string]any{"file": filepath.Join(t.TempDir(), "crm.txt")}})
	})
	code, b := in.Admin("/admin/v1/register")
	if code != 200 {
		t.Fatalf("register: %d %s", code, b)
	}
	var reg struct {
		Organization struct {
			Controller struct {
				Value struct{ Name, Contact string }
			}
		}
		Activities []struct {
			Reference  struct{ Value string }
			Recipients struct {
				Value []struct {
					Name         string
					PersonalData bool `json:"personal_data"`
				}
			}
			Retention struct {
				Value []struct{ Setting string }
			}
		}
		ToComplete []string `json:"to_complete"`
	}
	if err := json.Unmarshal(b, &reg); err != nil {
		t.Fatal(err)
	}
	if reg.Organization.Controller.Value.Name != "Shop SAS" || len(reg.ToComplete) != 0 {
		t.Fatalf("organization: %+v, to complete %v", reg.Organization, reg.ToComplete)
	}
	settings := map[string]bool{}
	plugins := map[string]bool{}
	refs := map[string]bool{}
	for _, a := range reg.Activities {
		refs[a.Reference.Value] = true
		for _, r := range a.Retention.Value {
			settings[r.Setting] = true
		}
		for _, r := range a.Recipients.Value {
			plugins[strings.Fields(r.Name)[0]] = true
			if strings.HasPrefix(r.Name, "crm") && !r.PersonalData {
				t.Errorf("crm (contacts.resolve) not marked as receiving personal data")
			}
		}
	}
	for _, p := range in.Config.Purposes {
		if !refs["vigie-"+string(p.Name)] {
			t.Errorf("purpose %s missing", p.Name)
		}
	}
	for _, p := range []string{"geoip", "segments", "crm"} {
		if !plugins[p] {
			t.Errorf("plugin %s missing: %v", p, plugins)
		}
	}
	for k := range in.Config.Retention {
		if !settings["retention."+k] {
			t.Errorf("retention.%s missing", k)
		}
	}
	if !settings["nats.max_age"] {
		t.Error("nats.max_age missing")
	}
	code, md := in.Do("GET", "/admin/v1/register?format=markdown", nil, http.Header{"Authorization": {"Bearer " + in.AdminToken()}})
	if code != 200 || !strings.Contains(string(md), "crm (built-in plugin)") || !strings.Contains(string(md), "Registre des activités de traitement") {
		t.Fatalf("markdown: %d %s", code, md)
	}
	if code, b := in.Admin("/admin/v1/register?format=pdf"); code != 400 {
		t.Fatalf("format=pdf: %d %s", code, b)
	}
}

// TestRetentionReachesStreamsAndPluginData: every stream has nats.max_age,
// and plugin data written without a TTL gets the longest retention.
func TestRetentionReachesStreamsAndPluginData(t *testing.T) {
	in := proxytest.Start(t, func(c *config.Config) { c.NATS.MaxAge = config.Duration(3 * 24 * time.Hour) })
	ctx := context.Background()
	for _, name := range streams.All() {
		st, err := in.Server.Bus().JetStream().Stream(ctx, name)
		if err != nil {
			continue // the plugin runtime declares the ones it uses later
		}
		if got := st.CachedInfo().Config.MaxAge; got != 3*24*time.Hour {
			t.Errorf("%s: MaxAge %s", name, got)
		}
	}
	st, err := in.Server.Bus().JetStream().Stream(ctx, streams.Events)
	if err != nil || st.CachedInfo().Config.MaxAge != 3*24*time.Hour {
		t.Fatalf("VIGIE_EVENTS: %v", err)
	}
	store := in.Server.Store()
	if err := store.KVPut(ctx, "someplugin", "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	err = store.DB().View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte("k/someplugin\x00k"))
		if err != nil {
			return err
		}
		exp := time.Unix(int64(item.ExpiresAt()), 0)
		if want := time.Now().Add(760 * 24 * time.Hour); exp.Before(want.Add(-time.Minute)) || exp.After(want.Add(time.Minute)) {
			t.Errorf("plugin KV without TTL expires at %v, want about %v (retention.anonymous, the longest)", exp, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestProductionNeedsOrganization: production refuses to start without the
// controller's name and contact; `vigie check` reports the row.
func TestProductionNeedsOrganization(t *testing.T) {
	cfg := config.Default()
	cfg.Production = true
	if r := proxy.OrganizationCheck(cfg); r.Status != preflight.Fail || !strings.Contains(r.Detail, "organization.name") {
		t.Fatalf("production without organization: %+v", r)
	}
	cfg.Production = false
	if r := proxy.OrganizationCheck(cfg); r.Status != preflight.Warn {
		t.Fatalf("outside production: %+v", r)
	}
	cfg.Organization = config.Organization{Name: "Shop SAS", Contact: "privacy@shop.example"}
	cfg.Production = true
	if r := proxy.OrganizationCheck(cfg); r.Status != preflight.Pass {
		t.Fatalf("with organization: %+v", r)
	}

	dir := t.TempDir()
	keyFile := filepath.Join(dir, "master.key")
	mk, err := keyring.NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := keyring.WriteKeyFile(keyFile, mk); err != nil {
		t.Fatal(err)
	}
	cfg = config.Default()
	cfg.Production = true
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.Keys.MasterKeyFile = keyFile
	srv, err := proxy.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Start(context.Background())
	if err == nil {
		_ = srv.Shutdown(context.Background())
		t.Fatal("production started without an organization")
	}
	if !strings.Contains(err.Error(), "organization.contact") {
		t.Fatalf("start: %v", err)
	}
	rep := proxy.Check(context.Background(), cfg)
	found := false
	for _, r := range rep {
		found = found || (r.Name == "organization" && r.Status == preflight.Fail)
	}
	if !found {
		t.Fatalf("vigie check has no failing organization row: %+v", rep)
	}
}
