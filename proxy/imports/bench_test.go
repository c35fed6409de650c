package imports_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/proxy/imports"
	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// BenchmarkImportVsBatch measures, in the same run, the rows per second an
// import stores (one CSV of b.N orders under contract, posted and run to
// the end) against the plain /v1/batch path (the same orders as Segment
// track events with consent, 500 to a batch, one client): both through
// the whole server with its embedded NATS, no plugin. Run with a fixed
// count, e.g. -bench ImportVsBatch -benchtime 200000x (BENCHMARKS.md).
func BenchmarkImportVsBatch(b *testing.B) {
	b.Run("import", func(b *testing.B) {
		in := proxytest.Start(b, noPlugins)
		b.ResetTimer()
		start := time.Now()
		code, body := post(b, in, "", contractMapping, ordersReader(b.N), nil)
		if code != 202 {
			b.Fatalf("post: %d %s", code, body)
		}
		j := wait(b, in, jobID(b, body))
		elapsed := time.Since(start)
		b.StopTimer()
		if j.Status != imports.StatusDone || j.Rows.Accepted != int64(b.N) {
			b.Fatalf("job: %s %+v", j.Status, j.Rows)
		}
		b.ReportMetric(float64(b.N)/elapsed.Seconds(), "rows/s")
	})
	b.Run("batch", func(b *testing.B) {
		in := proxytest.Start(b, noPlugins)
		at := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
		const per = 500
		var sb strings.Builder
		b.ResetTimer()
		start := time.Now()
		for i := 0; i < b.N; i += per {
			sb.Reset()
			sb.WriteString(`{"batch":[`)
			for k := i; k < min(i+per, b.N); k++ {
				if k > i {
					sb.WriteByte(',')
				}
				fmt.Fprintf(&sb, `{"type":"track","event":"Order Completed","userId":"c-%d","messageId":"o-%07d","timestamp":"%s",`+
					`"properties":{"order_id":"o-%07d","total":%d.%02d},"context":{"consent":{"personalization":true}}}`,
					k%5000, k, at, k, k%300, k%100)
			}
			sb.WriteString(`]}`)
			code, body := in.Post("/v1/batch", "demo", sb.String())
			if code != http.StatusOK {
				b.Fatalf("batch: %d %s", code, body)
			}
		}
		elapsed := time.Since(start)
		b.StopTimer()
		b.ReportMetric(float64(b.N)/elapsed.Seconds(), "rows/s")
	})
}
