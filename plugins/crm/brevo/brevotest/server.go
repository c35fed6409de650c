// Package brevotest is a fake Brevo API (v3) for tests and benchmarks of
// the brevo connector: a local HTTP server speaking the documented shapes
// of the contacts, attributes, folders and lists endpoints the connector
// uses, with api-key authentication, Brevo-shaped errors ({"code",
// "message"}), the x-sib-ratelimit-* headers and 429 (which, like Brevo,
// sends no Retry-After), injectable failures and slow answers, and state
// to inspect and wipe. Like Brevo, it silently ignores attribute values
// of unknown attributes or of the wrong type.
package brevotest

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Contact is a stored contact.
type Contact struct {
	ID               int64
	Email            string
	Attributes       map[string]any
	ListIDs          []int64
	EmailBlacklisted bool
	// Updates counts writes after the creation.
	Updates int
}

// List is a contact list.
type List struct {
	ID       int64
	Name     string
	FolderID int64
}

// Reply is an injected answer.
type Reply struct {
	// Status is the HTTP status.
	Status int
	// Body is the JSON body; empty: a Brevo-shaped error for Status.
	Body string
	// Header is added to the answer.
	Header http.Header
	// AfterApply: the request is processed first, then this answer is
	// given instead of the real one (a lost answer).
	AfterApply bool
}

// defaultAttributes are attributes every Brevo account has.
var defaultAttributes = map[string]string{"FIRSTNAME": "text", "LASTNAME": "text", "SMS": "text", "EXT_ID": "text"}

// Server is the fake. Create it with New.
type Server struct {
	*httptest.Server
	// APIKey is the key the fake accepts in the api-key header.
	APIKey string

	mu         sync.Mutex
	contacts   map[string]*Contact
	nextID     int64
	creates    int
	attributes map[string]string
	folders    map[int64]string
	lists      map[int64]*List
	deletes    []string
	requests   map[string]int
	queries    map[string][]string
	inject     map[string][]Reply
	delay      time.Duration
	limit      int
	remaining  int
	resetAt    time.Time
	window     time.Duration
	invalid    map[string]bool
}

// New starts a fake accepting apiKey. Close it when done.
func New(apiKey string) *Server {
	s := &Server{APIKey: apiKey, limit: 100000, window: 10 * time.Second}
	s.reset()
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

func (s *Server) reset() {
	s.contacts, s.creates, s.nextID = map[string]*Contact{}, 0, 100
	s.attributes = maps.Clone(defaultAttributes)
	s.folders, s.lists = map[int64]string{1: "Your first folder"}, map[int64]*List{2: {ID: 2, Name: "Your first list", FolderID: 1}}
	s.deletes, s.requests, s.queries, s.inject = nil, map[string]int{}, map[string][]string{}, map[string][]Reply{}
	s.invalid = map[string]bool{}
	s.remaining, s.resetAt = s.limit, time.Now().Add(s.window)
}

// Wipe forgets contacts, custom attributes, folders and lists, deletions
// and injected behaviour (a fresh account).
func (s *Server) Wipe() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reset()
}

// Route keys, as counted by Requests and used by Inject.
const (
	RouteCreateContact  = "POST /v3/contacts"
	RouteUpdateContact  = "PUT /v3/contacts/{identifier}"
	RouteDeleteContact  = "DELETE /v3/contacts/{identifier}"
	RouteAttributes     = "GET /v3/contacts/attributes"
	RouteCreateAttr     = "POST /v3/contacts/attributes/{category}/{name}"
	RouteFolders        = "GET /v3/contacts/folders"
	RouteCreateFolder   = "POST /v3/contacts/folders"
	RouteFolderLists    = "GET /v3/contacts/folders/{id}/lists"
	RouteCreateList     = "POST /v3/contacts/lists"
	RouteAddToList      = "POST /v3/contacts/lists/{id}/contacts/add"
	RouteRemoveFromList = "POST /v3/contacts/lists/{id}/contacts/remove"
)

