// Package hubspot is the HubSpot connector of Vigie's CRM sync (CRM v3,
// private app token). Contacts are upserted by e-mail in batches of at
// most 100 (POST /crm/v3/objects/contacts/batch/upsert, idProperty email,
// objectWriteTraceId = the change's ID); per-input errors of a partial
// success are read from the answer and only the failed inputs are
// retried. Segments, score and consent go to properties Vigie creates
// when missing (group "vigie"): vigie_segment_<name> (bool), vigie_score
// (number), vigie_marketing_consent (bool), vigie_consent_purposes
// (string); mapped properties missing from the account are created too.
// Erasure calls POST /crm/v3/objects/contacts/gdpr-delete (permanent, and
// blocklists an address that matches no contact); objection sets
// vigie_marketing_consent to false and, with unsubscribe_all, also
// unsubscribes the address from all e-mail through the communication
// preferences API v4.
//
// Rate limits: the X-HubSpot-RateLimit-* headers drive the token bucket;
// a 429 with policyName TEN_SECONDLY_ROLLING waits (Retry-After, else the
// announced interval, else 10 s) and retries; DAILY, or a
// Daily-Remaining of 0, pauses the destination until midnight in the
// account's time zone (time_zone; UTC when not configured), and Status
// says until when.
package hubspot

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vigie-dev/vigie/plugins/crm/delivery"
)

// Defaults.
const (
	// DefaultBaseURL is HubSpot's API.
	DefaultBaseURL = "https://api.hubapi.com"
	// DefaultPerSecond stays under the smallest burst limit (100
	// requests per 10 s, Free and Starter).
	DefaultPerSecond = 9
	// DefaultPropertyGroup holds the properties Vigie creates.
	DefaultPropertyGroup = "vigie"
	// MaxBatch is HubSpot's limit of inputs per batch upsert.
	MaxBatch = 100
	// secondlyFallback is the wait after a TEN_SECONDLY_ROLLING 429
	// without Retry-After or interval header.
	secondlyFallback = 10 * time.Second
)

// Properties Vigie writes.
const (
	PropScore            = "vigie_score"
	PropMarketingConsent = "vigie_marketing_consent"
	PropConsentPurposes  = "vigie_consent_purposes"
	segmentPrefix        = "vigie_segment_"
)

// API paths.
const (
	pathBatchUpsert = "/crm/v3/objects/contacts/batch/upsert"
	pathGDPRDelete  = "/crm/v3/objects/contacts/gdpr-delete"
	pathProperties  = "/crm/v3/properties/contacts"
	pathGroups      = "/crm/v3/properties/contacts/groups"
)

// Config is a HubSpot destination's configuration.
type Config struct {
	// Token is the private app's access token, sent as a Bearer token.
	// Scopes: crm.objects.contacts.read, crm.objects.contacts.write,
	// crm.schemas.contacts.read, crm.schemas.contacts.write (and
	// communication preferences write with UnsubscribeAll). Required.
	Token delivery.SecretSource `json:"token"`
	// BaseURL is the API's address. Default https://api.hubapi.com.
	BaseURL string `json:"base_url,omitempty"`
	// Segments are the segments synced to this destination: an upsert
	// sets vigie_segment_<name> for each (true or false), and changes of
	// other segments are ignored. Empty: every segment a change names.
	Segments []string `json:"segments,omitempty"`
	// TimeZone is the HubSpot account's time zone (IANA name, as in
	// Settings > Account defaults); the daily limit resets at its
	// midnight. Default UTC.
	TimeZone string `json:"time_zone,omitempty"`
	// PropertyGroup is the group of the properties Vigie creates.
	// Default "vigie".
	PropertyGroup string `json:"property_group,omitempty"`
	// UnsubscribeAll also unsubscribes an objecting contact from all
	// e-mail (communication preferences API v4, a HubSpot-wide opt-out
	// that only the contact can undo). Default false: only
	// vigie_marketing_consent is set to false.
	UnsubscribeAll bool `json:"unsubscribe_all,omitempty"`
	// BatchSize is the most inputs per batch upsert. Default and
	// maximum 100.
	BatchSize int `json:"batch_size,omitempty"`
	delivery.Settings
	// Now is the clock (tests). Default time.Now.
	Now func() time.Time `json:"-"`
}

