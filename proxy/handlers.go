package proxy

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vigie-dev/vigie/proxy/cluster"
	"github.com/vigie-dev/vigie/proxy/collect"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/pipeline"
	"github.com/vigie-dev/vigie/storage"
)

// eventRoutes maps each single-event route to its event type: Segment's
// HTTP API names and analytics-next's short ones.
var eventRoutes = map[string]string{
	"track": "track", "page": "page", "screen": "screen", "identify": "identify", "group": "group", "alias": "alias",
	"t": "track", "p": "page", "s": "screen", "i": "identify", "g": "group", "a": "alias",
}

// batchRoutes are the batch routes: Segment's batch and import, and
// analytics-next's short one.
var batchRoutes = []string{"batch", "import", "b"}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	for route, typ := range eventRoutes {
		mux.Handle("POST /v1/"+route, s.cors(s.diskGuard(s.handleEvent(typ, "/v1/"+route))))
		mux.Handle("OPTIONS /v1/"+route, s.cors(nil))
	}
	for _, route := range batchRoutes {
		mux.Handle("POST /v1/"+route, s.cors(s.diskGuard(s.handleBatch("/v1/"+route))))
		mux.Handle("OPTIONS /v1/"+route, s.cors(nil))
	}
	mux.Handle("GET /v1/projects/{writeKey}/settings", s.cors(http.HandlerFunc(s.handleSettings)))
	mux.Handle("OPTIONS /v1/projects/{writeKey}/settings", s.cors(nil))
	// RudderStack's JavaScript SDK v3: its source configuration, and its
	// beacon transport (write key in the query).
	mux.Handle("GET "+sourceConfigPath, s.cors(http.HandlerFunc(s.handleSourceConfig)))
	mux.Handle("OPTIONS "+sourceConfigPath, s.cors(nil))
	mux.Handle("POST "+beaconBatchPath, s.cors(s.diskGuard(s.handleBatch(beaconBatchPath))))
	mux.Handle("OPTIONS "+beaconBatchPath, s.cors(nil))
	mux.Handle("GET /v1/p.gif", s.diskGuard(http.HandlerFunc(s.handlePixel)))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.handleReady)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.Handle("GET /admin/v1/events", s.admin(s.handleAdminEvents))
	mux.Handle("GET /admin/v1/stats", s.admin(s.handleAdminStats))
	mux.Handle("GET /admin/v1/plugins", s.admin(s.handleAdminPlugins))
	mux.Handle("POST /admin/v1/plugins/{name}/replay", s.admin(s.handleAdminReplay))
	mux.Handle("GET /admin/v1/segments", s.admin(s.handleAdminSegments))
	mux.Handle("GET /admin/v1/enriched", s.admin(s.handleAdminEnriched))
	mux.Handle("GET "+s.cfg.SnippetPath, snippetHandler())
	mux.HandleFunc("GET /e/o/{token}", s.email.ServeOpen)
	mux.HandleFunc("GET /e/c/{token}", s.email.ServeClick)
	mux.Handle("POST /admin/v1/email/rewrite", s.admin(s.handleEmailRewrite))
	mux.Handle("POST /admin/v1/email/tokens", s.admin(s.handleEmailTokens))
	s.rightsRoutes(mux)
	mux.Handle("GET /admin/v1/sensitive", s.admin(s.handleAdminSensitive))
	s.responseRoutes(mux)
	s.privacyRoutes(mux)
	s.clusterRoutes(mux)
	mux.Handle("GET /admin/v1/email/counts", s.admin(s.handleEmailCounts))
	s.destinationRoutes(mux)
	s.importRoutes(mux)
	if s.cfg.DemoPath != "off" {
		mux.Handle("GET "+s.cfg.DemoPath, demoHandler(s.cfg.DemoPath))
	}
	s.consoleRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if allow, ok := knownMethods(r.URL.Path); ok {
			s.unknownRoute(r, http.StatusMethodNotAllowed)
			w.Header().Set("Allow", allow)
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed on "+r.URL.Path+"; use "+allow, nil)
			return
		}
		s.unknownRoute(r, http.StatusNotFound)
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+r.URL.Path, nil)
	})
	return s.guard(mux)
}

// headerHardCap is how many times Limits.MaxHeaderBytes net/http itself
// accepts (http.Server.MaxHeaderBytes): requests between the two get
// guard's JSON 431; only larger ones get net/http's plain-text 431.
const headerHardCap = 4

