package response

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/plugins/response/model"
	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/sdk/sdktest"
)

// t0 is the tests' clock start.
var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// testConfig: two contact types, an e-mail type converting on Order
// Completed within 7 days, a site message type counting clicks only.
const testConfig = `{
	"contact_types": [{"name": "vip-fr", "segments": ["vip", "fr"]}, {"name": "vip", "segments": ["vip"]}],
	"message_types": [
		{"name": "promo", "window": "7d"},
		{"name": "banner", "responses": ["click"], "conversions": []}
	],
	"half_life": "0",
	"flush_events": 1
}`

// event returns a pseudonymous track event of subj on site demo at t0+d.
func event(name, subj string, d time.Duration, props string, purposes ...string) *sdk.Event {
	if purposes == nil {
		purposes = []string{"analytics", "marketing"}
	}
	at := t0.Add(d).UnixMilli()
	ev := &sdk.Event{
		Id: fmt.Sprintf("%s-%s-%d", name, subj, d), Site: "demo", Type: "track", Name: name,
		TimestampMs: at, ReceivedAtMs: at, Mode: vigiev1.Mode_MODE_PSEUDONYMOUS,
		Purposes: purposes, Subject: subj,
	}
	if props != "" {
		ev.Properties = []byte(props)
	}
	return ev
}

// sent is an Email Sent exposure of promo, campaign c1.
func sent(subj string, d time.Duration, extra string) *sdk.Event {
	return event(EventEmailSent, subj, d, `{"message_type":"promo","campaign":"c1"`+extra+`}`)
}

// emailHit is an Email Opened or Email Link Clicked of campaign c1.
func emailHit(name, subj string, d time.Duration, class string) *sdk.Event {
	ev := event(name, subj, d, "")
	ev.Source = "email"
	ev.Email = &vigiev1.Email{Campaign: "c1", Class: class}
	return ev
}

// profile returns a profile in segments.
func profile(subj string, segments ...string) *sdk.Profile {
	return &sdk.Profile{Site: "demo", Subject: subj, Segments: segments}
}

// start runs a configured plugin in the sdktest harness and returns the
// harness and the plugin value behind it, its clock fixed at t0 + 1 day.
func start(t *testing.T, host *sdktest.Host, config string) (*sdktest.Harness, *Modeler) {
	t.Helper()
	m := New()
	m.now = func() time.Time { return t0.Add(24 * time.Hour) }
	h := sdktest.Start(t, sdktest.Config{Plugin: pluginOf(m), Host: host, PluginConfig: []byte(config)})
	t.Cleanup(func() { _ = m.Close() })
	return h, m
}

// feed sends events through the harness's gRPC Segment hook.
func feed(t *testing.T, h *sdktest.Harness, in ...[2]any) {
	t.Helper()
	for _, x := range in {
		res, err := h.Segment(t.Context(), x[0].(*sdk.Event), x[1].(*sdk.Profile))
		if err != nil {
			t.Fatalf("Segment(%s): %v", x[0].(*sdk.Event).GetName(), err)
		}
		if len(res.Changes) != 0 || res.Update.GetScoreDelta() != 0 ||
			(res.Update != nil && !strings.HasPrefix(string(res.Update.GetAttributes()), `{"next_message_type":`)) {
			t.Fatalf("Segment(%s) changed more of the profile than its next message type: %+v", x[0].(*sdk.Event).GetName(), res)
		}
	}
}

// in pairs an event with its subject's profile.
func in(ev *sdk.Event, p *sdk.Profile) [2]any { return [2]any{ev, p} }

