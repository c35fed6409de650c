package privacy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/vigie-dev/vigie/storage"
)

// maxRequestBody bounds a request's JSON body.
const maxRequestBody = 64 << 10

// maxIdentifier bounds an identifier's value.
const maxIdentifier = 1024

// RegisterAdmin registers the privacy request routes on mux, each guarded
// by guard (the admin API's authentication).
func (s *Service) RegisterAdmin(mux *http.ServeMux, guard func(http.HandlerFunc) http.Handler) {
	mux.Handle("POST /admin/v1/privacy/requests", guard(s.handleCreate))
	mux.Handle("GET /admin/v1/privacy/requests", guard(s.handleList))
	mux.Handle("GET /admin/v1/privacy/requests/{id}", guard(s.handleGet))
	mux.Handle("GET /admin/v1/privacy/requests/{id}/export", guard(s.handleExport))
}

// apiError is the error body, the same shape as the rest of the API.
type apiError struct {
	Success bool   `json:"success"`
	Code    string `json:"code"`
	Error   string `json:"error"`
	Field   string `json:"field,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, kind, field, msg string) {
	writeJSON(w, code, apiError{Code: kind, Error: msg, Field: field})
}

// FieldError is a new request's validation error, naming the field in
// the API's terms (Field is empty when the body as a whole is wrong).
type FieldError struct {
	Field string
	// Message says what is wrong, starting with the field's name.
	Message string
	// malformed: the body is not the JSON object expected.
	malformed bool
}

func (e *FieldError) Error() string { return e.Message }

func bad(field, format string, args ...any) error {
	return &FieldError{Field: field, Message: field + ": " + fmt.Sprintf(format, args...)}
}

// createBody is the body of POST /admin/v1/privacy/requests.
type createBody struct {
	Type       *string         `json:"type"`
	Site       *string         `json:"site"`
	Identifier *identifierBody `json:"identifier"`
	Suppress   *bool           `json:"suppress"`
	Traits     json.RawMessage `json:"traits"`
	Purposes   []string        `json:"purposes"`
	Lift       *bool           `json:"lift"`
}

type identifierBody struct {
	Kind  *string `json:"kind"`
	Value *string `json:"value"`
}

// parse validates b into an Input.
func (s *Service) parse(b *createBody) (Input, error) {
	var in Input
	names := func(ts []Type) string {
		out := make([]string, len(ts))
		for i, t := range ts {
			out[i] = string(t)
		}
		return strings.Join(out, ", ")
	}
	switch {
	case b.Type == nil || *b.Type == "":
		return in, bad("type", "required: one of %s", names(types))
	case !slices.Contains(types, Type(*b.Type)):
		return in, bad("type", "unknown request type %q: one of %s", *b.Type, names(types))
	}
	in.Type = Type(*b.Type)
	if b.Site == nil || *b.Site == "" {
		if len(s.cfg.Sites) != 1 {
			return in, bad("site", "required: the id of a configured site")
		}
		for id := range s.cfg.Sites {
			in.Site = id
		}
	} else if _, ok := s.cfg.Sites[*b.Site]; !ok {
		return in, bad("site", "unknown site id")
	} else {
		in.Site = *b.Site
	}
	if b.Identifier == nil {
		return in, bad("identifier", "required: {\"kind\": one of %s, \"value\": …}", strings.Join(kinds, ", "))
	}
	switch k := b.Identifier.Kind; {
	case k == nil || *k == "":
		return in, bad("identifier.kind", "required: one of %s", strings.Join(kinds, ", "))
	case !slices.Contains(kinds, *k):
		return in, bad("identifier.kind", "unknown kind: one of %s", strings.Join(kinds, ", "))
	default:
		in.Kind = *k
	}
	v := b.Identifier.Value
	if v == nil || strings.TrimSpace(*v) == "" {
		return in, bad("identifier.value", "required")
	}
	if len(*v) > maxIdentifier {
		return in, bad("identifier.value", "longer than %d bytes", maxIdentifier)
	}
	if in.Kind == KindEmail && !strings.Contains(*v, "@") {
		return in, bad("identifier.value", "not an e-mail address")
	}
	in.Value = *v
	if b.Suppress != nil {
		if in.Type != TypeErase {
			return in, bad("suppress", "only for an erase request")
		}
		in.Suppress = *b.Suppress
	}
	if b.Lift != nil {
		if in.Type != TypeObject && in.Type != TypeRestrict {
			return in, bad("lift", "only for an object or restrict request")
		}
		in.Lift = *b.Lift
	}
	if b.Purposes != nil {
		if in.Type != TypeObject {
			return in, bad("purposes", "only for an object request")
		}
		if in.Lift {
			return in, bad("purposes", "not with lift: lifting removes the whole objection")
		}
		if len(b.Purposes) == 0 {
			return in, bad("purposes", "empty: name at least one purpose, or leave it out for marketing")
		}
		for i, p := range b.Purposes {
			if !slices.Contains(s.cfg.Purposes, p) || p == "necessary" {
				return in, bad(fmt.Sprintf("purposes[%d]", i), "unknown purpose %q (one of %s, necessary excepted)", p, strings.Join(s.cfg.Purposes, ", "))
			}
		}
		in.Purposes = slices.Clone(b.Purposes)
	}
	if len(b.Traits) > 0 && !bytes.Equal(b.Traits, []byte("null")) {
		if in.Type != TypeRectify {
			return in, bad("traits", "only for a rectify request")
		}
		if err := json.Unmarshal(b.Traits, &in.Traits); err != nil {
			return in, bad("traits", "must be a JSON object of the new personal traits")
		}
	}
	if in.Type == TypeRectify {
		if len(in.Traits) == 0 {
			return in, bad("traits", "required for a rectify request: a JSON object of the new personal traits")
		}
		for k := range in.Traits {
			if k == "" || len(k) > 128 {
				return in, bad("traits", "trait names must be 1 to 128 bytes")
			}
			in.TraitNames = append(in.TraitNames, k)
		}
		sort.Strings(in.TraitNames)
	}
	return in, nil
}

// ParseRequest validates body, a new request's JSON as POST
// /admin/v1/privacy/requests takes it (type, site, identifier, suppress,
// purposes, lift, traits); a *FieldError says what is wrong.
func (s *Service) ParseRequest(body []byte) (Input, error) {
	var b createBody
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		field, msg := describeJSONError(err)
		return Input{}, &FieldError{Field: field, Message: msg, malformed: true}
	}
	return s.parse(&b)
}

// handleCreate accepts a request: 202 with its id and where to follow it.
func (s *Service) handleCreate(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody+1))
	switch {
	case err != nil:
		writeError(w, http.StatusBadRequest, "bad_body", "", "the request body could not be read")
		return
	case len(body) > maxRequestBody:
		writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", "", fmt.Sprintf("the body is larger than %d bytes", maxRequestBody))
		return
	}
	in, err := s.ParseRequest(body)
	var fe *FieldError
	if errors.As(err, &fe) {
		kind := "invalid_request"
		if fe.malformed {
			kind = "malformed_json"
		}
		writeError(w, http.StatusBadRequest, kind, fe.Field, fe.Message)
		return
	}
	in.Actor = ActorFrom(r.Context())
	req, err := s.Create(r.Context(), in)
	if err != nil {
		s.log.Error("privacy request not accepted", "err", err)
		code, kind := http.StatusServiceUnavailable, "storage_unavailable"
		if errors.Is(err, storage.ErrDiskFull) {
			kind = "disk_full"
		}
		w.Header().Set("Retry-After", "60")
		writeError(w, code, kind, "", "the request could not be recorded; retry later")
		return
	}
	w.Header().Set("Location", "/admin/v1/privacy/requests/"+req.ID)
	writeJSON(w, http.StatusAccepted, req.View(time.Now(), true))
}

// describeJSONError names the problem of a body that does not decode,
// without Go's own error text.
func describeJSONError(err error) (field, msg string) {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		f := te.Field
		if f == "" {
			return "", "the body must be a JSON object"
		}
		return f, f + ": wrong type, " + te.Value + " given"
	case errors.As(err, &se):
		return "", fmt.Sprintf("malformed JSON at byte %d", se.Offset)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "", "the body is empty or cut short: send a JSON object"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return f, f + ": unknown field"
	}
	return "", "the body must be a JSON object"
}

// handleGet shows one request with its steps; in cluster mode any node
// answers for a request another node received (that node's last view).
func (s *Service) handleGet(w http.ResponseWriter, r *http.Request) {
	req, err := s.Status(r.Context(), r.PathValue("id"))
	if errors.Is(err, ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "id", "no privacy request with this id")
		return
	}
	if err != nil {
		s.log.Error("privacy request not readable", "err", err)
		writeError(w, http.StatusServiceUnavailable, "storage_unavailable", "", "the request could not be read; retry later")
		return
	}
	writeJSON(w, http.StatusOK, req.View(time.Now(), true))
}

// handleList lists requests, newest first, with their deadlines. Query:
// status, type.
func (s *Service) handleList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	status, typ := Status(q.Get("status")), Type(q.Get("type"))
	if status != "" && !slices.Contains([]Status{StatusPending, StatusRunning, StatusDone, StatusFailed, StatusPartial}, status) {
		writeError(w, http.StatusBadRequest, "invalid_filter", "status", "status: one of pending, running, done, failed, partial")
		return
	}
	if typ != "" && !slices.Contains(types, typ) {
		writeError(w, http.StatusBadRequest, "invalid_filter", "type", "type: unknown request type")
		return
	}
	reqs, err := s.List(r.Context(), status, typ)
	if err != nil {
		s.log.Error("privacy requests not readable", "err", err)
		writeError(w, http.StatusServiceUnavailable, "storage_unavailable", "", "the requests could not be read; retry later")
		return
	}
	now := time.Now()
	out := make([]View, 0, len(reqs))
	for i := len(reqs) - 1; i >= 0; i-- {
		if reqs[i].Origin != "" {
			continue // this node's part of another node's request: listed there
		}
		out = append(out, reqs[i].View(now, false))
	}
	writeJSON(w, http.StatusOK, map[string]any{"requests": out})
}

// handleExport answers an access or export request's document, as JSON
// (Art. 20) or, with ?format=html, as a readable page. In cluster mode,
// once the request is done, every node serves the same document,
// assembled from the parts in the cluster's bucket; until then, the node
// that received it serves what it can merge so far.
func (s *Service) handleExport(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	req, err := s.Get(r.Context(), id)
	here := err == nil && req.Origin == ""
	if !here && (err == nil || errors.Is(err, ErrNotFound)) {
		req, err = s.Status(r.Context(), id) // another node's request: its view
	}
	if errors.Is(err, ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "id", "no privacy request with this id")
		return
	}
	if err != nil {
		s.log.Error("privacy request not readable", "err", err)
		writeError(w, http.StatusServiceUnavailable, "storage_unavailable", "", "the request could not be read; retry later")
		return
	}
	if req.Type != TypeAccess && req.Type != TypeExport {
		writeError(w, http.StatusConflict, "not_an_access_request", "id", "only an access or export request has a document")
		return
	}
	format := r.URL.Query().Get("format")
	if format != "" && format != "json" && format != "html" {
		writeError(w, http.StatusBadRequest, "invalid_format", "format", "format: json or html")
		return
	}
	var doc *Export
	switch {
	case s.cfg.Peers != nil && req.ExportNode != "" && req.finished():
		doc, err = s.sharedExport(r.Context(), req)
	case here:
		doc, err = s.Export(r.Context(), req)
	case !req.finished():
		writeError(w, http.StatusConflict, "export_not_ready", "id",
			"this request is "+string(req.Status)+": every node serves its export once it is done (until then, only the node that received it)")
		return
	default:
		writeError(w, http.StatusConflict, "export_on_receiving_node", "id",
			"the receiving node did not share its part of this export with the cluster (too large to send, or the request predates sharing): ask the node that received the request")
		return
	}
	if errors.Is(err, ErrNotFound) { // the cluster's entries of it purged
		writeError(w, http.StatusGone, "export_purged", "id", "this request's export was purged with the request, its retention (retention.requests) over")
		return
	}
	if errors.Is(err, ErrExportPending) {
		w.Header().Set("Retry-After", "2")
		writeError(w, http.StatusServiceUnavailable, "export_pending", "", "the export is still being shared with the cluster; retry in a few seconds")
		return
	}
	if err != nil {
		s.log.Error("export not built", "err", err)
		writeError(w, http.StatusServiceUnavailable, "storage_unavailable", "", "the document could not be built; retry later")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if format == "html" {
		var buf bytes.Buffer
		if err := WriteHTML(&buf, doc); err != nil {
			s.log.Error("export page not rendered", "err", err)
			writeError(w, http.StatusInternalServerError, "render_failed", "", "the page could not be rendered")
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		_, _ = w.Write(buf.Bytes())
		return
	}
	w.Header().Set("Content-Disposition", `attachment; filename="vigie-export-`+req.ID+`.json"`)
	writeJSON(w, http.StatusOK, doc)
}
