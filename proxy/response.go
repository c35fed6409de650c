package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vigie-dev/vigie/plugins"
	"github.com/vigie-dev/vigie/plugins/response"
	"github.com/vigie-dev/vigie/proxy/cluster"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/reaction"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
)

// responsePlugin returns the configuration of the built-in response
// plugin when it is enabled.
func (s *Server) responsePlugin() (config.Plugin, bool) {
	for _, p := range s.cfg.Plugins {
		if p.Name == reaction.DefaultPlugin && p.Path == "" && !p.Disabled {
			return p, true
		}
	}
	return config.Plugin{}, false
}

// startResponse makes the reader of the response plugin's model when the
// plugin is enabled. A configuration the plugin refuses leaves the routes
// answering 503 (the plugin itself is reported failed by the runtime). In
// cluster mode the reader adds the other nodes' summaries up, and this
// node shares its own until ctx is done (shareResponse).
func (s *Server) startResponse(ctx context.Context) {
	p, ok := s.responsePlugin()
	if !ok {
		return
	}
	cfg := reaction.Config{Store: s.store, Plugin: p.Name}
	var shared *cluster.ResponseSummaries
	if s.cfg.Cluster.Enabled() {
		shared = &cluster.ResponseSummaries{JS: s.bus, Node: s.cfg.Cluster.NodeID}
		cfg.Peers = shared
		cfg.Store = sharedProfiles{s}
	}
	raw, err := json.Marshal(p.Config)
	if err == nil {
		cfg.PluginConfig = raw
		s.reactions, err = reaction.New(cfg)
	}
	if err != nil {
		s.log.Error("response plugin configuration refused; its admin routes answer 503", "err", err)
		return
	}
	if shared != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.shareResponse(ctx, p.Name, shared)
		}()
	}
}

// sharedProfiles is the response reader's store in cluster mode: the
// plugin key-value space of this node (its objection lists: every node's
// instance hears every objection), and the profiles as the plugins see
// them (the shared copy, whichever node owns the subject's partition).
type sharedProfiles struct{ s *Server }

// KVGet implements reaction.Store.
func (p sharedProfiles) KVGet(ctx context.Context, plugin, key string) ([]byte, error) {
	return p.s.store.KVGet(ctx, plugin, key)
}

// Profile implements reaction.Store.
func (p sharedProfiles) Profile(ctx context.Context, site, subject string) (*storage.Profile, error) {
	if p.s.plugins == nil {
		return nil, fmt.Errorf("proxy: profile of a subject: %w", plugins.ErrNotRunning)
	}
	return p.s.plugins.Profile(ctx, site, subject)
}

// Sharing of this node's response model summaries in cluster mode: each
// site's is put when it changed, checked every responseShareEvery, and at
// least every responseShareAgain (well within streams.ResponseTTL).
const (
	responseShareEvery = 2 * time.Second
	responseShareAgain = 10 * time.Minute
)

// shareResponse puts this node's summary of each site into KV
// VIGIE_RESPONSE until ctx is done; a failed put is tried again at the
// next check.
func (s *Server) shareResponse(ctx context.Context, plugin string, shared *cluster.ResponseSummaries) {
	type put struct {
		sum [32]byte
		at  time.Time
	}
	last := map[string]put{}
	t := time.NewTicker(responseShareEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for site := range s.sites.Load().byID { // sites added since included
			raw, err := s.store.KVGet(ctx, plugin, response.SummaryKey(site))
			if err != nil {
				continue // nothing modelled yet, or the store closing
			}
			sum := sha256.Sum256(raw)
			if p, ok := last[site]; ok && p.sum == sum && time.Since(p.at) < responseShareAgain {
				continue
			}
			if err := shared.Put(ctx, site, raw); err != nil {
				s.log.Debug("cluster: response model summary not shared yet", "site", site, "err", err)
				continue
			}
			last[site] = put{sum, time.Now()}
		}
	}
}

// ResponseModel is the response plugin's model as the host reads it (for
// the console's heat map); nil when the plugin is not enabled.
func (s *Server) ResponseModel() reaction.Model {
	if s.reactions == nil {
		return nil
	}
	return s.reactions
}

