package proxy

import "net/http"

// Routes of RudderStack's JavaScript SDK v3 (@rudderstack/analytics-js)
// besides the Segment ones it shares (/v1/<type>, /v1/batch).
const (
	// sourceConfigPath is where the SDK reads its source configuration
	// (load option configUrl; it appends /sourceConfig/ and the query
	// writeKey, p, v, build, lockIntegrationsVersion, lockPluginsVersion).
	sourceConfigPath = "/sourceConfig/"
	// beaconBatchPath is its beacon transport (useBeacon: true):
	// navigator.sendBeacon of a text/plain {"batch": [...], "sentAt": ...}
	// with the write key in the writeKey query parameter.
	beaconBatchPath = "/beacon/v1/batch"
)

// handleSourceConfig answers the SDK's source configuration request with
// the least it needs to start: an enabled source with no device-mode
// destinations (so it loads no integration from a CDN and sends every
// event to its dataPlaneUrl) and no error or metrics reporting. The write
// key comes from the Basic auth user or the writeKey query parameter.
func (s *Server) handleSourceConfig(w http.ResponseWriter, r *http.Request) {
	if !s.authAdmit(w, r, authWriteKey) {
		return
	}
	st := s.resolveSite(w, r, "")
	if st == nil {
		return
	}
	off := map[string]any{"enabled": false}
	writeJSON(w, http.StatusOK, map[string]any{
		"isHosted": false,
		"source": map[string]any{
			"id":           st.cfg.ID,
			"name":         st.cfg.ID,
			"workspaceId":  "vigie",
			"enabled":      true,
			"config":       map[string]any{"statsCollection": map[string]any{"errors": off, "metrics": off}},
			"destinations": []any{},
		},
	})
}
