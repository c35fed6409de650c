package main

import (
	"testing"

	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/sdk/sdktest"
)

// benchInput is a batch mixing the shapes Enrich meets: aliases to map,
// hosts as sources, already-canonical values, referrers to infer from and
// events without campaign.
var benchInput = []struct{ source, medium, referrer string }{
	{"FB", "Paid", ""},
	{"m.facebook.com", "social", ""},
	{"google", "cpc", ""},
	{"www.google.co.uk", "organic", ""},
	{"newsletter-fr", "E-Mail", ""},
	{"", "", "www.google.fr"},
	{"", "", "t.co"},
	{"", "", "example.org"},
	{"", "", ""},
	{"bing", "", ""},
}

// benchBatch returns a batch of size events built from benchInput and a
// function resetting it to its input values, without allocating.
func benchBatch(size int) ([]*sdk.Event, func()) {
	events := make([]*sdk.Event, size)
	for i := range events {
		events[i] = &sdk.Event{Type: "page", Page: &vigiev1.Page{}}
	}
	reset := func() {
		for i, ev := range events {
			in := benchInput[i%len(benchInput)]
			ev.Page.ReferrerHost = in.referrer
			if in.source == "" && in.medium == "" {
				ev.Campaign = nil
				continue
			}
			if ev.Campaign == nil {
				ev.Campaign = &vigiev1.Campaign{}
			}
			ev.Campaign.Source, ev.Campaign.Medium = in.source, in.medium
		}
	}
	reset()
	return events, reset
}

// BenchmarkApply measures the per-event normalization alone.
func BenchmarkApply(b *testing.B) {
	n, _ := New(Config{InferFromReferrer: true})
	t := n.tables.Load()
	events, reset := benchBatch(len(benchInput))
	b.ReportAllocs()
	for b.Loop() {
		reset()
		for _, ev := range events {
			t.apply(ev)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/event")
}

// BenchmarkEnrich measures a 100-event batch, counters included, against
// the in-memory host (no gRPC).
func BenchmarkEnrich(b *testing.B) {
	n, _ := New(Config{InferFromReferrer: true})
	ctx := sdk.ContextWithHost(b.Context(), sdktest.NewHost())
	events, reset := benchBatch(100)
	b.ReportAllocs()
	for b.Loop() {
		reset()
		if _, err := n.Enrich(ctx, events); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEnrichGRPC measures the same batch through the plugin protocol,
// as Vigie calls it (in-memory connection).
func BenchmarkEnrichGRPC(b *testing.B) {
	n, _ := New(Config{InferFromReferrer: true})
	h := sdktest.Start(b, sdktest.Config{Plugin: pluginOf(n)})
	events, reset := benchBatch(100)
	b.ReportAllocs()
	for b.Loop() {
		reset()
		if _, err := h.Enrich(b.Context(), events); err != nil {
			b.Fatal(err)
		}
	}
}