// guard answers, in JSON, what net/http would otherwise answer itself or
// leave to the mux's empty answers: headers over Limits.MaxHeaderBytes
// (431) and a request target of "*" (400).
func (s *Server) guard(next http.Handler) http.Handler {
	limit := s.cfg.Limits.MaxHeaderBytes
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if headerBytes(r) > limit {
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusRequestHeaderFieldsTooLarge, "headers_too_large",
				"the request line and headers are larger than "+strconv.Itoa(limit)+" bytes", nil)
			return
		}
		if r.RequestURI == "*" {
			writeError(w, http.StatusBadRequest, "bad_request_target", "the request target must be a path", nil)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// headerBytes is the size of r's request line and headers as sent
// (HTTP/1.1 framing), which is what net/http's MaxHeaderBytes bounds.
func headerBytes(r *http.Request) int {
	n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + 4 // "M U P\r\n"
	if r.Host != "" {
		n += len("Host: ") + len(r.Host) + 2
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + 2 + len(v) + 2
		}
	}
	return n + 2
}

// knownMethods returns the methods served on path, for 405 answers.
func knownMethods(path string) (string, bool) {
	switch rest, ok := strings.CutPrefix(path, "/v1/"); {
	case ok && (eventRoutes[rest] != "" || slices.Contains(batchRoutes, rest)), path == beaconBatchPath:
		return "POST, OPTIONS", true
	case path == sourceConfigPath:
		return "GET, OPTIONS", true
	case path == "/v1/p.gif", path == "/healthz", path == "/readyz", path == "/metrics", path == "/", path == ConsolePath,
		path == "/admin/v1/events", path == "/admin/v1/stats", path == "/admin/v1/plugins", path == "/admin/v1/segments", path == "/admin/v1/enriched":
		return "GET", true
	case path == "/admin/v1/sites":
		return "GET, POST", true
	case strings.HasPrefix(path, "/admin/v1/plugins/") && strings.HasSuffix(path, "/replay"):
		return "POST", true
	case path == "/admin/v1/destinations":
		return "GET", true
	case strings.HasPrefix(path, "/admin/v1/destinations/"):
		switch rest := strings.TrimPrefix(path, "/admin/v1/destinations/"); {
		case strings.HasSuffix(rest, "/resync"), strings.HasSuffix(rest, "/replay"):
			return "POST", true
		case strings.HasSuffix(rest, "/dead-letters"):
			return "DELETE", true
		case !strings.Contains(rest, "/"):
			return "GET", true
		}
	}
	return "", false
}

// apiError is the JSON body of every 4xx/5xx answer.
type apiError struct {
	Success bool        `json:"success"`
	Code    string      `json:"code"`
	Error   string      `json:"error"`
	Field   string      `json:"field,omitempty"`
	Details []itemError `json:"errors,omitempty"`
}

// itemError is one rejected event of a batch.
type itemError struct {
	Index     int    `json:"index"`
	MessageID string `json:"messageId,omitempty"`
	Field     string `json:"field,omitempty"`
	Error     string `json:"error"`
}

var okBody = []byte(`{"success":true}` + "\n")

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeOK(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(okBody)
}

func writeError(w http.ResponseWriter, code int, kind, msg string, err error) {
	e := apiError{Code: kind, Error: msg}
	var fe *collect.FieldError
	if errors.As(err, &fe) {
		e.Field = fe.Field
	}
	writeJSON(w, code, e)
}

// corsAllowedHeaders are the request headers a browser client may send
// cross-origin: Segment's analytics-next (Authorization, Content-Type,
// X-Retry-Count), RudderStack's JavaScript SDK v3 (AnonymousId, SentAt and
// its retry headers Rsa-*), compressed bodies, and Vigie's test header.
var corsAllowedHeaders = strings.Join([]string{
	"Authorization", "Content-Type", "Content-Encoding", "X-Retry-Count",
	"AnonymousId", "SentAt", "Rsa-Recovered", "Rsa-Retry-Attempt", "Rsa-Retry-Reason",
	"Rsa-Since-First-Attempt", "Rsa-Since-Last-Attempt",
	config.TestHeader,
}, ", ")