// responseRoutes adds the response model's admin routes and the
// retention outlook.
func (s *Server) responseRoutes(mux *http.ServeMux) {
	mux.Handle("GET /admin/v1/response/model", s.admin(s.handleResponseModel))
	mux.Handle("GET /admin/v1/response/next", s.admin(s.handleResponseNext))
	mux.Handle("GET /admin/v1/response/uplift", s.admin(s.handleResponseUplift))
	mux.Handle("GET /admin/v1/retention/next", s.admin(s.handleRetentionNext))
}

// responseSite checks the response routes' common parameters: the plugin
// enabled, a known site (defaulting to the only one).
func (s *Server) responseSite(w http.ResponseWriter, r *http.Request) (string, bool) {
	if _, ok := s.responsePlugin(); !ok {
		writeError(w, http.StatusNotFound, "not_configured", "the response plugin is not enabled: add it to plugins in vigie.yaml (see plugins/response/README.md)", nil)
		return "", false
	}
	if s.reactions == nil {
		writeError(w, http.StatusServiceUnavailable, "plugin_misconfigured", "the response plugin's configuration was refused; see the server log", nil)
		return "", false
	}
	site := r.URL.Query().Get("site")
	if site == "" && len(s.cfg.Sites) == 1 {
		site = s.cfg.Sites[0].ID
	}
	if s.siteByID(site) == nil {
		writeError(w, http.StatusBadRequest, "unknown_site", "site: unknown or missing site id", nil)
		return "", false
	}
	return site, true
}

