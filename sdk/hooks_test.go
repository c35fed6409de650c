package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/sdk/sdktest"
)

// callerPlugin calls the host service named by each event's Name from
// Enrich and reports the outcome in the event's Library field.
type callerPlugin struct{}

func (callerPlugin) Enrich(ctx context.Context, events []*sdk.Event) ([]*sdk.Event, error) {
	h := sdk.HostFrom(ctx)
	for _, ev := range events {
		var err error
		switch ev.GetName() {
		case "profile":
			_, err = h.ProfileGet(ctx, "s", "subj")
		case "kvget":
			_, err = h.KVGet(ctx, "k")
		case "kvput":
			err = h.KVPut(ctx, "k", []byte("v"), 0)
		case "kvdelete":
			err = h.KVDelete(ctx, "k")
		case "contact":
			_, err = h.ContactResolve(ctx, "s", "subj")
		case "emit":
			err = h.Emit(ctx, &sdk.Event{Id: "derived"})
		}
		switch {
		case err == nil:
			ev.Library = "ok"
		case errors.Is(err, sdk.ErrCapability):
			ev.Library = "denied"
		case errors.Is(err, sdk.ErrNotFound):
			ev.Library = "notfound"
		default:
			ev.Library = "error: " + err.Error()
		}
	}
	return events, nil
}

func TestCapabilities(t *testing.T) {
	calls := []struct {
		name string
		cap  sdk.Capability
	}{
		{"profile", sdk.CapProfilesRead},
		{"kvput", sdk.CapKV},
		{"kvget", sdk.CapKV},
		{"kvdelete", sdk.CapKV},
		{"contact", sdk.CapContactsResolve},
		{"emit", sdk.CapEmit},
	}
	for _, declared := range []sdk.Capability{sdk.CapProfilesRead, sdk.CapKV, sdk.CapContactsResolve, sdk.CapEmit} {
		t.Run(string(declared), func(t *testing.T) {
			host := sdktest.NewHost()
			host.SetProfile(&sdk.Profile{Site: "s", Subject: "subj", Score: 3})
			host.SetContact("s", "subj", &sdk.Contact{Email: "a@example.org"})
			h := sdktest.Start(t, sdktest.Config{
				Host: host,
				Plugin: sdk.Plugin{
					Manifest: sdk.Manifest{Name: "caller", Version: "1", Capabilities: []sdk.Capability{declared}},
					Enricher: callerPlugin{},
				},
			})
			for _, c := range calls {
				out, err := h.Enrich(t.Context(), []*sdk.Event{{Id: "1", Name: c.name}})
				if err != nil {
					t.Fatal(err)
				}
				want := "denied"
				if c.cap == declared {
					want = "ok"
				}
				if got := out[0].GetLibrary(); got != want {
					t.Errorf("%s with %s declared: %s, want %s", c.name, declared, got, want)
				}
			}
			if n := len(host.Emitted()); (declared == sdk.CapEmit) != (n == 1) {
				t.Errorf("%d events emitted with %s declared", n, declared)
			}
		})
	}
}

func TestHostNotFound(t *testing.T) {
	h := sdktest.Start(t, sdktest.Config{Plugin: sdk.Plugin{
		Manifest: sdk.Manifest{Name: "caller", Version: "1",
			Capabilities: []sdk.Capability{sdk.CapProfilesRead, sdk.CapKV, sdk.CapContactsResolve}},
		Enricher: callerPlugin{},
	}})
	for _, name := range []string{"profile", "kvget", "contact"} {
		out, err := h.Enrich(t.Context(), []*sdk.Event{{Id: "1", Name: name}})
		if err != nil {
			t.Fatal(err)
		}
		if got := out[0].GetLibrary(); got != "notfound" {
			t.Errorf("%s on empty host: %s, want notfound", name, got)
		}
	}
}

func TestHostFromOutsideHook(t *testing.T) {
	h := sdk.HostFrom(context.Background())
	if err := h.KVPut(context.Background(), "k", nil, 0); !errors.Is(err, sdk.ErrNoHost) {
		t.Errorf("err = %v, want ErrNoHost", err)
	}
	h.Log(context.Background(), slog.LevelInfo, "dropped") // must not panic
}

// flaky fails on events and items whose name is "fail".
type flaky struct{}