// cors answers preflights and sets CORS headers for allowed origins. A
// request whose Origin no site allows gets 403 (for a preflight) or goes on
// to the handler, which refuses it once it knows the site.
func (s *Server) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		h := w.Header()
		h.Add("Vary", "Origin")
		if origin != "" && originAllowed(s.sites.Load().origins, origin) {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
		}
		if r.Method == http.MethodOptions {
			if origin == "" || !originAllowed(s.sites.Load().origins, origin) {
				s.reject(r, nil, "origin", 1)
				writeError(w, http.StatusForbidden, "origin_not_allowed", "origin is not allowed for any site", nil)
				return
			}
			h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
			h.Set("Access-Control-Allow-Headers", corsAllowedHeaders)
			h.Set("Access-Control-Max-Age", "86400")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authCredentials returns the credentials of an Authorization header
// value h of the given scheme, which is compared case-insensitively (RFC
// 7235); spaces around the credentials are ignored.
func authCredentials(h, scheme string) (string, bool) {
	h = strings.TrimLeft(h, " \t")
	if len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) || (h[len(scheme)] != ' ' && h[len(scheme)] != '\t') {
		return "", false
	}
	return strings.Trim(h[len(scheme):], " \t"), true
}

// basicUser is the user of a Basic Authorization header (the write key of
// Segment's clients), padded base64 or not.
func basicUser(r *http.Request) (string, bool) {
	c, ok := authCredentials(r.Header.Get("Authorization"), "Basic")
	if !ok {
		return "", false
	}
	raw, err := base64.StdEncoding.DecodeString(c)
	if err != nil {
		if raw, err = base64.RawStdEncoding.DecodeString(c); err != nil {
			return "", false
		}
	}
	user, _, _ := strings.Cut(string(raw), ":")
	return user, user != ""
}

// resolveSite finds the site of the request's write key: the Basic auth
// user, else writeKey (from the body, or "" if the caller has none), else
// the writeKey query parameter (RudderStack's beacon and source config);
// and checks the request's Origin against it. On failure it has already
// answered. The caller has called authAdmit.
func (s *Server) resolveSite(w http.ResponseWriter, r *http.Request, writeKey string) *site {
	if u, ok := basicUser(r); ok {
		writeKey = u
	}
	if writeKey == "" {
		writeKey = r.URL.Query().Get("writeKey")
	}
	if writeKey == "" {
		s.reject(r, nil, "write_key", 1)
		writeError(w, http.StatusUnauthorized, "missing_write_key", "no write key: send it as the Basic auth user, as writeKey in the body or as the writeKey query parameter", nil)
		return nil
	}
	st := s.siteByKey(writeKey)
	if st == nil {
		s.reject(r, nil, "write_key", 1)
		s.authFailed(r, authWriteKey)
		writeError(w, http.StatusUnauthorized, "unknown_write_key", "unknown write key", nil)
		return nil
	}
	if o := r.Header.Get("Origin"); o != "" && !originAllowed(st.origins, o) {
		s.reject(r, st, "origin", 1)
		writeError(w, http.StatusForbidden, "origin_not_allowed", "origin is not allowed for this site", nil)
		return nil
	}
	return st
}

// readBody reads the request body and answers the error itself, in the
// client's terms (collect.Describe): a read error's own text names socket
// addresses and is never sent.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, max int) ([]byte, func(), bool) {
	body, release, err := collect.ReadBody(r, int64(max))
	if err == nil {
		return body, release, true
	}
	code, kind, reason := http.StatusBadRequest, "unreadable_body", "body"
	switch {
	case errors.Is(err, collect.ErrTooLarge):
		code, kind, reason = http.StatusRequestEntityTooLarge, "too_large", "too_large"
	case errors.Is(err, collect.ErrUnsupportedEncoding):
		code, kind, reason = http.StatusUnsupportedMediaType, "unsupported_encoding", "encoding"
	case errors.Is(err, collect.ErrCorruptEncoding):
		kind, reason = "bad_encoding", "encoding"
	case errors.Is(err, collect.ErrBodyTimeout):
		code, kind = http.StatusRequestTimeout, "body_timeout"
		w.Header().Set("Connection", "close")
	case errors.Is(err, collect.ErrIncompleteBody) && r.ContentLength > 0:
		kind = "bad_content_length"
	case errors.Is(err, collect.ErrIncompleteBody):
		kind = "incomplete_body"
	}
	s.reject(r, nil, reason, 1)
	writeError(w, code, kind, collect.Describe(err), err)
	return nil, nil, false
}

