package proxy

import (
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/plugins"
	"github.com/vigie-dev/vigie/proxy/apijson"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// handleAdminPlugins lists every configured plugin: state, version,
// manifest, counters, consumer lag and dead letters.
func (s *Server) handleAdminPlugins(w http.ResponseWriter, r *http.Request) {
	list := []plugins.Status{}
	if s.plugins != nil {
		list = s.plugins.Status(r.Context())
	}
	writeJSON(w, http.StatusOK, map[string]any{"plugins": list})
}

// handleAdminReplay re-queues a plugin's dead letters.
func (s *Server) handleAdminReplay(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if s.plugins == nil {
		writeError(w, http.StatusNotFound, "unknown_plugin", "no plugin named "+strconv.Quote(name)+" is configured", nil)
		return
	}
	n, err := s.plugins.Replay(r.Context(), name)
	switch {
	case errors.Is(err, plugins.ErrUnknownPlugin):
		writeError(w, http.StatusNotFound, "unknown_plugin", "no plugin named "+strconv.Quote(name)+" is configured", nil)
	case err != nil:
		s.log.Error("replay failed", "plugin", name, "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{
			"success": false, "code": "replay_failed", "error": "replay stopped early; retry", "replayed": n,
		})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"success": true, "replayed": n})
	}
}

// segmentView is one segment in GET /admin/v1/segments.
type segmentView struct {
	Name        string `json:"name"`
	Plugin      string `json:"plugin,omitempty"`
	Description string `json:"description,omitempty"`
	When        string `json:"when,omitempty"`
	Size        int64  `json:"size"`
}

// handleAdminSegments lists a site's segments (as configured in segmenter
// plugins, plus any that still has members), their sizes and recent
// changes. Query: site (required when several sites exist), limit of
// recent changes (1–1000, default 50).
func (s *Server) handleAdminSegments(w http.ResponseWriter, r *http.Request) {
	site, limit, ok := s.siteAndLimit(w, r, 50)
	if !ok {
		return
	}
	sizes, err := s.store.SegmentSizes(r.Context(), site)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "segments_failed", "could not read segment sizes", nil)
		return
	}
	changes, err := s.store.RecentSegmentChanges(r.Context(), site, limit)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "segments_failed", "could not read segment changes", nil)
		return
	}
	views := s.segmentDefinitions(site)
	for i := range views {
		views[i].Size = sizes[views[i].Name]
		delete(sizes, views[i].Name)
	}
	for name, n := range sizes {
		views = append(views, segmentView{Name: name, Size: n})
	}
	sort.Slice(views, func(i, j int) bool { return views[i].Name < views[j].Name })
	recent := make([]json.RawMessage, 0, len(changes))
	for _, c := range changes {
		if b, err := apijson.Marshal(c); err == nil {
			recent = append(recent, b)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"site": site, "segments": views, "recent_changes": recent})
}

// segmentDefinitions lists the segments configured for site in the
// built-in segments plugin.
func (s *Server) segmentDefinitions(site string) []segmentView {
	var out []segmentView
	for _, in := range s.segmentDefs {
		if in.Site == "" || in.Site == site {
			out = append(out, segmentView{Name: in.Name, Plugin: "segments", Description: in.Description, When: in.When})
		}
	}
	return out
}

// handleAdminEnriched lists the most recent enriched events of a site
// (what segmenters and syncers receive), newest first, read back from the
// VIGIE_ENRICHED stream. Query: site (required when several sites exist),
// limit (1–1000, default 20).
func (s *Server) handleAdminEnriched(w http.ResponseWriter, r *http.Request) {
	site, limit, ok := s.siteAndLimit(w, r, 20)
	if !ok {
		return
	}
	events := []json.RawMessage{}
	if s.plugins == nil {
		writeJSON(w, http.StatusOK, map[string]any{"events": events})
		return
	}
	if !s.bus.Connected() { // answer now rather than wait for NATS
		writeError(w, http.StatusServiceUnavailable, "bus_unavailable", "the enriched stream cannot be read now", nil)
		return
	}
	ctx := r.Context()
	st, err := s.bus.JetStream().Stream(ctx, streams.Enriched)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "bus_unavailable", "the enriched stream cannot be read now", nil)
		return
	}
	info, err := st.Info(ctx)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "bus_unavailable", "the enriched stream cannot be read now", nil)
		return
	}
	prefix := streams.EnrichedSubject(site, "")
	// Look at no more than 10 messages per event asked for, so that a
	// busy other site cannot make this scan the whole stream.
	for seq, scanned := info.State.LastSeq, 0; seq >= info.State.FirstSeq && seq > 0 && len(events) < limit && scanned < 10*limit; seq, scanned = seq-1, scanned+1 {
		m, err := st.GetMsg(ctx, seq)
		if err != nil || !strings.HasPrefix(m.Subject, prefix) {
			continue
		}
		var ev vigiev1.Event
		if proto.Unmarshal(m.Data, &ev) != nil {
			continue
		}
		if j, err := eventAsJSON(&ev); err == nil {
			events = append(events, j)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": events})
}
