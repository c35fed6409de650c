package sdktest_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/sdk/sdktest"
)

// counter numbers events per site in KV, logs, and emits a "milestone"
// event at the third; it fails events without a site.
type counter struct{}

func (counter) Enrich(ctx context.Context, events []*sdk.Event) ([]*sdk.Event, error) {
	h := sdk.HostFrom(ctx)
	for _, ev := range events {
		if ev.GetSite() == "" {
			return nil, errors.New("event without site")
		}
		n := 0
		if v, err := h.KVGet(ctx, ev.GetSite()); err == nil {
			n, _ = strconv.Atoi(string(v))
		}
		n++
		if err := h.KVPut(ctx, ev.GetSite(), []byte(strconv.Itoa(n)), 0); err != nil {
			return nil, err
		}
		ev.Library = "n=" + strconv.Itoa(n)
		if n == 3 {
			if err := h.Emit(ctx, &sdk.Event{Id: ev.GetId() + "-m", Site: ev.GetSite(), Type: "track", Name: "milestone"}); err != nil {
				return nil, err
			}
		}
	}
	return events, nil
}

func (counter) Segment(ctx context.Context, ev *sdk.Event, p *sdk.Profile) (*sdk.SegmentResult, error) {
	if p == nil {
		return nil, errors.New("no profile")
	}
	return &sdk.SegmentResult{Update: &sdk.ProfileUpdate{ScoreDelta: int64(len(ev.GetName()))}}, nil
}

func (counter) Sync(ctx context.Context, it *sdk.SyncItem) error {
	c, err := sdk.HostFrom(ctx).ContactResolve(ctx, it.GetIdentify().GetSite(), it.GetIdentify().GetSubject())
	if err != nil {
		return err
	}
	return sdk.HostFrom(ctx).KVPut(ctx, "synced", []byte(c.GetEmail()), time.Hour)
}

func plugin(caps ...sdk.Capability) sdk.Plugin {
	return sdk.Plugin{
		Manifest: sdk.Manifest{Name: "counter", Version: "1", Capabilities: caps},
		Enricher: counter{}, Segmenter: counter{}, Syncer: counter{},
	}
}

func TestHarness(t *testing.T) {
	h := sdktest.Start(t, sdktest.Config{Plugin: plugin(sdk.CapKV, sdk.CapEmit, sdk.CapContactsResolve)})
	h.Host.SetContact("s", "p1", &sdk.Contact{Email: "a@example.org"})

	h.RunEnrich(t, []sdktest.EnrichCase{
		{
			Name: "numbers events per site",
			In:   []*sdk.Event{{Id: "1", Site: "a"}, {Id: "2", Site: "b"}, {Id: "3", Site: "a"}},
			Want: []*sdk.Event{{Id: "1", Site: "a", Library: "n=1"}, {Id: "2", Site: "b", Library: "n=1"}, {Id: "3", Site: "a", Library: "n=2"}},
		},
		{
			Name: "third event emits a milestone",
			In:   []*sdk.Event{{Id: "4", Site: "a"}},
			Check: func(t *testing.T, _ []*sdk.Event, host *sdktest.Host) {
				em := host.Emitted()
				if len(em) != 1 || em[0].GetId() != "4-m" || em[0].GetName() != "milestone" {
					t.Errorf("emitted %v", em)
				}
				if kv := host.KV(); string(kv["a"]) != "3" || string(kv["b"]) != "1" {
					t.Errorf("kv %v", kv)
				}
			},
		},
		{Name: "error reaches the host", In: []*sdk.Event{{Id: "5"}}, WantErr: "event without site"},
	})
	h.RunSegment(t, []sdktest.SegmentCase{
		{Name: "scores name length", Event: &sdk.Event{Name: "signup"}, Profile: &sdk.Profile{},
			Want: &sdk.SegmentResult{Update: &sdk.ProfileUpdate{ScoreDelta: 6}}},
		{Name: "missing profile fails the item", Event: &sdk.Event{Name: "x"}, WantErr: "no profile"},
	})
	h.RunSync(t, []sdktest.SyncCase{
		{
			Name: "resolved contact synced",
			Item: &sdk.SyncItem{Item: &vigiev1.SyncItem_Identify{Identify: &sdk.Event{Site: "s", Subject: "p1"}}},
			Check: func(t *testing.T, host *sdktest.Host) {
				if got := string(host.KV()["synced"]); got != "a@example.org" {
					t.Errorf("synced %q", got)
				}
			},
		},
		{
			Name:    "unknown subject",
			Item:    &sdk.SyncItem{Item: &vigiev1.SyncItem_Identify{Identify: &sdk.Event{Site: "s", Subject: "p2"}}},
			WantErr: "not found",
		},
	})
}

func TestHarnessEnforcesCapabilities(t *testing.T) {
	h := sdktest.Start(t, sdktest.Config{Plugin: plugin()}) // no capability
	h.RunEnrich(t, []sdktest.EnrichCase{
		{Name: "kv refused", In: []*sdk.Event{{Id: "1", Site: "a"}}, WantErr: "capability"},
	})
	if len(h.Host.KV()) != 0 {
		t.Error("host store written without capability")
	}
}