// decodeAdminJSON reads an admin request's JSON body (at most limit
// bytes, UTF-8, one JSON object, no unknown fields) into v, or answers the
// problem in the client's terms (jsonBodyProblem) and returns false.
func decodeAdminJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err == nil && !utf8.Valid(body) {
		writeError(w, http.StatusBadRequest, "malformed_json", "body is not valid UTF-8", nil)
		return false
	}
	if err == nil {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err = dec.Decode(v); err == nil && dec.More() {
			writeError(w, http.StatusBadRequest, "malformed_json", "body has data after its JSON object", nil)
			return false
		}
	}
	if err == nil {
		return true
	}
	code, kind, field, msg := jsonBodyProblem(err)
	writeJSON(w, code, apiError{Code: kind, Error: msg, Field: field})
	return false
}

// jsonKind names a Go type the way a JSON client knows it.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Slice, reflect.Array:
		return "list of " + jsonKind(t.Elem()) + "s"
	case reflect.Map, reflect.Struct:
		return "object"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return "number"
}

// jsonBodyProblem describes an encoding/json Decode error of a request
// body (admin API) in the client's terms: its status, code, field and
// message. encoding/json's own texts name Go types and struct fields, and a
// read error's names socket addresses.
func jsonBodyProblem(err error) (code int, kind, field, msg string) {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
		mbe *http.MaxBytesError
		ne  net.Error
	)
	switch {
	case errors.As(err, &syn):
		return http.StatusBadRequest, "malformed_json", "", "body is not valid JSON (at byte " + strconv.FormatInt(syn.Offset, 10) + ")"
	case errors.Is(err, io.EOF):
		return http.StatusBadRequest, "malformed_json", "", "body is empty"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return http.StatusBadRequest, "malformed_json", "", "body is not valid JSON: it ends too early"
	case errors.As(err, &typ) && typ.Field != "":
		return http.StatusBadRequest, "invalid_request", typ.Field, typ.Field + ": must be a " + jsonKind(typ.Type)
	case errors.As(err, &typ):
		return http.StatusBadRequest, "invalid_request", "", "body must be a JSON object"
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, "too_large", "", "body is larger than the " + strconv.FormatInt(mbe.Limit, 10) + "-byte limit"
	case errors.As(err, &ne) && ne.Timeout():
		return http.StatusRequestTimeout, "body_timeout", "", "body was not fully received within the time allowed"
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if name, uerr := strconv.Unquote(name); uerr == nil && len(name) <= 64 {
			return http.StatusBadRequest, "invalid_request", name, name + ": unknown field"
		}
	}
	return http.StatusBadRequest, "unreadable_body", "", "body could not be received"
}

// decodeFailed answers a body that collect could not decode at all.
func (s *Server) decodeFailed(w http.ResponseWriter, r *http.Request, err error, invalid string) {
	code, kind := http.StatusBadRequest, invalid
	switch {
	case errors.Is(err, collect.ErrMalformedJSON):
		kind = "malformed_json"
	case errors.Is(err, collect.ErrTooManyEvents):
		kind = "too_many_events"
	case errors.Is(err, collect.ErrTooLarge):
		code, kind = http.StatusRequestEntityTooLarge, "too_large"
	}
	reason := kind
	if kind == invalid || kind == "malformed_json" {
		reason = "malformed"
	}
	s.reject(r, nil, reason, 1)
	writeError(w, code, kind, collect.Describe(err), err)
}

// request builds the pipeline's view of r. The User-Agent header describes
// the visitor only for browser requests (pixel, or a request with an Origin);
// a server-side SDK's own user agent says nothing of the visitor and is not
// used (it sends the visitor's in context.userAgent).
func (s *Server) request(r *http.Request, st *site, source string, now time.Time) pipeline.Request {
	ua := r.Header.Get("User-Agent")
	if source != "pixel" && r.Header.Get("Origin") == "" {
		ua = ""
	}
	return pipeline.Request{
		ReceivedAt: now,
		RemoteIP:   s.clientIP(r),
		UserAgent:  ua,
		Source:     source,
		Signals:    st.pipe.RequestSignals(r.Header),
		KeepBots:   st.testClient(r),
	}
}

