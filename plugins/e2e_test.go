package plugins_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/internal/testplugins"
	"github.com/vigie-dev/vigie/plugins"
	"github.com/vigie-dev/vigie/plugins/builtin"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/proxytest"
	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
)

// TestMain lets this test binary serve the built-in plugins and the test
// plugins when the runtime re-executes it as "<binary> plugin <name>".
func TestMain(m *testing.M) {
	builtin.Register("flaky", func() { sdk.Serve(testplugins.Flaky()) })
	builtin.Register("crm", func() { sdk.Serve(testplugins.CRM()) })
	builtin.Register("recorder", func() {
		// Enricher and segmenter only: the hang tests count what it does.
		p := testplugins.Recorder()
		p.Syncer = nil
		sdk.Serve(p)
	})
	builtin.MaybeRun(os.Args)
	os.Exit(m.Run())
}

// fastRuntime retries quickly so that tests are short.
func fastRuntime(c *config.Config) {
	c.PluginRuntime = config.PluginRuntime{
		MaxDeliver:        3,
		Backoff:           []config.Duration{config.Duration(50 * time.Millisecond)},
		CallTimeout:       config.Duration(2 * time.Second),
		BatchSize:         50,
		MaxRestarts:       1000,
		RestartBackoff:    config.Duration(20 * time.Millisecond),
		MaxRestartBackoff: config.Duration(200 * time.Millisecond),
		ProfilePurposes:   []consent.Purpose{"personalization", "marketing"},
		ProfileTTL:        config.Duration(30 * 24 * time.Hour),
	}
}

// withPlugins configures the plugins of a test server.
func withPlugins(ps ...config.Plugin) proxytest.Option {
	return func(c *config.Config) {
		fastRuntime(c)
		c.Plugins = ps
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// streamMsgs returns the messages of stream whose subject starts with prefix.
func streamMsgs(t *testing.T, in *proxytest.Instance, stream, prefix string) []*jetstream.RawStreamMsg {
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
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		if strings.HasPrefix(m.Subject, prefix) {
			out = append(out, m)
		}
	}
	return out
}

// writeGeoDB writes a GeoIP2-City database with 81.2.69.0/24 in Paris.
func writeGeoDB(t *testing.T) string {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoIP2-City", RecordSize: 24, IncludeReservedNetworks: true})
	if err != nil {
		t.Fatal(err)
	}
	_, n, _ := net.ParseCIDR("81.2.69.0/24")
	rec := mmdbtype.Map{
		"continent": mmdbtype.Map{"code": mmdbtype.String("EU")},
		"country":   mmdbtype.Map{"iso_code": mmdbtype.String("FR"), "names": mmdbtype.Map{"en": mmdbtype.String("France")}},
		"city":      mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String("Paris")}},
		"location":  mmdbtype.Map{"time_zone": mmdbtype.String("Europe/Paris"), "latitude": mmdbtype.Float64(48.85)},
	}
	if err := tree.Insert(n, rec); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "city.mmdb")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tree.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return path
}

// page sends a page view of path from visitor with the given consent.
func page(t *testing.T, in *proxytest.Instance, visitor, path, consentJSON string) {
	t.Helper()
	body := fmt.Sprintf(`{"type":"page","anonymousId":%q,"properties":{"path":%q},
	 "context":{"ip":"81.2.69.142","consent":%s}}`, visitor, path, consentJSON)
	if code, b := in.Post("/v1/page", "demo", body); code != 200 {
		t.Fatalf("page: %d %s", code, b)
	}
}

