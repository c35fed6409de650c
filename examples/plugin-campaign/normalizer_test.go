package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/sdk/sdktest"
)

// page returns a page event with a campaign (nil when source and medium
// are both empty) and a referrer host.
func page(id, source, medium, referrer string) *sdk.Event {
	ev := &sdk.Event{Id: id, Site: "demo", Type: "page"}
	if source != "" || medium != "" {
		ev.Campaign = &vigiev1.Campaign{Source: source, Medium: medium}
	}
	if referrer != "" {
		ev.Page = &vigiev1.Page{Path: "/", ReferrerHost: referrer}
	}
	return ev
}

// start serves the plugin in-process with the given configuration JSON.
func start(t *testing.T, config string) *sdktest.Harness {
	t.Helper()
	n, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	return sdktest.Start(t, sdktest.Config{Plugin: pluginOf(n), PluginConfig: []byte(config)})
}

// tally adds the sources of events to counts, as the plugin should.
func tally(counts map[string]int, events []*sdk.Event) {
	for _, ev := range events {
		if s := ev.GetCampaign().GetSource(); s != "" {
			counts[s]++
		}
	}
}

// checkCounts compares the KV counters with counts.
func checkCounts(t *testing.T, host *sdktest.Host, counts map[string]int) {
	t.Helper()
	kv := host.KV()
	for src, want := range counts {
		if got := string(kv[countPrefix+src]); got != strconv.Itoa(want) {
			t.Errorf("counter of %q = %q, want %d", src, got, want)
		}
	}
	for k := range kv {
		if src, ok := strings.CutPrefix(k, countPrefix); ok && counts[src] == 0 {
			t.Errorf("unexpected counter %q", k)
		}
	}
}

// unknownLogs returns the sources of the "unknown source" log lines.
func unknownLogs(host *sdktest.Host) []string {
	var out []string
	for _, l := range host.Logs() {
		if strings.HasPrefix(l.Message, "unknown campaign source") {
			out = append(out, l.Attrs["source"])
		}
	}
	return out
}

func TestEnrichDefaults(t *testing.T) {
	h := start(t, `{}`)
	counts := map[string]int{}
	cases := []sdktest.EnrichCase{
		{
			Name: "aliases and case",
			In: []*sdk.Event{
				page("1", "FB", "Paid", ""),
				page("2", " m.facebook.com ", "E-Mail", ""),
				page("3", "Facebook", "newsletter", ""),
				page("4", "www.google.co.uk", "PPC", ""),
				page("5", "google.com", "organic", ""),
				page("6", "ddg", "", ""),
			},
			Want: []*sdk.Event{
				page("1", "facebook", "cpc", ""),
				page("2", "facebook", "email", ""),
				page("3", "facebook", "email", ""),
				page("4", "google", "cpc", ""),
				page("5", "google", "organic", ""),
				page("6", "duckduckgo", "", ""),
			},
		},
		{
			Name: "referrer not used unless configured",
			In:   []*sdk.Event{page("7", "", "", "www.google.fr"), page("8", "", "  ", "t.co")},
			Want: []*sdk.Event{page("7", "", "", "www.google.fr"), {Id: "8", Site: "demo", Type: "page", Campaign: &vigiev1.Campaign{}, Page: &vigiev1.Page{Path: "/", ReferrerHost: "t.co"}}},
		},
		{
			Name: "unknown source kept, counted and reported",
			In:   []*sdk.Event{page("9", "Partner-Blog", "Referral", ""), page("10", "partner-blog ", "", "")},
			Want: []*sdk.Event{page("9", "partner-blog", "referral", ""), page("10", "partner-blog", "", "")},
			Check: func(t *testing.T, _ []*sdk.Event, host *sdktest.Host) {
				if got := unknownLogs(host); !slices.Equal(got, []string{"partner-blog"}) {
					t.Errorf("unknown-source logs = %q, want one for partner-blog", got)
				}
				if _, ok := host.KV()[reportedPrefix+"partner-blog"]; !ok {
					t.Error("no report marker in KV")
				}
			},
		},
		{
			Name: "unknown source reported once",
			In:   []*sdk.Event{page("11", "PARTNER-BLOG", "", "")},
			Want: []*sdk.Event{page("11", "partner-blog", "", "")},
			Check: func(t *testing.T, _ []*sdk.Event, host *sdktest.Host) {
				if got := unknownLogs(host); len(got) != 1 {
					t.Errorf("unknown-source logs = %q, want still one", got)
				}
			},
		},
		{
			Name: "known sources never reported",
			In:   []*sdk.Event{page("12", "Bing", "", ""), page("13", "yandex.ru", "", "")},
			Want: []*sdk.Event{page("12", "bing", "", ""), page("13", "yandex", "", "")},
			Check: func(t *testing.T, _ []*sdk.Event, host *sdktest.Host) {
				if got := unknownLogs(host); len(got) != 1 {
					t.Errorf("unknown-source logs = %q, want only partner-blog", got)
				}
			},
		},
	}
	h.RunEnrich(t, cases)
	for _, c := range cases {
		tally(counts, c.Want)
	}
	checkCounts(t, h.Host, counts)
	for _, l := range h.Host.Logs() {
		for k, v := range l.Attrs {
			if strings.Contains(v, "demo") || k == "id" || k == "subject" {
				t.Errorf("log line %q carries event data %s=%q", l.Message, k, v)
			}
		}
	}
}

