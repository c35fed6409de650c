package geoip

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/vigie-dev/vigie/plugins/geoip/geodb/geodbtest"
)

// place is what a test database knows about a network.
type place struct {
	country, countryName, continent, region, city, tz, postal string
}

// cityRecord builds a GeoIP2 City record for p, with coordinates and
// localized names the plugin must not copy.
func cityRecord(p place) mmdbtype.Map {
	return geodbtest.CityRecord(geodbtest.Place{Country: p.country, CountryName: p.countryName, Continent: p.continent,
		Region: p.region, City: p.city, TimeZone: p.tz, Postal: p.postal})
}

// flatRecord builds an ip-location-db record for p.
func flatRecordFor(p place) mmdbtype.Map {
	return mmdbtype.Map{
		"country_code": mmdbtype.String(p.country),
		"state1":       mmdbtype.String("Region " + p.region),
		"city":         mmdbtype.String(p.city),
		"postcode":     mmdbtype.String(p.postal),
		"latitude":     mmdbtype.Float32(48.85),
		"longitude":    mmdbtype.Float32(2.35),
		"timezone":     mmdbtype.String(p.tz),
	}
}

// writeDB writes a database of dbType holding records to path, replacing
// any file there atomically, and returns path.
func writeDB(t testing.TB, path, dbType string, ipVersion int, records map[string]mmdbtype.Map) string {
	t.Helper()
	return geodbtest.Write(t, path, dbType, ipVersion, records)
}

// logRecorder is a slog.Handler that keeps messages and their attributes
// as text.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	b.WriteString(rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.String())
		return true
	})
	r.mu.Lock()
	r.lines = append(r.lines, b.String())
	r.mu.Unlock()
	return nil
}

// count returns how many lines contain s.
func (r *logRecorder) count(s string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, l := range r.lines {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

// assertNoAddresses fails if a log line holds an address of the tests.
func (r *logRecorder) assertNoAddresses(t *testing.T) {
	t.Helper()
	for _, addr := range []string{"192.0.2", "198.51.100", "203.0.113", "2001:db8"} {
		if n := r.count(addr); n > 0 {
			t.Errorf("%d log lines contain address %s", n, addr)
		}
	}
}

// newTestEnricher returns an Enricher logging to a recorder and polling
// files every few milliseconds.
func newTestEnricher(t *testing.T) (*Enricher, *logRecorder) {
	t.Helper()
	rec := &logRecorder{}
	e := New()
	e.log = slog.New(rec)
	e.pollInterval = 5 * time.Millisecond
	t.Cleanup(func() {
		_ = e.Close()
		rec.assertNoAddresses(t)
	})
	return e, rec
}
