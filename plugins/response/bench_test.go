package response

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/sdk/sdktest"
)

// benchConfig: 5 contact types, 10 message types, decay, default flushing.
const benchConfig = `{
	"contact_types": [
		{"name": "vip-fr", "segments": ["vip", "fr"]}, {"name": "vip", "segments": ["vip"]},
		{"name": "newsletter", "segments": ["newsletter"]}, {"name": "cart", "segments": ["cart"]},
		{"name": "new", "segments": ["new"]}
	],
	"message_types": [
		{"name": "m0"}, {"name": "m1"}, {"name": "m2"}, {"name": "m3"}, {"name": "m4"},
		{"name": "m5"}, {"name": "m6"}, {"name": "m7"}, {"name": "m8"}, {"name": "m9"}
	]
}`

// noop is a segmenter that does nothing: the baseline of the transport.
type noop struct{}

func (noop) Segment(context.Context, *sdk.Event, *sdk.Profile) (*sdk.SegmentResult, error) {
	return &sdk.SegmentResult{}, nil
}

// benchItems builds batches of 100 events over 5 000 subjects: 30 %
// exposures, 20 % human opens, 10 % machine opens, 10 % clicks, 5 %
// conversions, 25 % other track events, in time order one second apart.
func benchItems(batches int) [][]*vigiev1.SegmentInput {
	segs := [][]string{{"vip", "fr"}, {"vip"}, {"newsletter"}, {"cart"}, {"new"}, nil}
	out := make([][]*vigiev1.SegmentInput, batches)
	i := 0
	for b := range out {
		items := make([]*vigiev1.SegmentInput, 100)
		for j := range items {
			subj := fmt.Sprintf("%022d", (i*7919)%5000)
			d := time.Duration(i) * time.Second
			var ev *sdk.Event
			switch r := i % 20; {
			case r < 6:
				ev = event(EventEmailSent, subj, d, fmt.Sprintf(`{"message_type":"m%d","campaign":"c%d"}`, i%10, i%10))
			case r < 10:
				ev = emailHit(EventEmailOpened, subj, d, "human")
			case r < 12:
				ev = emailHit(EventEmailOpened, subj, d, "privacy_proxy")
			case r < 14:
				ev = emailHit(EventEmailClicked, subj, d, "human")
			case r < 15:
				ev = event("Order Completed", subj, d, `{"total":42,"currency":"EUR"}`)
			default:
				ev = event("Product Viewed", subj, d, `{"sku":"A-1"}`)
			}
			ev.Id = fmt.Sprintf("%026d", i)
			items[j] = &vigiev1.SegmentInput{Event: ev, Profile: &sdk.Profile{Site: "demo", Subject: subj, Segments: segs[i%len(segs)]}}
			i++
		}
		out[b] = items
	}
	return out
}

// BenchmarkSegment is events/s through the Segment hook over the SDK's
// gRPC transport (sdktest, in-process, batches of 100 as the host sends
// them) for the response plugin against a no-op segmenter, and the
// plugin's own cost without the transport ("direct").
func BenchmarkSegment(b *testing.B) {
	batches := benchItems(200)
	run := func(b *testing.B, h *sdktest.Harness) {
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			_, errs, err := h.SegmentBatch(b.Context(), batches[n%len(batches)])
			if err != nil {
				b.Fatal(err)
			}
			for _, e := range errs {
				if e != nil {
					b.Fatal(e)
				}
			}
			n++
		}
		b.ReportMetric(float64(n*100)/b.Elapsed().Seconds(), "events/s")
	}
	b.Run("noop", func(b *testing.B) {
		h := sdktest.Start(b, sdktest.Config{Plugin: sdk.Plugin{
			Manifest: sdk.Manifest{Name: "noop", Version: "1"}, Segmenter: noop{},
		}})
		run(b, h)
	})
	b.Run("response", func(b *testing.B) {
		h := sdktest.Start(b, sdktest.Config{Plugin: Plugin(), PluginConfig: []byte(benchConfig)})
		run(b, h)
	})
	b.Run("response-direct", func(b *testing.B) {
		host := sdktest.NewHost()
		ctx := sdk.ContextWithHost(b.Context(), host)
		m := New()
		if err := m.Configure(ctx, []byte(benchConfig)); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			for _, it := range batches[n%len(batches)] {
				if _, err := m.Segment(ctx, it.GetEvent(), it.GetProfile()); err != nil {
					b.Fatal(err)
				}
			}
			n++
		}
		b.ReportMetric(float64(n*100)/b.Elapsed().Seconds(), "events/s")
	})
}
