package crm_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/plugins/crm/brevo/brevotest"
	"github.com/vigie-dev/vigie/plugins/crm/hubspot/hubspottest"
	"github.com/vigie-dev/vigie/plugins/crm/webhook/webhooktest"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// BenchmarkEndToEnd measures contacts per second through the whole path:
// identify events posted to /v1/batch (100 per request, each with
// marketing consent and an e-mail), stored, published, enriched, given to
// the destination's plugin process with their contact and profile, and
// delivered by its connector to a fake on loopback; the clock stops when
// the destination's status counts them all delivered (two changes each:
// the consent choice and the upsert). Each iteration is one contact (use
// -benchtime Nx). The noop destination, in the same run, is the baseline:
// everything but the connector. Rate limits are lifted.
func BenchmarkEndToEnd(b *testing.B) {
	secret := newSecret()
	for _, tc := range []struct {
		name string
		// open starts the fake and returns the destination and, for a
		// fake that keeps contacts, how many it holds.
		open func(b *testing.B) (config.Plugin, func() int)
	}{
		{"noop", func(b *testing.B) (config.Plugin, func() int) {
			return config.Plugin{Name: "crm-noop", Builtin: "crm", Config: map[string]any{"connector": "noop",
				"rate_limit": map[string]any{}}}, nil
		}},
		{"webhook", func(b *testing.B) (config.Plugin, func() int) {
			recv, err := webhooktest.New(secret)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(recv.Close)
			b.Setenv("BENCH_SECRET", secret)
			p := destination("crm-webhook", "webhook", map[string]any{"url": recv.URL, "secrets": []any{map[string]any{"env": "BENCH_SECRET"}}}, "BENCH_SECRET")
			return p, nil
		}},
		{"hubspot", func(b *testing.B) (config.Plugin, func() int) {
			hs := hubspottest.New(hubspotToken)
			hs.SetInterval(10*time.Second, 1<<30)
			b.Cleanup(hs.Close)
			b.Setenv("BENCH_TOKEN", hubspotToken)
			p := destination("crm-hubspot", "hubspot", map[string]any{"base_url": hs.URL, "token": map[string]any{"env": "BENCH_TOKEN"}}, "BENCH_TOKEN")
			return p, hs.Contacts
		}},
		{"brevo", func(b *testing.B) (config.Plugin, func() int) {
			bv := brevotest.New("xkeysib-bench")
			bv.SetRateLimit(1<<30, time.Hour)
			b.Cleanup(bv.Close)
			b.Setenv("BENCH_KEY", "xkeysib-bench")
			p := destination("crm-brevo", "brevo", map[string]any{"base_url": bv.URL + "/v3", "api_key": map[string]any{"env": "BENCH_KEY"}}, "BENCH_KEY")
			return p, bv.Contacts
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			dest, contacts := tc.open(b)
			if c, ok := dest.Config["rate_limit"].(map[string]any); ok {
				c["per_second"], c["burst"] = 1e6, 1000
			}
			in := proxytest.Start(b, func(c *config.Config) {
				c.PluginRuntime.BatchSize = 100
				c.Plugins = []config.Plugin{dest}
			})
			waitFor(b, "the destination running", 30*time.Second, func() bool {
				return destinations(b, in)[dest.Name].Plugin.State == "running"
			})
			b.ResetTimer()
			for i := 0; i < b.N; i += 100 {
				var items []string
				for j := i; j < min(i+100, b.N); j++ {
					items = append(items, fmt.Sprintf(`{"type":"identify","userId":"bench-%d","traits":{"email":"bench-%d@example.org","first_name":"Ada"},"context":{"consent":%s}}`,
						j, j, withMarketing))
				}
				if code, body := in.Post("/v1/batch", "demo", `{"batch":[`+strings.Join(items, ",")+`]}`); code != http.StatusOK {
					b.Fatalf("batch: %d %s", code, body)
				}
			}
			// Done when the CRM holds every contact, or, for a destination
			// that keeps none, when the connector counts two changes per
			// contact delivered: its consent choice and its upsert (the
			// CRM connectors fold both into one input).
			done := func(d destView) bool {
				if contacts != nil {
					return d.Backlog == 0 && contacts() >= b.N
				}
				return d.Delivered >= uint64(2*b.N)
			}
			deadline := time.Now().Add(3 * time.Minute)
			for last := destinations(b, in)[dest.Name]; !done(last); last = destinations(b, in)[dest.Name] {
				if time.Now().After(deadline) {
					b.Fatalf("timed out: %d of %d changes delivered: %+v", last.Delivered, 2*b.N, last)
				}
				time.Sleep(50 * time.Millisecond)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "contacts/s")
		})
	}
}