// Connector delivers changes to one HubSpot account. It implements
// delivery.Connector.
type Connector struct {
	req          *delivery.Requester
	policy       delivery.Policy
	settings     delivery.Settings
	segments     []string
	segmentProps map[string]string
	loc          *time.Location
	group        string
	unsubAll     bool
	batchSize    int
	now          func() time.Time
	counters     delivery.Counters

	propMu     sync.Mutex
	known      map[string]bool // nil until loaded
	groupReady bool

	pauseMu     sync.Mutex
	pauseLogged time.Time
}

var groupName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// SegmentProperty is the bool property of a segment: vigie_segment_ and
// the name in lower case with characters other than letters, digits and
// _ replaced by _.
func SegmentProperty(segment string) string {
	var b strings.Builder
	b.WriteString(segmentPrefix)
	for _, r := range strings.ToLower(segment) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// New validates cfg, reads the token and returns the connector.
func New(cfg Config) (*Connector, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	base, err := delivery.ParseURL(cfg.BaseURL, cfg.AllowPrivate)
	if err != nil {
		return nil, fmt.Errorf("%w: base_url: %w", ErrConfig, err)
	}
	token, err := cfg.Token.Load()
	if err != nil {
		return nil, fmt.Errorf("%w: token: %w", ErrConfig, err)
	}
	loc := time.UTC
	if cfg.TimeZone != "" {
		if loc, err = time.LoadLocation(cfg.TimeZone); err != nil {
			return nil, fmt.Errorf("%w: time_zone %q is not an IANA time zone", ErrConfig, cfg.TimeZone)
		}
	}
	if cfg.PropertyGroup == "" {
		cfg.PropertyGroup = DefaultPropertyGroup
	}
	if !groupName.MatchString(cfg.PropertyGroup) {
		return nil, fmt.Errorf("%w: property_group must be lower-case letters, digits and _", ErrConfig)
	}
	switch {
	case cfg.BatchSize <= 0:
		cfg.BatchSize = MaxBatch
	case cfg.BatchSize > MaxBatch:
		return nil, fmt.Errorf("%w: batch_size is at most %d", ErrConfig, MaxBatch)
	}
	props := map[string]string{}
	owner := map[string]string{}
	for _, s := range cfg.Segments {
		p := SegmentProperty(s)
		if other, ok := owner[p]; ok && other != s {
			return nil, fmt.Errorf("%w: segments %q and %q both map to the property %s", ErrConfig, other, s, p)
		}
		owner[p], props[s] = s, p
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Connector{
		policy:       cfg.Retry,
		settings:     cfg.Settings,
		segments:     slices.Clone(cfg.Segments),
		segmentProps: props,
		loc:          loc,
		group:        cfg.PropertyGroup,
		unsubAll:     cfg.UnsubscribeAll,
		batchSize:    cfg.BatchSize,
		now:          cfg.Now,
	}
	header := http.Header{}
	header.Set("Authorization", "Bearer "+token.Reveal())
	h.req = &delivery.Requester{
		Client:   delivery.NewHTTPClient(cfg.HTTPConfig()),
		Base:     base,
		Header:   header,
		Limiter:  delivery.NewLimiter(cfg.RateLimit.WithDefault(DefaultPerSecond)),
		Redactor: delivery.NewRedactor(token),
		Observe:  h.observe,
	}
	return h, nil
}

// observe reads the X-HubSpot-RateLimit-* headers of every answer.
func (h *Connector) observe(_ int, hd http.Header) {
	num := func(name string) int {
		n, err := strconv.Atoi(strings.TrimSpace(hd.Get(name)))
		if err != nil {
			return -1
		}
		return n
	}
	o := delivery.Observation{Limit: num("X-HubSpot-RateLimit-Max"), Remaining: num("X-HubSpot-RateLimit-Remaining")}
	if ms := num("X-HubSpot-RateLimit-Interval-Milliseconds"); ms > 0 {
		o.Window = time.Duration(ms) * time.Millisecond
	}
	if o.Limit >= 0 || o.Remaining >= 0 {
		h.req.Limiter.Observe(o)
	}
	if num("X-HubSpot-RateLimit-Daily-Remaining") == 0 {
		h.pause()
	}
}

// nextReset is the next midnight in the account's time zone.
func (h *Connector) nextReset() time.Time {
	now := h.now().In(h.loc)
	return time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, h.loc)
}

// pause stops the destination until the daily limit resets.
func (h *Connector) pause() time.Time {
	until := h.nextReset()
	h.req.Limiter.PauseUntil(until, "HubSpot daily API limit reached; resumes at midnight "+h.loc.String())
	h.pauseMu.Lock()
	defer h.pauseMu.Unlock()
	if !h.pauseLogged.Equal(until) {
		h.pauseLogged = until
		h.settings.Log().Warn("hubspot destination paused: daily API limit reached", "until", until)
	}
	return until
}

// statusError is the error for a non-2xx answer, with HubSpot's 429
// policies applied: DAILY pauses until the reset, TEN_SECONDLY_ROLLING
// holds requests for the wait and is retried.
func (h *Connector) statusError(op string, resp *delivery.Response) error {
	he := h.req.Error(op, resp)
	if resp.Status != http.StatusTooManyRequests {
		return he
	}
	var body struct {
		PolicyName string `json:"policyName"`
	}
	_ = json.Unmarshal(resp.Body, &body)
	if body.PolicyName == "DAILY" {
		he.RetryAfter = max(time.Until(h.pause()), time.Second)
		return he
	}
	if he.RetryAfter == 0 {
		if ms, err := strconv.Atoi(resp.Header.Get("X-HubSpot-RateLimit-Interval-Milliseconds")); err == nil && ms > 0 {
			he.RetryAfter = time.Duration(ms) * time.Millisecond
		} else {
			he.RetryAfter = secondlyFallback
		}
	}
	policy := body.PolicyName
	if policy == "" {
		policy = "TEN_SECONDLY_ROLLING"
	}
	h.req.Limiter.Hold(he.RetryAfter, "HubSpot "+strings.ToLower(policy)+" limit reached")
	return he
}

// call sends req, retrying within the policy; statuses in ok count as
// success besides 2xx.
func (h *Connector) call(ctx context.Context, req delivery.Request, ok ...int) (*delivery.Response, error) {
	return h.req.Call(ctx, h.policy, req, h.statusError, ok...)
}

// input is one contact of a batch upsert: the merged properties of the
// changes that name it.
type input struct {
	email   string
	traceID string
	props   map[string]string
	types   map[string]string
	changes []int
}

// batch collects inputs, one per address.
type batch struct {
	inputs  []*input
	byEmail map[string]*input
}

func (b *batch) add(i int, c delivery.Change, email string, props, types map[string]string) {
	in, ok := b.byEmail[email]
	if !ok {
		in = &input{email: email, traceID: c.ID(), props: map[string]string{}, types: map[string]string{}}
		b.byEmail[email] = in
		b.inputs = append(b.inputs, in)
	}
	for k, v := range props {
		in.props[k] = v
	}
	for k, v := range types {
		in.types[k] = v
	}
	in.changes = append(in.changes, i)
}

// Deliver implements delivery.Connector: upserts, segment and consent
// changes and objections are batched (one input per address, later
// changes winning), erasures are sent one by one, in order with the
// batch.
func (h *Connector) Deliver(ctx context.Context, changes []delivery.Change) ([]delivery.Result, error) {
	results := make([]delivery.Result, len(changes))
	if st := h.req.Limiter.State(); time.Now().Before(st.PausedUntil) {
		err := &delivery.PausedError{Until: st.PausedUntil, Reason: st.PauseReason}
		for i, c := range changes {
			results[i] = delivery.FailedResult(c, err)
		}
		h.counters.Record(results)
		return results, nil
	}
	b := &batch{byEmail: map[string]*input{}}
	for i, c := range changes {
		if ctx.Err() != nil {
			break
		}
		if err := c.Validate(); err != nil {
			results[i] = delivery.FailedResult(c, err)
			continue
		}
		email := strings.ToLower(strings.TrimSpace(c.Email))
		if email == "" {
			results[i] = delivery.NotSupportedResult(c, "no e-mail address: HubSpot identifies contacts by e-mail")
			continue
		}
		switch c.Kind {
		case delivery.KindDelete:
			if _, pending := b.byEmail[email]; pending {
				h.flush(ctx, changes, b, results)
			}
			results[i] = h.gdprDelete(ctx, c, email)
			continue
		case delivery.KindSegmentEntered, delivery.KindSegmentExited:
			if len(h.segments) > 0 && !slices.Contains(h.segments, c.Segment) {
				results[i] = delivery.DoneResult(c) // not synced here
				continue
			}
		}
		props, types := h.properties(c)
		b.add(i, c, email, props, types)
		if len(b.inputs) >= h.batchSize {
			h.flush(ctx, changes, b, results)
		}
	}
	h.flush(ctx, changes, b, results)
	err := delivery.CtxResults(ctx, changes, results)
	h.counters.Record(results)
	return results, err
}

// properties are the HubSpot property values and types of a change.
func (h *Connector) properties(c delivery.Change) (props, types map[string]string) {
	props, types = map[string]string{}, map[string]string{}
	set := func(name, value, typ string) { props[name], types[name] = value, typ }
	segment := func(s string, in bool) {
		p, ok := h.segmentProps[s]
		if !ok {
			p = SegmentProperty(s)
		}
		set(p, strconv.FormatBool(in), "bool")
	}
	switch c.Kind {
	case delivery.KindUpsert:
		for k, v := range c.Properties {
			value, typ := format(v)
			set(k, value, typ)
		}
		if c.Score != nil {
			set(PropScore, strconv.FormatFloat(*c.Score, 'f', -1, 64), "number")
		}
		set(PropMarketingConsent, "true", "bool")
		if len(h.segments) == 0 {
			for _, s := range c.Segments {
				segment(s, true)
			}
		}
		for _, s := range h.segments {
			segment(s, c.InSegment(s))
		}
	case delivery.KindSegmentEntered, delivery.KindSegmentExited:
		segment(c.Segment, c.Kind == delivery.KindSegmentEntered)
	case delivery.KindConsentChanged:
		purposes := slices.Sorted(slices.Values(c.Purposes))
		set(PropConsentPurposes, strings.Join(purposes, ";"), "string")
	case delivery.KindUnsubscribe:
		set(PropMarketingConsent, "false", "bool")
	}
	return props, types
}

// format is a mapped value as HubSpot wants it, and the property type
// it would be created with.
func format(v any) (string, string) {
	switch x := v.(type) {
	case bool:
		return strconv.FormatBool(x), "bool"
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), "number"
	case float32:
		return strconv.FormatFloat(float64(x), 'f', -1, 32), "number"
	case int:
		return strconv.Itoa(x), "number"
	case int64:
		return strconv.FormatInt(x, 10), "number"
	case json.Number:
		return x.String(), "number"
	case string:
		return x, "string"
	case nil:
		return "", "string"
	case time.Time:
		return x.UTC().Format(time.RFC3339), "string"
	}
	return fmt.Sprint(v), "string"
}

