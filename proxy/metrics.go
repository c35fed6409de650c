package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the server's Prometheus collectors, on a registry of its own
// so that several servers can run in one process (tests).
type metrics struct {
	reg       *prometheus.Registry
	received  *prometheus.CounterVec
	accepted  *prometheus.CounterVec
	rejected  *prometheus.CounterVec
	duplicate prometheus.Counter
	decisions *prometheus.CounterVec
	bots      *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	// authFailures counts wrong credentials, per kind (write_key, admin);
	// authThrottled the attempts answered 429 for too many of them.
	authFailures  *prometheus.CounterVec
	authThrottled *prometheus.CounterVec
	// unknownRoutes counts requests to no route (404) or with a method
	// the route does not serve (405), per status.
	unknownRoutes *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigie_events_received_total", Help: "Events received, per site.",
		}, []string{"site"}),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigie_events_accepted_total", Help: "Events stored, per site and type.",
		}, []string{"site", "type"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigie_events_rejected_total", Help: "Events or requests refused, per reason.",
		}, []string{"reason"}),
		duplicate: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigie_events_duplicate_total", Help: "Events ignored because their messageId was seen within the dedup window.",
		}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigie_consent_decisions_total", Help: "Consent decisions, per outcome.",
		}, []string{"outcome"}),
		bots: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigie_bot_hits_total", Help: "Hits from bots (counted, not stored by default), per site.",
		}, []string{"site"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vigie_ingest_duration_seconds",
			Help:    "Time from request to durable commit, per route.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigie_auth_failures_total", Help: "Failed authentications (unknown write key, wrong admin token), per kind.",
		}, []string{"kind"}),
		authThrottled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigie_auth_throttled_total", Help: "Authentication attempts answered 429 because their network had too many failures, per kind.",
		}, []string{"kind"}),
		unknownRoutes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigie_unknown_route_requests_total", Help: "Requests to no route (404) or with a method the route does not serve (405), per status code.",
		}, []string{"code"}),
	}
	m.reg.MustRegister(m.received, m.accepted, m.rejected, m.duplicate, m.decisions, m.bots, m.latency, m.authFailures, m.authThrottled, m.unknownRoutes,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// gaugeFunc registers a gauge read at scrape time.
func (m *metrics) gaugeFunc(name, help string, f func() float64) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

// counterFunc registers a counter read at scrape time.
func (m *metrics) counterFunc(name, help string, f func() float64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
}