// route names a request and extracts its path parameter.
func route(method, path string) (key, param, param2 string) {
	rest, ok := strings.CutPrefix(path, "/v3/contacts")
	if !ok {
		return method + " " + path, "", ""
	}
	parts := strings.Split(strings.Trim(rest, "/"), "/")
	switch {
	case rest == "" || rest == "/":
		return method + " /v3/contacts", "", ""
	case parts[0] == "attributes" && len(parts) == 1:
		return method + " /v3/contacts/attributes", "", ""
	case parts[0] == "attributes" && len(parts) == 3:
		return method + " /v3/contacts/attributes/{category}/{name}", parts[1], parts[2]
	case parts[0] == "folders" && len(parts) == 1:
		return method + " /v3/contacts/folders", "", ""
	case parts[0] == "folders" && len(parts) == 3 && parts[2] == "lists":
		return method + " /v3/contacts/folders/{id}/lists", parts[1], ""
	case parts[0] == "lists" && len(parts) == 1:
		return method + " /v3/contacts/lists", "", ""
	case parts[0] == "lists" && len(parts) == 4 && parts[2] == "contacts":
		return method + " /v3/contacts/lists/{id}/contacts/" + parts[3], parts[1], ""
	case len(parts) == 1:
		return method + " /v3/contacts/{identifier}", parts[0], ""
	}
	return method + " " + path, "", ""
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	s.mu.Lock()
	delay := s.delay
	s.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key, param, param2 := route(r.Method, r.URL.EscapedPath())
	s.requests[key]++
	s.queries[key] = append(s.queries[key], r.URL.RawQuery)
	if r.Header.Get("api-key") != s.APIKey {
		writeError(w, http.StatusUnauthorized, "unauthorized", "Key not found")
		return
	}
	if !s.rateLimit(w) {
		writeError(w, http.StatusTooManyRequests, "too_many_requests", "The expected rate limit is exceeded.")
		return
	}
	reply, ok := s.nextReply(key)
	if ok && !reply.AfterApply {
		write(w, reply)
		return
	}
	target := http.ResponseWriter(w)
	if ok {
		target = httptest.NewRecorder()
	}
	s.handle(target, r, key, param, param2, body)
	if ok {
		write(w, reply)
	}
}

// rateLimit counts the request in the window, sets the x-sib-ratelimit-*
// headers and reports whether it is allowed; s.mu is held.
func (s *Server) rateLimit(w http.ResponseWriter) bool {
	now := time.Now()
	if !now.Before(s.resetAt) {
		s.remaining, s.resetAt = s.limit, now.Add(s.window)
	}
	allowed := s.remaining > 0
	if allowed {
		s.remaining--
	}
	h := w.Header()
	h.Set("x-sib-ratelimit-limit", strconv.Itoa(s.limit))
	h.Set("x-sib-ratelimit-remaining", strconv.Itoa(s.remaining))
	h.Set("x-sib-ratelimit-reset", strconv.Itoa(int(s.resetAt.Sub(now).Seconds()+0.999)))
	return allowed
}

func (s *Server) nextReply(key string) (Reply, bool) {
	for _, k := range []string{key, ""} {
		if q := s.inject[k]; len(q) > 0 {
			s.inject[k] = q[1:]
			return q[0], true
		}
	}
	return Reply{}, false
}

