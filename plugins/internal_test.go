package plugins

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
	"github.com/vigie-dev/vigie/storage/storagetest"
)

func TestMatchAny(t *testing.T) {
	for _, c := range []struct {
		patterns []string
		s        string
		want     bool
	}{
		{nil, "anything", true},
		{[]string{"track"}, "track", true},
		{[]string{"track"}, "page", false},
		{[]string{"Order*"}, "Order Completed", true},
		{[]string{"Order*"}, "Cart", false},
		{[]string{"*"}, "", true},
		{[]string{"a", "b"}, "b", true},
	} {
		if got := matchAny(c.patterns, c.s); got != c.want {
			t.Errorf("matchAny(%q, %q) = %v", c.patterns, c.s, got)
		}
	}
}

func TestSubjectFilters(t *testing.T) {
	for _, c := range []struct {
		f    sdk.Filter
		want []string
	}{
		{sdk.Filter{}, []string{"vigie.enriched.*.*"}},
		{sdk.Filter{Sites: []string{"shop"}}, []string{"vigie.enriched.shop.*"}},
		{sdk.Filter{Sites: []string{"a", "b"}, Types: []string{"page"}}, []string{"vigie.enriched.a.page", "vigie.enriched.b.page"}},
		// A prefix pattern or a token NATS would read as a wildcard is
		// filtered by the host instead.
		{sdk.Filter{Sites: []string{"sh*"}, Types: []string{"track"}}, []string{"vigie.enriched.*.track"}},
		{sdk.Filter{Types: []string{"a.b"}}, []string{"vigie.enriched.*.*"}},
	} {
		if got := subjectFilters(streams.EnrichedPrefix, c.f); !slices.Equal(got, c.want) {
			t.Errorf("subjectFilters(%+v) = %q, want %q", c.f, got, c.want)
		}
	}
}

func TestContactFromTraits(t *testing.T) {
	c := ContactFromTraits([]byte(`{"email":"a@b.example","phone":"+33 6","name":"Ada King Lovelace","company":"X"}`))
	if c.Email != "a@b.example" || c.Phone != "+33 6" || c.FirstName != "Ada King" || c.LastName != "Lovelace" ||
		string(c.Traits) != `{"company":"X"}` {
		t.Fatalf("contact: %+v traits %s", c, c.Traits)
	}
	c = ContactFromTraits([]byte(`{"first_name":"Ada","lastName":"L"}`))
	if c.FirstName != "Ada" || c.LastName != "L" || c.Traits != nil {
		t.Fatalf("contact: %+v", c)
	}
	if c := ContactFromTraits([]byte(`not json`)); c.Email != "" {
		t.Fatalf("contact from garbage: %+v", c)
	}
}

func TestStderrLevel(t *testing.T) {
	for _, c := range []struct {
		line string
		lvl  slog.Level
		msg  string
	}{
		{`panic: boom`, slog.LevelError, "panic: boom"},
		{`fatal error: all goroutines are asleep`, slog.LevelError, "fatal error: all goroutines are asleep"},
		{`{"@level":"debug","@message":"plugin address","address":"/tmp/x"}`, slog.LevelDebug, "plugin address"},
		{`{"@level":"warn","@message":"careful"}`, slog.LevelWarn, "careful"},
		{`{"@level":"error","@message":"bad"}`, slog.LevelError, "bad"},
		{`{"not":"hclog"}`, slog.LevelInfo, `{"not":"hclog"}`},
		{`2026/11/26 INFO hello`, slog.LevelInfo, "2026/11/26 INFO hello"},
	} {
		lvl, msg := stderrLevel(c.line)
		if lvl != c.lvl || msg != c.msg {
			t.Errorf("stderrLevel(%q) = %v %q", c.line, lvl, msg)
		}
	}
}

func TestTailKeepsPanicPastStackTrace(t *testing.T) {
	tl := &tail{}
	mark := tl.mark()
	tl.add("panic: poison")
	for i := 0; i < 10; i++ {
		tl.add("goroutine frame")
	}
	if got := tl.panicSince(mark); got != "panic: poison" {
		t.Fatalf("panicSince = %q", got)
	}
	if got := tl.panicSince(tl.mark()); got != "" {
		t.Fatalf("old panic reported as new: %q", got)
	}
}

func TestKeepIdentity(t *testing.T) {
	orig := &vigiev1.Event{Id: "1", Site: "s", Type: "page", Mode: vigiev1.Mode_MODE_ANONYMOUS, IpPrefix: "203.0.113.0/24"}
	got := &vigiev1.Event{Id: "2", Site: "x", Type: "track", Mode: vigiev1.Mode_MODE_PSEUDONYMOUS,
		Purposes: []string{"marketing"}, Subject: "someone", UserId: "u", IpPrefix: "203.0.113.77",
		Geo: &vigiev1.Geo{Country: "FR"}}
	out := keepIdentity(orig, got)
	if out.Id != "1" || out.Site != "s" || out.Type != "page" || out.Mode != vigiev1.Mode_MODE_ANONYMOUS ||
		out.Purposes != nil || out.Subject != "" || out.UserId != "" || out.IpPrefix != "203.0.113.0/24" {
		t.Fatalf("an enricher changed identity or consent: %v", out)
	}
	if out.Geo.GetCountry() != "FR" {
		t.Fatal("enrichment lost")
	}
	// The sensitive-data mark stays, whatever the enricher returns.
	orig.Sensitive = []string{"health"}
	if out := keepIdentity(orig, &vigiev1.Event{}); len(out.Sensitive) != 1 || !sensitiveEvent(out) {
		t.Fatalf("an enricher cleared the sensitive mark: %v", out)
	}
}