// handleResponseModel answers the whole table of site's model: every
// contact type × message type with its decayed counts, posterior mean
// and credible interval.
func (s *Server) handleResponseModel(w http.ResponseWriter, r *http.Request) {
	site, ok := s.responseSite(w, r)
	if !ok {
		return
	}
	t, err := s.reactions.Table(r.Context(), site)
	if err != nil {
		s.responseError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

// handleResponseNext recommends the next message type by Thompson
// sampling. Query: site; subject (a pseudonym, as the admin API lists
// them), user_id (the site's user id, pseudonymized here) or segment;
// candidates (comma-separated message types; default the plugin's).
func (s *Server) handleResponseNext(w http.ResponseWriter, r *http.Request) {
	site, ok := s.responseSite(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	var rq reaction.Query
	given := 0
	for _, p := range []string{"subject", "user_id", "segment"} {
		if q.Get(p) != "" {
			given++
		}
	}
	if given != 1 {
		writeError(w, http.StatusBadRequest, "invalid_request", "give exactly one of subject, user_id or segment", nil)
		return
	}
	rq.Subject, rq.Segment = q.Get("subject"), q.Get("segment")
	if u := q.Get("user_id"); u != "" {
		rq.Subject = s.siteByID(site).pipe.UserPseudonym(u)
	}
	if c := q.Get("candidates"); c != "" {
		for _, name := range strings.Split(c, ",") {
			if name = strings.TrimSpace(name); name != "" && !slices.Contains(rq.Candidates, name) {
				rq.Candidates = append(rq.Candidates, name)
			}
		}
	}
	pick, err := s.reactions.Next(r.Context(), site, rq)
	if err != nil {
		s.responseError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, pick)
}

// handleResponseUplift compares a message type with no message (the
// holdout arm) on conversions. Query: site, message_type (required),
// contact_type (default: every one).
func (s *Server) handleResponseUplift(w http.ResponseWriter, r *http.Request) {
	site, ok := s.responseSite(w, r)
	if !ok {
		return
	}
	mt := r.URL.Query().Get("message_type")
	if mt == "" {
		writeJSON(w, http.StatusBadRequest, apiError{Code: "invalid_request", Error: "message_type: is required", Field: "message_type"})
		return
	}
	ups, err := s.reactions.Uplift(r.Context(), site, mt, r.URL.Query().Get("contact_type"))
	if err != nil {
		s.responseError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"site": site, "message_type": mt, "uplift": ups})
}

// responseError answers a reaction error in the client's terms.
func (s *Server) responseError(w http.ResponseWriter, err error) {
	field := func(code int, kind, f, msg string) {
		writeJSON(w, code, apiError{Code: kind, Error: f + ": " + msg, Field: f})
	}
	switch {
	case errors.Is(err, reaction.ErrUnknownMessageType):
		field(http.StatusBadRequest, "unknown_message_type", "message_type", "not one of the response plugin's message types ("+strings.Join(s.reactions.MessageTypes(), ", ")+")")
	case errors.Is(err, reaction.ErrUnknownContactType):
		field(http.StatusBadRequest, "unknown_contact_type", "contact_type", "not one of the response plugin's contact types")
	case errors.Is(err, reaction.ErrNoCandidates):
		field(http.StatusBadRequest, "invalid_request", "candidates", "no message type to choose among")
	case errors.Is(err, reaction.ErrNoConversions):
		field(http.StatusBadRequest, "no_conversions", "message_type", "counts no conversion event, so its holdout cannot be compared")
	case errors.Is(err, reaction.ErrUnknownSubject):
		writeError(w, http.StatusNotFound, "unknown_subject", "no profile for this subject on this site (not profiled, or purged)", nil)
	case errors.Is(err, reaction.ErrNotModelled):
		writeError(w, http.StatusConflict, "not_modelled", "this subject is not modelled: its consent grants neither personalization nor marketing, or it objected", nil)
	default:
		s.log.Error("response model not read", "err", err)
		writeError(w, http.StatusServiceUnavailable, "storage_unavailable", "the response model could not be read; retry later", nil)
	}
}

// retentionCacheFor is how long a retention outlook is reused: it reads
// every key of the store's personal data.
const retentionCacheFor = 10 * time.Minute

// RetentionOutlook is what will be purged next and when (declared in
// storage, shared with the console).
type RetentionOutlook = storage.RetentionOutlook

// retentionCache holds the latest outlook.
type retentionCache struct {
	mu  sync.Mutex
	out *RetentionOutlook
}

// RetentionOutlook returns, for the console's privacy page, what ends in
// the next 7 days per kind of data (events by the purpose their retention
// comes from: "anonymous" or the purpose with the longest retention), and
// when the first of each does; computed at most every 10 minutes.
func (s *Server) RetentionOutlook(ctx context.Context) (RetentionOutlook, error) {
	c := &s.retention
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.out != nil && time.Since(c.out.ComputedAt) < retentionCacheFor {
		return *c.out, nil
	}
	now := time.Now()
	kinds, err := s.store.Outlook(ctx, storage.OutlookQuery{Now: now, Horizon: storage.DefaultOutlookHorizon, EventClass: s.retentionClass})
	if err != nil {
		return RetentionOutlook{}, err
	}
	c.out = &RetentionOutlook{ComputedAt: now, Horizon: "7d", NextPurge: s.store.NextPurge(), Kinds: kinds}
	return *c.out, nil
}

// retentionClass names the retention setting an event's TTL came from
// (the pipeline's rule): anonymous, else the granted purpose with the
// longest retention.
func (s *Server) retentionClass(ev *vigiev1.Event) string {
	if ev.GetMode() != vigiev1.Mode_MODE_PSEUDONYMOUS {
		return config.RetentionAnonymous
	}
	best, longest := "", time.Duration(-1)
	for _, p := range ev.GetPurposes() {
		if d := s.cfg.RetentionOf(p); d > longest {
			best, longest = p, d
		}
	}
	return best
}

// handleRetentionNext answers RetentionOutlook.
func (s *Server) handleRetentionNext(w http.ResponseWriter, r *http.Request) {
	out, err := s.RetentionOutlook(r.Context())
	if err != nil {
		s.log.Error("retention outlook not computed", "err", err)
		writeError(w, http.StatusServiceUnavailable, "storage_unavailable", "the retention outlook could not be computed; retry later", nil)
		return
	}
	writeJSON(w, http.StatusOK, out)
}
