// Package brevo is the Brevo (ex-Sendinblue) connector of Vigie's CRM
// sync (API v3, api-key header). A contact is created or updated with
// POST /v3/contacts and updateEnabled true (idempotent: a retry updates),
// its mapped attributes upper-cased and created when the account lacks
// them (POST /v3/contacts/attributes/normal/{NAME}, typed from the value;
// Brevo silently drops values of unknown attributes), the score in
// VIGIE_SCORE. Each synced segment has a list ("Vigie: <segment>") in a
// folder ("Vigie"), both found or created once; entering and leaving a
// segment add and remove e-mails in batches of up to 150
// (POST /v3/contacts/lists/{id}/contacts/add|remove). Objection sets
// emailBlacklisted (PUT /v3/contacts/{email}); erasure deletes the contact
// (DELETE /v3/contacts/{email}?identifierType=email_id), a 404 meaning it
// is already gone. The x-sib-ratelimit-limit, -remaining and -reset
// headers drive the limiter; a 429 (which carries no Retry-After) waits
// for the reset.
package brevo

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vigie-dev/vigie/plugins/crm/delivery"
)

// Defaults.
const (
	// DefaultBaseURL is Brevo's API.
	DefaultBaseURL = "https://api.brevo.com/v3"
	// DefaultPerSecond is the contacts endpoints' limit (36 000
	// requests per hour, about 10 per second) less headroom.
	DefaultPerSecond = 9
	// DefaultFolder holds the lists Vigie creates.
	DefaultFolder = "Vigie"
	// DefaultListPrefix starts the names of the lists Vigie creates.
	DefaultListPrefix = "Vigie: "
	// DefaultConcurrency is how many contacts are sent in parallel.
	DefaultConcurrency = 4
	// maxListEmails is Brevo's limit of e-mails per list add or remove.
	maxListEmails = 150
)

// Attributes Vigie writes.
const (
	AttrScore           = "VIGIE_SCORE"
	AttrConsentPurposes = "VIGIE_CONSENT_PURPOSES"
)

// Config is a Brevo destination's configuration.
type Config struct {
	// APIKey is the account's API key (SMTP & API > API keys), sent in
	// the api-key header. Required.
	APIKey delivery.SecretSource `json:"api_key"`
	// BaseURL is the API's address. Default https://api.brevo.com/v3.
	BaseURL string `json:"base_url,omitempty"`
	// Segments are the segments synced to this destination, one list
	// each; changes of other segments are ignored. Empty: every segment
	// a change names.
	Segments []string `json:"segments,omitempty"`
	// Folder is the folder of the lists. Default "Vigie".
	Folder string `json:"folder,omitempty"`
	// ListPrefix starts each list's name, followed by the segment's
	// name. Default "Vigie: ".
	ListPrefix string `json:"list_prefix,omitempty"`
	// Concurrency is how many contacts are sent at once (one contact's
	// changes always go in order). Default 4.
	Concurrency int `json:"concurrency,omitempty"`
	delivery.Settings
}

// Connector delivers changes to one Brevo account. It implements
// delivery.Connector.
type Connector struct {
	req         *delivery.Requester
	policy      delivery.Policy
	settings    delivery.Settings
	segments    []string
	folderName  string
	listPrefix  string
	concurrency int
	counters    delivery.Counters

	attrMu sync.Mutex
	attrs  map[string]bool // nil until loaded

	listMu   sync.Mutex
	folderID int64
	lists    map[string]int64 // list name → id; nil until loaded
}

