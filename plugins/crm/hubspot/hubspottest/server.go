// Package hubspottest is a fake HubSpot API for tests and benchmarks of
// the hubspot connector: a local HTTP server speaking the documented
// shapes of the CRM v3 endpoints the connector uses (contacts batch
// upsert, GDPR delete, contact properties and property groups, and the
// communication preferences v4 unsubscribe-all), with Bearer
// authentication, HubSpot-shaped errors (400 VALIDATION_ERROR, 409
// CONFLICT, 401), 429 for both rate-limit policies with the
// X-HubSpot-RateLimit-* headers, partial success (207 with per-input
// errors), injectable failures and slow answers, and state to inspect and
// wipe.
package hubspottest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Policies of HubSpot's 429 answers.
const (
	PolicySecondly = "TEN_SECONDLY_ROLLING"
	PolicyDaily    = "DAILY"
)

// Contact is a stored contact.
type Contact struct {
	// ID is HubSpot's object id.
	ID string
	// Properties are the contact's property values (email included).
	Properties map[string]string
	// Updates counts upserts that updated it (not the one that created it).
	Updates int
	// TraceIDs are the objectWriteTraceIds of the writes, in order.
	TraceIDs []string
}

// Property is a contact property definition.
type Property struct {
	Name      string   `json:"name"`
	Label     string   `json:"label"`
	Type      string   `json:"type"`
	FieldType string   `json:"fieldType"`
	GroupName string   `json:"groupName"`
	Options   []Option `json:"options"`
}

// Option is an enumeration or bool property's option.
type Option struct {
	Label string `json:"label"`
	Value string `json:"value"`
}

// Group is a property group.
type Group struct {
	Name         string `json:"name"`
	Label        string `json:"label"`
	DisplayOrder int    `json:"displayOrder"`
}

// Reply is an injected answer.
type Reply struct {
	// Status is the HTTP status.
	Status int
	// Body is the JSON body; empty: a HubSpot-shaped error for Status.
	Body string
	// Header is added to the answer.
	Header http.Header
	// AfterApply: the request is processed first, then this answer is
	// given instead of the real one (a lost answer).
	AfterApply bool
}

// defaultProperties are HubSpot's built-in contact properties the fake
// knows.
var defaultProperties = []Property{
	{Name: "email", Label: "Email", Type: "string", FieldType: "text", GroupName: "contactinformation"},
	{Name: "firstname", Label: "First Name", Type: "string", FieldType: "text", GroupName: "contactinformation"},
	{Name: "lastname", Label: "Last Name", Type: "string", FieldType: "text", GroupName: "contactinformation"},
	{Name: "phone", Label: "Phone Number", Type: "string", FieldType: "phonenumber", GroupName: "contactinformation"},
	{Name: "company", Label: "Company Name", Type: "string", FieldType: "text", GroupName: "contactinformation"},
	{Name: "country", Label: "Country/Region", Type: "string", FieldType: "text", GroupName: "contactinformation"},
	{Name: "lifecyclestage", Label: "Lifecycle Stage", Type: "enumeration", FieldType: "radio", GroupName: "contactinformation"},
}

// Server is the fake. Create it with New.
type Server struct {
	*httptest.Server
	// Token is the private app token the fake accepts.
	Token string

	mu             sync.Mutex
	contacts       map[string]*Contact // by lower-cased email
	nextID         int
	creates        int
	properties     map[string]Property
	groups         map[string]Group
	gdprDeletes    []string
	blocklist      map[string]bool
	unsubscribed   map[string]bool
	requests       map[string]int
	batchSizes     []int
	inject         map[string][]Reply // by path, "" for any
	rateLimits     []string
	invalid        map[string]string // email → message of a per-input validation error
	transient      map[string]int    // email → per-input retryable errors left
	strictBatch    bool
	delay          time.Duration
	interval       time.Duration
	maxPerInterval int
	window         []time.Time
	dailyLimit     int
	dailyUsed      int
}

