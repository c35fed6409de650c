package proxy

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigie-dev/vigie/plugins"
	"github.com/vigie-dev/vigie/plugins/crm"
	"github.com/vigie-dev/vigie/plugins/crm/delivery"
	"github.com/vigie-dev/vigie/storage"
)

// A CRM destination is a plugin entry running the built-in crm: its name
// is the plugin's. Its health has three sources: the plugin runtime (the
// process's state, the consumers' backlog, the dead letters), the status
// the plugin writes to its key-value space after every batch
// (crm.Status: the connector's state, pause, rate limit, counts, last
// error) and the host's resync job.

// destinationView is one destination in GET /admin/v1/destinations.
type destinationView struct {
	Name      string   `json:"name"`
	Connector string   `json:"connector"`
	Purposes  []string `json:"purposes"`
	// State is the destination's: ok, throttled, paused or disabled from
	// its connector; starting, restarting, failed or stopped while its
	// process does not run; unknown before its first status.
	State       string                 `json:"state"`
	PausedUntil time.Time              `json:"paused_until,omitzero"`
	Reason      string                 `json:"reason,omitempty"`
	RateLimit   *delivery.LimiterState `json:"rate_limit,omitempty"`
	// Backlog is how many items wait in its consumers (pending and in
	// flight).
	Backlog     uint64               `json:"backlog"`
	Delivered   uint64               `json:"delivered"`
	Failed      uint64               `json:"failed"`
	Retried     uint64               `json:"retried"`
	RateLimited uint64               `json:"rate_limited"`
	LastError   string               `json:"last_error,omitempty"`
	LastErrorAt time.Time            `json:"last_error_at,omitzero"`
	DeadLetters int                  `json:"dead_letters"`
	RecentDead  []plugins.DeadLetter `json:"recent_dead_letters,omitempty"`
	Plugin      pluginState          `json:"plugin"`
	Resync      *resyncView          `json:"resync,omitempty"`
	UpdatedAt   time.Time            `json:"updated_at,omitzero"`
}

// pluginState is the destination's process.
type pluginState struct {
	State     plugins.State `json:"state"`
	Since     time.Time     `json:"since"`
	Restarts  int64         `json:"restarts"`
	LastError string        `json:"last_error,omitempty"`
}

// resyncView is the last resync: the host's job (contacts queued) and
// what the destination delivered of it.
type resyncView struct {
	plugins.ResyncJob
	Delivered uint64 `json:"delivered"`
}

// destinationNames are the configured destinations, in configuration
// order, with their connector and purposes.
func (s *Server) destinations() []destinationView {
	var out []destinationView
	for _, p := range s.cfg.Plugins {
		if p.Disabled || p.BuiltinName() != crm.Name {
			continue
		}
		v := destinationView{Name: p.Name, Purposes: s.configured[p.Name].Purposes, State: "unknown"}
		if c, ok := p.Config["connector"].(string); ok {
			v.Connector = c
		}
		out = append(out, v)
	}
	return out
}

// destination returns the view of destination name, filled in.
func (s *Server) destinationView(ctx context.Context, v destinationView, rt []plugins.Status) destinationView {
	for _, st := range rt {
		if st.Name != v.Name {
			continue
		}
		v.Plugin = pluginState{State: st.State, Since: st.Since, Restarts: st.Restarts, LastError: st.LastError}
		v.Backlog, v.DeadLetters, v.RecentDead = st.Lag, st.DeadLetters, st.RecentDead
	}
	if b, err := s.store.KVGet(ctx, v.Name, crm.StatusKey); err == nil {
		if st, err := crm.DecodeStatus(b); err == nil {
			v.State, v.PausedUntil, v.Reason = string(st.State), st.PausedUntil, st.Reason
			if v.State == string(delivery.StatePaused) && time.Now().After(st.PausedUntil) {
				v.State, v.Reason = string(delivery.StateOK), "pause over; resuming"
			}
			rl := st.RateLimit
			v.RateLimit = &rl
			v.Delivered, v.Failed, v.Retried, v.RateLimited = st.Delivered, st.Failed, st.Retried, st.RateLimited
			v.LastError, v.LastErrorAt, v.UpdatedAt = st.LastError, st.LastErrorAt, st.UpdatedAt
			if job, err := s.plugins.ResyncStatus(ctx, v.Name); err == nil && job != nil {
				v.Resync = &resyncView{ResyncJob: *job}
				if st.Resync != nil && st.Resync.Run == job.Run {
					v.Resync.Delivered = st.Resync.Delivered
				}
			}
		}
	}
	if v.Plugin.State != "" && v.Plugin.State != plugins.StateRunning {
		v.State = string(v.Plugin.State)
	}
	return v
}

// handleAdminDestinations lists every CRM destination with its health.
func (s *Server) handleAdminDestinations(w http.ResponseWriter, r *http.Request) {
	out := []destinationView{}
	if s.plugins != nil {
		rt := s.plugins.Status(r.Context())
		for _, v := range s.destinations() {
			out = append(out, s.destinationView(r.Context(), v, rt))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"destinations": out})
}

// namedDestination returns the destination of the request's {name}, or
// answers 404.
func (s *Server) namedDestination(w http.ResponseWriter, r *http.Request) (destinationView, bool) {
	name := r.PathValue("name")
	for _, v := range s.destinations() {
		if v.Name == name && s.plugins != nil {
			return v, true
		}
	}
	writeError(w, http.StatusNotFound, "unknown_destination", "no CRM destination named "+strconv.Quote(name)+" is configured", nil)
	return destinationView{}, false
}

