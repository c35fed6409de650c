package geoip

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter/mmdbtype"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/sdk/sdktest"
)

var (
	paris   = place{country: "FR", countryName: "France", continent: "EU", region: "IDF", city: "Paris", tz: "Europe/Paris", postal: "75001"}
	lyon    = place{country: "FR", countryName: "France", continent: "EU", region: "ARA", city: "Lyon", tz: "Europe/Paris", postal: "69001"}
	berlin  = place{country: "DE", countryName: "Germany", continent: "EU", region: "BE", city: "Berlin", tz: "Europe/Berlin", postal: "10115"}
	munich  = place{country: "DE", countryName: "Germany", continent: "EU", region: "BY", city: "Munich", tz: "Europe/Berlin", postal: "80331"}
	rome    = place{country: "IT", countryName: "Italy", continent: "EU", region: "62", city: "Rome", tz: "Europe/Rome", postal: "00118"}
	japan   = place{country: "JP", countryName: "Japan", continent: "AS", tz: "Asia/Tokyo"} // country-level only
	testNet = map[string]place{
		"192.0.2.0/24":         paris,
		"198.51.100.128/25":    lyon, // the /24's network address is outside it
		"203.0.113.0/24":       japan,
		"2001:db8:1::/48":      berlin,
		"2001:db8:2:ff00::/56": munich, // finer than /48: never reached
	}
)

// cityDB writes a GeoLite2-City database of places to dir.
func cityDB(t testing.TB, dir string, places map[string]place) string {
	t.Helper()
	recs := make(map[string]mmdbtype.Map, len(places))
	for cidr, p := range places {
		recs[cidr] = cityRecord(p)
	}
	return writeDB(t, filepath.Join(dir, "GeoLite2-City.mmdb"), "GeoLite2-City", 6, recs)
}

// geo is the Geo expected for p.
func geo(p place, postal bool) *vigiev1.Geo {
	g := &vigiev1.Geo{Country: p.country, CountryName: p.countryName, Region: p.region, City: p.city, Continent: p.continent, TimeZone: p.tz}
	if postal {
		g.PostalCode = p.postal
	}
	return g
}

// ev returns an event with ip_prefix and fields the plugin must keep.
func ev(id, prefix string) *sdk.Event {
	return &sdk.Event{Id: id, Site: "shop", Type: "page", IpPrefix: prefix, Locale: "fr-FR", Page: &vigiev1.Page{Path: "/p"}}
}

// withGeo returns ev(id, prefix) with g set.
func withGeo(id, prefix string, g *vigiev1.Geo) *sdk.Event {
	e := ev(id, prefix)
	e.Geo = g
	return e
}

// sdktestStart serves a new Enricher in-process with config.
func sdktestStart(tb testing.TB, config string) *sdktest.Harness {
	tb.Helper()
	return sdktest.Start(tb, sdktest.Config{Plugin: Plugin(), PluginConfig: []byte(config)})
}

// startPlugin serves e in-process with config.
func startPlugin(t *testing.T, e *Enricher, config string) *sdktest.Harness {
	t.Helper()
	var raw []byte
	if config != "" {
		raw = []byte(config)
	}
	return sdktest.Start(t, sdktest.Config{Plugin: pluginFor(e), PluginConfig: raw})
}

