package proxy

import (
	"crypto/rand"
	"encoding/base64"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/proxy/collect"
	"github.com/vigie-dev/vigie/proxy/ledger"
	"github.com/vigie-dev/vigie/proxy/pipeline"
	"github.com/vigie-dev/vigie/storage"
)

// The snippet's visitor identifier is a first-party cookie set by the
// server, HttpOnly (scripts cannot read it), SameSite=Lax, and only once the
// visitor's consent allows a pseudonymous identifier. It lasts the site's
// consent.cookie_lifetime from the choice (13 months by default) and is
// never extended: it is set when a choice is recorded (or, granted by
// default, when the visitor has none yet), never again on later hits. The
// snippet itself never stores anything; it learns the visitor's consent
// status from the consentHeader of each answer.
const (
	idCookie = "vigie_id"
	idLen    = 22 // base64url of 16 random bytes

	// consentHeader answers every snippet request with the visitor's
	// consent status as Vigie holds it: "granted; expires=<RFC 3339>"
	// (expires omitted when unknown), "denied", "expired" (the choice and
	// its cookie have ended: ask again) or "needed" (no choice for this
	// browser: no cookie, or one Vigie no longer knows).
	consentHeader = "Vigie-Consent"
)

// newVisitorID returns a random identifier for the cookie.
func newVisitorID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// visitorCookie returns the request's identifier cookie, if well-formed.
func visitorCookie(r *http.Request) string {
	c, err := r.Cookie(idCookie)
	if err != nil || len(c.Value) != idLen {
		return ""
	}
	if _, err := base64.RawURLEncoding.DecodeString(c.Value); err != nil {
		return ""
	}
	return c.Value
}

// setVisitorCookie sets the identifier cookie to value until expires, or
// clears it (value "").
func (s *Server) setVisitorCookie(w http.ResponseWriter, r *http.Request, value string, expires time.Time) {
	c := &http.Cookie{
		Name: idCookie, Value: value, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Secure: s.isHTTPS(r), MaxAge: -1,
	}
	if left := time.Until(expires); value != "" && left >= time.Second {
		c.MaxAge, c.Expires = int(left/time.Second), expires.UTC()
	} else {
		c.Value = ""
	}
	http.SetCookie(w, c)
}

// isHTTPS reports whether the visitor reached Vigie over HTTPS (directly, or
// through a trusted proxy saying so).
func (s *Server) isHTTPS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	peer, err := netip.ParseAddr(host)
	return err == nil && s.isTrusted(peer) && r.Header.Get("X-Forwarded-Proto") == "https"
}

// processHits runs the pipeline over the messages of one request and
// returns the records to store. Around it: the snippet's messages get the
// visitor cookie's identifier (or a fresh one, kept only if consent allows
// it), every event without a consent signal of its own is decided with the
// consent ledger, and an explicit choice is recorded in the ledger with its
// privacy event for the syncers (a withdrawal of every profile purpose
// deletes the subject's profile). Nothing here waits for NATS. When a
// choice cannot be recorded, processHits answers the request itself (503:
// the client retries, and the choice with it) and returns ok false.
func (s *Server) processHits(w http.ResponseWriter, r *http.Request, st *site, msgs []*collect.Message, req *pipeline.Request) (recs []storage.Record, ok bool) {
	cookie := visitorCookie(r)
	candidate := cookie
	snippet := false
	for _, m := range msgs {
		if m.Context.Library.Name == collect.SnippetLibrary && m.AnonymousID == "" {
			if candidate == "" {
				candidate = newVisitorID()
			}
			m.AnonymousID = candidate
			snippet = true
		}
	}
	req.Ledger = s.ledger.Reader(r.Context())
	var prev ledger.Entry // the visitor's choice before this request
	if snippet {
		prev = s.ledger.Get(r.Context(), st.cfg.ID, st.pipe.AnonymousPseudonym(candidate))
	}
	recs = make([]storage.Record, 0, len(msgs))
	keep, withdraw := false, false
	for _, m := range msgs {
		if s.privacy.Suppressed(st.cfg.ID, m) {
			// Erased with suppression: dropped at the door, before anything
			// is decided or stored.
			s.metrics.rejected.WithLabelValues("suppressed").Inc()
			s.countRejected(st, reasonSuppressed, 1)
			continue
		}
		res := s.pipe.Process(st.pipe, m, req)
		s.count(r, st, res)
		if res.Outcome == pipeline.Stored {
			recs = append(recs, res.Record)
		}
		if res.Explicit && res.Subject != "" {
			proof := ledger.Proof{Source: "payload", EventID: res.Record.ID, Hash: ledger.HashSignal(m.Context.Consent)}
			if len(m.Context.Consent) == 0 {
				proof.Source = req.Source
			}
			if err := s.ledger.RecordWithProof(r.Context(), st.cfg.ID, res.Subject, res.Decision, proof); err != nil {
				s.storeFailed(w, err, "consent choice")
				return nil, false
			}
		}
		if snippet && m.AnonymousID == candidate {
			pseudo := res.Decision.Outcome == consent.Pseudonymous && res.Outcome == pipeline.Stored
			keep = keep || pseudo
			withdraw = withdraw || (res.Explicit && res.Decision.Outcome != consent.Pseudonymous)
		}
	}
	if snippet {
		s.answerVisitor(w, r, st, cookie, candidate, keep, withdraw, prev)
	}
	return recs, true
}

// answerVisitor sets, leaves or clears the identifier cookie after a
// snippet request, and tells the snippet the visitor's consent status
// (consentHeader). cookie is the request's identifier ("" for none),
// candidate the one its events used; keep says an event was kept
// pseudonymous with it, withdraw that the request refused consent, prev
// is the visitor's ledger entry before the request. The cookie's expiry is
// the choice's, and the cookie is set only when the request recorded a new
// choice (the entry's time changed) or the browser has none: a later hit
// never moves it.
func (s *Server) answerVisitor(w http.ResponseWriter, r *http.Request, st *site, cookie, candidate string, keep, withdraw bool, prev ledger.Entry) {
	e := s.ledger.Get(r.Context(), st.cfg.ID, st.pipe.AnonymousPseudonym(candidate))
	status := "needed"
	switch {
	case withdraw:
		if cookie != "" {
			s.setVisitorCookie(w, r, "", time.Time{})
		}
		status = "denied"
	case keep:
		expires := e.Expires
		recorded := e.Found && !e.At.Equal(prev.At)
		if !e.Found && cookie == "" {
			// Granted by default, with no choice to count from.
			expires = time.Now().Add(st.cfg.CookieLifetime())
		}
		if cookie == "" || recorded {
			s.setVisitorCookie(w, r, candidate, expires)
		}
		status = "granted"
		if !expires.IsZero() {
			status += "; expires=" + expires.UTC().Format(time.RFC3339)
		}
	case e.Expired && cookie != "":
		// The browser kept the cookie past its end (or its clock is
		// wrong): the consent it stood for no longer applies.
		s.setVisitorCookie(w, r, "", time.Time{})
		status = "expired"
	case e.Found && !e.Granted.HasAny(st.pipe.Policy().Identifying):
		status = "denied"
	}
	h := w.Header()
	h.Set(consentHeader, status)
	h.Set("Access-Control-Expose-Headers", consentHeader)
}
