package loadtest

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"runtime/metrics"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// ingestLatencyMetric is the server's histogram of the time from request to
// durable commit, per route (proxy/metrics.go).
const ingestLatencyMetric = "vigie_ingest_duration_seconds"

// histogram is a snapshot of one route's cumulative latency buckets.
type histogram struct {
	Upper []float64 `json:"upper"` // bucket upper bounds, seconds, ascending
	Count []uint64  `json:"count"` // cumulative counts
	Total uint64    `json:"total"`
}

// serverHistogram reads route's ingest latency histogram from the server's
// /metrics, so that the paced phase can tell the time spent inside the
// server from the time spent queued in the client, the kernel and the
// scheduler.
func serverHistogram(ctx context.Context, base, route string) (histogram, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return histogram{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return histogram{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return histogram{}, fmt.Errorf("loadtest: GET /metrics: status %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return histogram{}, fmt.Errorf("loadtest: parse /metrics: %w", err)
	}
	fam := fams[ingestLatencyMetric]
	if fam == nil {
		return histogram{}, nil // no request yet on any route
	}
	for _, m := range fam.GetMetric() {
		if labelValue(m, "route") != route {
			continue
		}
		h := m.GetHistogram()
		out := histogram{Total: h.GetSampleCount()}
		for _, b := range h.GetBucket() {
			out.Upper = append(out.Upper, b.GetUpperBound())
			out.Count = append(out.Count, b.GetCumulativeCount())
		}
		return out, nil
	}
	return histogram{}, nil
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// since is the histogram of the observations made between prev and h.
func (h histogram) since(prev histogram) histogram {
	out := histogram{Upper: h.Upper, Total: h.Total - prev.Total}
	for i := range h.Count {
		c := h.Count[i]
		if i < len(prev.Count) {
			c -= prev.Count[i]
		}
		out.Count = append(out.Count, c)
	}
	return out
}

// quantile is the q-quantile, interpolated linearly inside its bucket as
// Prometheus's histogram_quantile does; +Inf when it lies past the last
// finite bound, NaN without observations.
func (h histogram) quantile(q float64) float64 {
	if h.Total == 0 {
		return math.NaN()
	}
	rank := q * float64(h.Total)
	lower, below := 0.0, uint64(0)
	for i, c := range h.Count {
		if float64(c) >= rank {
			in := float64(c - below)
			if in == 0 {
				return h.Upper[i]
			}
			return lower + (h.Upper[i]-lower)*(rank-float64(below))/in
		}
		lower, below = h.Upper[i], c
	}
	return math.Inf(1)
}

// schedLatencyMetric is the runtime's distribution of the time goroutines
// spend runnable before they run.
const schedLatencyMetric = "/sched/latencies:seconds"

// schedHistogram reads this process's scheduler latency histogram.
func schedHistogram() histogram {
	s := []metrics.Sample{{Name: schedLatencyMetric}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return histogram{}
	}
	return fromRuntime(s[0].Value.Float64Histogram())
}

// fromRuntime converts a runtime/metrics histogram (per-bucket counts,
// boundaries around them) to cumulative counts under upper bounds.
func fromRuntime(h *metrics.Float64Histogram) histogram {
	var out histogram
	for i, c := range h.Counts {
		out.Total += c
		if math.IsInf(h.Buckets[i+1], 1) {
			break // counted in Total only, as Prometheus's +Inf bucket
		}
		out.Upper = append(out.Upper, h.Buckets[i+1])
		out.Count = append(out.Count, out.Total)
	}
	return out
}