// New starts a fake accepting token. Close it when done.
func New(token string) *Server {
	s := &Server{Token: token, interval: 10 * time.Second, maxPerInterval: 100, dailyLimit: 250000}
	s.reset()
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// reset empties the state; s.mu is held or s is new.
func (s *Server) reset() {
	s.contacts = map[string]*Contact{}
	s.properties = map[string]Property{}
	for _, p := range defaultProperties {
		s.properties[p.Name] = p
	}
	s.groups = map[string]Group{"contactinformation": {Name: "contactinformation", Label: "Contact information"}}
	s.gdprDeletes, s.batchSizes = nil, nil
	s.blocklist, s.unsubscribed, s.requests = map[string]bool{}, map[string]bool{}, map[string]int{}
	s.inject, s.rateLimits = map[string][]Reply{}, nil
	s.invalid, s.transient = map[string]string{}, map[string]int{}
	s.creates, s.nextID, s.dailyUsed, s.window = 0, 1000, 0, nil
}

// Wipe forgets contacts, custom properties and groups, deletions and
// injected behaviour (a fresh account).
func (s *Server) Wipe() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reset()
}

// Endpoint paths.
const (
	PathBatchUpsert = "/crm/v3/objects/contacts/batch/upsert"
	PathGDPRDelete  = "/crm/v3/objects/contacts/gdpr-delete"
	PathProperties  = "/crm/v3/properties/contacts"
	PathGroups      = "/crm/v3/properties/contacts/groups"
	pathUnsubPrefix = "/communication-preferences/v4/statuses/"
)

// PathUnsubscribeAll is the unsubscribe-all path for any address, as
// counted by Requests.
const PathUnsubscribeAll = pathUnsubPrefix + "{email}/unsubscribe-all"

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
	path := r.URL.Path
	key := path
	if strings.HasPrefix(path, pathUnsubPrefix) {
		key = PathUnsubscribeAll
	}
	s.requests[r.Method+" "+key]++
	if r.Header.Get("Authorization") != "Bearer "+s.Token {
		s.error(w, http.StatusUnauthorized, "INVALID_AUTHENTICATION",
			"Authentication credentials not found. This API supports OAuth 2.0 authentication.")
		return
	}
	s.rateHeaders(w)
	if len(s.rateLimits) > 0 {
		policy := s.rateLimits[0]
		s.rateLimits = s.rateLimits[1:]
		s.tooMany(w, policy)
		return
	}
	if s.dailyUsed > s.dailyLimit {
		s.tooMany(w, PolicyDaily)
		return
	}
	reply, ok := s.nextReply(key)
	if ok && !reply.AfterApply {
		s.write(w, reply)
		return
	}
	target := w
	var discard *httptest.ResponseRecorder
	if ok {
		discard = httptest.NewRecorder()
		target = discard
	}
	s.route(target, r, key, body)
	if ok {
		s.write(w, reply)
	}
}

// route dispatches an authenticated request.
func (s *Server) route(w http.ResponseWriter, r *http.Request, key string, body []byte) {
	switch {
	case r.Method == http.MethodPost && key == PathBatchUpsert:
		s.batchUpsert(w, body)
	case r.Method == http.MethodPost && key == PathGDPRDelete:
		s.gdprDelete(w, body)
	case r.Method == http.MethodGet && key == PathProperties:
		list := make([]Property, 0, len(s.properties))
		for _, p := range s.properties {
			list = append(list, p)
		}
		slices.SortFunc(list, func(a, b Property) int { return strings.Compare(a.Name, b.Name) })
		writeJSON(w, http.StatusOK, map[string]any{"results": list})
	case r.Method == http.MethodPost && key == PathProperties:
		s.createProperty(w, body)
	case r.Method == http.MethodGet && key == PathGroups:
		list := make([]Group, 0, len(s.groups))
		for _, g := range s.groups {
			list = append(list, g)
		}
		slices.SortFunc(list, func(a, b Group) int { return strings.Compare(a.Name, b.Name) })
		writeJSON(w, http.StatusOK, map[string]any{"results": list})
	case r.Method == http.MethodPost && key == PathGroups:
		s.createGroup(w, body)
	case r.Method == http.MethodPost && key == PathUnsubscribeAll:
		s.unsubscribeAll(w, r)
	default:
		s.error(w, http.StatusNotFound, "OBJECT_NOT_FOUND", "no such endpoint in the fake")
	}
}