// cell returns one row of the model's table.
func cell(t *testing.T, m *Modeler, ctx context.Context, ct, mt string) model.Estimate {
	t.Helper()
	table, err := m.Table(ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range table {
		if e.ContactType == ct && e.MessageType == mt {
			return e
		}
	}
	t.Fatalf("no cell %s×%s", ct, mt)
	return model.Estimate{}
}

// hostCtx is a context carrying host for direct calls.
func hostCtx(t *testing.T, host sdk.Host) context.Context {
	return sdk.ContextWithHost(t.Context(), host)
}

func TestSegment(t *testing.T) {
	const h1, d1 = time.Hour, 24 * time.Hour
	vipfr := profile("a", "fr", "vip")
	for _, tc := range []struct {
		name   string
		events [][2]any
		cells  map[[2]string][2]float64 // contact type × message type → exposures, responses
		stats  Stats
	}{
		{"human open counts, machine open and scanner click do not", [][2]any{
			in(sent("a", 0, ""), vipfr),
			in(emailHit(EventEmailOpened, "a", h1, "privacy_proxy"), vipfr),
			in(emailHit(EventEmailClicked, "a", h1, "scanner"), vipfr),
			in(emailHit(EventEmailOpened, "a", h1, "unknown"), vipfr),
			in(emailHit(EventEmailOpened, "a", 2*h1, "human"), vipfr),
			in(emailHit(EventEmailClicked, "a", 3*h1, "human"), vipfr),
		}, map[[2]string][2]float64{{"vip-fr", "promo"}: {1, 1}},
			Stats{Exposures: 1, Responses: 1, Duplicates: 1, Machine: 3}},
		{"contact type from the profile's segments", [][2]any{
			in(sent("a", 0, ""), profile("a", "vip")),
			in(sent("b", 0, ""), profile("b", "fr")),
			in(emailHit(EventEmailClicked, "b", h1, "human"), profile("b", "fr")),
		}, map[[2]string][2]float64{{"vip", "promo"}: {1, 0}, {model.Other, "promo"}: {1, 1}, {"vip-fr", "promo"}: {0, 0}},
			Stats{Exposures: 2, Responses: 1}},
		{"conversion within the window counts, after it does not", [][2]any{
			in(sent("a", 0, ""), vipfr),
			in(sent("b", 0, ""), vipfr),
			in(event("Order Completed", "a", 3*d1, `{"total":30}`), vipfr),
			in(event("Order Completed", "b", 8*d1, `{"total":30}`), vipfr),
		}, map[[2]string][2]float64{{"vip-fr", "promo"}: {2, 1}},
			Stats{Exposures: 2, Responses: 1, Unmatched: 1}},
		{"site message: clicks only, by campaign", [][2]any{
			in(event(EventMessageShown, "a", 0, `{"message_type":"banner","campaign":"spring"}`), vipfr),
			in(event(EventMessageClicked, "a", h1, `{"campaign":"autumn"}`), vipfr),
			in(event(EventMessageClicked, "a", h1, `{"campaign":"spring"}`), vipfr),
			in(event("Order Completed", "a", 2*h1, ``), vipfr), // banner converts on nothing
		}, map[[2]string][2]float64{{"vip-fr", "banner"}: {1, 1}},
			Stats{Exposures: 1, Responses: 1, Unmatched: 2}},
		{"sensitive events never enter", [][2]any{
			in(sent("a", 0, `,"sensitive":true`), vipfr),
			in(sent("b", 0, `,"sensitive":"health"`), vipfr),
			in(sent("c", 0, `,"sensitive":false`), vipfr),
			in(sent("d", 0, `,"sensitive":0`), vipfr),
			in(event("Order Completed", "c", h1, `{"sensitive":1}`), vipfr),
		}, map[[2]string][2]float64{{"vip-fr", "promo"}: {2, 0}},
			Stats{Exposures: 2, Excluded: 3}},
		{"purposes: neither personalization nor marketing is not modelled", [][2]any{
			in(event(EventEmailSent, "a", 0, `{"message_type":"promo","campaign":"c1"}`, "analytics"), vipfr),
			in(event(EventEmailSent, "b", 0, `{"message_type":"promo","campaign":"c1"}`, "personalization"), vipfr),
		}, map[[2]string][2]float64{{"vip-fr", "promo"}: {1, 0}},
			Stats{Exposures: 1, NotGranted: 1}},
		{"withdrawn consent removes the subject", [][2]any{
			in(sent("a", 0, ""), vipfr),
			in(emailHit(EventEmailClicked, "a", h1, "human"), vipfr),
			in(sent("b", 0, ""), vipfr),
			in(event("Page Left", "a", 2*h1, "", "analytics"), vipfr),
		}, map[[2]string][2]float64{{"vip-fr", "promo"}: {1, 0}},
			Stats{Exposures: 2, Responses: 1, NotGranted: 1, Forgotten: 1}},
		{"unknown or missing message type is ignored, replay counts once", [][2]any{
			in(event(EventEmailSent, "a", 0, `{"message_type":"nope"}`), vipfr),
			in(event(EventEmailSent, "a", 0, `{}`), vipfr),
			in(sent("b", 0, ""), vipfr),
			in(sent("b", 0, ""), vipfr), // the same event id again
		}, map[[2]string][2]float64{{"vip-fr", "promo"}: {1, 0}},
			Stats{Exposures: 1, Ignored: 2, Duplicates: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := sdktest.NewHost()
			h, m := start(t, host, testConfig)
			feed(t, h, tc.events...)
			ctx := hostCtx(t, host)
			for k, want := range tc.cells {
				e := cell(t, m, ctx, k[0], k[1])
				if e.Exposures != want[0] || e.Responses != want[1] {
					t.Errorf("%s×%s: %v exposures, %v responses; want %v, %v", k[0], k[1], e.Exposures, e.Responses, want[0], want[1])
				}
			}
			if got := m.Stats(); got != tc.stats {
				t.Errorf("stats %+v\nwant  %+v", got, tc.stats)
			}
		})
	}
}

// TestMachineOpensDoNotMoveTheModel compares the stored state after a
// campaign with and without a flood of machine opens and clicks.
func TestMachineOpensDoNotMoveTheModel(t *testing.T) {
	run := func(machines bool) map[string][]byte {
		host := sdktest.NewHost()
		h, _ := start(t, host, testConfig)
		for i := range 50 {
			subj := fmt.Sprint("s", i)
			p := profile(subj, "vip")
			feed(t, h, in(sent(subj, 0, ""), p))
			if machines {
				feed(t, h, in(emailHit(EventEmailOpened, subj, time.Second, "privacy_proxy"), p),
					in(emailHit(EventEmailClicked, subj, time.Second, "scanner"), p))
			}
			if i%5 == 0 {
				feed(t, h, in(emailHit(EventEmailOpened, subj, time.Hour, "human"), p))
			}
		}
		return host.KV()
	}
	with, without := run(true), run(false)
	if len(with) == 0 || fmt.Sprint(with) != fmt.Sprint(without) {
		t.Fatalf("machine hits changed the stored model (%d vs %d keys)", len(with), len(without))
	}
}

// TestRestart: the state written through the host's KV is what a new
// plugin process restores, and a Forget is written at once.
func TestRestart(t *testing.T) {
	host := sdktest.NewHost()
	h, m := start(t, host, strings.Replace(testConfig, `"flush_events": 1`, `"flush_events": 1000, "flush_interval": "1h"`, 1))
	for i := range 20 {
		subj := fmt.Sprint("s", i)
		feed(t, h, in(sent(subj, 0, ""), profile(subj, "vip")))
		if i%4 == 0 {
			feed(t, h, in(emailHit(EventEmailClicked, subj, time.Hour, "human"), profile(subj, "vip")))
		}
	}
	if len(host.KV()) != 0 {
		t.Fatalf("wrote %d keys before flush_events or flush_interval", len(host.KV()))
	}
	ctx := hostCtx(t, host)
	before := cell(t, m, ctx, "vip", "promo")
	if err := m.Forget(ctx, "demo", "s4"); err != nil { // s4 clicked
		t.Fatal(err)
	}
	kv := host.KV()
	if _, ok := kv[metaKey("demo")]; !ok || len(kv) != 3 || kv[SummaryKey("demo")] == nil {
		t.Fatalf("after Forget the store holds %v, want the meta, one shard and the summary", keys(kv))
	}
	_, restored := start(t, host, testConfig)
	got := cell(t, restored, ctx, "vip", "promo")
	if got.Exposures != before.Exposures-1 || got.Responses != before.Responses-1 {
		t.Errorf("restored %v/%v, want %v/%v less s4", got.Exposures, got.Responses, before.Exposures, before.Responses)
	}
	// The restored plugin still attributes responses to pending exposures.
	h2, restored2 := start(t, host, testConfig)
	feed(t, h2, in(emailHit(EventEmailClicked, "s1", 2*time.Hour, "human"), profile("s1", "vip")))
	if e := cell(t, restored2, ctx, "vip", "promo"); e.Responses != got.Responses+1 {
		t.Errorf("click after restart: %v responses, want %v", e.Responses, got.Responses+1)
	}
}

// failingHost fails KV writes while fail is set.
type failingHost struct {
	*sdktest.Host
	fail atomic.Bool
}

func (h *failingHost) KVPut(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if h.fail.Load() {
		return errors.New("disk full")
	}
	return h.Host.KVPut(ctx, key, value, ttl)
}

// TestForgetRetry: a Forget whose write failed is written by the retry,
// although the model no longer holds the subject.
func TestForgetRetry(t *testing.T) {
	host := &failingHost{Host: sdktest.NewHost()}
	ctx := hostCtx(t, host)
	m := New()
	if err := m.Configure(ctx, []byte(testConfig)); err != nil {
		t.Fatal(err)
	}
	for _, subj := range []string{"a", "b"} {
		if _, err := m.Segment(ctx, sent(subj, 0, ""), profile(subj, "vip")); err != nil {
			t.Fatal(err)
		}
	}
	host.fail.Store(true)
	if err := m.Forget(ctx, "demo", "a"); !errors.Is(err, ErrState) {
		t.Fatalf("Forget with a failing store = %v, want ErrState", err)
	}
	host.fail.Store(false)
	if err := m.Forget(ctx, "demo", "a"); err != nil {
		t.Fatal(err)
	}
	restored := New()
	if err := restored.Configure(ctx, []byte(testConfig)); err != nil {
		t.Fatal(err)
	}
	if e := cell(t, restored, ctx, "vip", "promo"); e.Exposures != 1 {
		t.Errorf("stored state has %v exposures, want 1 (b only)", e.Exposures)
	}
}

func TestReshard(t *testing.T) {
	defer func(v int) { maxShardBytes = v }(maxShardBytes)
	maxShardBytes = 2 << 10
	host := sdktest.NewHost()
	h, m := start(t, host, testConfig)
	for i := range 300 {
		subj := fmt.Sprintf("subject-%03d", i)
		feed(t, h, in(sent(subj, 0, ""), profile(subj, "vip")))
	}
	ctx := hostCtx(t, host)
	var mt meta
	kv := host.KV()
	if err := json.Unmarshal(kv[metaKey("demo")], &mt); err != nil {
		t.Fatal(err)
	}
	if mt.Shards < 8 || mt.Generation < 3 || mt.Stale != nil || len(kv) != mt.Shards+2 {
		t.Fatalf("meta %+v with %d keys: want ≥ 8 shards of the latest generation only", mt, len(kv))
	}
	for k, v := range kv {
		if len(v) > maxShardBytes {
			t.Errorf("%s has %d bytes", k, len(v))
		}
	}
	_, restored := start(t, host, testConfig)
	if a, b := cell(t, m, ctx, "vip", "promo"), cell(t, restored, ctx, "vip", "promo"); a.Exposures != 300 || b.Exposures != 300 {
		t.Errorf("exposures %v before, %v after restart, want 300", a.Exposures, b.Exposures)
	}
}

// TestDamagedState: an unreadable shard is logged and dropped, a newer
// format refused (never overwritten).
func TestDamagedState(t *testing.T) {
	host := sdktest.NewHost()
	h, _ := start(t, host, testConfig)
	feed(t, h, in(sent("a", 0, ""), profile("a", "vip")))
	ctx := hostCtx(t, host)
	if err := host.KVPut(ctx, shardKey("demo", 0, 0), []byte("garbage"), 0); err != nil {
		t.Fatal(err)
	}
	h2, m2 := start(t, host, testConfig)
	feed(t, h2, in(sent("b", 0, ""), profile("b", "vip")))
	if e := cell(t, m2, ctx, "vip", "promo"); e.Exposures != 1 {
		t.Errorf("%v exposures, want b's only", e.Exposures)
	}
	var logged bool
	for _, l := range host.Logs() {
		logged = logged || (l.Level == slog.LevelError && strings.Contains(l.Message, "unreadable") && !strings.Contains(fmt.Sprint(l.Attrs), `"a"`))
	}
	if !logged {
		t.Errorf("no error logged: %+v", host.Logs())
	}
	if err := host.KVPut(ctx, metaKey("demo"), []byte(`{"version":2,"generation":0,"shards":1}`), 0); err != nil {
		t.Fatal(err)
	}
	h3, _ := start(t, host, testConfig)
	if _, err := h3.Segment(t.Context(), sent("c", 0, ""), profile("c", "vip")); err == nil || !strings.Contains(err.Error(), "version 2") {
		t.Errorf("newer state: %v, want a version error", err)
	}
}

func TestHandlePrivacy(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ev     *vigiev1.PrivacyEvent
		forget bool
	}{
		{"erasure", &vigiev1.PrivacyEvent{Action: vigiev1.PrivacyAction_PRIVACY_ACTION_ERASURE}, true},
		{"marketing withdrawn, nothing left", &vigiev1.PrivacyEvent{Action: vigiev1.PrivacyAction_PRIVACY_ACTION_CONSENT_CHANGED, Purposes: []string{"analytics"}}, true},
		{"personalization still granted", &vigiev1.PrivacyEvent{Action: vigiev1.PrivacyAction_PRIVACY_ACTION_CONSENT_CHANGED, Purposes: []string{"personalization"}}, false},
		{"unspecified", &vigiev1.PrivacyEvent{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := sdktest.NewHost()
			h, m := start(t, host, testConfig)
			feed(t, h, in(sent("a", 0, ""), profile("a", "vip")))
			tc.ev.Site, tc.ev.Subject = "demo", "a"
			ctx := hostCtx(t, host)
			if err := m.HandlePrivacy(ctx, tc.ev); err != nil {
				t.Fatal(err)
			}
			if e := cell(t, m, ctx, "vip", "promo"); (e.Exposures == 0) != tc.forget {
				t.Errorf("exposures %v, forget %v", e.Exposures, tc.forget)
			}
		})
	}
}

