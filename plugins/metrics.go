package plugins

import "github.com/prometheus/client_golang/prometheus"

// metrics are the runtime's Prometheus collectors, per plugin.
type metrics struct {
	processed, errors, retried, restarts, dead, skipped, emitted, changes *prometheus.CounterVec
	up, lag                                                               *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	m := &metrics{
		processed: counter("vigie_plugin_processed_total", "Events or items a plugin handled successfully.", "plugin"),
		errors:    counter("vigie_plugin_errors_total", "Failed deliveries to a plugin (errors, crashes, timeouts).", "plugin"),
		retried:   counter("vigie_plugin_retried_total", "Items a syncer deferred because its destination was unavailable (not counted as errors).", "plugin"),
		restarts:  counter("vigie_plugin_restarts_total", "Plugin process restarts.", "plugin"),
		dead:      counter("vigie_plugin_dead_letters_total", "Messages moved to the dead-letter stream.", "plugin"),
		skipped:   counter("vigie_plugin_skipped_total", "Events passed on without a failed enricher.", "plugin"),
		emitted:   counter("vigie_plugin_emitted_total", "Events emitted by a plugin.", "plugin"),
		changes:   counter("vigie_segment_changes_total", "Segment changes published, per site and segment.direction.", "site", "change"),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vigie_plugin_up", Help: "1 when the plugin process is running.",
		}, []string{"plugin"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vigie_plugin_consumer_lag", Help: "Messages not yet acknowledged by a plugin's consumers.",
		}, []string{"plugin"}),
	}
	if reg != nil {
		reg.MustRegister(m.processed, m.errors, m.retried, m.restarts, m.dead, m.skipped, m.emitted, m.changes, m.up, m.lag)
	}
	return m
}
