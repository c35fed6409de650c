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
// visitor's consent allows a pseudonymous identifier. The snippet itself
// never stores anything.
const (
	idCookie    = "vigie_id"
	idCookieAge = 395 * 24 * time.Hour // 13 months
	idLen       = 22                   // base64url of 16 random bytes
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

// setVisitorCookie sets (value != "") or clears the identifier cookie.
func (s *Server) setVisitorCookie(w http.ResponseWriter, r *http.Request, value string) {
	c := &http.Cookie{
		Name: idCookie, Value: value, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Secure: s.isHTTPS(r), MaxAge: int(idCookieAge / time.Second),
	}
	if value == "" {
		c.MaxAge = -1
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
	recs = make([]storage.Record, 0, len(msgs))
	keep, withdraw := false, false
	for _, m := range msgs {
		if s.privacy.Suppressed(st.cfg.ID, m) {
			// Erased with suppression: dropped at the door, before anything
			// is decided or stored.
			s.metrics.rejected.WithLabelValues("suppressed").Inc()
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
	switch {
	case keep:
		s.setVisitorCookie(w, r, candidate) // also slides the expiry
	case withdraw && cookie != "":
		s.setVisitorCookie(w, r, "")
	}
	return recs, true
}
