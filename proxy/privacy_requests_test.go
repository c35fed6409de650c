package proxy_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/proxytest"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
)

// The person whose rights the tests exercise, and a bystander who must
// keep everything.
const (
	rtEmail   = "Jane.Rights@example.org"
	rtPhone   = "+33 6 98 76 54 32"
	rtUser    = "user-rights-4711"
	rtAnon    = "anon-rights-0815"
	rtConsent = `{"analytics":true,"personalization":true,"marketing":true}`
	bsUser    = "user-bystander-99"
	bsEmail   = "bystander@example.org"
)

// rightsServer starts Vigie with the built-in plugins (geoip, segments with
// a segment everyone enters) and the recorder, whose input file it
// returns. Retries are quick so that a held plugin step is retried often.
func rightsServer(t *testing.T, recorderCfg map[string]any, opts ...proxytest.Option) (*proxytest.Instance, string) {
	t.Helper()
	recFile := filepath.Join(t.TempDir(), "plugin-input.txt")
	rc := map[string]any{"file": recFile}
	for k, v := range recorderCfg {
		rc[k] = v
	}
	all := append([]proxytest.Option{func(c *config.Config) {
		c.Plugins = []config.Plugin{
			{Name: "geoip"},
			{Name: "segments", Config: map[string]any{"segments": []any{map[string]any{"name": "everyone", "when": "true"}}}},
			{Name: "recorder", Config: rc},
		}
		c.PluginRuntime.Backoff = []config.Duration{config.Duration(200 * time.Millisecond)}
		c.PluginRuntime.MaxDeliver = 1000
	}}, opts...)
	return proxytest.Start(t, all...), recFile
}

// sendPerson sends the person's hits: pages before logging in (anonymous
// id only), the identify with e-mail and phone, then tracks as the user.
func sendPerson(t *testing.T, in *proxytest.Instance, user, anon, email, phone string) {
	t.Helper()
	ctx := `"context":{"locale":"fr-FR","consent":` + rtConsent + `}`
	hits := []struct{ path, body string }{
		{"/v1/page", `{"anonymousId":"` + anon + `","name":"Pricing","properties":{"path":"/pricing"},` + ctx + `}`},
		{"/v1/page", `{"anonymousId":"` + anon + `","name":"Docs","properties":{"path":"/docs"},` + ctx + `}`},
		{"/v1/identify", `{"userId":"` + user + `","anonymousId":"` + anon + `","traits":{"email":"` + email + `","phone":"` + phone + `","plan":"pro"},` + ctx + `}`},
		{"/v1/track", `{"userId":"` + user + `","event":"Signed Up","properties":{"plan":"pro"},` + ctx + `}`},
		{"/v1/track", `{"userId":"` + user + `","event":"Ordered","properties":{"total":42},` + ctx + `}`},
	}
	for _, h := range hits {
		if code, body := in.Post(h.path, "demo", h.body); code != 200 {
			t.Fatalf("%s: %d %s", h.path, code, body)
		}
	}
}