func TestEnrichConfigured(t *testing.T) {
	h := start(t, `{"infer_from_referrer": true,
		"sources": {"Newsletter-FR": "newsletter", "facebook": "Meta"},
		"mediums": {"news": "email", "cpc": "paid_search"}}`)
	counts := map[string]int{}
	cases := []sdktest.EnrichCase{
		{
			Name: "inferred from referrer",
			In: []*sdk.Event{
				page("1", "", "", "www.google.fr"),
				page("2", "", "", "search.yahoo.com"),
				page("3", "", "", "T.CO"),
				page("4", "", "Email", "duckduckgo.com"),
			},
			Want: []*sdk.Event{
				page("1", "google", "organic", "www.google.fr"),
				page("2", "yahoo", "organic", "search.yahoo.com"),
				page("3", "twitter", "social", "T.CO"),
				page("4", "duckduckgo", "email", "duckduckgo.com"),
			},
		},
		{
			Name: "renamed canonical applies to aliases, hosts and referrers",
			In:   []*sdk.Event{page("5", "fb", "", ""), page("6", "l.facebook.com", "", ""), page("7", "", "", "lm.facebook.com")},
			Want: []*sdk.Event{page("5", "meta", "", ""), page("6", "meta", "", ""), page("7", "meta", "social", "lm.facebook.com")},
		},
		{
			Name: "configured aliases and medium chains",
			In:   []*sdk.Event{page("8", "newsletter-fr", "news", ""), page("9", "google", "PPC", "")},
			Want: []*sdk.Event{page("8", "newsletter", "email", ""), page("9", "google", "paid_search", "")},
			Check: func(t *testing.T, _ []*sdk.Event, host *sdktest.Host) {
				if got := unknownLogs(host); len(got) != 0 {
					t.Errorf("configured source reported as unknown: %q", got)
				}
			},
		},
		{
			Name: "explicit source wins over referrer",
			In:   []*sdk.Event{page("10", "newsletter-fr", "", "www.google.com")},
			Want: []*sdk.Event{page("10", "newsletter", "", "www.google.com")},
		},
		{
			Name: "unknown or non-search referrers left alone",
			In:   []*sdk.Event{page("11", "", "", "example.org"), page("12", "", "", "mail.google.com"), page("13", "", "", "google")},
			Want: []*sdk.Event{page("11", "", "", "example.org"), page("12", "", "", "mail.google.com"), page("13", "", "", "google")},
		},
	}
	h.RunEnrich(t, cases)
	for _, c := range cases {
		tally(counts, c.Want)
	}
	checkCounts(t, h.Host, counts)
}

