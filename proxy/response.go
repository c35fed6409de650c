package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

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
// answering 503 (the plugin itself is reported failed by the runtime).
func (s *Server) startResponse() {
	p, ok := s.responsePlugin()
	if !ok {
		return
	}
	raw, err := json.Marshal(p.Config)
	if err == nil {
		s.reactions, err = reaction.New(reaction.Config{Store: s.store, Plugin: p.Name, PluginConfig: raw})
	}
	if err != nil {
		s.log.Error("response plugin configuration refused; its admin routes answer 503", "err", err)
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