func write(w http.ResponseWriter, reply Reply) {
	for k, vs := range reply.Header {
		w.Header()[k] = vs
	}
	if reply.Body == "" {
		writeError(w, reply.Status, "internal_error", fmt.Sprintf("injected %d", reply.Status))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(reply.Status)
	_, _ = io.WriteString(w, reply.Body)
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, map[string]string{"code": code, "message": message})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request, key, param, param2 string, body []byte) {
	switch key {
	case RouteCreateContact:
		s.createContact(w, body)
	case RouteUpdateContact:
		s.updateContact(w, r, param, body)
	case RouteDeleteContact:
		email, ok := s.identify(w, r, param)
		if !ok {
			return
		}
		if _, exists := s.contacts[email]; !exists {
			writeError(w, http.StatusNotFound, "document_not_found", "Contact does not exist")
			return
		}
		delete(s.contacts, email)
		s.deletes = append(s.deletes, email)
		w.WriteHeader(http.StatusNoContent)
	case RouteAttributes:
		var list []map[string]string
		for _, name := range slices.Sorted(maps.Keys(s.attributes)) {
			list = append(list, map[string]string{"name": name, "category": "normal", "type": s.attributes[name]})
		}
		writeJSON(w, http.StatusOK, map[string]any{"attributes": list})
	case RouteCreateAttr:
		s.createAttribute(w, param, param2, body)
	case RouteFolders:
		offset, limit, ok := page(w, r)
		if !ok {
			return
		}
		var all []map[string]any
		for _, id := range slices.Sorted(maps.Keys(s.folders)) {
			all = append(all, map[string]any{"id": id, "name": s.folders[id], "totalBlacklisted": 0, "totalSubscribers": 0, "uniqueSubscribers": 0})
		}
		writeJSON(w, http.StatusOK, map[string]any{"folders": window(all, offset, limit), "count": len(all)})
	case RouteCreateFolder:
		var req struct{ Name string }
		if json.Unmarshal(body, &req) != nil || req.Name == "" {
			writeError(w, http.StatusBadRequest, "missing_parameter", "name is missing")
			return
		}
		s.nextID++
		s.folders[s.nextID] = req.Name
		writeJSON(w, http.StatusCreated, map[string]int64{"id": s.nextID})
	case RouteFolderLists:
		id, err := strconv.ParseInt(param, 10, 64)
		if _, ok := s.folders[id]; err != nil || !ok {
			writeError(w, http.StatusNotFound, "document_not_found", "Folder ID does not exist")
			return
		}
		offset, limit, ok := page(w, r)
		if !ok {
			return
		}
		var all []map[string]any
		for _, lid := range slices.Sorted(maps.Keys(s.lists)) {
			if l := s.lists[lid]; l.FolderID == id {
				all = append(all, map[string]any{"id": l.ID, "name": l.Name, "totalBlacklisted": 0, "totalSubscribers": 0, "uniqueSubscribers": 0})
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"lists": window(all, offset, limit), "count": len(all)})
	case RouteCreateList:
		var req struct {
			Name     string `json:"name"`
			FolderID int64  `json:"folderId"`
		}
		if json.Unmarshal(body, &req) != nil || req.Name == "" || req.FolderID == 0 {
			writeError(w, http.StatusBadRequest, "missing_parameter", "name and folderId are required")
			return
		}
		if _, ok := s.folders[req.FolderID]; !ok {
			writeError(w, http.StatusBadRequest, "invalid_parameter", "Folder ID does not exist")
			return
		}
		s.nextID++
		s.lists[s.nextID] = &List{ID: s.nextID, Name: req.Name, FolderID: req.FolderID}
		writeJSON(w, http.StatusCreated, map[string]int64{"id": s.nextID})
	case RouteAddToList, RouteRemoveFromList:
		s.listMembers(w, key == RouteAddToList, param, body)
	default:
		writeError(w, http.StatusNotFound, "document_not_found", "no such endpoint in the fake")
	}
}

// page reads limit (1..50) and offset.
func page(w http.ResponseWriter, r *http.Request) (offset, limit int, ok bool) {
	q := r.URL.Query()
	limit, offset = 10, 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 50 {
			writeError(w, http.StatusBadRequest, "out_of_range", "limit must be between 0 and 50")
			return 0, 0, false
		}
		limit = n
	}
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "invalid_parameter", "offset is invalid")
			return 0, 0, false
		}
		offset = n
	}
	return offset, limit, true
}

func window(all []map[string]any, offset, limit int) []map[string]any {
	if offset >= len(all) {
		return []map[string]any{}
	}
	return all[offset:min(len(all), offset+limit)]
}

// identify resolves an {identifier} with identifierType email_id (or an
// e-mail without it).
func (s *Server) identify(w http.ResponseWriter, r *http.Request, param string) (string, bool) {
	id, err := url.PathUnescape(param)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_parameter", "identifier is invalid")
		return "", false
	}
	if t := r.URL.Query().Get("identifierType"); t != "" && t != "email_id" {
		writeError(w, http.StatusBadRequest, "invalid_parameter", "the fake supports identifierType email_id only")
		return "", false
	}
	if !validEmail(id) {
		writeError(w, http.StatusBadRequest, "invalid_parameter", "Invalid email address")
		return "", false
	}
	return strings.ToLower(id), true
}

