package proxy

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/plugins/rollup"
	"github.com/vigie-dev/vigie/proxy/cluster"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/pipeline"
)

// The console overview's aggregates (plugins/rollup): an Aggregator fed
// by a durable consumer of the enriched stream (the plugin runtime's
// enrich stage always runs, a pass-through without enrichers, so every
// stored event reaches it: with GeoIP's country for pseudonymous events,
// ingestion's for anonymous ones), and the decision counters of
// ingestion, fed by count and reject for every hit, stored or not.

// rollups is the server's rollup machinery (nil before startRollups).
type rollups struct {
	agg  *rollup.Aggregator
	cons *rollup.Consumer
	dec  *rollup.DecisionCounter
}

// Reasons the decision counters give hits that consent did not decide.
const (
	reasonBot        = "bot"
	reasonNotKept    = "not kept on a cnil_exempt site"
	reasonSuppressed = "suppressed (erased)"
	// reasonBadConsent is added to the reason of a hit whose consent
	// string did not decode (it counted as absent).
	reasonBadConsent = " (invalid consent string)"
	// rejectBadConsent is reject's reason for such a hit: the hit itself
	// goes on and is counted with its decision.
	rejectBadConsent = "invalid_consent_string"
)

// startRollups makes the aggregator and the decision counter and starts
// the consumer and the counters' flusher; both stop with ctx (the
// publisher's, cancelled once the HTTP server has shut down, so the last
// hits are counted), committing and flushing what they hold.
func (s *Server) startRollups(ctx context.Context) error {
	retention := s.cfg.RetentionOf(config.RetentionRollups)
	hosts := map[string][]string{}
	for _, st := range s.sites.Load().list {
		for _, o := range st.origins {
			if o.host != "" && !o.anySub {
				hosts[st.cfg.ID] = append(hosts[st.cfg.ID], o.host)
			}
		}
	}
	log := s.log.With("component", "rollup")
	var peers *rollup.PeerDecisions
	var publish rollup.Publisher
	if s.cfg.Cluster.Enabled() {
		// The decision counters are counted where a hit arrives: each
		// node shares its own (KV VIGIE_DECISIONS) and sums the others'.
		peers = rollup.NewPeerDecisions()
		publish = cluster.Decisions{JS: s.bus, Node: s.cfg.Cluster.NodeID}.Publish
		w := &cluster.DecisionsWatcher{JS: s.bus, Node: s.cfg.Cluster.NodeID, Put: peers.Put, Logger: log}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			w.Run(ctx)
		}()
	}
	agg, err := rollup.New(rollup.Config{Store: s.store, Retention: retention, SiteHosts: hosts, Peers: peers, Logger: log})
	if err != nil {
		return err
	}
	// In cluster mode every node counts the whole enriched stream with a
	// durable of its own (a shared one would split the events between the
	// nodes), so that every node's overview answers the same.
	durable := rollup.DefaultDurable
	if s.cfg.Cluster.Enabled() {
		durable += "-" + s.cfg.Cluster.NodeID
	}
	cons, err := rollup.NewConsumer(agg, rollup.ConsumerConfig{
		JetStream: s.bus.JetStream(), Stream: streams.Enriched, Durable: durable, Logger: log,
	})
	if err != nil {
		return err
	}
	dec, err := rollup.NewDecisionCounter(rollup.DecisionConfig{Store: s.store, Retention: retention, Publish: publish, Logger: log})
	if err != nil {
		return err
	}
	s.rollups = &rollups{agg: agg, cons: cons, dec: dec}
	var wg sync.WaitGroup
	wg.Add(2)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		wg.Wait()
	}()
	go func() {
		defer wg.Done()
		if err := cons.Run(ctx); err != nil {
			s.log.Warn("rollups not committed at stop; the events are counted again at the next start", "err", err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := dec.Run(ctx); err != nil {
			s.log.Warn("decision counters not written at stop", "err", err)
		}
	}()
	return nil
}

// countDecision counts one pipeline result in the decision counters:
// what was done with the hit (kept pseudonymous or anonymous, or
// dropped) and why, with the purposes the visitor granted.
func (s *Server) countDecision(st *site, res *pipeline.Result) {
	if s.rollups == nil {
		return
	}
	id := st.cfg.ID
	d := res.Applied
	d.Granted = res.Decision.Granted
	if res.ConsentErr != nil {
		d.Reason += reasonBadConsent
	}
	switch res.Outcome {
	case pipeline.Stored, pipeline.Dropped, pipeline.DroppedSensitive, pipeline.Counted:
	case pipeline.NotKept:
		d.Outcome, d.Reason = consent.Drop, reasonNotKept
	case pipeline.Bot:
		s.rollups.dec.Count(id, consent.Drop, reasonBot)
		return
	default:
		return
	}
	s.rollups.dec.CountDecision(id, d)
}

// countRejected counts n hits refused before any decision, under the site
// when it is known (st nil: the empty site, in no overview).
func (s *Server) countRejected(st *site, reason string, n int) {
	if s.rollups == nil || reason == rejectBadConsent || n <= 0 {
		return
	}
	id := ""
	if st != nil {
		id = st.cfg.ID
	}
	s.rollups.dec.CountN(id, consent.Drop, reason, uint64(n))
}

// handleAdminOverview answers GET /admin/v1/overview: the console
// overview's figures as JSON (rollup.Overview), from the rollups. Query:
// site (may be left out with one site), from and to (RFC 3339 or Unix
// milliseconds; default the 7 days up to the next whole hour), and
// compare_from and compare_to (both or neither).
func (s *Server) handleAdminOverview(w http.ResponseWriter, r *http.Request) {
	site, _, ok := s.siteAndLimit(w, r, 1)
	if !ok {
		return
	}
	if s.rollups == nil {
		writeError(w, http.StatusServiceUnavailable, "not_ready", "the rollups have not started yet; retry", nil)
		return
	}
	q := r.URL.Query()
	to := time.Now().UTC().Truncate(time.Hour).Add(time.Hour)
	times := map[string]time.Time{"to": to, "from": to.Add(-7 * 24 * time.Hour)}
	for _, name := range []string{"from", "to", "compare_from", "compare_to"} {
		v := q.Get(name)
		if v == "" {
			continue
		}
		t, ok := parseAdminTime(v)
		if !ok {
			writeJSON(w, http.StatusBadRequest, apiError{Code: "invalid_time", Field: name,
				Error: name + ": must be an RFC 3339 time (2026-01-31T12:00:00Z) or Unix milliseconds"})
			return
		}
		times[name] = t
	}
	if times["compare_from"].IsZero() != times["compare_to"].IsZero() {
		writeJSON(w, http.StatusBadRequest, apiError{Code: "invalid_time", Field: "compare_to",
			Error: "compare_from and compare_to: give both or neither"})
		return
	}
	ov, err := s.rollups.agg.Overview(r.Context(), site, times["from"], times["to"], times["compare_from"], times["compare_to"])
	if errors.Is(err, rollup.ErrInvalidQuery) {
		writeJSON(w, http.StatusBadRequest, apiError{Code: "invalid_period", Field: "from",
			Error: "from and to: from must be before to, at most 800 days apart, after 1970"})
		return
	}
	if err != nil {
		s.log.Error("reading the overview failed", "err", err)
		writeError(w, http.StatusServiceUnavailable, "storage_unavailable", "the overview could not be read; retry later", nil)
		return
	}
	writeJSON(w, http.StatusOK, ov)
}