func TestNextAndUplift(t *testing.T) {
	host := sdktest.NewHost()
	h, m := start(t, host, testConfig)
	for i := range 200 {
		subj := fmt.Sprint("s", i)
		extra := ""
		if i%10 == 0 {
			extra = `,"holdout":true`
		}
		feed(t, h, in(sent(subj, 0, extra), profile(subj, "vip")))
		if i%3 == 0 {
			feed(t, h, in(event("Order Completed", subj, time.Hour, ""), profile(subj, "vip")))
		}
	}
	ctx := hostCtx(t, host)
	pick, err := m.Next(ctx, "demo", []string{"vip"}, nil)
	if err != nil || pick.ContactType != "vip" || len(pick.Candidates) != 2 {
		t.Fatalf("Next = %+v, %v", pick, err)
	}
	u, err := m.Uplift(ctx, "demo", "vip", "promo")
	if err != nil || u.Holdout.Exposures != 20 || u.Treated.Exposures != 180 {
		t.Fatalf("Uplift = %+v, %v; want 180 treated, 20 held out", u, err)
	}
	if _, err := m.Uplift(ctx, "demo", "vip", "banner"); !errors.Is(err, model.ErrNoConversions) {
		t.Errorf("uplift of banner: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ config, want string }{
		{`{"nope": 1}`, "nope"},
		{`{"half_life": "a month"}`, `half_life "a month" is not a duration`},
		{`{"half_life": "-1d"}`, "half_life"},
		{`{"message_types": [{"name": "x", "window": "0"}]}`, "window must be positive"},
		{`{"message_types": [{"name": "x", "responses": ["bounce"]}]}`, `unknown response kind "bounce"`},
		{`{"message_types": [{"name": "x", "responses": []}]}`, "at least one kind"},
		{`{"contact_types": [{"name": "other", "segments": ["a"]}]}`, "reserved"},
		{`{"flush_events": -1}`, "flush_events"},
		{`{"purposes": [""]}`, "empty purpose"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			err := Validate([]byte(tc.config))
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate(%s) = %v, want ErrConfig containing %q", tc.config, err, tc.want)
			}
		})
	}
	// Over gRPC, as Vigie calls it.
	h := sdktest.Start(t, sdktest.Config{Plugin: Plugin()})
	if err := h.Configure(t.Context(), []byte(`{"half_life": "soon"}`)); err == nil || !strings.Contains(err.Error(), "half_life") {
		t.Errorf("Configure over gRPC = %v", err)
	}
	if err := Validate(nil); err != nil {
		t.Errorf("no configuration: %v", err)
	}
}

// keys lists a map's keys.
func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