func (flaky) Segment(_ context.Context, ev *sdk.Event, p *sdk.Profile) (*sdk.SegmentResult, error) {
	if ev.GetName() == "fail" {
		return nil, errors.New("cannot segment")
	}
	return &sdk.SegmentResult{
		Update: &sdk.ProfileUpdate{ScoreDelta: p.GetScore() + 1},
		Changes: []*sdk.SegmentChange{{Site: ev.GetSite(), Subject: ev.GetSubject(), Segment: "seen",
			Transition: vigiev1.Transition_TRANSITION_ENTERED, EventId: ev.GetId()}},
	}, nil
}

func (flaky) Sync(_ context.Context, it *sdk.SyncItem) error {
	if it.GetSegmentChange().GetSegment() == "fail" {
		return errors.New("crm down")
	}
	return nil
}

func (flaky) Configure(_ context.Context, cfg []byte) error {
	if string(cfg) != `{"ok":true}` {
		return fmt.Errorf("bad config %s", cfg)
	}
	return nil
}

func flakyPlugin() sdk.Plugin {
	return sdk.Plugin{
		Manifest:   sdk.Manifest{Name: "flaky", Version: "1"},
		Configurer: flaky{}, Segmenter: flaky{}, Syncer: flaky{},
	}
}

func TestBatchPerItemErrors(t *testing.T) {
	h := sdktest.Start(t, sdktest.Config{Plugin: flakyPlugin(), PluginConfig: []byte(`{"ok":true}`)})
	if k := h.Manifest().Kinds; fmt.Sprint(k) != "[segmenter syncer]" {
		t.Errorf("kinds = %v", k)
	}
	if err := h.Configure(t.Context(), []byte(`{}`)); err == nil || !errContains(err, "bad config") {
		t.Errorf("configure error lost: %v", err)
	}
	res, errs, err := h.SegmentBatch(t.Context(), []*vigiev1.SegmentInput{
		{Event: &sdk.Event{Id: "1", Name: "ok", Subject: "a"}, Profile: &sdk.Profile{Score: 4}},
		{Event: &sdk.Event{Id: "2", Name: "fail"}},
		{Event: &sdk.Event{Id: "3", Name: "ok"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if errs[0] != nil || errs[2] != nil || errs[1] == nil || !errContains(errs[1], "cannot segment") {
		t.Errorf("errs = %v", errs)
	}
	if res[0].Update.GetScoreDelta() != 5 || res[0].Changes[0].GetEventId() != "1" || res[2].Changes[0].GetEventId() != "3" {
		t.Errorf("results out of order or lost: %v", res)
	}
	errs, err = h.SyncBatch(t.Context(), []*sdk.SyncItem{
		{Item: &vigiev1.SyncItem_SegmentChange{SegmentChange: &sdk.SegmentChange{Segment: "fail"}}},
		{Item: &vigiev1.SyncItem_Privacy{Privacy: &vigiev1.PrivacyEvent{Action: vigiev1.PrivacyAction_PRIVACY_ACTION_ERASURE}}},
	})
	if err != nil || errs[0] == nil || errs[1] != nil {
		t.Errorf("sync errs = %v, %v", errs, err)
	}
	if _, err := h.Enrich(t.Context(), nil); !errors.Is(err, sdk.ErrNotImplemented) {
		t.Errorf("enrich on a segmenter: %v", err)
	}
}

func errContains(err error, s string) bool { return err != nil && strings.Contains(err.Error(), s) }

func BenchmarkEnrich(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			h := sdktest.Start(b, sdktest.Config{Plugin: sdk.Plugin{
				Manifest: sdk.Manifest{Name: "nop", Version: "1"},
				Enricher: nopEnricher{},
			}})
			in := make([]*sdk.Event, n)
			for i := range in {
				in[i] = &sdk.Event{Id: fmt.Sprint("01J", i), Site: "site", Type: "page", Name: "Home",
					Subject: "c2Vjb25kLXBzZXVkb255bQ", Page: &vigiev1.Page{Path: "/pricing", Title: "Pricing"},
					Properties: []byte(`{"plan":"pro","value":42}`)}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := h.Enrich(b.Context(), in); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

type nopEnricher struct{}

func (nopEnricher) Enrich(_ context.Context, ev []*sdk.Event) ([]*sdk.Event, error) { return ev, nil }