func (s *Server) handleEvent(typ, route string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		if !s.authAdmit(w, r, authWriteKey) {
			return
		}
		body, release, ok := s.readBody(w, r, s.cfg.Limits.MaxEventBytes)
		if !ok {
			return
		}
		defer release()
		// DecodeMessage validates too (Segment's required fields).
		msg, err := collect.DecodeMessage(body, typ)
		if err != nil {
			s.decodeFailed(w, r, err, "invalid_event")
			return
		}
		st := s.resolveSite(w, r, msg.WriteKey)
		if st == nil {
			return
		}
		s.metrics.received.WithLabelValues(st.cfg.ID).Inc()
		req := s.request(r, st, "segment", start)
		recs, ok := s.processHits(w, r, st, []*collect.Message{&msg}, &req)
		if !ok {
			return
		}
		if len(recs) == 0 {
			writeOK(w)
			return
		}
		if !s.commit(w, r, recs) {
			return
		}
		s.metrics.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
		writeOK(w)
	})
}

func (s *Server) handleBatch(route string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		if !s.authAdmit(w, r, authWriteKey) {
			return
		}
		body, release, ok := s.readBody(w, r, s.cfg.Limits.MaxBatchBytes)
		if !ok {
			return
		}
		defer release()
		b, err := collect.DecodeBatch(body, s.cfg.Limits.MaxBatchEvents, s.cfg.Limits.MaxEventBytes)
		if err != nil {
			s.decodeFailed(w, r, err, "invalid_batch")
			return
		}
		wk := b.WriteKey
		if wk == "" {
			for i := range b.Messages {
				if b.Messages[i].WriteKey != "" {
					wk = b.Messages[i].WriteKey
					break
				}
			}
		}
		st := s.resolveSite(w, r, wk)
		if st == nil {
			return
		}
		var rejected []itemError
		for _, ie := range b.Errors {
			rejected = append(rejected, toItemError(ie.Index, ie.MessageID, ie.Err))
		}
		req := s.request(r, st, "segment", start)
		msgs := make([]*collect.Message, 0, len(b.Messages))
		for i := range b.Messages {
			m := &b.Messages[i]
			s.metrics.received.WithLabelValues(st.cfg.ID).Inc()
			if m.WriteKey != "" && s.siteByKey(m.WriteKey) != st {
				rejected = append(rejected, toItemError(m.Index, m.MessageID, &collect.FieldError{
					Field: "batch[" + strconv.Itoa(m.Index) + "].writeKey", Problem: "belongs to another site or is unknown"}))
				continue
			}
			msgs = append(msgs, m)
		}
		recs, ok := s.processHits(w, r, st, msgs, &req)
		if !ok || len(recs) > 0 && !s.commit(w, r, recs) {
			return
		}
		s.metrics.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
		if len(rejected) > 0 {
			s.reject(r, st, "invalid", len(rejected))
			writeJSON(w, http.StatusBadRequest, apiError{
				Code:    "invalid_events",
				Error:   strconv.Itoa(len(rejected)) + " event(s) rejected; the others were accepted",
				Details: rejected,
			})
			return
		}
		writeOK(w)
	})
}

// toItemError describes one rejected batch event; the index is the event's
// position in the request's batch array.
func toItemError(i int, messageID string, err error) itemError {
	ie := itemError{Index: i, MessageID: messageID, Error: collect.Describe(err)}
	var fe *collect.FieldError
	if errors.As(err, &fe) {
		ie.Field = fe.Field
	}
	return ie
}

// storeFailed answers a request whose writes (what: events, or a consent
// choice) could not be stored: 503, to be retried.
func (s *Server) storeFailed(w http.ResponseWriter, err error, what string) {
	if errors.Is(err, storage.ErrOutboxFull) {
		s.reject(nil, nil, "outbox_full", 1)
		w.Header().Set("Retry-After", "30")
		writeError(w, http.StatusServiceUnavailable, "backlog_full", "the event backlog is full; retry later", nil)
		return
	}
	if errors.Is(err, cluster.ErrBusy) {
		s.reject(nil, nil, "dedup_busy", 1)
		w.Header().Set("Retry-After", "2")
		writeError(w, http.StatusServiceUnavailable, "duplicate_in_progress", "an event with the same messageId is being stored; retry later", nil)
		return
	}
	if errors.Is(err, cluster.ErrUnavailable) {
		s.log.Warn("cluster dedup unreachable; events refused", "err", err)
		s.reject(nil, nil, "dedup_unavailable", 1)
		w.Header().Set("Retry-After", "2")
		writeError(w, http.StatusServiceUnavailable, "dedup_unavailable", "events could not be checked for duplicates; retry later", nil)
		return
	}
	if errors.Is(err, storage.ErrDiskFull) {
		s.refuseDiskFull(w)
		return
	}
	s.log.Error("storing failed", "what", what, "err", err)
	s.reject(nil, nil, "storage", 1)
	w.Header().Set("Retry-After", "5")
	writeError(w, http.StatusServiceUnavailable, "storage_unavailable", "events could not be stored; retry later", nil)
}