func TestEnrich(t *testing.T) {
	db := cityDB(t, t.TempDir(), testNet)
	e, _ := newTestEnricher(t)
	h := startPlugin(t, e, fmt.Sprintf(`{"database":%q}`, db))
	h.RunEnrich(t, []sdktest.EnrichCase{
		{Name: "IPv4 /24 prefix", In: []*sdk.Event{ev("1", "192.0.2.0/24")}, Want: []*sdk.Event{withGeo("1", "192.0.2.0/24", geo(paris, false))}},
		{Name: "IPv6 /48 prefix", In: []*sdk.Event{ev("1", "2001:db8:1::/48")}, Want: []*sdk.Event{withGeo("1", "2001:db8:1::/48", geo(berlin, false))}},
		{Name: "country-level record", In: []*sdk.Event{ev("1", "203.0.113.0/24")}, Want: []*sdk.Event{withGeo("1", "203.0.113.0/24", geo(japan, false))}},
		{Name: "IPv4-mapped IPv6 prefix", In: []*sdk.Event{ev("1", "::ffff:192.0.2.0/120")}, Want: []*sdk.Event{withGeo("1", "::ffff:192.0.2.0/120", geo(paris, false))}},
		{Name: "no entry for the network address", In: []*sdk.Event{ev("1", "198.51.100.0/24")}, Want: []*sdk.Event{ev("1", "198.51.100.0/24")}},
		{Name: "no entry at all", In: []*sdk.Event{ev("1", "10.1.2.0/24"), ev("2", "2001:db8:9::/48")}, Want: []*sdk.Event{ev("1", "10.1.2.0/24"), ev("2", "2001:db8:9::/48")}},
		{Name: "bare IPv4 address is truncated to /24", In: []*sdk.Event{ev("1", "198.51.100.200"), ev("2", "192.0.2.77")},
			Want: []*sdk.Event{ev("1", "198.51.100.200"), withGeo("2", "192.0.2.77", geo(paris, false))}},
		{Name: "IPv6 prefix longer than /48 is truncated", In: []*sdk.Event{ev("1", "2001:db8:2:ff00::/56"), ev("2", "2001:db8:2:ff00::1")},
			Want: []*sdk.Event{ev("1", "2001:db8:2:ff00::/56"), ev("2", "2001:db8:2:ff00::1")}},
		{Name: "missing or invalid ip_prefix", In: []*sdk.Event{ev("1", ""), ev("2", "not-an-ip")}, Want: []*sdk.Event{ev("1", ""), ev("2", "not-an-ip")}},
		{Name: "mixed batch keeps order", In: []*sdk.Event{ev("a", "2001:db8:1::/48"), ev("b", ""), ev("c", "192.0.2.0/24")},
			Want: []*sdk.Event{withGeo("a", "2001:db8:1::/48", geo(berlin, false)), ev("b", ""), withGeo("c", "192.0.2.0/24", geo(paris, false))}},
		{Name: "empty batch", In: nil, Want: []*sdk.Event{}},
	})
}

func TestPostalOnlyWhenConfigured(t *testing.T) {
	db := cityDB(t, t.TempDir(), testNet)
	for _, postal := range []bool{false, true} {
		t.Run(fmt.Sprint("postal=", postal), func(t *testing.T) {
			e, _ := newTestEnricher(t)
			h := startPlugin(t, e, fmt.Sprintf(`{"database":%q,"postal":%t}`, db, postal))
			h.RunEnrich(t, []sdktest.EnrichCase{{
				Name: "city and country records",
				In:   []*sdk.Event{ev("1", "192.0.2.0/24"), ev("2", "203.0.113.0/24")},
				Want: []*sdk.Event{withGeo("1", "192.0.2.0/24", geo(paris, postal)), withGeo("2", "203.0.113.0/24", geo(japan, postal))},
			}})
		})
	}
}

func TestNoDatabasePassesThrough(t *testing.T) {
	for _, config := range []string{"", "{}", `{"database":""}`} {
		t.Run(fmt.Sprintf("config %q", config), func(t *testing.T) {
			e, logs := newTestEnricher(t)
			h := startPlugin(t, e, config)
			in := []*sdk.Event{ev("1", "192.0.2.0/24"), ev("2", "2001:db8:1::/48")}
			for range 3 {
				h.RunEnrich(t, []sdktest.EnrichCase{{Name: "unchanged", In: in, Want: []*sdk.Event{ev("1", "192.0.2.0/24"), ev("2", "2001:db8:1::/48")}}})
			}
			if n := logs.count("no GeoIP database configured"); n != 1 {
				t.Errorf("logged the missing database %d times, want once", n)
			}
		})
	}
}

func TestFlatSchemaSplitFiles(t *testing.T) {
	dir := t.TempDir()
	v4 := writeDB(t, filepath.Join(dir, "geolite2-city-ipv4.mmdb"), "city ipv4", 4, map[string]mmdbtype.Map{"192.0.2.0/24": flatRecordFor(paris)})
	v6 := writeDB(t, filepath.Join(dir, "geolite2-city-ipv6.mmdb"), "city ipv6", 6, map[string]mmdbtype.Map{"2001:db8:1::/48": flatRecordFor(berlin)})
	flat := func(p place, postal bool) *vigiev1.Geo {
		g := &vigiev1.Geo{Country: p.country, City: p.city, TimeZone: p.tz} // no names, continent or ISO region in this schema
		if postal {
			g.PostalCode = p.postal
		}
		return g
	}
	e, _ := newTestEnricher(t)
	h := startPlugin(t, e, fmt.Sprintf(`{"database":%q,"ipv6_database":%q,"postal":true}`, v4, v6))
	h.RunEnrich(t, []sdktest.EnrichCase{
		{Name: "IPv4 from the first file", In: []*sdk.Event{ev("1", "192.0.2.0/24")}, Want: []*sdk.Event{withGeo("1", "192.0.2.0/24", flat(paris, true))}},
		{Name: "IPv6 from the second file", In: []*sdk.Event{ev("1", "2001:db8:1::/48")}, Want: []*sdk.Event{withGeo("1", "2001:db8:1::/48", flat(berlin, true))}},
		{Name: "in neither", In: []*sdk.Event{ev("1", "198.51.100.0/24"), ev("2", "2001:db8:3::/48")}, Want: []*sdk.Event{ev("1", "198.51.100.0/24"), ev("2", "2001:db8:3::/48")}},
	})
}