func TestGeoIPThenSegmentsThenWithdrawal(t *testing.T) {
	db := writeGeoDB(t)
	in := proxytest.Start(t, withPlugins(
		config.Plugin{Name: "geoip", Config: map[string]any{"database": db}},
		config.Plugin{Name: "segments", Config: map[string]any{
			"segments": []any{map[string]any{
				"name": "fr-pricing",
				"when": `profile.count("page", "/pricing*", "7d") >= 2 && profile.country == "FR"`,
			}},
			"scoring": []any{map[string]any{"name": "view", "when": `event.type == "page"`, "points": 5}},
		}},
	))
	granted := `{"analytics":true,"personalization":true}`
	page(t, in, "visitor-1", "/pricing", granted)
	page(t, in, "visitor-1", "/pricing/teams", granted)
	page(t, in, "visitor-1", "/pricing", granted)

	var entered []*jetstream.RawStreamMsg
	waitFor(t, "segment entered", 20*time.Second, func() bool {
		entered = streamMsgs(t, in, streams.Segments, "vigie.segments.demo.fr-pricing.entered")
		return len(entered) > 0
	})
	// The enriched events carry the country; the address itself never
	// appears, only its /24 prefix.
	enriched := streamMsgs(t, in, streams.Enriched, "vigie.enriched.demo.page")
	if len(enriched) != 3 {
		t.Fatalf("%d enriched page events, want 3", len(enriched))
	}
	for _, m := range enriched {
		var ev vigiev1.Event
		if err := proto.Unmarshal(m.Data, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.GetGeo().GetCountry() != "FR" || ev.GetGeo().GetCity() != "Paris" {
			t.Fatalf("event not enriched: %v", ev.GetGeo())
		}
		if strings.Contains(string(m.Data), "81.2.69.142") || ev.GetIpPrefix() != "81.2.69.0/24" {
			t.Fatalf("address leaked or prefix lost: %q", ev.GetIpPrefix())
		}
	}
	// Wait for the third event to be segmented, then check the profile.
	var prof *storage.Profile
	var subject string
	var change vigiev1.SegmentChange
	if err := proto.Unmarshal(entered[0].Data, &change); err != nil {
		t.Fatal(err)
	}
	subject = change.GetSubject()
	waitFor(t, "score of 3 page views", 20*time.Second, func() bool {
		p, err := in.Server.Store().Profile(context.Background(), "demo", subject)
		prof = p
		return err == nil && p.Score == 15
	})
	if prof.Country != "FR" || len(prof.Segments) != 1 || prof.Segments[0] != "fr-pricing" {
		t.Fatalf("profile: country %q segments %v", prof.Country, prof.Segments)
	}
	if n := len(streamMsgs(t, in, streams.Segments, "vigie.segments.")); n != 1 {
		t.Fatalf("%d segment changes, want exactly 1 (entered once)", n)
	}

	// Withdrawing personalization deletes the profile and leaves the segment.
	page(t, in, "visitor-1", "/pricing", `{"analytics":true,"personalization":false}`)
	waitFor(t, "segment exited", 20*time.Second, func() bool {
		return len(streamMsgs(t, in, streams.Segments, "vigie.segments.demo.fr-pricing.exited")) == 1
	})
	if _, err := in.Server.Store().Profile(context.Background(), "demo", subject); err == nil {
		t.Fatal("profile kept after consent was withdrawn")
	}
	code, body := in.Admin("/admin/v1/segments?site=demo")
	var seg struct {
		Segments []struct {
			Name string
			Size int64
		}
		Recent []json.RawMessage `json:"recent_changes"`
	}
	if code != 200 || json.Unmarshal(body, &seg) != nil {
		t.Fatalf("admin segments: %d %s", code, body)
	}
	if len(seg.Segments) != 1 || seg.Segments[0].Name != "fr-pricing" || seg.Segments[0].Size != 0 || len(seg.Recent) != 2 {
		t.Fatalf("admin segments: %s", body)
	}
}

// trackEvent is one event of the flaky test.
type trackEvent struct {
	n        int
	name     string
	purposes string
}

func TestFlakyPluginEveryEventProcessedOrDeadLettered(t *testing.T) {
	in := proxytest.Start(t, withPlugins(config.Plugin{Name: "flaky"}))
	var sent []trackEvent
	send := func(e trackEvent) {
		body := fmt.Sprintf(`{"type":"track","event":%q,"anonymousId":"v-%d","properties":{"n":%d},"context":{"consent":%s}}`,
			e.name, e.n, e.n, e.purposes)
		if code, b := in.Post("/v1/track", "demo", body); code != 200 {
			t.Fatalf("track: %d %s", code, b)
		}
		sent = append(sent, e)
	}
	withAnalytics := `{"analytics":true,"personalization":true}`
	for n := 1; n <= 30; n++ {
		send(trackEvent{n: n, name: "Step", purposes: withAnalytics})
	}
	// The plugin declared analytics: it must never see these.
	for _, n := range []int{100, 101, 103} {
		send(trackEvent{n: n, name: "Step", purposes: `{"analytics":false,"personalization":true}`})
	}
	send(trackEvent{n: 200, name: "Hang", purposes: withAnalytics})
	send(trackEvent{n: 202, name: "Emit", purposes: withAnalytics})

	var pids []int
	waitFor(t, "a flaky plugin process", 10*time.Second, func() bool {
		pids = pluginPIDs(t, "flaky") // it may be between a crash and its restart
		return len(pids) > 0
	})
	ids := eventIDs(t, in)
	store := in.Server.Store()
	ctx := context.Background()
	done := func(id string) bool {
		_, err := store.KVGet(ctx, "flaky", "done/"+id)
		return err == nil
	}
	poison := func(n int) bool { return n%3 == 0 && n%2 == 1 && n < 100 }
	dead := map[string]plugins.DeadLetter{}
	waitFor(t, "every event processed or dead-lettered", 60*time.Second, func() bool {
		pids = append(pids, pluginPIDs(t, "flaky")...)
		st := status(t, in, "flaky")
		for _, d := range st.RecentDead {
			dead[d.EventID] = d
		}
		for _, e := range sent {
			id := ids[e.n]
			switch {
			case strings.Contains(e.purposes, `"analytics":false`):
			case poison(e.n):
				if _, ok := dead[id]; !ok {
					return false
				}
			default:
				if !done(id) {
					return false
				}
			}
		}
		return true
	})
	for _, e := range sent {
		id := ids[e.n]
		if strings.Contains(e.purposes, `"analytics":false`) && done(id) {
			t.Errorf("event %d reached a plugin without the purpose it declared", e.n)
		}
		if poison(e.n) {
			d := dead[id]
			if !strings.Contains(d.Error, "panic: flaky: poison event") || d.Deliveries != 3 {
				t.Errorf("event %d dead-lettered with %q after %d deliveries", e.n, d.Error, d.Deliveries)
			}
			if done(id) {
				t.Errorf("poison event %d was also processed", e.n)
			}
		}
	}
	if kv := scanKV(t, store, "flaky", "violation/"); len(kv) > 0 {
		t.Fatalf("plugin saw events without its purposes: %v", kv)
	}
	if v, err := store.KVGet(ctx, "flaky", "refused/"+ids[202]); err != nil || !strings.HasPrefix(string(v), "refused: ") {
		t.Fatalf("undeclared Emit not refused at the call: %q %v", v, err)
	}
	st := status(t, in, "flaky")
	if st.Restarts < 6 || st.DeadLetters != 5 || st.State != plugins.StateRunning {
		t.Fatalf("status: state %s restarts %d dead %d", st.State, st.Restarts, st.DeadLetters)
	}

	// Replay sends the dead letters to the plugin again, and only to it:
	// they fail again and come back.
	code, body := in.Do("POST", "/admin/v1/plugins/flaky/replay", nil, adminHdr(in))
	if code != 200 || !strings.Contains(string(body), `"replayed":5`) {
		t.Fatalf("replay: %d %s", code, body)
	}
	waitFor(t, "replayed dead letters to fail again", 60*time.Second, func() bool {
		s := status(t, in, "flaky")
		return s.DeadLetters == 5 && s.Restarts >= st.Restarts+5
	})
	if code, body := in.Do("POST", "/admin/v1/plugins/nope/replay", nil, adminHdr(in)); code != 404 {
		t.Fatalf("replay of an unknown plugin: %d %s", code, body)
	}

	// Shutting Vigie down stops every plugin process.
	pids = append(pids, pluginPIDs(t, "flaky")...)
	in.Stop()
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("plugin process %d still running after shutdown", pid)
		}
	}
}