// flush upserts the batch and sets the results of its changes.
func (h *Connector) flush(ctx context.Context, changes []delivery.Change, b *batch, results []delivery.Result) {
	if len(b.inputs) == 0 {
		return
	}
	inputs := b.inputs
	b.inputs, b.byEmail = nil, map[string]*input{}
	types := map[string]string{}
	for _, in := range inputs {
		for k, v := range in.types {
			types[k] = v
		}
	}
	errs := make([]error, len(inputs))
	if err := h.ensure(ctx, types, false); err != nil {
		for i := range errs {
			errs[i] = err
		}
	} else {
		errs = h.upsert(ctx, inputs)
	}
	failed, reason := 0, ""
	for k, in := range inputs {
		for _, i := range in.changes {
			c := changes[i]
			switch {
			case errs[k] != nil:
				results[i] = delivery.FailedResult(c, errs[k])
				failed, reason = failed+1, results[i].Reason
			case c.Kind == delivery.KindUnsubscribe && h.unsubAll:
				results[i] = h.unsubscribeAll(ctx, c, in.email)
			default:
				results[i] = delivery.DoneResult(c)
			}
		}
	}
	if failed > 0 {
		h.settings.Log().Warn("hubspot batch upsert failed for some changes", "failed", failed, "reason", reason)
	}
}