func validEmail(e string) bool {
	a, err := mail.ParseAddress(e)
	return err == nil && a.Address == e
}

// setAttributes stores known attributes of the right type, ignoring the
// others as Brevo does.
func (s *Server) setAttributes(c *Contact, attrs map[string]any) {
	for name, v := range attrs {
		typ, ok := s.attributes[name]
		if !ok {
			continue
		}
		switch v.(type) {
		case float64:
			ok = typ == "float"
		case bool:
			ok = typ == "boolean"
		case string:
			ok = typ == "text" || typ == "date"
		case nil:
			ok = true
		default:
			ok = false
		}
		if ok {
			c.Attributes[name] = v
		}
	}
}

func (s *Server) checkLists(w http.ResponseWriter, ids []int64) bool {
	for _, id := range ids {
		if _, ok := s.lists[id]; !ok {
			writeError(w, http.StatusBadRequest, "invalid_parameter", fmt.Sprintf("List ID %d does not exist", id))
			return false
		}
	}
	return true
}

func (s *Server) createContact(w http.ResponseWriter, body []byte) {
	var req struct {
		Email            string         `json:"email"`
		Attributes       map[string]any `json:"attributes"`
		ListIDs          []int64        `json:"listIds"`
		UpdateEnabled    bool           `json:"updateEnabled"`
		EmailBlacklisted *bool          `json:"emailBlacklisted"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "Input must be a valid JSON object")
		return
	}
	if !validEmail(req.Email) || s.invalid[strings.ToLower(req.Email)] {
		writeError(w, http.StatusBadRequest, "invalid_parameter", "Invalid email address")
		return
	}
	if !s.checkLists(w, req.ListIDs) {
		return
	}
	email := strings.ToLower(req.Email)
	c, exists := s.contacts[email]
	if exists && !req.UpdateEnabled {
		writeError(w, http.StatusBadRequest, "duplicate_parameter", "Contact already exist")
		return
	}
	if !exists {
		s.nextID++
		s.creates++
		c = &Contact{ID: s.nextID, Email: email, Attributes: map[string]any{}}
		s.contacts[email] = c
	} else {
		c.Updates++
	}
	s.setAttributes(c, req.Attributes)
	for _, id := range req.ListIDs {
		if !slices.Contains(c.ListIDs, id) {
			c.ListIDs = append(c.ListIDs, id)
		}
	}
	if req.EmailBlacklisted != nil {
		c.EmailBlacklisted = *req.EmailBlacklisted
	}
	if exists {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]int64{"id": c.ID})
}

func (s *Server) updateContact(w http.ResponseWriter, r *http.Request, param string, body []byte) {
	email, ok := s.identify(w, r, param)
	if !ok {
		return
	}
	var req struct {
		Attributes       map[string]any `json:"attributes"`
		ListIDs          []int64        `json:"listIds"`
		UnlinkListIDs    []int64        `json:"unlinkListIds"`
		EmailBlacklisted *bool          `json:"emailBlacklisted"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "Input must be a valid JSON object")
		return
	}
	c, exists := s.contacts[email]
	if !exists {
		writeError(w, http.StatusNotFound, "document_not_found", "Contact does not exist")
		return
	}
	if !s.checkLists(w, append(slices.Clone(req.ListIDs), req.UnlinkListIDs...)) {
		return
	}
	c.Updates++
	s.setAttributes(c, req.Attributes)
	for _, id := range req.ListIDs {
		if !slices.Contains(c.ListIDs, id) {
			c.ListIDs = append(c.ListIDs, id)
		}
	}
	c.ListIDs = slices.DeleteFunc(c.ListIDs, func(id int64) bool { return slices.Contains(req.UnlinkListIDs, id) })
	if req.EmailBlacklisted != nil {
		c.EmailBlacklisted = *req.EmailBlacklisted
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) createAttribute(w http.ResponseWriter, category, name string, body []byte) {
	var req struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(body, &req)
	switch {
	case category != "normal":
		writeError(w, http.StatusBadRequest, "invalid_parameter", "the fake supports the normal category only")
	case name == "" || strings.ToUpper(name) != name:
		writeError(w, http.StatusBadRequest, "invalid_parameter", "Attribute name must be in upper case")
	case !slices.Contains([]string{"text", "date", "float", "boolean", "id"}, req.Type):
		writeError(w, http.StatusBadRequest, "invalid_parameter", "type must be one of text, date, float, boolean, id")
	case s.attributes[name] != "":
		writeError(w, http.StatusBadRequest, "invalid_parameter", "Attribute name must be unique")
	default:
		s.attributes[name] = req.Type
		w.WriteHeader(http.StatusCreated)
	}
}