// New validates cfg, reads the API key and returns the connector.
func New(cfg Config) (*Connector, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	base, err := delivery.ParseURL(cfg.BaseURL, cfg.AllowPrivate)
	if err != nil {
		return nil, fmt.Errorf("%w: base_url: %w", ErrConfig, err)
	}
	key, err := cfg.APIKey.Load()
	if err != nil {
		return nil, fmt.Errorf("%w: api_key: %w", ErrConfig, err)
	}
	if cfg.Folder == "" {
		cfg.Folder = DefaultFolder
	}
	if cfg.ListPrefix == "" {
		cfg.ListPrefix = DefaultListPrefix
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	b := &Connector{
		policy:      cfg.Retry,
		settings:    cfg.Settings,
		segments:    slices.Clone(cfg.Segments),
		folderName:  cfg.Folder,
		listPrefix:  cfg.ListPrefix,
		concurrency: cfg.Concurrency,
	}
	header := http.Header{}
	header.Set("api-key", key.Reveal())
	b.req = &delivery.Requester{
		Client:   delivery.NewHTTPClient(cfg.HTTPConfig()),
		Base:     base,
		Header:   header,
		Limiter:  delivery.NewLimiter(cfg.RateLimit.WithDefault(DefaultPerSecond)),
		Redactor: delivery.NewRedactor(key),
		Observe:  b.observe,
	}
	return b, nil
}

// AttributeName is a mapped property's Brevo attribute: upper case, with
// characters other than letters, digits and _ replaced by _.
func AttributeName(property string) string {
	var sb strings.Builder
	for _, r := range strings.ToUpper(property) {
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || r == '_' {
			sb.WriteRune(r)
		} else {
			sb.WriteByte('_')
		}
	}
	return sb.String()
}

// rateHeaders reads the x-sib-ratelimit-* headers.
func rateHeaders(h http.Header) (o delivery.Observation, reset time.Duration) {
	num := func(name string) int {
		n, err := strconv.Atoi(strings.TrimSpace(h.Get(name)))
		if err != nil {
			return -1
		}
		return n
	}
	o = delivery.Observation{Limit: num("x-sib-ratelimit-limit"), Remaining: num("x-sib-ratelimit-remaining")}
	if s := num("x-sib-ratelimit-reset"); s >= 0 {
		reset = time.Duration(s) * time.Second
		o.Reset = reset
	}
	return o, reset
}

// observe applies an answer's rate-limit headers.
func (b *Connector) observe(_ int, h http.Header) {
	if o, _ := rateHeaders(h); o.Limit >= 0 || o.Remaining >= 0 {
		b.req.Limiter.Observe(o)
	}
}

// statusError is the error for a non-2xx answer; a 429 waits for the
// rate-limit window's reset.
func (b *Connector) statusError(op string, resp *delivery.Response) error {
	he := b.req.Error(op, resp)
	if resp.Status == http.StatusTooManyRequests && he.RetryAfter == 0 {
		_, reset := rateHeaders(resp.Header)
		he.RetryAfter = max(reset, time.Second)
		b.req.Limiter.Hold(he.RetryAfter, "Brevo rate limit reached")
	}
	return he
}

// call sends req, retrying within the policy; statuses in ok count as
// success besides 2xx.
func (b *Connector) call(ctx context.Context, req delivery.Request, ok ...int) (*delivery.Response, error) {
	return b.req.Call(ctx, b.policy, req, b.statusError, ok...)
}

// membership is the wanted list membership of one contact for one
// segment, from the batch's last change about it.
type membership struct {
	email   string
	segment string
	add     bool
	changes []int
}

// Deliver implements delivery.Connector. Contact changes (upsert,
// objection, erasure, consent) go one request each, contacts in parallel
// and each contact's in order; segment changes are then applied as list
// additions and removals batched per list, each contact's membership
// being the one its last change in the batch asks for.
func (b *Connector) Deliver(ctx context.Context, changes []delivery.Change) ([]delivery.Result, error) {
	results := make([]delivery.Result, len(changes))
	var contactOps []int
	members := map[[2]string]*membership{}
	var order [][2]string
	for i, c := range changes {
		if err := c.Validate(); err != nil {
			results[i] = delivery.FailedResult(c, err)
			continue
		}
		email := strings.ToLower(strings.TrimSpace(c.Email))
		if email == "" {
			results[i] = delivery.NotSupportedResult(c, "no e-mail address: Brevo identifies contacts by e-mail")
			continue
		}
		switch c.Kind {
		case delivery.KindSegmentEntered, delivery.KindSegmentExited:
			if !b.synced(c.Segment) {
				results[i] = delivery.DoneResult(c)
				continue
			}
			k := [2]string{email, c.Segment}
			m, ok := members[k]
			if !ok {
				m = &membership{email: email, segment: c.Segment}
				members[k] = m
				order = append(order, k)
			}
			m.add = c.Kind == delivery.KindSegmentEntered
			m.changes = append(m.changes, i)
			continue
		case delivery.KindUpsert:
			for k, m := range members {
				if k[0] == email {
					m.add = c.InSegment(k[1])
				}
			}
		case delivery.KindDelete:
			// Earlier segment changes are moot: the contact is erased.
			for k, m := range members {
				if k[0] == email {
					for _, j := range m.changes {
						results[j] = delivery.DoneResult(changes[j])
					}
					delete(members, k)
				}
			}
		}
		contactOps = append(contactOps, i)
	}
	delivery.ForEachOrdered(ctx, len(contactOps), b.concurrency,
		func(k int) string { return strings.ToLower(changes[contactOps[k]].Email) },
		func(ctx context.Context, k int) {
			i := contactOps[k]
			results[i] = b.contactOp(ctx, changes[i])
		})
	var list []*membership
	for _, k := range order {
		if m, ok := members[k]; ok {
			list = append(list, m)
		}
	}
	if ctx.Err() == nil && len(list) > 0 {
		b.applyMemberships(ctx, changes, list, results)
	}
	err := delivery.CtxResults(ctx, changes, results)
	b.counters.Record(results)
	return results, err
}

// synced reports whether segment is synced here.
func (b *Connector) synced(segment string) bool {
	return len(b.segments) == 0 || slices.Contains(b.segments, segment)
}

// contactOp delivers an upsert, objection, erasure or consent change.
func (b *Connector) contactOp(ctx context.Context, c delivery.Change) delivery.Result {
	email := strings.ToLower(strings.TrimSpace(c.Email))
	path := "/contacts/" + url.PathEscape(email)
	byEmail := url.Values{"identifierType": {"email_id"}}
	var err error
	switch c.Kind {
	case delivery.KindUpsert:
		err = b.upsert(ctx, c, email)
	case delivery.KindUnsubscribe:
		_, err = b.call(ctx, delivery.Request{Op: "brevo blacklist contact", Method: http.MethodPut, Path: path, Query: byEmail,
			Body: map[string]any{"emailBlacklisted": true}}, http.StatusNotFound)
	case delivery.KindDelete:
		_, err = b.call(ctx, delivery.Request{Op: "brevo delete contact", Method: http.MethodDelete, Path: path, Query: byEmail},
			http.StatusNotFound)
	case delivery.KindConsentChanged:
		if err = b.ensureAttributes(ctx, map[string]string{AttrConsentPurposes: "text"}); err == nil {
			purposes := strings.Join(slices.Sorted(slices.Values(c.Purposes)), ";")
			_, err = b.call(ctx, delivery.Request{Op: "brevo update contact", Method: http.MethodPut, Path: path, Query: byEmail,
				Body: map[string]any{"attributes": map[string]any{AttrConsentPurposes: purposes}}}, http.StatusNotFound)
		}
	}
	if err != nil {
		r := delivery.FailedResult(c, err)
		b.settings.Log().Warn("brevo delivery failed", "change", r.ID, "status", r.Status, "retryable", r.Retryable, "reason", r.Reason)
		return r
	}
	return delivery.DoneResult(c)
}

// upsert creates or updates the contact with its attributes and the
// lists of its current segments.
func (b *Connector) upsert(ctx context.Context, c delivery.Change, email string) error {
	attrs := map[string]any{}
	types := map[string]string{}
	for k, v := range c.Properties {
		name := AttributeName(k)
		attrs[name], types[name] = value(v)
	}
	if c.Score != nil {
		attrs[AttrScore], types[AttrScore] = *c.Score, "float"
	}
	if err := b.ensureAttributes(ctx, types); err != nil {
		return err
	}
	var segments []string
	for _, s := range c.Segments {
		if b.synced(s) {
			segments = append(segments, s)
		}
	}
	ids, err := b.listIDs(ctx, segments)
	if err != nil {
		return err
	}
	body := map[string]any{"email": email, "attributes": attrs, "updateEnabled": true}
	if len(ids) > 0 {
		body["listIds"] = ids
	}
	_, err = b.call(ctx, delivery.Request{Op: "brevo create or update contact", Method: http.MethodPost, Path: "/contacts", Body: body})
	return err
}

// value is a mapped value as Brevo wants it, and the attribute type it
// would be created with.
func value(v any) (any, string) {
	switch x := v.(type) {
	case bool:
		return x, "boolean"
	case float64:
		return x, "float"
	case float32:
		return float64(x), "float"
	case int:
		return float64(x), "float"
	case int64:
		return float64(x), "float"
	case json.Number:
		f, err := x.Float64()
		if err != nil {
			return x.String(), "text"
		}
		return f, "float"
	case time.Time:
		return x.UTC().Format("2006-01-02"), "date"
	case string:
		return x, "text"
	case nil:
		return nil, "text"
	}
	return fmt.Sprint(v), "text"
}

// ensureAttributes creates the attributes of types the account lacks.
func (b *Connector) ensureAttributes(ctx context.Context, types map[string]string) error {
	if len(types) == 0 {
		return nil
	}
	b.attrMu.Lock()
	defer b.attrMu.Unlock()
	if b.attrs == nil {
		resp, err := b.call(ctx, delivery.Request{Op: "brevo list attributes", Method: http.MethodGet, Path: "/contacts/attributes"})
		if err != nil {
			return err
		}
		var list struct {
			Attributes []struct {
				Name string `json:"name"`
			} `json:"attributes"`
		}
		if err := json.Unmarshal(resp.Body, &list); err != nil {
			return fmt.Errorf("brevo list attributes: unreadable answer")
		}
		b.attrs = map[string]bool{}
		for _, a := range list.Attributes {
			b.attrs[strings.ToUpper(a.Name)] = true
		}
	}
	var missing []string
	for name := range types {
		if !b.attrs[name] {
			missing = append(missing, name)
		}
	}
	slices.Sort(missing)
	for _, name := range missing {
		resp, err := b.call(ctx, delivery.Request{Op: "brevo create attribute", Method: http.MethodPost,
			Path: "/contacts/attributes/normal/" + url.PathEscape(name), Body: map[string]string{"type": types[name]}},
			http.StatusBadRequest)
		if err == nil && resp.Status == http.StatusBadRequest && !strings.Contains(strings.ToLower(string(resp.Body)), "unique") {
			err = b.req.Error("brevo create attribute", resp)
		}
		if err != nil {
			return err
		}
		b.attrs[name] = true
	}
	return nil
}

// listIDs returns the ids of the segments' lists, creating the folder
// and the lists that do not exist yet.
func (b *Connector) listIDs(ctx context.Context, segments []string) ([]int64, error) {
	if len(segments) == 0 {
		return nil, nil
	}
	b.listMu.Lock()
	defer b.listMu.Unlock()
	if b.lists == nil {
		if err := b.loadLists(ctx); err != nil {
			return nil, err
		}
	}
	ids := make([]int64, 0, len(segments))
	for _, s := range segments {
		name := b.listPrefix + s
		id, ok := b.lists[name]
		if !ok {
			resp, err := b.call(ctx, delivery.Request{Op: "brevo create list", Method: http.MethodPost, Path: "/contacts/lists",
				Body: map[string]any{"name": name, "folderId": b.folderID}})
			if err != nil {
				return nil, err
			}
			var created struct {
				ID int64 `json:"id"`
			}
			if err := json.Unmarshal(resp.Body, &created); err != nil || created.ID == 0 {
				return nil, fmt.Errorf("brevo create list: unreadable answer")
			}
			id = created.ID
			b.lists[name] = id
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// page is one page of folders or lists.
type page struct {
	Folders []struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
	} `json:"folders"`
	Lists []struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
	} `json:"lists"`
	Count int `json:"count"`
}

// pages reads a paginated listing (50 per page); b.listMu is held.
func (b *Connector) pages(ctx context.Context, op, path string, each func(page)) error {
	const limit = 50
	for offset := 0; ; offset += limit {
		resp, err := b.call(ctx, delivery.Request{Op: op, Method: http.MethodGet, Path: path,
			Query: url.Values{"limit": {strconv.Itoa(limit)}, "offset": {strconv.Itoa(offset)}}})
		if err != nil {
			return err
		}
		var p page
		if err := json.Unmarshal(resp.Body, &p); err != nil {
			return fmt.Errorf("%s: unreadable answer", op)
		}
		each(p)
		if n := len(p.Folders) + len(p.Lists); n < limit || offset+n >= p.Count {
			return nil
		}
	}
}

// loadLists finds or creates the folder and reads its lists; b.listMu
// is held.
func (b *Connector) loadLists(ctx context.Context) error {
	if b.folderID == 0 {
		err := b.pages(ctx, "brevo list folders", "/contacts/folders", func(p page) {
			for _, f := range p.Folders {
				if f.Name == b.folderName && b.folderID == 0 {
					b.folderID = f.ID
				}
			}
		})
		if err != nil {
			return err
		}
	}
	if b.folderID == 0 {
		resp, err := b.call(ctx, delivery.Request{Op: "brevo create folder", Method: http.MethodPost, Path: "/contacts/folders",
			Body: map[string]string{"name": b.folderName}})
		if err != nil {
			return err
		}
		var created struct {
			ID int64 `json:"id"`
		}
		if err := json.Unmarshal(resp.Body, &created); err != nil || created.ID == 0 {
			return fmt.Errorf("brevo create folder: unreadable answer")
		}
		b.folderID = created.ID
	}
	lists := map[string]int64{}
	err := b.pages(ctx, "brevo list lists", "/contacts/folders/"+strconv.FormatInt(b.folderID, 10)+"/lists", func(p page) {
		for _, l := range p.Lists {
			if _, dup := lists[l.Name]; !dup {
				lists[l.Name] = l.ID
			}
		}
	})
	if err != nil {
		return err
	}
	b.lists = lists
	return nil
}

// applyMemberships adds and removes contacts in the segments' lists,
// batched per list and direction; an e-mail Brevo could not add (no such
// contact yet, or already a member) is created or updated with the list.
func (b *Connector) applyMemberships(ctx context.Context, changes []delivery.Change, list []*membership, results []delivery.Result) {
	type group struct {
		segment string
		add     bool
		members []*membership
	}
	var groups []*group
	index := map[string]*group{}
	for _, m := range list {
		k := strconv.FormatBool(m.add) + "\x00" + m.segment
		g, ok := index[k]
		if !ok {
			g = &group{segment: m.segment, add: m.add}
			index[k] = g
			groups = append(groups, g)
		}
		g.members = append(g.members, m)
	}
	finish := func(m *membership, err error) {
		for _, i := range m.changes {
			if err != nil {
				results[i] = delivery.FailedResult(changes[i], err)
			} else {
				results[i] = delivery.DoneResult(changes[i])
			}
		}
	}
	for _, g := range groups {
		ids, err := b.listIDs(ctx, []string{g.segment})
		if err != nil {
			for _, m := range g.members {
				finish(m, err)
			}
			continue
		}
		id := ids[0]
		for chunk := range slices.Chunk(g.members, maxListEmails) {
			failed, err := b.listCall(ctx, id, g.add, chunk)
			if err != nil {
				b.settings.Log().Warn("brevo list update failed", "contacts", len(chunk), "reason", delivery.Classify(err).Reason)
			}
			for _, m := range chunk {
				switch {
				case err != nil:
					finish(m, err)
				case failed[m.email] && g.add:
					// Not a contact yet, or already in the list: both end
					// with the contact in the list.
					_, ferr := b.call(ctx, delivery.Request{Op: "brevo create or update contact", Method: http.MethodPost,
						Path: "/contacts", Body: map[string]any{"email": m.email, "listIds": []int64{id}, "updateEnabled": true}})
					finish(m, ferr)
				default:
					// Removed, or not a member: either way not in the list.
					finish(m, nil)
				}
			}
		}
	}
}

// listCall adds or removes emails in a list and returns those Brevo
// reported as failed.
func (b *Connector) listCall(ctx context.Context, id int64, add bool, members []*membership) (map[string]bool, error) {
	emails := make([]string, len(members))
	for i, m := range members {
		emails[i] = m.email
	}
	verb, op := "add", "brevo add to list"
	if !add {
		verb, op = "remove", "brevo remove from list"
	}
	resp, err := b.call(ctx, delivery.Request{Op: op, Method: http.MethodPost,
		Path: "/contacts/lists/" + strconv.FormatInt(id, 10) + "/contacts/" + verb, Body: map[string]any{"emails": emails}},
		http.StatusBadRequest)
	if err != nil {
		return nil, err
	}
	failed := map[string]bool{}
	if resp.Status == http.StatusBadRequest {
		// Brevo answers 400 when no e-mail could be added or removed
		// ("Contact already in list and/or does not exist"); any other
		// 400 is a real error.
		var e struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}
		_ = json.Unmarshal(resp.Body, &e)
		if e.Code != "invalid_parameter" || !strings.Contains(strings.ToLower(e.Message), "contact") {
			return nil, b.req.Error(op, resp)
		}
		for _, e := range emails {
			failed[e] = true
		}
		return failed, nil
	}
	var out struct {
		Contacts struct {
			Failure []string `json:"failure"`
		} `json:"contacts"`
	}
	_ = json.Unmarshal(resp.Body, &out)
	for _, e := range out.Contacts.Failure {
		failed[strings.ToLower(e)] = true
	}
	return failed, nil
}

// Status implements delivery.Connector.
func (b *Connector) Status() delivery.Status {
	s := delivery.Status{Connector: "brevo", State: delivery.StateOK}
	b.req.Limiter.Apply(&s)
	b.counters.Fill(&s)
	return s
}

// Close implements delivery.Connector.
func (b *Connector) Close() error {
	b.req.Close()
	return nil
}