func TestConfigureErrors(t *testing.T) {
	dir := t.TempDir()
	good := cityDB(t, dir, testNet)
	asn := writeDB(t, filepath.Join(dir, "asn.mmdb"), "GeoLite2-ASN", 6, map[string]mmdbtype.Map{"192.0.2.0/24": {"autonomous_system_number": mmdbtype.Uint32(64500)}})
	custom := writeDB(t, filepath.Join(dir, "custom.mmdb"), "Acme-Locations", 6, map[string]mmdbtype.Map{"192.0.2.0/24": {"x": mmdbtype.String("y")}})
	garbage := filepath.Join(dir, "garbage.mmdb")
	if err := os.WriteFile(garbage, []byte("not a database"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, config string
		want         error
	}{
		{"valid", fmt.Sprintf(`{"database":%q,"postal":true}`, good), nil},
		{"unknown field", `{"databse":"x.mmdb"}`, ErrConfig},
		{"not JSON", `{"database":`, ErrConfig},
		{"wrong type", `{"postal":"yes"}`, ErrConfig},
		{"ipv6 file without database", fmt.Sprintf(`{"ipv6_database":%q}`, good), ErrConfig},
		{"missing file", fmt.Sprintf(`{"database":%q}`, filepath.Join(dir, "nope.mmdb")), ErrDatabase},
		{"not a database", fmt.Sprintf(`{"database":%q}`, garbage), ErrDatabase},
		{"ASN database", fmt.Sprintf(`{"database":%q}`, asn), ErrDatabase},
		{"unknown database type", fmt.Sprintf(`{"database":%q}`, custom), ErrDatabase},
		{"bad second file", fmt.Sprintf(`{"database":%q,"ipv6_database":%q}`, good, garbage), ErrDatabase},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := newTestEnricher(t)
			err := e.Configure(t.Context(), []byte(tc.config))
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Configure = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestReload replaces the database file while events flow: every event
// gets the old or the new data (none is dropped or left without Geo), the
// new data arrives, a broken file keeps the previous database, and a
// repaired file is loaded again.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	path := cityDB(t, dir, map[string]place{"192.0.2.0/24": paris})
	e, logs := newTestEnricher(t)
	h := startPlugin(t, e, fmt.Sprintf(`{"database":%q}`, path))

	var stop atomic.Bool
	var wg sync.WaitGroup
	var seenParis, seenRome, bad atomic.Int64
	for range 2 {
		wg.Go(func() {
			for !stop.Load() {
				batch := []*sdk.Event{ev("1", "192.0.2.0/24"), ev("2", "192.0.2.0/24")}
				out, err := e.Enrich(t.Context(), batch)
				if err != nil || len(out) != len(batch) {
					bad.Add(1)
					continue
				}
				for _, o := range out {
					switch {
					case proto.Equal(o.GetGeo(), geo(paris, false)):
						seenParis.Add(1)
					case proto.Equal(o.GetGeo(), geo(rome, false)):
						seenRome.Add(1)
					default:
						bad.Add(1)
					}
				}
			}
		})
	}
	city := func() string {
		out, err := h.Enrich(t.Context(), []*sdk.Event{ev("1", "192.0.2.0/24")})
		if err != nil || len(out) != 1 {
			t.Fatalf("Enrich = %v, %v", out, err)
		}
		return out[0].GetGeo().GetCity()
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	if got := city(); got != "Paris" {
		t.Fatalf("before reload: city %q, want Paris", got)
	}
	cityDB(t, dir, map[string]place{"192.0.2.0/24": rome})
	waitFor("the replaced file to be loaded", func() bool { return city() == "Rome" })

	// Replaced in one step (write then rename), so that the watcher sees
	// one change: a write in place can be seen half-done (truncated, then
	// written), which is two changes and rightly two failed reloads.
	broken := path + ".tmp"
	if err := os.WriteFile(broken, []byte("truncated download"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(broken, path); err != nil {
		t.Fatal(err)
	}
	waitFor("the failed reload to be logged", func() bool { return logs.count("reload failed") > 0 })
	if got := city(); got != "Rome" {
		t.Errorf("after a failed reload: city %q, want Rome (the previous database)", got)
	}
	time.Sleep(50 * time.Millisecond) // a broken file is not retried until it changes
	if n := logs.count("reload failed"); n != 1 {
		t.Errorf("failed reload logged %d times, want once", n)
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor("the missing file to be logged", func() bool { return logs.count("file unavailable") > 0 })
	if got := city(); got != "Rome" {
		t.Errorf("with the file gone: city %q, want Rome", got)
	}

	cityDB(t, dir, map[string]place{"192.0.2.0/24": paris})
	waitFor("the restored file to be loaded", func() bool { return city() == "Paris" })

	stop.Store(true)
	wg.Wait()
	if bad.Load() != 0 {
		t.Errorf("%d events were dropped or had no Geo during reloads", bad.Load())
	}
	if seenParis.Load() == 0 || seenRome.Load() == 0 {
		t.Errorf("concurrent enrichers saw Paris %d and Rome %d times, want both", seenParis.Load(), seenRome.Load())
	}
}

func TestCloseStopsWatching(t *testing.T) {
	dir := t.TempDir()
	path := cityDB(t, dir, map[string]place{"192.0.2.0/24": paris})
	e, _ := newTestEnricher(t)
	if err := e.Configure(t.Context(), fmt.Appendf(nil, `{"database":%q}`, path)); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	cityDB(t, dir, map[string]place{"192.0.2.0/24": rome})
	time.Sleep(50 * time.Millisecond)
	out, _ := e.Enrich(t.Context(), []*sdk.Event{ev("1", "192.0.2.0/24")})
	if got := out[0].GetGeo().GetCity(); got != "Paris" {
		t.Errorf("after Close: city %q, want Paris (no reload)", got)
	}
}

func TestManifest(t *testing.T) {
	h := sdktest.Start(t, sdktest.Config{Plugin: Plugin()})
	m := h.Manifest()
	if m.Name != "geoip" || m.Version != Version {
		t.Errorf("manifest %s %s", m.Name, m.Version)
	}
	if len(m.Kinds) != 1 || m.Kinds[0] != sdk.KindEnricher {
		t.Errorf("kinds %v, want [enricher]", m.Kinds)
	}
	if len(m.Purposes) != 0 || len(m.Capabilities) != 0 {
		t.Errorf("purposes %v capabilities %v, want none", m.Purposes, m.Capabilities)
	}
}

// TestLookupErrorsPassThrough: a record the database cannot decode (a
// country that is not a map) leaves its event unchanged, is logged once
// per batch without the address, and never fails the batch.
func TestLookupErrorsPassThrough(t *testing.T) {
	path := writeDB(t, filepath.Join(t.TempDir(), "broken.mmdb"), "GeoLite2-City", 6, map[string]mmdbtype.Map{
		"192.0.2.0/24": {"country": mmdbtype.String("not a map")},
	})
	e, logs := newTestEnricher(t)
	if err := e.Configure(t.Context(), fmt.Appendf(nil, `{"database":%q}`, path)); err != nil {
		t.Fatal(err)
	}
	out, err := e.Enrich(t.Context(), []*sdk.Event{ev("1", "192.0.2.0/24"), ev("2", "")})
	if err != nil {
		t.Fatalf("Enrich error %v, want the batch to pass", err)
	}
	for _, o := range out {
		if o.GetGeo() != nil {
			t.Errorf("event %s got Geo %v from a failing database", o.GetId(), o.GetGeo())
		}
	}
	if n := logs.count("lookups failed"); n != 1 {
		t.Errorf("logged %d failure lines, want 1", n)
	}
}

// TestPassThroughWithoutDatabase: configured without a database the plugin
// answers Configure that its Enrich changes nothing, so the host skips it;
// with one it does not.
func TestPassThroughWithoutDatabase(t *testing.T) {
	db := cityDB(t, t.TempDir(), testNet)
	for _, tc := range []struct {
		config string
		want   bool
	}{
		{"{}", true},
		{`{"database":""}`, true},
		{fmt.Sprintf(`{"database":%q}`, db), false},
	} {
		t.Run(tc.config, func(t *testing.T) {
			e, _ := newTestEnricher(t)
			h := startPlugin(t, e, tc.config)
			if got := h.EnrichPassThrough(); got != tc.want {
				t.Errorf("EnrichPassThrough() = %v, want %v", got, tc.want)
			}
		})
	}
}
