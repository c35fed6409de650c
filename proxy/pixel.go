package proxy

import (
	"net/http"
	"time"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/proxy/collect"
)

// handlePixel records a page view from query parameters, for pages without
// JavaScript:
//
//	<img src="/v1/p.gif?k=WRITEKEY&consent=analytics" alt="">
//
// Parameters: k (write key, required), url (default: the Referer header),
// ref (the page's referrer), title, name, aid (anonymous id) and uid (user
// id) — used only when consent allows —, and consent (see
// consent.FromPixel). It answers a 1×1 GIF that is never cached.
func (s *Server) handlePixel(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if !s.authAdmit(w, r, authWriteKey) {
		return
	}
	q := r.URL.Query()
	wk := q.Get("k")
	if wk == "" {
		wk = q.Get("writeKey")
	}
	st := s.resolveSite(w, r, wk)
	if st == nil {
		return
	}
	s.metrics.received.WithLabelValues(st.cfg.ID).Inc()
	req := s.request(r, st, "pixel", start)
	// The pixel's own consent parameter is ours: a malformed one is a
	// mistake in the page, answered 400. Consent strings of consent
	// platforms (gdpr_consent, gpp, gcs/gcd) that do not decode count as
	// no consent from that platform.
	if c := q.Get("consent"); c != "" {
		if _, err := consent.FromPixel(c); err != nil {
			s.reject(r, st, "invalid", 1)
			writeError(w, http.StatusBadRequest, "invalid_consent",
				"consent: must be comma-separated purposes, each optionally followed by :0 or :1 (or none, all)", err)
			return
		}
	}
	sigs, errs := consent.FromQuery(q, st.pipe.Policy())
	if len(errs) > 0 {
		s.reject(r, st, "invalid_consent_string", 1)
	}
	if len(sigs) > 0 {
		req.Signals = append(req.Signals, sigs...)
		req.Explicit = true
	}
	msg := collect.Message{
		Type:        "page",
		Name:        q.Get("name"),
		AnonymousID: q.Get("aid"),
		UserID:      q.Get("uid"),
	}
	msg.Context.Page.URL = q.Get("url")
	if msg.Context.Page.URL == "" {
		msg.Context.Page.URL = r.Header.Get("Referer")
	}
	msg.Context.Page.Referrer = q.Get("ref")
	msg.Context.Page.Title = q.Get("title")
	if recs, ok := s.processHits(w, r, st, []*collect.Message{&msg}, &req); !ok || len(recs) > 0 && !s.commit(w, r, recs) {
		return
	}
	s.metrics.latency.WithLabelValues("/v1/p.gif").Observe(time.Since(start).Seconds())
	h := w.Header()
	h.Set("Content-Type", "image/gif")
	h.Set("Cache-Control", "no-cache, no-store, must-revalidate, private")
	h.Set("Pragma", "no-cache")
	h.Set("Expires", "0")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(transparentGIF)
}
