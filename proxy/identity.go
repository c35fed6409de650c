package proxy

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/proxy/collect"
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
// consent ledger, and an explicit choice is recorded in the ledger (a
// withdrawal of every profile purpose deletes the subject's profile).
func (s *Server) processHits(w http.ResponseWriter, r *http.Request, st *site, msgs []*collect.Message, req *pipeline.Request) []storage.Record {
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
	req.Ledger = s.ledger.reader(r.Context())
	recs := make([]storage.Record, 0, len(msgs))
	keep, withdraw := false, false
	for _, m := range msgs {
		res := s.pipe.Process(st.pipe, m, req)
		s.count(r, st, res)
		if res.Outcome == pipeline.Stored {
			recs = append(recs, res.Record)
		}
		if res.Explicit && res.Subject != "" {
			s.ledger.record(r.Context(), st.cfg.ID, res.Subject, res.Decision)
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
	return recs
}

// ledger is the consent ledger: the last explicit choice of each subject,
// in Badger, behind a write-through cache (so a withdrawal applies to the
// very next event).
type ledger struct {
	store    *storage.Store
	log      interface{ Warn(string, ...any) }
	onDrop   func(ctx context.Context, site, subject string)                      // profile purposes all withdrawn
	onChange func(ctx context.Context, site, subject string, granted consent.Set) // a new choice was recorded
	profile  []consent.Purpose                                                    // purposes that allow a profile
	all      []consent.Purpose                                                    // configured purposes but necessary

	mu    sync.Mutex
	cache map[string]ledgerEntry // site \x00 subject
}

// ledgerEntry is a cached ledger entry; found is false for "no entry".
type ledgerEntry struct {
	granted, denied consent.Set
	found           bool
}

// maxLedgerCache bounds the cache; past it, it is emptied (simple and
// enough: entries are re-read from Badger).
const maxLedgerCache = 100_000

func (l *ledger) key(site, subject string) string { return site + "\x00" + subject }

// get returns subject's entry, from the cache or Badger.
func (l *ledger) get(ctx context.Context, site, subject string) ledgerEntry {
	k := l.key(site, subject)
	l.mu.Lock()
	e, ok := l.cache[k]
	l.mu.Unlock()
	if ok {
		return e
	}
	ce, err := l.store.Consent(ctx, site, subject)
	switch {
	case err == nil:
		e.found = true
		e.granted, _ = consent.ParseSet(ce.Granted...)
		e.denied, _ = consent.ParseSet(ce.Denied...)
	case !errors.Is(err, storage.ErrNotFound):
		l.log.Warn("consent ledger unreadable; deciding without it", "err", err)
		return e
	}
	l.put(k, e)
	return e
}

func (l *ledger) put(k string, e ledgerEntry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cache == nil || len(l.cache) >= maxLedgerCache {
		l.cache = make(map[string]ledgerEntry, 1024)
	}
	l.cache[k] = e
}

// record stores an explicit choice when it differs from the recorded one.
func (l *ledger) record(ctx context.Context, site, subject string, d consent.Decision) {
	old := l.get(ctx, site, subject)
	granted := d.Granted
	if d.Outcome != consent.Pseudonymous {
		granted = consent.Set{}
	}
	var refused []consent.Purpose
	for _, p := range l.all {
		if !granted.Has(p) {
			refused = append(refused, p)
		}
	}
	denied := consent.NewSet(refused...)
	if old.found && old.granted == granted && old.denied == denied {
		return
	}
	e := storage.ConsentEntry{Granted: granted.Names(), Denied: denied.Names(), Source: "explicit", AtMs: time.Now().UnixMilli()}
	if err := l.store.PutConsent(ctx, site, subject, e); err != nil {
		l.log.Warn("consent choice not recorded", "err", err)
		return
	}
	l.put(l.key(site, subject), ledgerEntry{granted: granted, denied: denied, found: true})
	if l.onChange != nil {
		l.onChange(ctx, site, subject, granted)
	}
	profiled := func(s consent.Set) bool {
		return slices.ContainsFunc(l.profile, func(p consent.Purpose) bool { return s.Has(p) })
	}
	if old.found && profiled(old.granted) && !profiled(granted) && l.onDrop != nil {
		l.onDrop(ctx, site, subject)
	}
}

// reader returns the ledger as the pipeline reads it.
func (l *ledger) reader(ctx context.Context) pipeline.LedgerReader {
	return ledgerReader{l: l, ctx: ctx}
}

// ledgerReader adapts ledger to pipeline.LedgerReader for one request.
type ledgerReader struct {
	l   *ledger
	ctx context.Context
}

// Consent implements pipeline.LedgerReader.
func (r ledgerReader) Consent(site, subject string) (consent.Signal, bool) {
	e := r.l.get(r.ctx, site, subject)
	if !e.found {
		return consent.Signal{}, false
	}
	return consent.Signal{Source: consent.SourceLedger, Granted: e.granted, Denied: e.denied}, true
}