// count records a pipeline result in the metrics (and, at debug level, in
// the log): a consent signal that did not decode, a bot's hit, or the
// consent decision.
func (s *Server) count(r *http.Request, st *site, res pipeline.Result) {
	if res.ConsentErr != nil {
		s.reject(r, st, "invalid_consent_string", 1)
	}
	s.recordDecision(st, &res)
	s.countDecision(st, &res)
	s.countSensitive(st, &res)
	switch res.Outcome {
	case pipeline.Bot:
		s.metrics.bots.WithLabelValues(st.cfg.ID).Inc()
		s.logRejection(r, st, "bot", 1)
	default:
		s.metrics.decisions.WithLabelValues(res.Decision.Outcome.String()).Inc()
	}
}

// commit appends recs durably; it answers the error itself and reports
// whether the records are stored.
func (s *Server) commit(w http.ResponseWriter, r *http.Request, recs []storage.Record) bool {
	dups, err := s.appendShared(r.Context(), recs)
	s.markCommitted(recs, dups, err)
	if err != nil {
		s.storeFailed(w, err, "events")
		return false
	}
	for i, d := range dups {
		if d {
			s.metrics.duplicate.Inc()
			continue
		}
		s.metrics.accepted.WithLabelValues(recs[i].Site, recs[i].Type).Inc()
	}
	return true
}

// clientIP is the connection's address, or the right-most address of
// X-Forwarded-For not in a trusted proxy range when the peer is trusted.
func (s *Server) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if len(s.trusted) == 0 && !forwarded(r) {
		return host
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	if !s.isTrusted(peer) {
		s.checkUntrustedProxy(r, peer)
		return host
	}
	xff := r.Header.Values("X-Forwarded-For")
	for i := len(xff) - 1; i >= 0; i-- {
		parts := strings.Split(xff[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return host
			}
			if !s.isTrusted(a) {
				return a.String()
			}
		}
	}
	return host
}

func (s *Server) isTrusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// handleSettings answers analytics-next's settings request with a minimal
// document that sends everything to this host.
func (s *Server) handleSettings(w http.ResponseWriter, r *http.Request) {
	if !s.authAdmit(w, r, authWriteKey) {
		return
	}
	wk := r.PathValue("writeKey")
	if s.siteByKey(wk) == nil {
		s.authFailed(r, authWriteKey)
		writeError(w, http.StatusNotFound, "unknown_write_key", "unknown write key", nil)
		return
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"integrations": map[string]any{
			"Segment.io": map[string]any{
				"apiKey":   wk,
				"apiHost":  r.Host + "/v1",
				"protocol": scheme,
			},
		},
		"plan":                      map[string]any{"track": map[string]any{"__default": map[string]any{"enabled": true, "integrations": map[string]any{}}}, "identify": map[string]any{"__default": map[string]any{"enabled": true}}, "group": map[string]any{"__default": map[string]any{"enabled": true}}},
		"edgeFunction":              map[string]any{},
		"analyticsNextEnabled":      true,
		"middlewareSettings":        map[string]any{},
		"enabledMiddleware":         map[string]any{},
		"metrics":                   map[string]any{"sampleRate": 0},
		"legacyVideoPluginsEnabled": false,
		"remotePlugins":             []any{},
	})
}

func (s *Server) handleReady(w http.ResponseWriter, _ *http.Request) {
	if !s.ready.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready"})
		return
	}
	if d := s.store.Disk(); d.Full {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{
			"status": "not ready", "reason": "disk_full",
			"free_bytes": d.FreeBytes, "min_free_bytes": d.MinFreeBytes, "resume_at_bytes": d.ResumeBytes,
		})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"status":         "ready",
		"nats_connected": s.bus.Connected(),
		"outbox_depth":   s.store.OutboxLen(),
	})
}

// transparentGIF is a 1×1 transparent GIF.
var transparentGIF, _ = base64.StdEncoding.DecodeString("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