func TestConfigValidate(t *testing.T) {
	store := storagetest.Open(t)
	if _, err := New(Config{Store: store}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("missing JetStream: %v", err)
	}
	for _, c := range []struct {
		name  string
		specs []Spec
	}{
		{"bad name", []Spec{{Name: "Bad Name", Path: "/x", SHA256: hex64}}},
		{"dot in name", []Spec{{Name: "a.b", Path: "/x", SHA256: hex64}}},
		{"twice", []Spec{{Name: "a", Path: "/x", SHA256: hex64}, {Name: "a", Path: "/y", SHA256: hex64}}},
		{"no checksum", []Spec{{Name: "a", Path: "/x"}}},
		{"short checksum", []Spec{{Name: "a", Path: "/x", SHA256: "abcd"}}},
		{"built-in without launcher", []Spec{{Name: "a"}}},
		{"built-in and path", []Spec{{Name: "a", Builtin: "crm", Path: "/x", SHA256: hex64}}},
		{"unknown profile purpose", nil},
	} {
		cfg := Config{Store: store, Plugins: c.specs, Purposes: []string{"analytics"}}.withDefaults()
		err := cfg.validate()
		if err == nil || !errors.Is(err, ErrInvalidConfig) || strings.Contains(err.Error(), "JetStream are required") {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestBackoff(t *testing.T) {
	c := Config{Backoff: []time.Duration{time.Second, 5 * time.Second}}
	for n, want := range map[int]time.Duration{0: time.Second, 1: time.Second, 2: 5 * time.Second, 9: 5 * time.Second} {
		if got := c.backoff(n); got != want {
			t.Errorf("backoff(%d) = %v, want %v", n, got, want)
		}
	}
}

func TestCheckManifest(t *testing.T) {
	rt := &Runtime{cfg: Config{Purposes: []string{"analytics", "marketing"}}}
	spec := Spec{Name: "crm"}
	for _, c := range []struct {
		name string
		m    sdk.Manifest
		ok   bool
	}{
		{"fine", sdk.Manifest{Name: "crm", Kinds: []sdk.Kind{sdk.KindSyncer}, Purposes: []string{"marketing"},
			Capabilities: []sdk.Capability{sdk.CapContactsResolve}}, true},
		{"other name", sdk.Manifest{Name: "other", Kinds: []sdk.Kind{sdk.KindSyncer}}, false},
		{"no hook", sdk.Manifest{Name: "crm"}, false},
		{"unknown purpose", sdk.Manifest{Name: "crm", Kinds: []sdk.Kind{sdk.KindSyncer}, Purposes: []string{"spying"}}, false},
		{"contacts without purpose", sdk.Manifest{Name: "crm", Kinds: []sdk.Kind{sdk.KindSyncer},
			Capabilities: []sdk.Capability{sdk.CapContactsResolve}}, false},
	} {
		err := rt.checkManifest(spec, c.m)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrManifest)) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

func TestMachineEmailKeptOutOfSegments(t *testing.T) {
	for _, c := range []struct {
		email *vigiev1.Email
		want  bool
	}{
		{nil, false},
		{&vigiev1.Email{Class: "human"}, false},
		{&vigiev1.Email{Class: "privacy_proxy", Reason: "apple_mpp_range"}, true},
		{&vigiev1.Email{Class: "scanner", Reason: "honeypot_link"}, true},
		{&vigiev1.Email{Class: "unknown"}, true},
	} {
		if got := machineEmail(&vigiev1.Event{Email: c.email}); got != c.want {
			t.Errorf("machineEmail(%v) = %v", c.email, got)
		}
	}
}

func TestAuditContacts(t *testing.T) {
	var got []ContactResolution
	rt := &Runtime{cfg: Config{ContactAudit: func(_ context.Context, r ContactResolution) error {
		got = append(got, r)
		return nil
	}}}
	p := &proc{spec: Spec{Name: "crm"}}
	id := func(site string, c *sdk.Contact) *vigiev1.SyncItem {
		return &vigiev1.SyncItem{Item: &vigiev1.SyncItem_Identify{Identify: &vigiev1.Event{Site: site}}, Contact: c}
	}
	items := []*vigiev1.SyncItem{
		id("a", &sdk.Contact{Email: "x@example.org", Traits: []byte(`{"company":"Acme","ada@example.org":1,"12345":2}`)}),
		id("a", &sdk.Contact{Phone: "+33612345678", LastName: "Lovelace"}),
		id("a", nil), // no contact: not counted
		{Item: &vigiev1.SyncItem_SegmentChange{SegmentChange: &vigiev1.SegmentChange{Site: "b"}}, Contact: &sdk.Contact{Email: "y@example.org"}},
	}
	if err := rt.auditContacts(context.Background(), p, "sync", items); err != nil {
		t.Fatal(err)
	}
	want := []ContactResolution{
		{Plugin: "crm", Site: "a", Fields: []string{"email", "last_name", "phone", "traits.company", "traits.other"}, Count: 2, Via: "sync"},
		{Plugin: "crm", Site: "b", Fields: []string{"email"}, Count: 1, Via: "sync"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	// A failing audit keeps the contacts from the plugin.
	rt.cfg.ContactAudit = func(context.Context, ContactResolution) error { return errors.New("disk full") }
	if err := rt.auditContacts(context.Background(), p, "sync", items); err == nil {
		t.Fatal("audit error not returned")
	}
}

// TestContactFollowsTheCurrentLedger: an event granting marketing does
// not give a plugin the contact once the subject's latest choice (the
// ledger, written by a withdrawal after that event) denies it, nor once
// the subject objected or is restricted.
func TestContactFollowsTheCurrentLedger(t *testing.T) {
	ctx := context.Background()
	store := storagetest.Open(t)
	if _, err := store.Append(ctx, []storage.Record{{Site: "demo", ID: "e1", Time: time.Now(), Type: "identify",
		Subject: "subj", TTL: time.Hour, Data: []byte{0}, Vault: []byte(`{"email":"ada@example.org"}`),
		Topic: "vigie.events.demo.identify"}}); err != nil {
		t.Fatal(err)
	}
	rt := &Runtime{cfg: Config{Store: store}}
	p := &proc{spec: Spec{Name: "crm"}, manifest: sdk.Manifest{Name: "crm", Purposes: []string{"marketing"}}}
	granted := []string{"analytics", "marketing"} // the identify event's
	if c, err := rt.contact(ctx, p, "demo", "subj", granted); err != nil || c.GetEmail() != "ada@example.org" {
		t.Fatalf("with consent: %v, %v", c, err)
	}
	for _, e := range []storage.ConsentEntry{
		{Granted: []string{"analytics"}, Denied: []string{"marketing"}, Source: "preference_page"},
		{Granted: []string{"analytics", "marketing"}, Objected: []string{"marketing"}},
		{Granted: []string{"analytics", "marketing"}, Restricted: true},
	} {
		e.AtMs = time.Now().UnixMilli()
		if err := store.PutConsent(ctx, "demo", "subj", e); err != nil {
			t.Fatal(err)
		}
		if c, err := rt.contact(ctx, p, "demo", "subj", granted); !errors.Is(err, sdk.ErrNotFound) {
			t.Errorf("ledger %+v: contact %v, %v; want none", e, c, err)
		}
	}
	// A later choice granting it again gives it again.
	if err := store.PutConsent(ctx, "demo", "subj", storage.ConsentEntry{Granted: granted, AtMs: time.Now().UnixMilli()}); err != nil {
		t.Fatal(err)
	}
	if c, err := rt.contact(ctx, p, "demo", "subj", granted); err != nil || c == nil {
		t.Errorf("granted again: %v, %v", c, err)
	}
}

func TestCheckBuiltinInstance(t *testing.T) {
	rt := &Runtime{cfg: Config{Purposes: []string{"analytics", "marketing"}}}
	crm := sdk.Manifest{Name: "crm", Kinds: []sdk.Kind{sdk.KindSyncer}, Capabilities: []sdk.Capability{sdk.CapContactsResolve}}
	for _, c := range []struct {
		name string
		spec Spec
		m    sdk.Manifest
		ok   bool
	}{
		{"instance of a built-in", Spec{Name: "crm-hubspot", Builtin: "crm", Purposes: []string{"marketing"}}, crm, true},
		{"manifest names the instance", Spec{Name: "crm-hubspot", Builtin: "crm", Purposes: []string{"marketing"}},
			sdk.Manifest{Name: "crm-hubspot", Kinds: crm.Kinds}, false},
		{"contacts without any purpose", Spec{Name: "crm-hubspot", Builtin: "crm"}, crm, false},
		{"purpose not configured", Spec{Name: "crm-hubspot", Builtin: "crm", Purposes: []string{"spying"}}, crm, false},
	} {
		err := rt.checkManifest(c.spec, effective(c.spec, c.m))
		if (err == nil) != c.ok {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	if m := effective(Spec{Purposes: []string{"marketing"}}, sdk.Manifest{Purposes: []string{"analytics"}}); !slices.Equal(m.Purposes, []string{"analytics", "marketing"}) {
		t.Errorf("effective purposes %v", m.Purposes)
	}
}