func TestEnrichNeedsKVCapability(t *testing.T) {
	n, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	p := pluginOf(n)
	p.Manifest.Capabilities = nil
	h := sdktest.Start(t, sdktest.Config{Plugin: p})
	h.RunEnrich(t, []sdktest.EnrichCase{
		{Name: "counter refused", In: []*sdk.Event{page("1", "fb", "", "")}, WantErr: "capability"},
		{Name: "nothing to count, no call", In: []*sdk.Event{page("2", "", "cpc", "")}, Want: []*sdk.Event{page("2", "", "cpc", "")}},
	})
}

// recordingHost is a sdktest.Host that records KVPut TTLs and can fail.
type recordingHost struct {
	*sdktest.Host
	ttls   map[string]time.Duration
	putErr error
}

func (h *recordingHost) KVPut(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if h.putErr != nil {
		return h.putErr
	}
	h.ttls[key] = ttl
	return h.Host.KVPut(ctx, key, value, ttl)
}

func TestEnrichStore(t *testing.T) {
	errDown := errors.New("store down")
	tests := []struct {
		name     string
		seed     map[string]string
		putErr   error
		wantErr  error
		wantKV   map[string]string
		wantTTL  map[string]time.Duration
		wantLogs int
	}{
		{
			name:     "report marker expires after a day, counters never",
			wantKV:   map[string]string{"count/acme": "1", "reported/acme": "1"},
			wantTTL:  map[string]time.Duration{"count/acme": 0, "reported/acme": reportTTL},
			wantLogs: 1,
		},
		{
			name:     "existing counter incremented",
			seed:     map[string]string{"count/acme": "41", "reported/acme": "1"},
			wantKV:   map[string]string{"count/acme": "42", "reported/acme": "1"},
			wantTTL:  map[string]time.Duration{"count/acme": 0},
			wantLogs: 0,
		},
		{
			name:     "unreadable counter restarts with a warning",
			seed:     map[string]string{"count/acme": "x", "reported/acme": "1"},
			wantKV:   map[string]string{"count/acme": "1", "reported/acme": "1"},
			wantTTL:  map[string]time.Duration{"count/acme": 0},
			wantLogs: 1,
		},
		{
			name:    "store error fails the batch without logging",
			putErr:  errDown,
			wantErr: errDown,
			wantKV:  map[string]string{},
			wantTTL: map[string]time.Duration{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := &recordingHost{Host: sdktest.NewHost(), ttls: map[string]time.Duration{}}
			ctx := sdk.ContextWithHost(t.Context(), host)
			for k, v := range tt.seed {
				_ = host.Host.KVPut(ctx, k, []byte(v), 0)
			}
			host.putErr = tt.putErr
			n, _ := New(Config{})
			_, err := n.Enrich(ctx, []*sdk.Event{page("1", "ACME", "", "")})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			got := map[string]string{}
			for k, v := range host.KV() {
				got[k] = string(v)
			}
			if !maps.Equal(got, tt.wantKV) {
				t.Errorf("KV = %v, want %v", got, tt.wantKV)
			}
			if !maps.Equal(host.ttls, tt.wantTTL) {
				t.Errorf("TTLs = %v, want %v", host.ttls, tt.wantTTL)
			}
			if got := len(host.Logs()); got != tt.wantLogs {
				t.Errorf("%d log lines %v, want %d", got, host.Logs(), tt.wantLogs)
			}
		})
	}
}

