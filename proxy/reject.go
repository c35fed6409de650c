package proxy

import (
	"context"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/vigie-dev/vigie/proxy/config"
)

// reject counts n events or requests refused for reason
// (vigie_events_rejected_total) and logs it at debug level.
func (s *Server) reject(r *http.Request, st *site, reason string, n int) {
	s.metrics.rejected.WithLabelValues(reason).Add(float64(n))
	s.logRejection(r, st, reason, n)
	s.recordRejection(r, st, reason, n)
	s.countRejected(st, reason, n)
}

// logRejection logs, at debug level, why a hit was not stored: the
// reason, the route pattern and the site. Never the path's values, the
// query, an address, an identifier or a key: patterns name their
// wildcards ({writeKey}), not what was sent.
func (s *Server) logRejection(r *http.Request, st *site, reason string, n int) {
	if !s.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	attrs := []any{"reason", reason}
	if r != nil {
		attrs = append(attrs, "route", routeName(r))
	}
	if st != nil {
		attrs = append(attrs, "site", st.cfg.ID)
	}
	if n != 1 {
		attrs = append(attrs, "events", n)
	}
	s.log.Debug("hit rejected", attrs...)
}

// routeName names r's route for logs: the pattern it matched, or for the
// catch-all its method and first path segment only.
func routeName(r *http.Request) string {
	if r.Pattern != "" && r.Pattern != "/" {
		return r.Pattern
	}
	seg := strings.TrimPrefix(r.URL.Path, "/")
	if i := strings.IndexByte(seg, '/'); i >= 0 {
		seg = seg[:i+1] + "…"
	}
	if len(seg) > 32 {
		seg = seg[:32] + "…"
	}
	q := strconv.Quote(seg) // control bytes escaped, so a log line stays one line
	return r.Method + " /" + q[1:len(q)-1]
}

// unknownRoute counts a request no route serves (404) or served with
// another method (405), and logs it at debug level.
func (s *Server) unknownRoute(r *http.Request, code int) {
	s.metrics.unknownRoutes.WithLabelValues(strconv.Itoa(code)).Inc()
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("request to an unknown route", "route", routeName(r), "status", code)
	}
}

// testClient reports whether r carries the site's test token in
// config.TestHeader (compared in constant time): a test client the site
// vouched for, whose hits are stored even from a bot's user agent.
func (st *site) testClient(r *http.Request) bool {
	tok := st.cfg.TestToken.Reveal()
	if tok == "" {
		return false
	}
	got := r.Header.Get(config.TestHeader)
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(tok)) == 1
}
