package crmbench

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/plugins/crm/brevo"
	"github.com/vigie-dev/vigie/plugins/crm/brevo/brevotest"
	"github.com/vigie-dev/vigie/plugins/crm/delivery"
	"github.com/vigie-dev/vigie/plugins/crm/hubspot"
	"github.com/vigie-dev/vigie/plugins/crm/hubspot/hubspottest"
	"github.com/vigie-dev/vigie/plugins/crm/webhook"
	"github.com/vigie-dev/vigie/plugins/crm/webhook/webhooktest"
)

// batchSize is the changes per Deliver call, the plugin runtime's
// default batch_size.
const batchSize = 100

// settings lift the rate limit (the fakes measure the connectors, not
// the vendors' quotas) and silence logs.
func settings() delivery.Settings {
	return delivery.Settings{
		AllowPrivate: true,
		RateLimit:    delivery.RateLimit{PerSecond: 1e9, Burst: 1 << 20},
		Logger:       slog.New(slog.DiscardHandler),
	}
}

// BenchmarkDeliver measures contacts per second: each iteration delivers
// a batch of 100 upserts of new contacts (properties, two segments, a
// score) through a connector to its fake server over loopback HTTP.
func BenchmarkDeliver(b *testing.B) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	connectors := []struct {
		name string
		open func(b *testing.B) delivery.Connector
	}{
		{"noop", func(*testing.B) delivery.Connector { return &delivery.Noop{} }},
		{"webhook", func(b *testing.B) delivery.Connector {
			rcv, err := webhooktest.New(secret)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(rcv.Close)
			c, err := webhook.New(webhook.Config{URL: rcv.URL, Secrets: []delivery.SecretSource{{Value: delivery.NewSecret(secret)}},
				Settings: settings()})
			if err != nil {
				b.Fatal(err)
			}
			return c
		}},
		{"hubspot", func(b *testing.B) delivery.Connector {
			srv := hubspottest.New("pat-na1-bench")
			b.Cleanup(srv.Close)
			srv.SetDailyLimit(1 << 40)
			srv.SetInterval(time.Second, 1<<30)
			c, err := hubspot.New(hubspot.Config{Token: delivery.SecretSource{Value: delivery.NewSecret("pat-na1-bench")},
				BaseURL: srv.URL, Segments: []string{"hot-lead", "pricing"}, Settings: settings()})
			if err != nil {
				b.Fatal(err)
			}
			return c
		}},
		{"brevo", func(b *testing.B) delivery.Connector {
			srv := brevotest.New("xkeysib-bench")
			b.Cleanup(srv.Close)
			srv.SetRateLimit(1<<40, time.Hour)
			c, err := brevo.New(brevo.Config{APIKey: delivery.SecretSource{Value: delivery.NewSecret("xkeysib-bench")},
				BaseURL: srv.URL + "/v3", Segments: []string{"hot-lead", "pricing"}, Settings: settings()})
			if err != nil {
				b.Fatal(err)
			}
			return c
		}},
	}
	for _, bc := range connectors {
		b.Run(bc.name, func(b *testing.B) {
			c := bc.open(b)
			defer c.Close()
			ctx := context.Background()
			batch := make([]delivery.Change, batchSize)
			n := 0
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				for j := range batch {
					n++
					score := float64(n % 50)
					batch[j] = delivery.Change{
						Kind: delivery.KindUpsert, Site: "shop", Subject: fmt.Sprintf("p%09d", n), EventID: "bench",
						Email:      fmt.Sprintf("contact%09d@example.com", n),
						Properties: map[string]any{"firstname": "Jane", "lastname": "Doe", "company": "Acme"},
						Segments:   []string{"hot-lead", "pricing"}, Score: &score,
					}
				}
				res, err := c.Deliver(ctx, batch)
				if err != nil {
					b.Fatal(err)
				}
				for _, r := range res {
					if r.Outcome != delivery.Done {
						b.Fatalf("%+v", r)
					}
				}
			}
			b.ReportMetric(float64(n)/time.Since(start).Seconds(), "contacts/s")
		})
	}
}
