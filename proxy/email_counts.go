package proxy

import (
	"net/http"
	"strings"
	"time"
)

// emailCountView is one counter of GET /admin/v1/email/counts.
type emailCountView struct {
	Campaign string `json:"campaign"`
	Kind     string `json:"kind"`
	Class    string `json:"class"`
	Link     string `json:"link,omitempty"`
	Hour     string `json:"hour"`
	Count    int64  `json:"count"`
}

// maxEmailCounts bounds one answer of GET /admin/v1/email/counts.
const maxEmailCounts = 10000

// handleEmailCounts lists a site's campaign-level e-mail counters: the
// opens and clicks that may not be attributed to their recipient, by
// campaign, hour, kind (open, click), class and link. Query: site
// (required when several sites exist), campaign (optional).
func (s *Server) handleEmailCounts(w http.ResponseWriter, r *http.Request) {
	site, _, ok := s.siteAndLimit(w, r, 1)
	if !ok {
		return
	}
	campaign := r.URL.Query().Get("campaign")
	if strings.IndexByte(campaign, 0) >= 0 {
		writeError(w, http.StatusBadRequest, "invalid_request", "campaign: must not contain NUL", nil)
		return
	}
	counts, err := s.store.EmailCounts(r.Context(), site, campaign)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "email_counts_failed", "could not read e-mail counts", nil)
		return
	}
	out := make([]emailCountView, 0, min(len(counts), maxEmailCounts))
	for _, c := range counts[:min(len(counts), maxEmailCounts)] {
		out = append(out, emailCountView{Campaign: c.Campaign, Kind: c.Kind, Class: c.Class, Link: c.Link,
			Hour: c.Hour.UTC().Format(time.RFC3339), Count: c.N})
	}
	writeJSON(w, http.StatusOK, map[string]any{"site": site, "counts": out, "truncated": len(counts) > maxEmailCounts})
}