// adminHdr carries the admin token.
func adminHdr(in *proxytest.Instance) http.Header {
	return http.Header{"Authorization": {"Bearer " + in.AdminToken()}}
}

// status returns one plugin's admin status.
func status(t *testing.T, in *proxytest.Instance, name string) plugins.Status {
	t.Helper()
	code, body := in.Admin("/admin/v1/plugins")
	var out struct{ Plugins []plugins.Status }
	if code != 200 || json.Unmarshal(body, &out) != nil {
		t.Fatalf("admin plugins: %d %s", code, body)
	}
	for _, p := range out.Plugins {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("plugin %s not listed: %s", name, body)
	return plugins.Status{}
}

// eventIDs maps property n to the stored event id.
func eventIDs(t *testing.T, in *proxytest.Instance) map[int]string {
	t.Helper()
	code, body := in.Admin("/admin/v1/events?site=demo&limit=1000")
	var out struct {
		Events []struct {
			ID         string `json:"id"`
			Properties struct {
				N int `json:"n"`
			} `json:"properties"`
		} `json:"events"`
	}
	if code != 200 || json.Unmarshal(body, &out) != nil {
		t.Fatalf("admin events: %d %s", code, body)
	}
	ids := map[int]string{}
	for _, e := range out.Events {
		ids[e.Properties.N] = e.ID
	}
	return ids
}

// scanKV lists a plugin's keys with prefix.
func scanKV(t *testing.T, s *storage.Store, plugin, prefix string) []string {
	t.Helper()
	var out []string
	err := s.ScanAllVersions(func(k, _ []byte) error {
		if strings.Contains(string(k), plugin+"\x00"+prefix) {
			out = append(out, string(k))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// pluginPIDs lists the running processes of built-in plugin name started
// by this test binary.
func pluginPIDs(t *testing.T, name string) []int {
	t.Helper()
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00")
		if len(args) == 3 && args[1] == builtin.Subcommand && args[2] == name && args[0] == os.Args[0] && alive(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

func TestExternalPluginChecksumAndManifest(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "campaign-normalizer")
	if out, err := exec.Command("go", "build", "-o", bin, "../examples/plugin-campaign").CombinedOutput(); err != nil {
		t.Fatalf("build example plugin: %v\n%s", err, out)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	good := hex.EncodeToString(sum[:])
	in := proxytest.Start(t, withPlugins(
		config.Plugin{Name: "campaign-normalizer", Path: bin, SHA256: good},
		config.Plugin{Name: "tampered", Path: bin, SHA256: strings.Repeat("0", 64)},
		config.Plugin{Name: "renamed", Path: bin, SHA256: good},
	))
	body := `{"type":"page","anonymousId":"a1","properties":{"path":"/"},
	 "context":{"consent":{"analytics":true},"campaign":{"source":"FB","medium":"Paid"}}}`
	if code, b := in.Post("/v1/page", "demo", body); code != 200 {
		t.Fatalf("page: %d %s", code, b)
	}
	var msgs []*jetstream.RawStreamMsg
	waitFor(t, "enriched event", 20*time.Second, func() bool {
		msgs = streamMsgs(t, in, streams.Enriched, "vigie.enriched.demo.page")
		return len(msgs) == 1
	})
	var ev vigiev1.Event
	if err := proto.Unmarshal(msgs[0].Data, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.GetCampaign().GetSource() != "facebook" || ev.GetCampaign().GetMedium() != "cpc" {
		t.Fatalf("campaign not normalized by the external plugin: %v", ev.GetCampaign())
	}
	for name, want := range map[string]string{"tampered": "checksum", "renamed": `manifest says "campaign-normalizer"`} {
		st := status(t, in, name)
		if st.State != plugins.StateFailed || !strings.Contains(st.LastError, want) {
			t.Errorf("%s: state %s, last error %q, want failed with %q", name, st.State, st.LastError, want)
		}
	}
	if st := status(t, in, "campaign-normalizer"); st.State != plugins.StateRunning || st.Builtin || st.Processed != 1 {
		t.Errorf("campaign-normalizer: %+v", st)
	}
	if code, body := in.Admin("/admin/v1/enriched?site=demo"); code != 200 || !strings.Contains(string(body), `"source":"facebook"`) {
		t.Errorf("admin enriched: %d %s", code, body)
	}
	code, metrics := in.Do("GET", "/metrics", nil, nil)
	for _, want := range []string{`vigie_plugin_processed_total{plugin="campaign-normalizer"} 1`, `vigie_plugin_up{plugin="tampered"} 0`,
		`vigie_plugin_up{plugin="campaign-normalizer"} 1`} {
		if code != 200 || !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestSyncerGetsContactsOnlyWithConsent(t *testing.T) {
	rec := filepath.Join(t.TempDir(), "crm.txt")
	in := proxytest.Start(t, withPlugins(
		config.Plugin{Name: "segments", Config: map[string]any{"segments": []any{
			map[string]any{"name": "everyone", "when": "true"},
		}}},
		config.Plugin{Name: "crm", Config: map[string]any{"file": rec}},
	))
	identify := func(user, email, consentJSON string) {
		body := fmt.Sprintf(`{"type":"identify","userId":%q,"traits":{"email":%q,"plan":"pro"},"context":{"consent":%s}}`,
			user, email, consentJSON)
		if code, b := in.Post("/v1/identify", "demo", body); code != 200 {
			t.Fatalf("identify: %d %s", code, b)
		}
	}
	identify("u-marketing", "yes@example.org", `{"analytics":true,"personalization":true,"marketing":true}`)
	identify("u-no-marketing", "no@example.org", `{"analytics":true,"personalization":true}`)
	var got string
	waitFor(t, "CRM sync of the identify, the segment entry and both consent changes", 20*time.Second, func() bool {
		b, _ := os.ReadFile(rec)
		got = string(b)
		return strings.Count(got, "sync ") >= 4
	})
	// Give the other subject's items time to (wrongly) arrive.
	waitFor(t, "both subjects segmented", 20*time.Second, func() bool {
		code, body := in.Admin("/admin/v1/segments?site=demo")
		return code == 200 && strings.Contains(string(body), `"size":2`)
	})
	time.Sleep(300 * time.Millisecond)
	b, _ := os.ReadFile(rec)
	got = string(b)
	// The identify and the segment entry carry the contact; nothing of the
	// other subject does. The consent change granting marketing carries it
	// too when the segment stage had made the subject's profile (whose
	// purposes say what the subject grants now) before the privacy item
	// was synced: they come through different consumers, and under load
	// the privacy item may come first, then without the contact.
	withContact := 0
	for _, item := range strings.Split("\n"+got, "\nsync ") {
		if strings.Contains(item, "yes@example.org") && (strings.HasPrefix(item, "identify") || strings.HasPrefix(item, "segment_change")) {
			withContact++
		}
	}
	if n := strings.Count(got, "yes@example.org"); withContact != 2 || n < 2 || n > 3 {
		t.Fatalf("CRM did not get the consenting contact with the identify and the segment entry (and at most the consent change):\n%s", got)
	}
	if strings.Contains(got, "no@example.org") || strings.Count(got, "sync ") != 4 {
		t.Fatalf("CRM got a subject without marketing consent:\n%s", got)
	}
	// Both recorded consent choices reach the CRM (the refusal without
	// contact details: it never had them), so it can stop mailing someone
	// who withdrew.
	if n := strings.Count(got, "PRIVACY_ACTION_CONSENT_CHANGED"); n != 2 {
		t.Fatalf("%d consent changes synced, want 2:\n%s", n, got)
	}
}

func TestRestartLosesNothingAndCountsOnce(t *testing.T) {
	in := proxytest.Start(t, withPlugins(
		config.Plugin{Name: "segments", Config: map[string]any{"segments": []any{
			map[string]any{"name": "five", "when": `profile.count("page", "/docs*", "30d") >= 5`},
		}}},
	))
	granted := `{"analytics":true,"personalization":true}`
	for i := 0; i < 6; i++ {
		page(t, in, "reader", fmt.Sprintf("/docs/%d", i), granted)
	}
	in.Restart() // some events may not have been segmented yet
	if n := len(pluginPIDs(t, "segments")); n != 1 {
		t.Fatalf("%d segments processes after restart, want 1", n)
	}
	for i := 6; i < 10; i++ {
		page(t, in, "reader", fmt.Sprintf("/docs/%d", i), granted)
	}
	var subject string
	waitFor(t, "segment entered", 20*time.Second, func() bool {
		msgs := streamMsgs(t, in, streams.Segments, "vigie.segments.demo.five.entered")
		if len(msgs) == 0 {
			return false
		}
		var c vigiev1.SegmentChange
		if err := proto.Unmarshal(msgs[0].Data, &c); err != nil {
			t.Fatal(err)
		}
		subject = c.GetSubject()
		return true
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		p, err := in.Server.Store().Profile(context.Background(), "demo", subject)
		if err == nil && p.Count("page", "/docs*", 30*24*time.Hour, time.Now().UnixMilli()) == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Logf("profile %+v err %v", p, err)
			for _, stream := range []string{"VIGIE_EVENTS", streams.Enriched} {
				for _, m := range streamMsgs(t, in, stream, "vigie.") {
					var ev vigiev1.Event
					_ = proto.Unmarshal(m.Data, &ev)
					t.Logf("%s seq %d %s %s %s", stream, m.Sequence, m.Subject, ev.GetId(), ev.GetPage().GetPath())
				}
			}
			st := status(t, in, "segments")
			t.Fatalf("not all 10 events counted: status %+v\n%s", st, in.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	p, _ := in.Server.Store().Profile(context.Background(), "demo", subject)
	if n := p.Count("page", "*", 30*24*time.Hour, time.Now().UnixMilli()); n != 10 {
		t.Fatalf("profile counted %d page views, want exactly 10", n)
	}
	if n := len(streamMsgs(t, in, streams.Segments, "vigie.segments.")); n != 1 {
		t.Fatalf("%d segment changes, want 1", n)
	}
}

// TestLostStreamsAreDeclaredAgain: NATS loses the segments stream (a
// segment change cannot be published), then every stream and consumer. The
// runtime and the publisher declare them again and carry on: each later
// segment entry is published.
func TestLostStreamsAreDeclaredAgain(t *testing.T) {
	in := proxytest.Start(t, withPlugins(
		config.Plugin{Name: "segments", Config: map[string]any{"segments": []any{
			map[string]any{"name": "everyone", "when": "true"},
		}}},
	))
	t.Cleanup(func() {
		if t.Failed() {
			for _, l := range strings.Split(in.Logs(), "\n") {
				if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
					t.Log(l)
				}
			}
		}
	})
	granted := `{"analytics":true,"personalization":true}`
	entered := func(n int) func() bool {
		return func() bool {
			st, err := in.Server.Bus().JetStream().Stream(context.Background(), streams.Segments)
			if err != nil {
				return false
			}
			info, err := st.Info(context.Background())
			return err == nil && info.State.Msgs == uint64(n)
		}
	}
	page(t, in, "v-a", "/", granted)
	waitFor(t, "first segment entry", 20*time.Second, entered(1))
	js := in.Server.Bus().JetStream()
	ctx := context.Background()

	// The segment change of the next event finds no stream to go to.
	if err := js.DeleteStream(ctx, streams.Segments); err != nil {
		t.Fatal(err)
	}
	page(t, in, "v-b", "/", granted)
	waitFor(t, "segment entry after VIGIE_SEGMENTS was lost", 30*time.Second, entered(1))

	// Every stream, and with them every consumer, is lost (deleted at
	// once: the runtime waits streams.DefaultSettle before declaring).
	time.Sleep(streams.DefaultInterval) // past the rate limit of the last round
	for _, st := range streams.All() {
		if err := js.DeleteStream(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	page(t, in, "v-c", "/", granted)
	waitFor(t, "segment entry after every stream was lost", 30*time.Second, entered(1))
	if n := len(streamMsgs(t, in, streams.Enriched, "vigie.enriched.demo.page")); n != 1 {
		t.Fatalf("%d enriched events after the loss, want 1", n)
	}
	if st := status(t, in, "segments"); len(st.Consumers) == 0 || st.Lag != 0 {
		t.Fatalf("segments consumers after the loss: %+v (lag %d)", st.Consumers, st.Lag)
	}
}

// Within one batch the segment stage keeps each subject's order: a profile
// observed, then deleted by a withdrawal, stays deleted, while the events
// of other visitors without a profiling purpose (interleaved, as on any
// site) do not disturb the subjects around them.
func TestSegmentStageKeepsEachSubjectsOrderInABatch(t *testing.T) {
	in := proxytest.Start(t, withPlugins(config.Plugin{Name: "segments", Config: map[string]any{
		"scoring": []any{map[string]any{"name": "view", "when": `event.type == "page"`, "points": 5}},
	}}))
	const (
		granted = `{"analytics":true,"personalization":true}`
		refused = `{"analytics":true,"personalization":false}`
	)
	ev := func(visitor, path, consent string) string {
		return fmt.Sprintf(`{"type":"page","anonymousId":%q,"properties":{"path":%q},"context":{"consent":%s}}`, visitor, path, consent)
	}
	batch := []string{
		ev("x", "/x1", granted), ev("y", "/y1", refused), ev("z", "/z1", granted), ev("x", "/x2", granted),
		ev("y", "/y2", refused), ev("x", "/x3", refused), // x withdraws after two views
		ev("z", "/z2", granted), ev("y", "/y3", refused), ev("w", "/w1", refused), ev("w", "/w2", granted),
	}
	if code, b := in.Post("/v1/batch", "demo", `{"batch":[`+strings.Join(batch, ",")+`]}`); code != 200 {
		t.Fatalf("batch: %d %s", code, b)
	}
	// The subject of each visitor, from the stored events' paths.
	subjects := map[string]string{}
	waitFor(t, "10 events on the bus", 10*time.Second, func() bool {
		return len(streamMsgs(t, in, streams.Events, "vigie.events.")) == len(batch)
	})
	for _, m := range streamMsgs(t, in, streams.Events, "vigie.events.") {
		var e vigiev1.Event
		if err := proto.Unmarshal(m.Data, &e); err != nil {
			t.Fatal(err)
		}
		subjects[e.GetPage().GetPath()[1:2]] = e.GetSubject()
	}
	ctx := context.Background()
	waitFor(t, "the segment stage to handle the batch", 20*time.Second, func() bool {
		for _, st := range in.Server.Plugins().Status(ctx) {
			if st.Name == "segments" {
				return st.Lag == 0 && st.Processed >= 3 // z twice, w once
			}
		}
		return false
	})
	for visitor, want := range map[string]int64{"x": -1, "y": -1, "z": 10, "w": 5} {
		p, err := in.Server.Store().Profile(ctx, "demo", subjects[visitor])
		switch {
		case want < 0 && !errors.Is(err, storage.ErrNotFound):
			t.Errorf("visitor %s: profile %+v, %v; want none", visitor, p, err)
		case want >= 0 && (err != nil || p.Score != want):
			t.Errorf("visitor %s: profile %+v, %v; want score %d", visitor, p, err, want)
		}
	}
}