func TestConfigure(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		wantErr bool
		source  string // looked up after Configure
		want    string
		medium  bool // look source up as a medium
	}{
		{name: "nil keeps defaults", raw: "", source: "fb", want: "facebook"},
		{name: "null keeps defaults", raw: "null", source: "FB", want: "facebook"},
		{name: "extends", raw: `{"sources":{"Newsletter-FR":" NewsLetter "}}`, source: "newsletter-fr", want: "newsletter"},
		{name: "overrides a built-in alias", raw: `{"sources":{"fb":"fb-ads"}}`, source: "fb", want: "fb-ads"},
		{name: "renames a canonical", raw: `{"sources":{"google":"alphabet"}}`, source: "adwords", want: "alphabet"},
		{name: "same alias twice, same name", raw: `{"sources":{"a":"x","A":"X"}}`, source: "a", want: "x"},
		{name: "not JSON", raw: `{"sources":`, wantErr: true},
		{name: "trailing data", raw: `{} {}`, wantErr: true},
		{name: "not an object", raw: `[1]`, wantErr: true},
		{name: "unknown field", raw: `{"source":{}}`, wantErr: true},
		{name: "wrong type", raw: `{"infer_from_referrer":"yes"}`, wantErr: true},
		{name: "empty canonical", raw: `{"sources":{"a":" "}}`, wantErr: true},
		{name: "empty alias", raw: `{"mediums":{"":"cpc"}}`, wantErr: true},
		{name: "conflicting duplicates", raw: `{"sources":{"a":"x","A":"y"}}`, wantErr: true},
		{name: "cycle", raw: `{"sources":{"a":"b","b":"a"}}`, wantErr: true},
		{name: "renames a canonical to its alias", raw: `{"sources":{"facebook":"fb"}}`, source: "m.facebook.com", want: "fb"},
		{name: "medium renamed to its alias", raw: `{"mediums":{"cpc":"paid"}}`, source: "ppc", want: "paid", medium: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, _ := New(Config{})
			before := n.tables.Load()
			var raw []byte
			if tt.raw != "" {
				raw = []byte(tt.raw)
			}
			err := n.Configure(t.Context(), raw)
			if tt.wantErr {
				if !errors.Is(err, ErrConfig) {
					t.Fatalf("err = %v, want ErrConfig", err)
				}
				if n.tables.Load() != before {
					t.Error("a refused configuration replaced the tables")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tb := n.tables.Load()
			got, _ := tb.source(normalize(tt.source))
			if tt.medium {
				got = tb.medium(normalize(tt.source))
			}
			if got != tt.want {
				t.Errorf("source(%q) = %q, want %q", tt.source, got, tt.want)
			}
		})
	}
}