// nextReply pops an injected reply for key; s.mu is held.
func (s *Server) nextReply(key string) (Reply, bool) {
	for _, k := range []string{key, ""} {
		if q := s.inject[k]; len(q) > 0 {
			s.inject[k] = q[1:]
			return q[0], true
		}
	}
	return Reply{}, false
}

// write sends an injected reply.
func (s *Server) write(w http.ResponseWriter, reply Reply) {
	for k, vs := range reply.Header {
		w.Header()[k] = vs
	}
	if reply.Body == "" {
		s.error(w, reply.Status, "INTERNAL_ERROR", fmt.Sprintf("injected %d", reply.Status))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(reply.Status)
	_, _ = io.WriteString(w, reply.Body)
}

// rateHeaders counts the request and sets the X-HubSpot-RateLimit-*
// headers; s.mu is held.
func (s *Server) rateHeaders(w http.ResponseWriter) {
	now := time.Now()
	cut := 0
	for cut < len(s.window) && now.Sub(s.window[cut]) > s.interval {
		cut++
	}
	s.window = append(s.window[cut:], now)
	s.dailyUsed++
	h := w.Header()
	h.Set("X-HubSpot-RateLimit-Max", strconv.Itoa(s.maxPerInterval))
	h.Set("X-HubSpot-RateLimit-Remaining", strconv.Itoa(max(0, s.maxPerInterval-len(s.window))))
	h.Set("X-HubSpot-RateLimit-Interval-Milliseconds", strconv.FormatInt(s.interval.Milliseconds(), 10))
	h.Set("X-HubSpot-RateLimit-Daily", strconv.Itoa(s.dailyLimit))
	h.Set("X-HubSpot-RateLimit-Daily-Remaining", strconv.Itoa(max(0, s.dailyLimit-s.dailyUsed)))
}

// tooMany answers 429 for policy, shaped like HubSpot's.
func (s *Server) tooMany(w http.ResponseWriter, policy string) {
	limit := "ten_secondly_rolling"
	if policy == PolicyDaily {
		limit = "daily"
		w.Header().Set("X-HubSpot-RateLimit-Daily-Remaining", "0")
	}
	writeJSON(w, http.StatusTooManyRequests, map[string]any{
		"status": "error", "message": "You have reached your " + limit + " limit.", "errorType": "RATE_LIMIT",
		"correlationId": correlationID(), "policyName": policy, "groupName": "publicapi:private-app:1",
	})
}

// error writes a HubSpot-shaped error.
func (s *Server) error(w http.ResponseWriter, status int, category, message string, details ...map[string]any) {
	body := map[string]any{"status": "error", "message": message, "correlationId": correlationID(), "category": category}
	if len(details) > 0 {
		body["errors"] = details
	}
	writeJSON(w, status, body)
}

type upsertInput struct {
	ID                 string            `json:"id"`
	IDProperty         string            `json:"idProperty"`
	ObjectWriteTraceID string            `json:"objectWriteTraceId"`
	Properties         map[string]string `json:"properties"`
}

type batchError struct {
	Status   string              `json:"status"`
	Category string              `json:"category"`
	Message  string              `json:"message"`
	Context  map[string][]string `json:"context"`
}

func (s *Server) batchUpsert(w http.ResponseWriter, body []byte) {
	var req struct {
		Inputs []upsertInput `json:"inputs"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		s.error(w, http.StatusBadRequest, "VALIDATION_ERROR", "Invalid input JSON on line 1: "+err.Error())
		return
	}
	if n := len(req.Inputs); n == 0 || n > 100 {
		s.error(w, http.StatusBadRequest, "VALIDATION_ERROR", fmt.Sprintf("Batch input must have between 1 and 100 inputs, got %d", n))
		return
	}
	seen := map[string]bool{}
	for _, in := range req.Inputs {
		id := strings.ToLower(in.ID)
		if seen[id] {
			s.error(w, http.StatusBadRequest, "VALIDATION_ERROR", "Duplicate IDs found in batch input: ["+in.ID+"]. IDs must be unique")
			return
		}
		seen[id] = true
		if in.IDProperty != "email" {
			s.error(w, http.StatusBadRequest, "VALIDATION_ERROR", "Unable to perform update/upsert by non-unique 0-1 property "+in.IDProperty)
			return
		}
		for name, value := range in.Properties {
			p, ok := s.properties[name]
			if !ok {
				s.error(w, http.StatusBadRequest, "VALIDATION_ERROR", "Property values were not valid",
					map[string]any{"code": "PROPERTY_DOESNT_EXIST", "message": "Property \"" + name + "\" does not exist",
						"context": map[string]any{"propertyName": []string{name}}})
				return
			}
			if msg := checkValue(p, value); msg != "" {
				s.error(w, http.StatusBadRequest, "VALIDATION_ERROR", "Property values were not valid",
					map[string]any{"code": "INVALID_" + strings.ToUpper(p.Type), "message": msg})
				return
			}
		}
		if s.strictBatch && s.badEmail(in.ID) != "" {
			s.error(w, http.StatusBadRequest, "VALIDATION_ERROR", "Property values were not valid: "+s.badEmail(in.ID))
			return
		}
	}
	s.batchSizes = append(s.batchSizes, len(req.Inputs))
	var results []map[string]any
	var errs []batchError
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for _, in := range req.Inputs {
		email := strings.ToLower(in.ID)
		if msg := s.badEmail(in.ID); msg != "" {
			errs = append(errs, batchError{Status: "error", Category: "VALIDATION_ERROR", Message: msg,
				Context: map[string][]string{"ids": {in.ID}}})
			continue
		}
		if s.transient[email] > 0 {
			s.transient[email]--
			errs = append(errs, batchError{Status: "error", Category: "INTERNAL_ERROR",
				Message: "Temporary failure writing the record; try again", Context: map[string][]string{"ids": {in.ID}}})
			continue
		}
		c, exists := s.contacts[email]
		if !exists {
			s.nextID++
			s.creates++
			c = &Contact{ID: strconv.Itoa(s.nextID), Properties: map[string]string{"email": email}}
			s.contacts[email] = c
		} else {
			c.Updates++
		}
		for k, v := range in.Properties {
			c.Properties[k] = v
		}
		c.Properties["email"] = email
		c.TraceIDs = append(c.TraceIDs, in.ObjectWriteTraceID)
		res := map[string]any{
			"id": c.ID, "new": !exists, "properties": map[string]string{"email": email},
			"createdAt": now, "updatedAt": now, "archived": false,
		}
		if in.ObjectWriteTraceID != "" {
			res["objectWriteTraceId"] = in.ObjectWriteTraceID
		}
		results = append(results, res)
	}
	out := map[string]any{
		"status": "COMPLETE", "results": results, "requestedAt": now, "startedAt": now, "completedAt": now,
	}
	status := http.StatusOK
	if len(errs) > 0 {
		out["numErrors"], out["errors"] = len(errs), errs
		status = http.StatusMultiStatus
	}
	if results == nil {
		out["results"] = []any{}
	}
	writeJSON(w, status, out)
}

// badEmail is the validation message for an invalid address, "" if it
// is valid; s.mu is held.
func (s *Server) badEmail(email string) string {
	if msg, ok := s.invalid[strings.ToLower(email)]; ok {
		return msg
	}
	if a, err := mail.ParseAddress(email); err != nil || a.Address != email {
		return "Email address " + email + " is invalid"
	}
	return ""
}

// checkValue validates a value for p's type.
func checkValue(p Property, v string) string {
	switch p.Type {
	case "number":
		if _, err := strconv.ParseFloat(v, 64); err != nil && v != "" {
			return fmt.Sprintf("%q is not a valid number for %s", v, p.Name)
		}
	case "bool":
		if v != "true" && v != "false" && v != "" {
			return fmt.Sprintf("%q is not a valid boolean for %s", v, p.Name)
		}
	}
	return ""
}

func (s *Server) gdprDelete(w http.ResponseWriter, body []byte) {
	var req struct {
		ObjectID   string `json:"objectId"`
		IDProperty string `json:"idProperty"`
	}
	if err := json.Unmarshal(body, &req); err != nil || req.ObjectID == "" {
		s.error(w, http.StatusBadRequest, "VALIDATION_ERROR", "objectId is required")
		return
	}
	if req.IDProperty != "" && req.IDProperty != "email" {
		s.error(w, http.StatusBadRequest, "VALIDATION_ERROR", "idProperty must be email")
		return
	}
	if req.IDProperty == "" {
		for email, c := range s.contacts {
			if c.ID == req.ObjectID {
				delete(s.contacts, email)
				s.gdprDeletes = append(s.gdprDeletes, email)
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		s.error(w, http.StatusNotFound, "OBJECT_NOT_FOUND", "resource not found")
		return
	}
	email := strings.ToLower(req.ObjectID)
	s.gdprDeletes = append(s.gdprDeletes, email)
	if _, ok := s.contacts[email]; ok {
		delete(s.contacts, email)
	} else {
		s.blocklist[email] = true
	}
	w.WriteHeader(http.StatusNoContent)
}

var propertyName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// fieldTypes are the valid fieldType values per type.
var fieldTypes = map[string][]string{
	"string":      {"text", "textarea", "phonenumber", "html", "file"},
	"number":      {"number", "calculation_equation"},
	"bool":        {"booleancheckbox"},
	"enumeration": {"checkbox", "radio", "select", "booleancheckbox"},
	"date":        {"date"},
	"datetime":    {"date"},
}

func (s *Server) createProperty(w http.ResponseWriter, body []byte) {
	var p Property
	if err := json.Unmarshal(body, &p); err != nil {
		s.error(w, http.StatusBadRequest, "VALIDATION_ERROR", "Invalid input JSON")
		return
	}
	switch {
	case !propertyName.MatchString(p.Name):
		s.error(w, http.StatusBadRequest, "VALIDATION_ERROR", "Property name "+p.Name+" is invalid: use lower-case letters, digits and _")
		return
	case p.Label == "":
		s.error(w, http.StatusBadRequest, "VALIDATION_ERROR", "label is required")
		return
	case !slices.Contains(fieldTypes[p.Type], p.FieldType):
		s.error(w, http.StatusBadRequest, "VALIDATION_ERROR", fmt.Sprintf("fieldType %q is not valid for type %q", p.FieldType, p.Type))
		return
	case p.Type == "bool" && len(p.Options) != 2:
		s.error(w, http.StatusBadRequest, "VALIDATION_ERROR", "bool properties need the options true and false")
		return
	}
	if _, ok := s.groups[p.GroupName]; !ok {
		s.error(w, http.StatusBadRequest, "VALIDATION_ERROR", "Property group "+p.GroupName+" does not exist")
		return
	}
	if _, ok := s.properties[p.Name]; ok {
		s.error(w, http.StatusConflict, "CONFLICT", "Property named '"+p.Name+"' already exists.")
		return
	}
	s.properties[p.Name] = p
	writeJSON(w, http.StatusCreated, p)
}

func (s *Server) createGroup(w http.ResponseWriter, body []byte) {
	var g Group
	if err := json.Unmarshal(body, &g); err != nil || !propertyName.MatchString(g.Name) || g.Label == "" {
		s.error(w, http.StatusBadRequest, "VALIDATION_ERROR", "name (lower-case) and label are required")
		return
	}
	if _, ok := s.groups[g.Name]; ok {
		s.error(w, http.StatusConflict, "CONFLICT", "Property group "+g.Name+" already exists.")
		return
	}
	s.groups[g.Name] = g
	writeJSON(w, http.StatusCreated, g)
}

func (s *Server) unsubscribeAll(w http.ResponseWriter, r *http.Request) {
	email, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, pathUnsubPrefix), "/unsubscribe-all")
	if !ok || email == "" {
		s.error(w, http.StatusNotFound, "OBJECT_NOT_FOUND", "resource not found")
		return
	}
	if r.URL.Query().Get("channel") != "EMAIL" {
		s.error(w, http.StatusBadRequest, "VALIDATION_ERROR", "channel is required and must be EMAIL")
		return
	}
	email = strings.ToLower(email)
	s.unsubscribed[email] = true
	now := time.Now().UTC().Format(time.RFC3339Nano)
	writeJSON(w, http.StatusOK, map[string]any{
		"status": "COMPLETE", "requestedAt": now, "startedAt": now, "completedAt": now,
		"results": []map[string]any{{"channel": "EMAIL", "status": "UNSUBSCRIBED", "subscriberIdString": email,
			"timestamp": now, "wideStatusType": "PORTAL_WIDE"}},
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func correlationID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// Inject queues replies for requests to path ("" for any path), given
// instead of (or, with AfterApply, after processing) the real answer.
func (s *Server) Inject(path string, replies ...Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inject[path] = append(s.inject[path], replies...)
}

// RateLimitNext answers the next requests 429 with the given policies
// (PolicySecondly, PolicyDaily), one per request.
func (s *Server) RateLimitNext(policies ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rateLimits = append(s.rateLimits, policies...)
}

// SetInterval sets the rolling window announced in
// X-HubSpot-RateLimit-Interval-Milliseconds and its request maximum.
func (s *Server) SetInterval(d time.Duration, maxRequests int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.interval, s.maxPerInterval = d, maxRequests
}

// SetDailyLimit sets the daily limit; beyond it every request gets a
// DAILY 429.
func (s *Server) SetDailyLimit(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dailyLimit, s.dailyUsed = n, 0
}

// RejectEmail makes every upsert input for email fail with a per-input
// VALIDATION_ERROR carrying message.
func (s *Server) RejectEmail(email, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.invalid[strings.ToLower(email)] = message
}

// FailEmail makes the next n upsert inputs for email fail with a
// per-input retryable error.
func (s *Server) FailEmail(email string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.transient[strings.ToLower(email)] = n
}

// StrictBatch makes a batch holding an invalid address fail as a whole
// (400) instead of per input.
func (s *Server) StrictBatch(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.strictBatch = on
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
	cp.Properties = maps.Clone(c.Properties)
	cp.TraceIDs = slices.Clone(c.TraceIDs)
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

// Property returns the definition of name, if it exists.
func (s *Server) Property(name string) (Property, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.properties[name]
	return p, ok
}

// HasGroup reports whether the property group exists.
func (s *Server) HasGroup(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.groups[name]
	return ok
}

// GDPRDeletes are the addresses given to gdpr-delete, in order.
func (s *Server) GDPRDeletes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.gdprDeletes)
}

// Blocklisted reports whether gdpr-delete blocklisted an address that
// matched no contact.
func (s *Server) Blocklisted(email string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.blocklist[strings.ToLower(email)]
}

// UnsubscribedAll reports whether email was unsubscribed from all email.
func (s *Server) UnsubscribedAll(email string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unsubscribed[strings.ToLower(email)]
}

// Requests counts requests by "METHOD path" (paths as the Path
// constants), authenticated or not.
func (s *Server) Requests(methodPath string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[methodPath]
}

// BatchSizes are the input counts of the accepted batch upserts.
func (s *Server) BatchSizes() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.batchSizes)
}
