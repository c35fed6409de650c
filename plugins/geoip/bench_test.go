package geoip

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/vigie-dev/vigie/sdk"
)

// benchSetup returns a configured Enricher and a batch of 100 events: 80
// with prefixes the database knows (IPv4 and IPv6), 20 without an entry.
func benchSetup(b *testing.B) (*Enricher, []*sdk.Event) {
	b.Helper()
	places := map[string]place{}
	for i := range 64 {
		places[fmt.Sprintf("10.%d.%d.0/24", i/8, i%8)] = paris
		places[fmt.Sprintf("2001:db8:%x::/48", i)] = berlin
	}
	db := cityDB(b, b.TempDir(), places)
	e := New()
	if err := e.Configure(b.Context(), fmt.Appendf(nil, `{"database":%q}`, db)); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.Close() })
	batch := make([]*sdk.Event, 100)
	for i := range batch {
		var prefix string
		switch {
		case i%5 == 4:
			prefix = fmt.Sprintf("172.16.%d.0/24", i) // no entry
		case i%2 == 0:
			prefix = fmt.Sprintf("10.%d.%d.0/24", (i/2)%8, i%8)
		default:
			prefix = fmt.Sprintf("2001:db8:%x::/48", i%64)
		}
		batch[i] = ev(fmt.Sprint(i), prefix)
	}
	return e, batch
}

// BenchmarkEnrich measures the plugin's own work on a batch of 100.
func BenchmarkEnrich(b *testing.B) {
	e, batch := benchSetup(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Enrich(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/event")
}

// BenchmarkEnrichGRPC measures a batch of 100 through the go-plugin gRPC
// transport (in memory), as the host calls it.
func BenchmarkEnrichGRPC(b *testing.B) {
	places := map[string]place{"10.0.0.0/8": paris}
	db := cityDB(b, b.TempDir(), places)
	h := sdktestStart(b, fmt.Sprintf(`{"database":%q}`, filepath.Clean(db)))
	_, batch := benchSetup(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.Enrich(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/event")
}