// ensure creates the properties of types (and the group) that the
// account lacks; reload forgets what is known first.
func (h *Connector) ensure(ctx context.Context, types map[string]string, reload bool) error {
	h.propMu.Lock()
	defer h.propMu.Unlock()
	if reload {
		h.known, h.groupReady = nil, false
	}
	if h.known == nil {
		resp, err := h.call(ctx, delivery.Request{Op: "hubspot list properties", Method: http.MethodGet, Path: pathProperties})
		if err != nil {
			return err
		}
		var list namedList
		if err := json.Unmarshal(resp.Body, &list); err != nil {
			return fmt.Errorf("hubspot list properties: unreadable answer")
		}
		h.known = map[string]bool{}
		for _, p := range list.Results {
			h.known[p.Name] = true
		}
	}
	var missing []string
	for name := range types {
		if !h.known[name] {
			missing = append(missing, name)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	slices.Sort(missing)
	if err := h.ensureGroup(ctx); err != nil {
		return err
	}
	for _, name := range missing {
		p := propertyDefinition(name, types[name], h.group)
		if _, err := h.call(ctx, delivery.Request{Op: "hubspot create property", Method: http.MethodPost, Path: pathProperties, Body: p},
			http.StatusConflict); err != nil {
			return err
		}
		h.known[name] = true
	}
	return nil
}

// ensureGroup creates the property group once; h.propMu is held.
func (h *Connector) ensureGroup(ctx context.Context) error {
	if h.groupReady {
		return nil
	}
	resp, err := h.call(ctx, delivery.Request{Op: "hubspot list property groups", Method: http.MethodGet, Path: pathGroups})
	if err != nil {
		return err
	}
	var list namedList
	if err := json.Unmarshal(resp.Body, &list); err != nil {
		return fmt.Errorf("hubspot list property groups: unreadable answer")
	}
	if !slices.ContainsFunc(list.Results, func(g named) bool { return g.Name == h.group }) {
		body := map[string]any{"name": h.group, "label": "Vigie", "displayOrder": -1}
		if _, err := h.call(ctx, delivery.Request{Op: "hubspot create property group", Method: http.MethodPost, Path: pathGroups, Body: body},
			http.StatusConflict); err != nil {
			return err
		}
	}
	h.groupReady = true
	return nil
}

// named is a listed property or group; namedList a list of them.
type (
	named     struct{ Name string }
	namedList struct{ Results []named }
)

// propertyDefinition is the body creating a property of type typ.
func propertyDefinition(name, typ, group string) map[string]any {
	label := name
	switch {
	case name == PropScore:
		label = "Vigie score"
	case name == PropMarketingConsent:
		label = "Vigie marketing consent"
	case name == PropConsentPurposes:
		label = "Vigie consent purposes"
	case strings.HasPrefix(name, segmentPrefix):
		label = "Vigie segment: " + strings.TrimPrefix(name, segmentPrefix)
	}
	p := map[string]any{"name": name, "label": label, "groupName": group, "type": typ, "description": "Written by Vigie's CRM sync."}
	switch typ {
	case "bool":
		p["fieldType"] = "booleancheckbox"
		p["options"] = []map[string]any{
			{"label": "Yes", "value": "true", "displayOrder": 0},
			{"label": "No", "value": "false", "displayOrder": 1},
		}
	case "number":
		p["fieldType"] = "number"
	default:
		p["fieldType"] = "text"
	}
	return p
}

// upsertResponse is a batch upsert answer (200, 201 or 207).
type upsertResponse struct {
	Results []struct {
		ID                 string            `json:"id"`
		ObjectWriteTraceID string            `json:"objectWriteTraceId"`
		Properties         map[string]string `json:"properties"`
	} `json:"results"`
	NumErrors int `json:"numErrors"`
	Errors    []struct {
		Category string              `json:"category"`
		Message  string              `json:"message"`
		Context  map[string][]string `json:"context"`
	} `json:"errors"`
}

// retryableCategories are per-input error categories worth retrying.
var retryableCategories = map[string]bool{"RATE_LIMITS": true, "INTERNAL_ERROR": true, "TIMEOUT": true, "CONFLICT": true, "SERVICE_UNAVAILABLE": true}

// upsert sends inputs and retries only those that failed retryably,
// within the policy. It returns each input's error, nil for done.
func (h *Connector) upsert(ctx context.Context, inputs []*input) []error {
	errs := make([]error, len(inputs))
	pending := make([]int, len(inputs))
	for i := range pending {
		pending[i] = i
	}
	for n := 1; ; n++ {
		h.send(ctx, inputs, pending, errs, true)
		var retry []int
		var first error
		for _, i := range pending {
			if errs[i] != nil && delivery.Classify(errs[i]).Retryable {
				retry = append(retry, i)
				if first == nil {
					first = errs[i]
				}
			}
		}
		if len(retry) == 0 || !h.policy.Wait(ctx, n, first) {
			return errs
		}
		pending = retry
	}
}

const opUpsert = "hubspot batch upsert"

// send makes one batch upsert call for inputs[idx] and sets their errors.
// A whole-batch validation error is bisected so that one bad input does
// not fail the others; mayReload allows one reload of the property list
// when HubSpot says a property is missing.
func (h *Connector) send(ctx context.Context, inputs []*input, idx []int, errs []error, mayReload bool) {
	set := func(err error) {
		for _, i := range idx {
			errs[i] = err
		}
	}
	body := struct {
		Inputs []map[string]any `json:"inputs"`
	}{}
	for _, i := range idx {
		in := inputs[i]
		body.Inputs = append(body.Inputs, map[string]any{
			"id": in.email, "idProperty": "email", "objectWriteTraceId": in.traceID, "properties": in.props,
		})
	}
	resp, err := h.req.Do(ctx, delivery.Request{Op: opUpsert, Method: http.MethodPost, Path: pathBatchUpsert, Body: body})
	if err != nil {
		set(err)
		return
	}
	if !resp.OK() {
		switch {
		case resp.Status == http.StatusBadRequest && strings.Contains(string(resp.Body), "PROPERTY_DOESNT_EXIST") && mayReload:
			types := map[string]string{}
			for _, i := range idx {
				for k, v := range inputs[i].types {
					types[k] = v
				}
			}
			if err := h.ensure(ctx, types, true); err != nil {
				set(err)
				return
			}
			h.send(ctx, inputs, idx, errs, false)
		case (resp.Status == http.StatusBadRequest || resp.Status == http.StatusUnprocessableEntity) && len(idx) > 1:
			half := len(idx) / 2
			h.send(ctx, inputs, idx[:half], errs, mayReload)
			h.send(ctx, inputs, idx[half:], errs, mayReload)
		default:
			set(h.statusError(opUpsert, resp))
		}
		return
	}
	var out upsertResponse
	if err := json.Unmarshal(resp.Body, &out); err != nil {
		set(fmt.Errorf("%s: unreadable answer (HTTP %d)", opUpsert, resp.Status))
		return
	}
	byKey := make(map[string]int, 2*len(idx))
	for _, i := range idx {
		byKey[inputs[i].traceID] = i
		byKey[inputs[i].email] = i
	}
	accounted := make(map[int]bool, len(idx))
	for _, r := range out.Results {
		for _, key := range []string{r.ObjectWriteTraceID, strings.ToLower(r.Properties["email"])} {
			if i, ok := byKey[key]; ok && key != "" {
				errs[i], accounted[i] = nil, true
				break
			}
		}
	}
	var unmatched error
	for _, e := range out.Errors {
		he := &delivery.HTTPError{
			Op: opUpsert, Status: resp.Status, Retryable: retryableCategories[e.Category],
			Excerpt: h.req.Redactor.Redact(e.Category + ": " + e.Message),
		}
		matched := false
		for _, ids := range e.Context {
			for _, id := range ids {
				if i, ok := byKey[strings.ToLower(id)]; ok {
					errs[i], accounted[i], matched = he, true, true
				} else if i, ok := byKey[id]; ok {
					errs[i], accounted[i], matched = he, true, true
				}
			}
		}
		if !matched && unmatched == nil {
			unmatched = he
		}
	}
	for _, i := range idx {
		if accounted[i] {
			continue
		}
		switch {
		case unmatched != nil:
			errs[i] = unmatched
		case out.NumErrors == 0 && len(out.Errors) == 0:
			errs[i] = nil // processed; HubSpot did not echo it
		default:
			errs[i] = &delivery.HTTPError{Op: opUpsert, Status: resp.Status, Retryable: true, Excerpt: "no result for this input"}
		}
	}
}

// gdprDelete erases a contact: done when HubSpot deleted it, blocklisted
// an unknown address, or answers 404.
func (h *Connector) gdprDelete(ctx context.Context, c delivery.Change, email string) delivery.Result {
	body := map[string]string{"objectId": email, "idProperty": "email"}
	_, err := h.call(ctx, delivery.Request{Op: "hubspot gdpr-delete", Method: http.MethodPost, Path: pathGDPRDelete, Body: body},
		http.StatusNotFound)
	if err != nil {
		r := delivery.FailedResult(c, err)
		h.settings.Log().Warn("hubspot gdpr-delete failed", "change", r.ID, "status", r.Status, "retryable", r.Retryable, "reason", r.Reason)
		return r
	}
	return delivery.DoneResult(c)
}

// unsubscribeAll opts the address out of all e-mail.
func (h *Connector) unsubscribeAll(ctx context.Context, c delivery.Change, email string) delivery.Result {
	path := "/communication-preferences/v4/statuses/" + url.PathEscape(email) + "/unsubscribe-all"
	_, err := h.call(ctx, delivery.Request{Op: "hubspot unsubscribe-all", Method: http.MethodPost, Path: path,
		Query: url.Values{"channel": {"EMAIL"}}})
	if err != nil {
		r := delivery.FailedResult(c, err)
		h.settings.Log().Warn("hubspot unsubscribe-all failed", "change", r.ID, "status", r.Status, "reason", r.Reason)
		return r
	}
	return delivery.DoneResult(c)
}

// Status implements delivery.Connector.
func (h *Connector) Status() delivery.Status {
	s := delivery.Status{Connector: "hubspot", State: delivery.StateOK}
	h.req.Limiter.Apply(&s)
	h.counters.Fill(&s)
	return s
}

// Close implements delivery.Connector.
func (h *Connector) Close() error {
	h.req.Close()
	return nil
}