func TestHostKVTTL(t *testing.T) {
	host := sdktest.NewHost()
	ctx := context.Background()
	if err := host.KVPut(ctx, "short", []byte("v"), time.Millisecond); err != nil {
		t.Fatal(err)
	}
	_ = host.KVPut(ctx, "long", []byte("v"), 0)
	time.Sleep(5 * time.Millisecond)
	if _, err := host.KVGet(ctx, "short"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("expired key: err = %v", err)
	}
	if _, err := host.KVGet(ctx, "long"); err != nil {
		t.Errorf("kept key: %v", err)
	}
	if kv := host.KV(); len(kv) != 1 {
		t.Errorf("KV() = %v, want only the kept key", kv)
	}
}

// forgetful keeps one KV entry per subject it syncs and deletes them on
// Forget.
type forgetful struct{ counter }

func (forgetful) Forget(ctx context.Context, evs []*sdk.PrivacyEvent) error {
	for _, ev := range evs {
		for _, s := range ev.GetSubjects() {
			if err := sdk.HostFrom(ctx).KVDelete(ctx, "subject/"+s); err != nil {
				return err
			}
		}
	}
	return nil
}

func TestHarnessForget(t *testing.T) {
	p := forgetful{}
	h := sdktest.Start(t, sdktest.Config{Plugin: sdk.Plugin{
		Manifest: sdk.Manifest{Name: "forgetful", Version: "1", Capabilities: []sdk.Capability{sdk.CapKV}},
		Syncer:   p, Forgetter: p,
	}})
	if !slicesContains(h.Manifest().Kinds, sdk.KindForgetter) {
		t.Fatalf("kinds %v lack %q", h.Manifest().Kinds, sdk.KindForgetter)
	}
	for _, s := range []string{"p1", "p2", "p3"} {
		_ = h.Host.KVPut(t.Context(), "subject/"+s, []byte("x"), 0)
	}
	h.RunForget(t, []sdktest.ForgetCase{{
		Name: "forgets every subject of the event",
		Events: []*sdk.PrivacyEvent{{Site: "s", Subject: "p1", Subjects: []string{"p1", "p2"},
			Action: vigiev1.PrivacyAction_PRIVACY_ACTION_ERASURE}},
		Check: func(t *testing.T, host *sdktest.Host) {
			kv := host.KV()
			if _, ok := kv["subject/p1"]; ok || len(kv) != 1 {
				t.Errorf("kv after forget: %v, want only subject/p3", kv)
			}
		},
	}})
	// A plugin without the hook says so.
	plain := sdktest.Start(t, sdktest.Config{Plugin: plugin()})
	if err := plain.Forget(t.Context(), nil); !errors.Is(err, sdk.ErrNotImplemented) {
		t.Errorf("Forget on a plugin without the hook: %v, want ErrNotImplemented", err)
	}
}

func slicesContains(ks []sdk.Kind, k sdk.Kind) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}

// listener records the privacy events it is given; its Forget hook must
// not be called when it listens.
type listener struct {
	forgetful
	got *[]vigiev1.PrivacyAction
}

func (l listener) PrivacyEvents(_ context.Context, evs []*sdk.PrivacyEvent) error {
	for _, ev := range evs {
		*l.got = append(*l.got, ev.GetAction())
	}
	return nil
}

func (listener) Forget(context.Context, []*sdk.PrivacyEvent) error {
	return errors.New("Forget called on a PrivacyListener")
}

// TestHarnessPrivacyListener: a PrivacyListener is listed as such and
// gets every privacy event through the Forget call, erasures included,
// instead of its Forgetter.
func TestHarnessPrivacyListener(t *testing.T) {
	var got []vigiev1.PrivacyAction
	l := listener{got: &got}
	h := sdktest.Start(t, sdktest.Config{Plugin: sdk.Plugin{
		Manifest: sdk.Manifest{Name: "listener", Version: "1"},
		Syncer:   l, Forgetter: l, PrivacyListener: l,
	}})
	if !slicesContains(h.Manifest().Kinds, sdk.KindPrivacy) || !slicesContains(h.Manifest().Kinds, sdk.KindForgetter) {
		t.Fatalf("kinds %v", h.Manifest().Kinds)
	}
	evs := []*sdk.PrivacyEvent{
		{Site: "s", Subject: "p1", Action: vigiev1.PrivacyAction_PRIVACY_ACTION_OBJECT, Objected: []string{"marketing"}},
		{Site: "s", Subject: "p1", Action: vigiev1.PrivacyAction_PRIVACY_ACTION_ERASURE},
	}
	if err := h.Forget(t.Context(), evs); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != vigiev1.PrivacyAction_PRIVACY_ACTION_OBJECT || got[1] != vigiev1.PrivacyAction_PRIVACY_ACTION_ERASURE {
		t.Fatalf("listener got %v", got)
	}
}