// personSubjects returns the user and anonymous pseudonyms of the latest
// stored identify event.
func personSubjects(t *testing.T, in *proxytest.Instance) (user, anon string) {
	t.Helper()
	for _, ev := range adminEvents(t, in, "site=demo") {
		if ev["type"] == "identify" {
			if s, _ := ev["user_id"].(string); s != "" {
				u, _ := ev["anonymous_id"].(string)
				return s, u
			}
		}
	}
	t.Fatal("no identify event stored")
	return "", ""
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	if !eventually(d, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// eventually polls cond every 50 ms for up to d and reports whether it held.
func eventually(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// pluginsState describes in's plugins (state, restarts, errors, each
// consumer's lag) and the kinds of items the recorder wrote to recFile, in
// order, for a test that timed out waiting for a plugin.
func pluginsState(in *proxytest.Instance, recFile string) string {
	var sb strings.Builder
	for _, st := range in.Server.Plugins().Status(context.Background()) {
		fmt.Fprintf(&sb, "plugin %s: %s since %s, processed %d, errors %d, restarts %d, dead %d, last error %q;",
			st.Name, st.State, st.Since.Format(time.StampMilli), st.Processed, st.Errors, st.Restarts, st.DeadLetters, st.LastError)
		for _, c := range st.Consumers {
			fmt.Fprintf(&sb, " %+v", c)
		}
		sb.WriteString("\n")
	}
	b, _ := os.ReadFile(recFile)
	var kinds []string
	for _, line := range strings.Split(string(b), "\n") {
		if k, rest, ok := strings.Cut(line, " "); ok && (k == "enrich" || k == "segment" || k == "sync") {
			f, _, _ := strings.Cut(rest, " ")
			kinds = append(kinds, k+" "+strings.TrimSuffix(f, ":"))
		}
	}
	fmt.Fprintf(&sb, "recorder items: %s", strings.Join(kinds, ", "))
	return sb.String()
}

// waitSegmented waits until the subject's profile is in segment everyone
// and the recorder has synced the entry.
func waitSegmented(t *testing.T, in *proxytest.Instance, recFile, subject string) {
	t.Helper()
	waitFor(t, "the profile in segment everyone, synced to the recorder", 45*time.Second, func() bool {
		p, err := in.Server.Store().Profile(context.Background(), "demo", subject)
		if err != nil || !slices.Contains(p.Segments, "everyone") {
			return false
		}
		b, _ := os.ReadFile(recFile)
		return bytes.Contains(b, []byte("segment_change")) && bytes.Contains(b, []byte(subject))
	})
}

// privacyRequest posts a privacy request and returns its id.
func privacyRequest(t *testing.T, in *proxytest.Instance, body string) string {
	t.Helper()
	code, b := in.Do("POST", "/admin/v1/privacy/requests", []byte(body), http.Header{"Authorization": {"Bearer " + in.AdminToken()}})
	if code != http.StatusAccepted {
		t.Fatalf("privacy request %s: %d %s", body, code, b)
	}
	var v struct{ ID string }
	if err := json.Unmarshal(b, &v); err != nil || v.ID == "" {
		t.Fatalf("privacy request answer %s", b)
	}
	return v.ID
}

type requestView struct {
	ID, Type, Status, IdentifierKind string `json:"-"`
	Raw                              map[string]any
	Steps                            []struct {
		Name, Status, Detail string
		At                   time.Time
	}
	Deadline  time.Time `json:"deadline"`
	CreatedAt time.Time `json:"created_at"`
	DaysLeft  int       `json:"days_left"`
	Subjects  int       `json:"subjects"`
}

func getRequest(t *testing.T, in *proxytest.Instance, id string) requestView {
	t.Helper()
	code, b := in.Admin("/admin/v1/privacy/requests/" + id)
	if code != 200 {
		t.Fatalf("request %s: %d %s", id, code, b)
	}
	var v requestView
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(b, &v.Raw)
	v.Status, _ = v.Raw["status"].(string)
	v.Type, _ = v.Raw["type"].(string)
	v.IdentifierKind, _ = v.Raw["identifier_kind"].(string)
	return v
}

// waitRequest waits until request id is over and returns it.
func waitRequest(t *testing.T, in *proxytest.Instance, id string) requestView {
	t.Helper()
	var v requestView
	waitFor(t, "privacy request "+id, 60*time.Second, func() bool {
		v = getRequest(t, in, id)
		return v.Status == "done" || v.Status == "partial" || v.Status == "failed"
	})
	return v
}

func stepStatus(v requestView, name string) string {
	for _, s := range v.Steps {
		if s.Name == name {
			return s.Status
		}
	}
	return ""
}

// exportDoc is the part of the export document the tests read.
type exportDoc struct {
	Subjects    []string                   `json:"subjects"`
	Events      []map[string]any           `json:"events"`
	EmailEvents []map[string]any           `json:"email_events"`
	Profiles    []struct{ Subject string } `json:"profiles"`
	VaultTraits map[string]map[string]any  `json:"vault_traits"`
	SyncHistory []map[string]any           `json:"sync_history"`
	Segments    struct{ Current []string } `json:"segments"`
	Consent     struct {
		Current map[string]storage.ConsentEntry `json:"current"`
		History []map[string]any                `json:"history"`
	} `json:"consent"`
}

func TestPrivacyAccessExportHoldsExactlyWhatWasStored(t *testing.T) {
	in, recFile := rightsServer(t, nil)
	sendPerson(t, in, rtUser, rtAnon, rtEmail, rtPhone)
	user, anon := personSubjects(t, in)
	sendPerson(t, in, bsUser, "anon-bystander", bsEmail, "+33 1 23 45 67 89")
	waitSegmented(t, in, recFile, user)
	// An e-mail to the user, opened.
	rw, _ := json.Marshal(map[string]any{"site": "demo", "campaign": "rights", "recipients": []string{rtUser},
		"html": `<html><body><a href="https://shop.example/offer">Offer</a></body></html>`})
	code, rwBody := in.Do("POST", "/admin/v1/email/rewrite", rw, http.Header{"Authorization": {"Bearer " + in.AdminToken()}})
	var rwOut struct{ Messages []struct{ HTML string } }
	if err := json.Unmarshal(rwBody, &rwOut); code != 200 || err != nil || len(rwOut.Messages) != 1 {
		t.Fatalf("email rewrite: %d %s", code, rwBody)
	}
	open := regexp.MustCompile(`src="http://[^"]+(/e/o/[^"]+)"`).FindStringSubmatch(rwOut.Messages[0].HTML)
	if open == nil {
		t.Fatalf("no open pixel in %s", rwOut.Messages[0].HTML)
	}
	if code, _ := in.Do("GET", open[1], nil, http.Header{"User-Agent": {"Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"}}); code != 200 {
		t.Fatalf("open pixel: %d", code)
	}
	synced := func() bool {
		h, _ := in.Server.Store().SyncHistory(context.Background(), "demo", user)
		return slices.ContainsFunc(h, func(r storage.SyncRecord) bool { return r.Kind == "identify" })
	}
	if !eventually(45*time.Second, synced) {
		t.Fatalf("timed out waiting for the identify synced; %s", pluginsState(in, recFile))
	}

	// Asked by e-mail, in another case: the blind index finds the user,
	// its links the anonymous id's pages from before the identify.
	id := privacyRequest(t, in, `{"type":"access","site":"demo","identifier":{"kind":"email","value":"jane.rights@EXAMPLE.org"}}`)
	v := waitRequest(t, in, id)
	if v.Status != "done" || v.Subjects != 2 {
		t.Fatalf("access request: %+v", v.Raw)
	}
	code, body := in.Admin("/admin/v1/privacy/requests/" + id + "/export")
	if code != 200 {
		t.Fatalf("export: %d %s", code, body)
	}
	var doc exportDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(doc.Subjects, user) || !slices.Contains(doc.Subjects, anon) || len(doc.Subjects) != 2 {
		t.Fatalf("subjects %v, want the user's %s and the anonymous id's %s", doc.Subjects, user, anon)
	}
	// Events: exactly the stored events of those subjects, as stored.
	var want []string
	for _, ev := range adminEvents(t, in, "site=demo") {
		if s, _ := ev["subject"].(string); s == user || s == anon {
			b, _ := json.Marshal(ev)
			want = append(want, string(b))
		}
	}
	var got []string
	for _, ev := range doc.Events {
		b, _ := json.Marshal(ev)
		got = append(got, string(b))
	}
	slices.Sort(want)
	slices.Sort(got)
	if len(want) != 6 || !slices.Equal(got, want) {
		t.Fatalf("export events differ from the stored ones:\n got %v\nwant %v", got, want)
	}
	if len(doc.EmailEvents) != 1 || doc.EmailEvents[0]["name"] != "Email Opened" {
		t.Errorf("e-mail events %v, want the open", doc.EmailEvents)
	}
	// Vault traits decrypted, exactly as sent.
	tr := doc.VaultTraits[user]
	if tr["email"] != rtEmail || tr["phone"] != rtPhone || len(doc.VaultTraits) != 1 {
		t.Errorf("vault traits %v", doc.VaultTraits)
	}
	// Profile in its segment.
	if len(doc.Profiles) == 0 || !slices.Contains(doc.Segments.Current, "everyone") {
		t.Errorf("profiles %v, segments %v", doc.Profiles, doc.Segments.Current)
	}
	// Consent now and its history with proof: the SHA-256 of the consent
	// object exactly as sent.
	sum := sha256.Sum256([]byte(rtConsent))
	proof := hex.EncodeToString(sum[:])
	if c := doc.Consent.Current[user]; !slices.Contains(c.Granted, "marketing") || c.Proof != proof || c.Source != "payload" {
		t.Errorf("current consent %+v, want marketing granted with proof %s", c, proof)
	}
	if len(doc.Consent.History) == 0 || doc.Consent.History[0]["h"] != proof || doc.Consent.History[0]["e"] == "" {
		t.Errorf("consent history %v", doc.Consent.History)
	}
	// Per-plugin sync history: what the recorder was given.
	kinds := map[string]bool{}
	for _, h := range doc.SyncHistory {
		if h["p"] == "recorder" {
			kinds[fmt.Sprint(h["k"])] = true
		}
	}
	if !kinds["identify"] || !kinds["segment_entered"] {
		t.Errorf("sync history %v", doc.SyncHistory)
	}
	// Nothing of the bystander.
	if bytes.Contains(body, []byte(bsEmail)) || bytes.Contains(body, []byte("bystander")) {
		t.Error("the export holds the bystander's data")
	}
	// The readable rendering.
	code, page := in.Admin("/admin/v1/privacy/requests/" + id + "/export?format=html")
	if code != 200 || !bytes.Contains(page, []byte("<h1>Your data on demo</h1>")) || !bytes.Contains(page, []byte(rtEmail)) ||
		!bytes.Contains(page, []byte(user)) || !bytes.Contains(page, []byte("Signed Up")) {
		t.Errorf("html export: %d %.300s", code, page)
	}
	// The request keeps the identifier's kind, never its value.
	_, reqBody := in.Admin("/admin/v1/privacy/requests/" + id)
	if bytes.Contains(bytes.ToLower(reqBody), []byte("jane.rights")) {
		t.Errorf("the request shows the identifier's value: %s", reqBody)
	}
	findInStore(t, in, [][]byte{[]byte("jane.rights"), []byte("Jane.Rights")}, "request identifier")
	if strings.Contains(strings.ToLower(in.Logs()), "jane.rights") {
		t.Error("the identifier reached the logs")
	}

	// Rectification replaces the vaulted traits.
	rid := privacyRequest(t, in, `{"type":"rectify","site":"demo","identifier":{"kind":"user_id","value":"`+rtUser+`"},"traits":{"email":"jane.new@example.org"}}`)
	if v := waitRequest(t, in, rid); v.Status != "done" {
		t.Fatalf("rectify: %+v", v.Raw)
	}
	if traits, err := in.Server.Store().VaultTraits(user, "demo"); err != nil || !bytes.Contains(traits, []byte("jane.new@example.org")) || bytes.Contains(traits, []byte(rtPhone)) {
		t.Errorf("traits after rectification: %s, %v", traits, err)
	}
	waitFor(t, "the rectify event on VIGIE_PRIVACY", 10*time.Second, func() bool {
		return len(privacyEvents(t, in, vigiev1.PrivacyAction_PRIVACY_ACTION_RECTIFY)) == 1
	})
}

// findInStore fails when any needle is in any version of any Badger key
// or value.
func findInStore(t *testing.T, in *proxytest.Instance, needles [][]byte, what string) {
	t.Helper()
	err := in.Server.Store().ScanAllVersions(func(k, v []byte) error {
		for _, n := range needles {
			if bytes.Contains(k, n) || bytes.Contains(v, n) {
				return fmt.Errorf("%s %q found under key %q", what, n, k[:min(len(k), 24)])
			}
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// allStreamMessages reads every message of every stream.
func allStreamMessages(t *testing.T, in *proxytest.Instance) map[string][]*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := map[string][]*jetstream.RawStreamMsg{}
	for _, name := range streams.All() {
		st, err := in.Server.Bus().JetStream().Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				t.Fatalf("%s %d: %v", name, seq, err)
			}
			out[name] = append(out[name], m)
		}
	}
	return out
}

// privacyEvents returns the privacy events of action on VIGIE_PRIVACY.
func privacyEvents(t *testing.T, in *proxytest.Instance, action vigiev1.PrivacyAction) []*vigiev1.PrivacyEvent {
	t.Helper()
	var out []*vigiev1.PrivacyEvent
	for _, m := range allStreamMessages(t, in)[streams.Privacy] {
		pe := &vigiev1.PrivacyEvent{}
		if proto.Unmarshal(m.Data, pe) == nil && pe.GetAction() == action {
			out = append(out, pe)
		}
	}
	return out
}

func TestPrivacyEraseLeavesNoTrace(t *testing.T) {
	in, recFile := rightsServer(t, nil)
	sendPerson(t, in, rtUser, rtAnon, rtEmail, rtPhone)
	user, anon := personSubjects(t, in)
	sendPerson(t, in, bsUser, "anon-bystander", bsEmail, "+33 1 23 45 67 89")
	bystander, _ := personSubjects(t, in)
	waitSegmented(t, in, recFile, user)
	waitOutboxEmpty(t, in)
	waitFor(t, "the recorder's input", 30*time.Second, func() bool {
		b, _ := os.ReadFile(recFile)
		return bytes.Count(b, []byte("enrich ")) >= 10 && bytes.Contains(b, []byte("sync identify"))
	})
	needles := [][]byte{[]byte(user), []byte(anon), []byte(rtEmail), []byte(strings.ToLower(rtEmail)), []byte(rtPhone), []byte("+33698765432")}
	// The checks below would prove nothing if the person were not there.
	if b, _ := os.ReadFile(recFile); !bytes.Contains(b, []byte(user)) || !bytes.Contains(b, []byte(anon)) {
		t.Fatal("the recorder never saw the person")
	}
	if n := len(allStreamMessages(t, in)[streams.Events]); n < 10 {
		t.Fatalf("VIGIE_EVENTS holds %d messages", n)
	}

	id := privacyRequest(t, in, `{"type":"erase","site":"demo","identifier":{"kind":"email","value":"`+rtEmail+`"},"suppress":true}`)
	v := waitRequest(t, in, id)
	if v.Status != "done" {
		t.Fatalf("erasure: %+v", v.Raw)
	}
	// Every step done, each plugin's acknowledgement and each stream
	// among them.
	for _, name := range []string{"resolve", "suppress", "publish", "ledger", "events", "subject_index", "links", "profile", "vault",
		"blind_index", "history", "physical", "plugin:geoip", "plugin:segments", "plugin:recorder",
		"stream:VIGIE_EVENTS", "stream:VIGIE_PRIVACY", "stream:VIGIE_ENRICHED", "stream:VIGIE_SEGMENTS", "stream:VIGIE_DEAD", "verify", "receipt"} {
		if st := stepStatus(v, name); st != "done" {
			t.Errorf("step %s is %q, want done (%+v)", name, st, v.Steps)
		}
	}
	// The receipt keeps no identifier.
	_, receipt := in.Admin("/admin/v1/privacy/requests/" + id)
	for _, n := range needles {
		if bytes.Contains(receipt, n) {
			t.Errorf("the receipt holds %q: %s", n, receipt)
		}
	}
	if v.Subjects != 2 {
		t.Errorf("receipt says %d subjects, want 2", v.Subjects)
	}

	// Suppressed: the person's later events are dropped at the door, by
	// user id, by anonymous id and by e-mail, also after a restart (the set
	// is loaded at start); the bystander's are kept.
	in.Restart()
	before := len(adminEvents(t, in, "site=demo"))
	for _, body := range []string{
		`{"userId":"` + rtUser + `","event":"Back again","context":{"consent":` + rtConsent + `}}`,
		`{"anonymousId":"` + rtAnon + `","event":"Back again","context":{"consent":` + rtConsent + `}}`,
		`{"anonymousId":"fresh-device-1","type":"identify","traits":{"email":"JANE.rights@example.org"},"context":{"consent":` + rtConsent + `}}`,
	} {
		path := "/v1/track"
		if strings.Contains(body, "identify") {
			path = "/v1/identify"
		}
		if code, b := in.Post(path, "demo", body); code != 200 {
			t.Fatalf("%s: %d %s", path, code, b)
		}
	}
	if code, b := in.Post("/v1/track", "demo", `{"userId":"`+bsUser+`","event":"Still here","context":{"consent":`+rtConsent+`}}`); code != 200 {
		t.Fatalf("bystander: %d %s", code, b)
	}
	if after := len(adminEvents(t, in, "site=demo")); after != before+1 {
		t.Errorf("%d events stored after the erasure, want only the bystander's one", after-before)
	}

	// Plugin inputs: the recorder forgot the person.
	b, _ := os.ReadFile(recFile)
	for _, n := range needles {
		if bytes.Contains(b, n) {
			t.Errorf("the recorder's input still holds %q", n)
		}
	}
	if !bytes.Contains(b, []byte(bystander)) {
		t.Error("the recorder lost the bystander too: the check proves nothing")
	}
	// Badger: every version of every key, decoded, after flattening.
	if err := in.Server.Store().DB().Flatten(1); err != nil {
		t.Fatal(err)
	}
	findInStore(t, in, needles, "personal datum")
	// JetStream: every message of every stream.
	for name, msgs := range allStreamMessages(t, in) {
		for _, m := range msgs {
			for _, n := range needles {
				if bytes.Contains(m.Data, n) {
					t.Errorf("%s message %d holds %q", name, m.Sequence, n)
				}
			}
		}
	}
	if strings.Contains(in.Logs(), user) || strings.Contains(strings.ToLower(in.Logs()), "jane.rights") {
		t.Error("the logs name the person")
	}
	// The raw files: the JetStream store (overwritten by SecureDeleteMsg),
	// then Badger's once its value log's GC has run over the files written
	// before the erasure.
	in.Stop()
	compactBadger(t, filepath.Join(in.Config.DataDir, "badger"))
	for name, data := range in.DataFiles() {
		for _, n := range needles {
			if bytes.Contains(data, n) {
				t.Errorf("raw file %s holds %q", name, n)
			}
		}
	}
}

// compactBadger opens the Badger dir (a vault key is not needed to compact),
// flattens it and runs the value-log GC until nothing is left to rewrite.
func compactBadger(t *testing.T, dir string) {
	t.Helper()
	s, err := storage.Open(storage.Config{Dir: dir, VaultKey: bytes.Repeat([]byte{7}, 32), MinFreeBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.DB().Flatten(1); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if s.DB().RunValueLogGC(0.0001) != nil {
			break
		}
	}
}

func TestPrivacyObjectionAndRestrictionApplyToTheNextEvent(t *testing.T) {
	in, recFile := rightsServer(t, nil)
	sendPerson(t, in, rtUser, rtAnon, rtEmail, rtPhone)
	user, _ := personSubjects(t, in)
	waitSegmented(t, in, recFile, user)

	lastEvent := func(name string) map[string]any {
		t.Helper()
		for _, ev := range adminEvents(t, in, "site=demo") {
			if ev["name"] == name {
				return ev
			}
		}
		t.Fatalf("no event %q stored", name)
		return nil
	}
	track := func(name string) {
		t.Helper()
		if code, b := in.Post("/v1/track", "demo", `{"userId":"`+rtUser+`","event":"`+name+`","context":{"consent":`+rtConsent+`}}`); code != 200 {
			t.Fatalf("track: %d %s", code, b)
		}
	}

	// Objection to marketing (the default), by user id.
	id := privacyRequest(t, in, `{"type":"object","site":"demo","identifier":{"kind":"user_id","value":"`+rtUser+`"}}`)
	if v := waitRequest(t, in, id); v.Status != "done" || stepStatus(v, "ledger") != "done" || stepStatus(v, "profile") != "done" {
		t.Fatalf("objection: %+v", v.Raw)
	}
	// The payload grants marketing: the next event is denied it anyway.
	track("After objection")
	ev := lastEvent("After objection")
	if ps := fmt.Sprint(ev["purposes"]); strings.Contains(ps, "marketing") || !strings.Contains(ps, "analytics") {
		t.Errorf("event after the objection has purposes %s, want analytics without marketing", ps)
	}
	// The profile was dropped and its exit published; the objection too.
	waitFor(t, "the segment exit and the object event", 20*time.Second, func() bool {
		exited := false
		for _, m := range allStreamMessages(t, in)[streams.Segments] {
			c := &vigiev1.SegmentChange{}
			exited = exited || (proto.Unmarshal(m.Data, c) == nil && c.GetSubject() == user && c.GetTransition() == vigiev1.Transition_TRANSITION_EXITED)
		}
		obj := privacyEvents(t, in, vigiev1.PrivacyAction_PRIVACY_ACTION_OBJECT)
		return exited && len(obj) == 1 && slices.Equal(obj[0].GetObjected(), []string{"marketing"}) && slices.Contains(obj[0].GetSubjects(), user)
	})
	// The recorded choice is still the person's (marketing granted); only
	// the objection overrides it.
	e, err := in.Server.Store().Consent(context.Background(), "demo", user)
	if err != nil || !slices.Equal(e.Objected, []string{"marketing"}) {
		t.Errorf("ledger entry %+v, %v", e, err)
	}
	// Lifted: marketing is back with the next event that grants it.
	id = privacyRequest(t, in, `{"type":"object","site":"demo","identifier":{"kind":"user_id","value":"`+rtUser+`"},"lift":true}`)
	waitRequest(t, in, id)
	track("After lift")
	if ps := fmt.Sprint(lastEvent("After lift")["purposes"]); !strings.Contains(ps, "marketing") {
		t.Errorf("event after the lift has purposes %s", ps)
	}
	// Profiled again (events accepted before a restriction are still
	// profiled when they reach the segment stage after it).
	waitFor(t, "the profile back after the lift", 30*time.Second, func() bool {
		p, err := in.Server.Store().Profile(context.Background(), "demo", user)
		return err == nil && p.Count("track", "After lift", 24*time.Hour, time.Now().UnixMilli()) == 1
	})

	// Restriction: the next event is anonymous whatever it grants.
	id = privacyRequest(t, in, `{"type":"restrict","site":"demo","identifier":{"kind":"cookie","value":"`+rtAnon+`"}}`)
	if v := waitRequest(t, in, id); v.Status != "done" || v.Subjects != 2 {
		t.Fatalf("restriction: %+v", v.Raw)
	}
	track("After restriction")
	ev = lastEvent("After restriction")
	if ev["mode"] != "anonymous" || ev["subject"] != nil || ev["user_id"] != nil {
		t.Errorf("event after the restriction: %v, want anonymous", ev)
	}
	waitFor(t, "the restrict event", 10*time.Second, func() bool {
		return len(privacyEvents(t, in, vigiev1.PrivacyAction_PRIVACY_ACTION_RESTRICT)) == 1
	})
	if _, err := in.Server.Store().Profile(context.Background(), "demo", user); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("profile after the restriction: %v", err)
	}
}

func TestPrivacyRequestSurvivesRestart(t *testing.T) {
	hold := filepath.Join(t.TempDir(), "hold")
	if err := os.WriteFile(hold, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	in, recFile := rightsServer(t, map[string]any{"hold_forget": hold})
	sendPerson(t, in, rtUser, rtAnon, rtEmail, rtPhone)
	user, _ := personSubjects(t, in)
	waitSegmented(t, in, recFile, user)

	id := privacyRequest(t, in, `{"type":"erase","site":"demo","identifier":{"kind":"user_id","value":"`+rtUser+`"}}`)
	// The recorder cannot forget yet: its step waits while the others are
	// done.
	waitFor(t, "every plugin step but the recorder's", 30*time.Second, func() bool {
		v := getRequest(t, in, id)
		return stepStatus(v, "plugin:geoip") == "done" && stepStatus(v, "plugin:segments") == "done" && stepStatus(v, "physical") == "done"
	})
	if v := getRequest(t, in, id); stepStatus(v, "plugin:recorder") != "pending" || v.Status != "running" {
		t.Fatalf("before the restart: %+v", v.Raw)
	}
	in.Restart()
	if v := getRequest(t, in, id); stepStatus(v, "plugin:recorder") != "pending" {
		t.Fatalf("after the restart: %+v", v.Raw)
	}
	if err := os.Remove(hold); err != nil {
		t.Fatal(err)
	}
	v := waitRequest(t, in, id)
	if v.Status != "done" || stepStatus(v, "plugin:recorder") != "done" || stepStatus(v, "stream:VIGIE_EVENTS") != "done" {
		t.Fatalf("after the restart the request did not complete: %+v", v.Raw)
	}
	if b, _ := os.ReadFile(recFile); bytes.Contains(b, []byte(user)) {
		t.Error("the recorder did not forget the person")
	}
}

func TestPrivacyRequestListHasDeadlines(t *testing.T) {
	in := proxytest.Start(t)
	sendPerson(t, in, rtUser, rtAnon, rtEmail, rtPhone)
	a := privacyRequest(t, in, `{"type":"access","site":"demo","identifier":{"kind":"user_id","value":"`+rtUser+`"}}`)
	waitRequest(t, in, a)
	b := privacyRequest(t, in, `{"type":"object","site":"demo","identifier":{"kind":"anonymous_id","value":"`+rtAnon+`"},"purposes":["marketing","personalization"]}`)
	waitRequest(t, in, b)

	list := func(q string) []map[string]any {
		t.Helper()
		code, body := in.Admin("/admin/v1/privacy/requests" + q)
		if code != 200 {
			t.Fatalf("list: %d %s", code, body)
		}
		var out struct{ Requests []map[string]any }
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatal(err)
		}
		return out.Requests
	}
	all := list("")
	if len(all) != 2 || all[0]["id"] != b || all[1]["id"] != a {
		t.Fatalf("list %v, want the two requests newest first", all)
	}
	for _, r := range all {
		created, _ := time.Parse(time.RFC3339Nano, r["created_at"].(string))
		deadline, _ := time.Parse(time.RFC3339Nano, r["deadline"].(string))
		if !deadline.Equal(created.AddDate(0, 1, 0)) {
			t.Errorf("deadline %v for a request made %v: want one month later (Art. 12(3))", deadline, created)
		}
	}
	if got := list("?type=object"); len(got) != 1 || got[0]["id"] != b {
		t.Errorf("filter by type: %v", got)
	}
	if got := list("?status=pending"); len(got) != 0 {
		t.Errorf("filter by status: %v", got)
	}
	// An open request shows its days left.
	id := privacyRequest(t, in, `{"type":"erase","site":"demo","identifier":{"kind":"user_id","value":"nobody-known"}}`)
	code, body := in.Admin("/admin/v1/privacy/requests/" + id)
	var v map[string]any
	_ = json.Unmarshal(body, &v)
	if code != 200 || (v["status"] != "done" && (v["days_left"].(float64) < 28 || v["days_left"].(float64) > 31)) {
		t.Errorf("open request %v", v)
	}
}

func TestPrivacyBadRequestsNameTheField(t *testing.T) {
	in := proxytest.Start(t)
	for _, tc := range []struct{ body, field string }{
		{`{"site":"demo","identifier":{"kind":"email","value":"a@b.c"}}`, "type"},
		{`{"type":"forget","site":"demo","identifier":{"kind":"email","value":"a@b.c"}}`, "type"},
		{`{"type":"erase","site":"nope","identifier":{"kind":"email","value":"a@b.c"}}`, "site"},
		{`{"type":"erase","site":"demo"}`, "identifier"},
		{`{"type":"erase","site":"demo","identifier":{"value":"a@b.c"}}`, "identifier.kind"},
		{`{"type":"erase","site":"demo","identifier":{"kind":"ssn","value":"1"}}`, "identifier.kind"},
		{`{"type":"erase","site":"demo","identifier":{"kind":"email","value":" "}}`, "identifier.value"},
		{`{"type":"erase","site":"demo","identifier":{"kind":"email","value":"not-an-address"}}`, "identifier.value"},
		{`{"type":"access","site":"demo","identifier":{"kind":"email","value":"a@b.c"},"suppress":true}`, "suppress"},
		{`{"type":"erase","site":"demo","identifier":{"kind":"email","value":"a@b.c"},"purposes":["marketing"]}`, "purposes"},
		{`{"type":"object","site":"demo","identifier":{"kind":"email","value":"a@b.c"},"purposes":["marketing","spam"]}`, "purposes[1]"},
		{`{"type":"erase","site":"demo","identifier":{"kind":"email","value":"a@b.c"},"lift":true}`, "lift"},
		{`{"type":"erase","site":"demo","identifier":{"kind":"email","value":"a@b.c"},"traits":{"email":"x@y.z"}}`, "traits"},
		{`{"type":"rectify","site":"demo","identifier":{"kind":"email","value":"a@b.c"}}`, "traits"},
		{`{"type":"rectify","site":"demo","identifier":{"kind":"email","value":"a@b.c"},"traits":"x"}`, "traits"},
		{`{"type":"erase","site":"demo","identifier":{"kind":"email","value":"a@b.c"},"everything":true}`, "everything"},
		{`{"type":"erase","site":"demo","identifier":{"kind":"email","value":7}}`, "identifier.value"},
		{`{"type":`, ""},
	} {
		code, body := in.Do("POST", "/admin/v1/privacy/requests", []byte(tc.body), http.Header{"Authorization": {"Bearer " + in.AdminToken()}})
		m := decodeErr(t, body)
		if code != 400 || fmt.Sprint(m["field"]) != tc.field && !(tc.field == "" && m["field"] == nil) {
			t.Errorf("%s: %d %s, want 400 naming %q", tc.body, code, body, tc.field)
		}
		if bytes.Contains(body, []byte("json:")) || bytes.Contains(body, []byte("a@b.c")) {
			t.Errorf("%s: the answer quotes Go or the identifier: %s", tc.body, body)
		}
	}
	if code, _ := in.Do("POST", "/admin/v1/privacy/requests", []byte(`{}`), nil); code != 401 {
		t.Errorf("without the admin token: %d", code)
	}
	if code, body := in.Admin("/admin/v1/privacy/requests/01NOPE"); code != 404 {
		t.Errorf("unknown id: %d %s", code, body)
	}
	if code, body := in.Admin("/admin/v1/privacy/requests?status=weird"); code != 400 || !bytes.Contains(body, []byte(`"field":"status"`)) {
		t.Errorf("bad filter: %d %s", code, body)
	}
	// Nothing was recorded for the refused requests.
	if _, body := in.Admin("/admin/v1/privacy/requests"); !bytes.Contains(body, []byte(`"requests":[]`)) {
		t.Errorf("refused requests were recorded: %s", body)
	}
}