func (s *Server) listMembers(w http.ResponseWriter, add bool, param string, body []byte) {
	id, err := strconv.ParseInt(param, 10, 64)
	if _, ok := s.lists[id]; err != nil || !ok {
		writeError(w, http.StatusNotFound, "document_not_found", "List ID does not exist")
		return
	}
	var req struct {
		Emails []string `json:"emails"`
	}
	if err := json.Unmarshal(body, &req); err != nil || len(req.Emails) == 0 {
		writeError(w, http.StatusBadRequest, "missing_parameter", "emails are required")
		return
	}
	if len(req.Emails) > 150 {
		writeError(w, http.StatusBadRequest, "out_of_range", "You can pass a maximum of 150 emails")
		return
	}
	success, failure := []string{}, []string{}
	for _, e := range req.Emails {
		c, ok := s.contacts[strings.ToLower(e)]
		in := ok && slices.Contains(c.ListIDs, id)
		switch {
		case add && ok && !in:
			c.ListIDs = append(c.ListIDs, id)
			success = append(success, e)
		case !add && in:
			c.ListIDs = slices.DeleteFunc(c.ListIDs, func(x int64) bool { return x == id })
			success = append(success, e)
		default:
			failure = append(failure, e)
		}
	}
	if len(success) == 0 {
		if add {
			writeError(w, http.StatusBadRequest, "invalid_parameter", "Contact already in list and/or does not exist")
		} else {
			writeError(w, http.StatusBadRequest, "invalid_parameter", "Contact does not exist and/or not in list")
		}
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"contacts": map[string]any{"success": success, "failure": failure}})
}

// Inject queues replies for a route key ("" for any), given instead of
// (or, with AfterApply, after processing) the real answer.
func (s *Server) Inject(route string, replies ...Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inject[route] = append(s.inject[route], replies...)
}

// SetRateLimit sets the window: limit requests per window; the current
// window restarts.
func (s *Server) SetRateLimit(limit int, window time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limit, s.window = limit, window
	s.remaining, s.resetAt = limit, time.Now().Add(window)
}

// RejectEmail makes contact creation fail for email with Brevo's 400.
func (s *Server) RejectEmail(email string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.invalid[strings.ToLower(email)] = true
}

// SetDelay makes every answer wait d.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// Contact returns a copy of the contact with email, if any.
func (s *Server) Contact(email string) (Contact, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.contacts[strings.ToLower(email)]
	if !ok {
		return Contact{}, false
	}
	cp := *c
	cp.Attributes, cp.ListIDs = maps.Clone(c.Attributes), slices.Clone(c.ListIDs)
	return cp, true
}

// Contacts is the number of stored contacts.
func (s *Server) Contacts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.contacts)
}

// Creates counts contacts created since the last wipe.
func (s *Server) Creates() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.creates
}

// Attribute returns an attribute's type, "" if it does not exist.
func (s *Server) Attribute(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attributes[name]
}

// ListByName returns the list named name, if any.
func (s *Server) ListByName(name string) (List, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.lists {
		if l.Name == name {
			return *l, true
		}
	}
	return List{}, false
}

// Folder returns the id of the folder named name, 0 if none.
func (s *Server) Folder(name string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, n := range s.folders {
		if n == name {
			return id
		}
	}
	return 0
}

// Deletes are the addresses deleted, in order.
func (s *Server) Deletes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.deletes)
}

// Queries are the raw query strings of the requests to a route, in
// order.
func (s *Server) Queries(route string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.queries[route])
}

// Requests counts requests by route key.
func (s *Server) Requests(route string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[route]
}
