package response_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/vigie-dev/vigie/plugins/builtin"
	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/sdk/sdktest"
)

// noopSegmenter does nothing: the baseline of the process path.
type noopSegmenter struct{}

func (noopSegmenter) Segment(context.Context, *sdk.Event, *sdk.Profile) (*sdk.SegmentResult, error) {
	return &sdk.SegmentResult{}, nil
}

// TestMain lets the test binary run as a built-in plugin, as the vigie
// binary does ("<binary> plugin response").
func TestMain(m *testing.M) {
	builtin.Register("noop-segmenter", func() {
		sdk.Serve(sdk.Plugin{Manifest: sdk.Manifest{Name: "noop-segmenter", Version: "1"}, Segmenter: noopSegmenter{}})
	})
	builtin.MaybeRun(os.Args)
	os.Exit(m.Run())
}

// startBuiltin runs built-in name as a real process, as Vigie does.
func startBuiltin(tb testing.TB, name string, host sdk.Host) *sdk.Client {
	tb.Helper()
	cmd, err := builtin.Command(name)
	if err != nil {
		tb.Fatal(err)
	}
	pc := plugin.NewClient(sdk.NewClientConfig(sdk.ClientConfig{Cmd: cmd, Host: host, StartTimeout: 20 * time.Second}))
	tb.Cleanup(pc.Kill)
	c, err := sdk.Connect(tb.Context(), pc)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// processConfig: one contact type, one message type, state written at
// every change.
const processConfig = `{"contact_types":[{"name":"vip","segments":["vip"]}],"message_types":[{"name":"promo"}],"flush_events":1}`

// item is an event of subj at second i with its profile.
func item(name, subj string, i int, props string, class string) *vigiev1.SegmentInput {
	at := time.Date(2026, 3, 2, 9, 0, i, 0, time.UTC).UnixMilli()
	ev := &sdk.Event{
		Id: fmt.Sprintf("%026d", i), Site: "demo", Type: "track", Name: name, TimestampMs: at, ReceivedAtMs: at,
		Mode: vigiev1.Mode_MODE_PSEUDONYMOUS, Purposes: []string{"marketing"}, Subject: subj,
	}
	if props != "" {
		ev.Properties = []byte(props)
	}
	if class != "" {
		ev.Email = &vigiev1.Email{Campaign: "c1", Class: class}
	}
	return &vigiev1.SegmentInput{Event: ev, Profile: &sdk.Profile{Site: "demo", Subject: subj, Segments: []string{"vip"}}}
}

// TestBuiltinProcess runs the registered built-in as a separate process
// over go-plugin: the manifest is accepted, the configuration applied,
// and the state reaches the host's key-value store (capability kv).
func TestBuiltinProcess(t *testing.T) {
	host := sdktest.NewHost()
	c := startBuiltin(t, "response", host)
	m := c.Manifest()
	if m.Name != "response" || !m.Has(sdk.CapKV) || !slices.Equal(m.Kinds, []sdk.Kind{sdk.KindSegmenter, sdk.KindForgetter, sdk.KindPrivacy}) {
		t.Fatalf("manifest %+v", m)
	}
	if err := c.Configure(t.Context(), []byte(processConfig)); err != nil {
		t.Fatal(err)
	}
	if err := c.Configure(t.Context(), []byte(`{"half_life":"soon"}`)); err == nil {
		t.Error("bad configuration accepted by the process")
	}
	_, errs, err := c.SegmentBatch(t.Context(), []*vigiev1.SegmentInput{
		item("Email Sent", "a", 0, `{"message_type":"promo","campaign":"c1"}`, ""),
		item("Email Opened", "a", 1, "", "privacy_proxy"),
		item("Email Opened", "a", 2, "", "human"),
	})
	if err != nil || errs[0] != nil || errs[1] != nil || errs[2] != nil {
		t.Fatalf("segment: %v %v", err, errs)
	}
	if kv := host.KV(); len(kv["v1/demo/meta"]) == 0 || len(kv["v1/demo/g0/0"]) == 0 {
		t.Fatalf("state not in the host's KV: %d keys", len(kv))
	}
}

// BenchmarkSegmentProcess is the real process path: events/s through a
// built-in plugin process (go-plugin gRPC over a socket, mutual TLS),
// batches of 100, for the response plugin and a no-op segmenter in the
// same run. Vigie's own per-event storage work is not included (see
// BenchmarkPluginThroughput in package plugins).
func BenchmarkSegmentProcess(b *testing.B) {
	batches := make([][]*vigiev1.SegmentInput, 50)
	i := 0
	for k := range batches {
		for range 100 {
			subj := fmt.Sprintf("%022d", (i*7919)%5000)
			switch i % 4 {
			case 0:
				batches[k] = append(batches[k], item("Email Sent", subj, i, `{"message_type":"promo","campaign":"c1"}`, ""))
			case 1:
				batches[k] = append(batches[k], item("Email Opened", subj, i, "", "human"))
			case 2:
				batches[k] = append(batches[k], item("Order Completed", subj, i, `{"total":3}`, ""))
			default:
				batches[k] = append(batches[k], item("Product Viewed", subj, i, `{"sku":"a"}`, ""))
			}
			i++
		}
	}
	for _, name := range []string{"noop-segmenter", "response"} {
		b.Run(name, func(b *testing.B) {
			c := startBuiltin(b, name, sdktest.NewHost())
			if name == "response" {
				if err := c.Configure(b.Context(), []byte(`{"contact_types":[{"name":"vip","segments":["vip"]}],"message_types":[{"name":"promo"}]}`)); err != nil {
					b.Fatal(err)
				}
			}
			n := 0
			for b.Loop() {
				if _, _, err := c.SegmentBatch(b.Context(), batches[n%len(batches)]); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64(n*100)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
