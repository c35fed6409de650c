package proxy

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

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

var eventJSON = protojson.MarshalOptions{UseProtoNames: true}

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

// handleAdminEvents lists stored events, newest first, exactly as stored
// (pseudonymized). Query: site (required when several sites exist), limit
// (1–1000, default 100), after (the cursor "next" of the previous page).
func (s *Server) handleAdminEvents(w http.ResponseWriter, r *http.Request) {
	site, limit, ok := s.siteAndLimit(w, r, 100)
	if !ok {
		return
	}
	raw, next, err := s.store.Events(r.Context(), site, limit, r.URL.Query().Get("after"))
	switch {
	case errors.Is(err, storage.ErrInvalidKey):
		writeError(w, http.StatusBadRequest, "invalid_cursor", "after: not a cursor returned by this listing", nil)
		return
	case err != nil:
		s.log.Error("listing events failed", "err", err)
		writeError(w, http.StatusServiceUnavailable, "storage_unavailable", "events could not be read; retry later", nil)
		return
	}
	events := make([]json.RawMessage, 0, len(raw))
	for _, b := range raw {
		var ev vigiev1.Event
		if err := proto.Unmarshal(b, &ev); err != nil {
			s.log.Error("stored event does not decode", "err", err)
			continue
		}
		j, err := eventAsJSON(&ev)
		if err != nil {
			s.log.Error("stored event does not encode as JSON", "err", err)
			continue
		}
		events = append(events, j)
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": events, "next": next})
}

// eventAsJSON is the protobuf JSON form of ev, with properties and traits
// shown as the JSON objects they are rather than base64 bytes.
func eventAsJSON(ev *vigiev1.Event) (json.RawMessage, error) {
	j, err := eventJSON.Marshal(ev)
	if err != nil {
		return nil, err
	}
	if len(ev.GetProperties()) == 0 && len(ev.GetTraits()) == 0 {
		return j, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(j, &m); err != nil {
		return nil, err
	}
	if p := ev.GetProperties(); len(p) > 0 && json.Valid(p) {
		m["properties"] = p
	}
	if t := ev.GetTraits(); len(t) > 0 && json.Valid(t) {
		m["traits"] = t
	}
	return json.Marshal(m)
}

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
