package proxy

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/proxy/apijson"
	"github.com/vigie-dev/vigie/proxy/keyring"
	"github.com/vigie-dev/vigie/proxy/privacy"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
)

// admin guards an admin handler with the bearer token (scheme
// case-insensitive, token compared in constant time). A wrong token counts
// against the client network's failure budget (authAdmit).
func (s *Server) admin(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.authAdmit(w, r, authAdmin) {
			return
		}
		hdr := r.Header.Get("Authorization")
		tok, ok := authCredentials(hdr, "Bearer")
		t, valid := s.keyring.CheckToken(tok)
		if !ok || !valid || t.Role != keyring.RoleAdmin {
			if hdr != "" {
				s.authFailed(r, authAdmin)
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="vigie-admin"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "missing or wrong admin token", nil)
			return
		}
		// The audit trail names the token by id and role, never by value.
		h(w, r.WithContext(privacy.WithActor(r.Context(), privacy.TokenActor(t.ID, t.Role))))
	})
}

// siteAndLimit reads the query parameters the admin listings share: site
// (may be left out when only one site is configured) and limit (1–1000,
// default def). On a bad value it answers 400 and returns ok false.
func (s *Server) siteAndLimit(w http.ResponseWriter, r *http.Request, def int) (site string, limit int, ok bool) {
	q := r.URL.Query()
	site = q.Get("site")
	if site == "" && len(s.cfg.Sites) == 1 {
		site = s.cfg.Sites[0].ID
	}
	if _, known := s.byID[site]; !known {
		writeError(w, http.StatusBadRequest, "unknown_site", "site: unknown or missing site id", nil)
		return "", 0, false
	}
	limit = def
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, "invalid_limit", "limit: must be an integer from 1 to 1000", nil)
			return "", 0, false
		}
		limit = n
	}
	return site, limit, true
}

// maxAdminScan bounds the events one filtered listing reads (see
// storage.EventQuery.MaxScan): a filter that matches rarely returns a short
// page and a cursor rather than reading a whole site.
const maxAdminScan = 10_000

// handleAdminEvents lists stored events, newest first, exactly as stored
// (pseudonymized). Query: site (required when several sites exist), limit
// (1–1000, default 100), after (the cursor "next" of the previous page),
// and filters: type (comma-separated event types), name (the event, page or
// screen name, exactly), from and to (event time, RFC 3339 or Unix
// milliseconds; from inclusive, to exclusive). A filtered page may hold
// fewer events than limit while "next" is still set.
func (s *Server) handleAdminEvents(w http.ResponseWriter, r *http.Request) {
	site, limit, ok := s.siteAndLimit(w, r, 100)
	if !ok {
		return
	}
	q := r.URL.Query()
	eq := storage.EventQuery{Limit: limit, Before: q.Get("after")}
	for _, f := range []struct {
		name string
		t    *time.Time
	}{{"from", &eq.From}, {"to", &eq.To}} {
		if v := q.Get(f.name); v != "" {
			t, ok := parseAdminTime(v)
			if !ok {
				writeJSON(w, http.StatusBadRequest, apiError{Code: "invalid_time", Field: f.name,
					Error: f.name + ": must be an RFC 3339 time (2026-01-31T12:00:00Z) or Unix milliseconds"})
				return
			}
			*f.t = t
		}
	}
	var types []string
	if v := q.Get("type"); v != "" {
		types = strings.Split(v, ",")
	}
	name, hasName := q.Get("name"), q.Has("name")
	var decoded []*vigiev1.Event
	eq.Keep = func(b []byte) bool {
		ev := &vigiev1.Event{}
		if err := proto.Unmarshal(b, ev); err != nil {
			s.log.Error("stored event does not decode", "err", err)
			return false
		}
		if (types != nil && !slices.Contains(types, ev.GetType())) || (hasName && ev.GetName() != name) {
			return false
		}
		decoded = append(decoded, ev)
		return true
	}
	if types != nil || hasName {
		eq.MaxScan = maxAdminScan
	}
	_, next, err := s.store.ListEvents(r.Context(), site, eq)
	switch {
	case errors.Is(err, storage.ErrInvalidKey):
		writeError(w, http.StatusBadRequest, "invalid_cursor", "after: not a cursor returned by this listing", nil)
		return
	case err != nil:
		s.log.Error("listing events failed", "err", err)
		writeError(w, http.StatusServiceUnavailable, "storage_unavailable", "events could not be read; retry later", nil)
		return
	}
	events := make([]json.RawMessage, 0, len(decoded))
	for _, ev := range decoded {
		j, err := eventAsJSON(ev)
		if err != nil {
			s.log.Error("stored event does not encode as JSON", "err", err)
			continue
		}
		events = append(events, j)
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": events, "next": next})
}

// parseAdminTime reads a time of the admin API: RFC 3339, or Unix
// milliseconds.
func parseAdminTime(v string) (time.Time, bool) {
	if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
		if ms < 0 {
			return time.Time{}, false
		}
		return time.UnixMilli(ms), true
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	return t, err == nil
}

// eventAsJSON is ev as the admin API shows it (apijson.Marshal): times as
// numbers, lower-case modes, properties and traits as the JSON objects
// they are.
func eventAsJSON(ev *vigiev1.Event) (json.RawMessage, error) { return apijson.Marshal(ev) }

// handleAdminStats reports storage and pipeline counters.
func (s *Server) handleAdminStats(w http.ResponseWriter, r *http.Request) {
	st, err := s.store.Stats(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, "stats_failed", "could not read storage statistics", nil)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"version":          Version,
		"events_per_site":  st.Events,
		"outbox_depth":     st.OutboxDepth,
		"duplicates":       st.Duplicates,
		"published":        s.pub.Published(),
		"publish_failures": s.pub.Failures(),
		"nats_connected":   s.bus.Connected(),
		"lsm_bytes":        st.LSMBytes,
		"vlog_bytes":       st.VLogBytes,
	})
}
