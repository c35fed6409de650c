package plugins_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
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
		entered = streamMsgs(t, in, plugins.SegmentsStream, "vigie.segments.demo.fr-pricing.entered")
		return len(entered) > 0
	})
	// The enriched events carry the country; the address itself never
	// appears, only its /24 prefix.
	enriched := streamMsgs(t, in, plugins.EnrichedStream, "vigie.enriched.demo.page")
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
	if n := len(streamMsgs(t, in, plugins.SegmentsStream, "vigie.segments.")); n != 1 {
		t.Fatalf("%d segment changes, want exactly 1 (entered once)", n)
	}

	// Withdrawing personalization deletes the profile and leaves the segment.
	page(t, in, "visitor-1", "/pricing", `{"analytics":true,"personalization":false}`)
	waitFor(t, "segment exited", 20*time.Second, func() bool {
		return len(streamMsgs(t, in, plugins.SegmentsStream, "vigie.segments.demo.fr-pricing.exited")) == 1
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

	pids := pluginPIDs(t, "flaky")
	if len(pids) == 0 {
		t.Fatal("no plugin process found")
	}
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