// handleAdminDestination shows one destination.
func (s *Server) handleAdminDestination(w http.ResponseWriter, r *http.Request) {
	v, ok := s.namedDestination(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, s.destinationView(r.Context(), v, s.plugins.Status(r.Context())))
}

// handleAdminResync starts a full resync of a destination: 202 with the
// job, 409 while one runs.
func (s *Server) handleAdminResync(w http.ResponseWriter, r *http.Request) {
	v, ok := s.namedDestination(w, r)
	if !ok {
		return
	}
	job, err := s.plugins.Resync(r.Context(), v.Name)
	switch {
	case errors.Is(err, plugins.ErrResyncRunning):
		writeJSON(w, http.StatusConflict, map[string]any{"success": false, "code": "resync_running",
			"error": "a resync of this destination is running; see its progress in GET /admin/v1/destinations/" + v.Name, "resync": job})
	case errors.Is(err, plugins.ErrNotSyncer), errors.Is(err, plugins.ErrNotRunning):
		writeError(w, http.StatusServiceUnavailable, "destination_not_running", "the destination's plugin is not running yet; retry when its state is ok", nil)
	case err != nil:
		s.log.Error("resync not started", "destination", v.Name, "err", err)
		writeError(w, http.StatusServiceUnavailable, "resync_failed", "the resync could not be started; retry later", nil)
	default:
		writeJSON(w, http.StatusAccepted, map[string]any{"success": true, "resync": job})
	}
}

// handleAdminDestinationReplay re-queues a destination's dead letters.
func (s *Server) handleAdminDestinationReplay(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.namedDestination(w, r); ok {
		s.handleAdminReplay(w, r)
	}
}

// handleAdminDiscard deletes a destination's dead letters.
func (s *Server) handleAdminDiscard(w http.ResponseWriter, r *http.Request) {
	v, ok := s.namedDestination(w, r)
	if !ok {
		return
	}
	n, err := s.plugins.Discard(r.Context(), v.Name)
	if err != nil {
		s.log.Error("dead letters not discarded", "destination", v.Name, "err", err)
		writeError(w, http.StatusServiceUnavailable, "discard_failed", "the dead letters could not be discarded; retry later", nil)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"success": true, "discarded": n})
}

// destinationRoutes adds the destinations' admin API.
func (s *Server) destinationRoutes(mux *http.ServeMux) {
	mux.Handle("GET /admin/v1/destinations", s.admin(s.handleAdminDestinations))
	mux.Handle("GET /admin/v1/destinations/{name}", s.admin(s.handleAdminDestination))
	mux.Handle("POST /admin/v1/destinations/{name}/resync", s.admin(s.handleAdminResync))
	mux.Handle("POST /admin/v1/destinations/{name}/replay", s.admin(s.handleAdminDestinationReplay))
	mux.Handle("DELETE /admin/v1/destinations/{name}/dead-letters", s.admin(s.handleAdminDiscard))
}

// destinationMetrics exports each destination's counts and state, read
// from the statuses its plugin writes, at every scrape.
type destinationMetrics struct {
	s                                               *Server
	delivered, failed, retried, limited, paused, up *prometheus.Desc
}

// registerDestinationMetrics registers the destinations' metrics.
func (s *Server) registerDestinationMetrics() {
	if len(s.destinations()) == 0 {
		return
	}
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, []string{"destination", "connector"}, nil)
	}
	s.metrics.reg.MustRegister(&destinationMetrics{s: s,
		delivered: d("vigie_destination_delivered_total", "Changes a CRM destination accepted."),
		failed:    d("vigie_destination_failed_total", "Failed delivery attempts to a CRM destination (final and retryable)."),
		retried:   d("vigie_destination_retried_total", "Changes deferred because the destination was unavailable."),
		limited:   d("vigie_destination_rate_limited_total", "Changes refused by the destination's rate limit (429, daily pause)."),
		paused:    d("vigie_destination_paused", "1 while the destination is paused (e.g. HubSpot's daily limit) or disabled."),
		up:        d("vigie_destination_up", "1 when the destination's state is ok or throttled."),
	})
}

// Describe implements prometheus.Collector.
func (m *destinationMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.delivered, m.failed, m.retried, m.limited, m.paused, m.up} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *destinationMetrics) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, v := range m.s.destinations() {
		b, err := m.s.store.KVGet(ctx, v.Name, crm.StatusKey)
		if errors.Is(err, storage.ErrNotFound) || err != nil {
			continue
		}
		st, err := crm.DecodeStatus(b)
		if err != nil {
			continue
		}
		counter := func(d *prometheus.Desc, n uint64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(n), v.Name, v.Connector)
		}
		counter(m.delivered, st.Delivered)
		counter(m.failed, st.Failed)
		counter(m.retried, st.Retried)
		counter(m.limited, st.RateLimited)
		paused := st.State == delivery.StateDisabled || (st.State == delivery.StatePaused && time.Now().Before(st.PausedUntil))
		ch <- prometheus.MustNewConstMetric(m.paused, prometheus.GaugeValue, boolGauge(paused), v.Name, v.Connector)
		ch <- prometheus.MustNewConstMetric(m.up, prometheus.GaugeValue, boolGauge(!paused), v.Name, v.Connector)
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