// TestTables checks the invariants of the built-in tables that lookups
// rely on.
func TestTables(t *testing.T) {
	tb, err := newTables(Config{})
	if err != nil {
		t.Fatal(err)
	}
	for name, table := range map[string]map[string]string{"sources": tb.sources, "mediums": tb.mediums} {
		for alias, canon := range table {
			if normalize(alias) != alias || normalize(canon) != canon {
				t.Errorf("%s: %q → %q is not normalized", name, alias, canon)
			}
			if table[canon] != canon {
				t.Errorf("%s: canonical %q of %q is not final (→ %q)", name, canon, alias, table[canon])
			}
		}
	}
	for _, ch := range slices.Concat(slices.Collect(maps.Values(referrerHosts)), slices.Collect(maps.Values(referrerNames))) {
		if tb.sources[ch.source] != ch.source {
			t.Errorf("referrer source %q is not a known canonical", ch.source)
		}
		if ch.medium != mediumOrganic && ch.medium != mediumSocial {
			t.Errorf("referrer medium %q", ch.medium)
		}
	}
	for host := range referrerHosts {
		if _, ok := matchReferrer(host); !ok {
			t.Errorf("referrer host %q does not match itself", host)
		}
	}
	// The brief's examples.
	for in, want := range map[string]string{"fb": "facebook", "facebook.com": "facebook", "m.facebook.com": "facebook",
		"Facebook": "facebook", "google": "google", "google.com": "google", "www.google.com": "google"} {
		if got, known := tb.source(normalize(in)); got != want || !known {
			t.Errorf("source(%q) = %q, %v; want %q, true", in, got, known, want)
		}
	}
	for in, want := range map[string]string{"newsletter": "email", "e-mail": "email", "mail": "email", "cpc": "cpc", "ppc": "cpc", "paid": "cpc"} {
		if got := tb.medium(in); got != want {
			t.Errorf("medium(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMatchReferrer(t *testing.T) {
	tests := []struct {
		host string
		want channel
		ok   bool
	}{
		{"www.google.com", channel{"google", mediumOrganic}, true},
		{"google.co.uk", channel{"google", mediumOrganic}, true},
		{"google.com.", channel{"google", mediumOrganic}, true},
		{"m.youtube.com", channel{"youtube", mediumSocial}, true},
		{"l.instagram.com", channel{"instagram", mediumSocial}, true},
		{"x.com", channel{"twitter", mediumSocial}, true},
		{"search.yahoo.com", channel{"yahoo", mediumOrganic}, true},
		{"yahoo.com", channel{}, false},
		{"mail.google.com", channel{}, false},
		{"google", channel{}, false},
		{"", channel{}, false},
		{".", channel{}, false},
		{"www.", channel{}, false},
		{"example.org", channel{}, false},
	}
	for _, tt := range tests {
		got, ok := matchReferrer(tt.host)
		if got != tt.want || ok != tt.ok {
			t.Errorf("matchReferrer(%q) = %v, %v; want %v, %v", tt.host, got, ok, tt.want, tt.ok)
		}
	}
}

func TestKeyPart(t *testing.T) {
	long := strings.Repeat("a", maxKeySource-1) + "é" // é straddles the limit
	tests := []struct{ in, want string }{
		{"acme", "acme"},
		{strings.Repeat("b", maxKeySource+10), strings.Repeat("b", maxKeySource)},
		{long, long[:maxKeySource-1]},
	}
	for _, tt := range tests {
		if got := keyPart(tt.in); got != tt.want {
			t.Errorf("keyPart(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestManifest(t *testing.T) {
	n, _ := New(Config{})
	m := pluginOf(n).Manifest
	if m.Name != "campaign-normalizer" || m.Version != "1.0.0" || len(m.Purposes) != 0 || !m.Has(sdk.CapKV) || len(m.Capabilities) != 1 {
		t.Errorf("manifest %+v", m)
	}
	var schema struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	if err := json.Unmarshal(m.ConfigSchema, &schema); err != nil {
		t.Fatalf("schema: %v", err)
	}
	var fields []string
	for f := range reflect.TypeFor[Config]().Fields() {
		fields = append(fields, f.Tag.Get("json"))
	}
	if got := slices.Sorted(maps.Keys(schema.Properties)); !slices.Equal(got, slices.Sorted(slices.Values(fields))) {
		t.Errorf("schema properties %v, Config fields %v", got, fields)
	}
	// The harness validates the manifest as Vigie does.
	h := sdktest.Start(t, sdktest.Config{Plugin: pluginOf(n)})
	if got := h.Manifest(); !slices.Equal(got.Kinds, []sdk.Kind{sdk.KindEnricher}) || !slices.Equal(got.Filter.Types, []string{"page", "track"}) {
		t.Errorf("served manifest %+v", got)
	}
}

func FuzzConfigure(f *testing.F) {
	for _, s := range []string{"", "null", "{}", `{"sources":{"fb":"meta"}}`, `{"mediums":{"a":"b","b":"a"}}`,
		`{"infer_from_referrer":true,"sources":{"Newsletter-FR":"newsletter"}}`, `{"sources":{"a":"b","b":"c","c":"d"}}`, `{`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		n, _ := New(Config{})
		err := n.Configure(context.Background(), raw)
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("error %v does not wrap ErrConfig", err)
			}
			return
		}
		if len(strings.TrimSpace(string(raw))) > 0 && !json.Valid(raw) {
			t.Fatalf("invalid JSON %q accepted", raw)
		}
		// Lookups are idempotent: a canonical name maps to itself.
		tb := n.tables.Load()
		for _, table := range []map[string]string{tb.sources, tb.mediums} {
			for alias, canon := range table {
				if table[canon] != canon {
					t.Fatalf("%q → %q → %q", alias, canon, table[canon])
				}
			}
		}
	})
}

func ExampleNormalizer_Enrich() {
	n, _ := New(Config{InferFromReferrer: true})
	ctx := sdk.ContextWithHost(context.Background(), sdktest.NewHost())
	out, _ := n.Enrich(ctx, []*sdk.Event{
		{Id: "1", Type: "page", Campaign: &vigiev1.Campaign{Source: "FB", Medium: "Paid"}},
		{Id: "2", Type: "page", Page: &vigiev1.Page{ReferrerHost: "www.google.fr"}},
	})
	for _, ev := range out {
		fmt.Println(ev.GetCampaign().GetSource(), ev.GetCampaign().GetMedium())
	}
	// Output:
	// facebook cpc
	// google organic
}
