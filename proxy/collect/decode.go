package collect

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/go-json-experiment/json/jsontext"
)

// decoder holds the reusable state of one decode call. It is pooled; the
// arena is not, because the strings handed out point into it.
type decoder struct {
	src     bytes.Buffer // aliases the body so jsontext parses it in place
	dec     jsontext.Decoder
	arena   []byte // append-only; fresh per call, never written below len
	scratch []byte // reusable; for escaped object names only
	msgs    []Message
	errs    []ItemError
	prob    *FieldError    // first schema problem of the current object
	ctxTr   jsontext.Value // context.traits of the current object
}

var decoderPool = sync.Pool{New: func() any { return new(decoder) }}

// decodeOpts: duplicate names are rejected (so the consent package, which
// re-parses context.consent, can never see a different value than we did).
var decodeOpts = jsontext.AllowDuplicateNames(false)

func getDecoder(body []byte) *decoder {
	d := decoderPool.Get().(*decoder)
	d.src = *bytes.NewBuffer(body)
	d.dec.Reset(&d.src, decodeOpts)
	// Unquoted strings and copied raw values are never longer than the body
	// bytes they come from, so this is the only allocation backing every
	// string of the call (a numeric id in exponent form may spill over,
	// which append handles safely).
	d.arena = make([]byte, 0, len(body))
	return d
}

func putDecoder(d *decoder) {
	clear(d.msgs)
	d.msgs = d.msgs[:0]
	clear(d.errs)
	d.errs = d.errs[:0]
	d.arena, d.prob, d.ctxTr = nil, nil, nil
	if cap(d.scratch) > 4<<10 {
		d.scratch = nil
	}
	d.src = bytes.Buffer{}
	d.dec.Reset(&d.src)
	decoderPool.Put(d)
}

// DecodeMessage decodes and validates a single-event body (/v1/track etc.).
// routeType is the type implied by the route ("track", "page", …); "" means
// take it from the body's "type". The body must not exceed MaxEventBytes.
// Errors wrap ErrTooLarge, ErrMalformedJSON or ErrInvalidEvent (as a
// *FieldError).
func DecodeMessage(body []byte, routeType string) (Message, error) {
	if len(body) > MaxEventBytes {
		return Message{}, fail(ErrTooLarge, "event is %d bytes, larger than the %d-byte limit", len(body), MaxEventBytes)
	}
	d := getDecoder(body)
	defer putDecoder(d)
	var m Message
	if err := d.expectObject(); err != nil {
		return Message{}, err
	}
	if err := d.message(&m); err != nil {
		return Message{}, err
	}
	if err := d.eof(); err != nil {
		return Message{}, err
	}
	if d.prob != nil {
		return Message{}, d.prob
	}
	if m.Traits == nil {
		m.Traits = d.ctxTr
	}
	if routeType != "" {
		m.Type = canonicalType(routeType)
	}
	if err := m.Validate(); err != nil {
		return Message{}, err
	}
	return m, nil
}

// DecodeBatch decodes a /v1/batch body. maxEvents <= 0 means
// DefaultMaxEvents; maxEventBytes <= 0 means MaxEventBytes. It fails only
// when the whole body is unusable: not JSON (ErrMalformedJSON), "batch"
// missing or not an array or a bad batch-level field (ErrInvalidEvent), or
// more than maxEvents events (ErrTooManyEvents). An event that is too large,
// has a wrong field type or fails Validate goes to Batch.Errors; the others
// are kept, with the batch-level writeKey, sentAt and context filled in
// where they lack them. The body size itself is bounded by ReadBody.
func DecodeBatch(body []byte, maxEvents int, maxEventBytes int) (Batch, error) {
	if maxEvents <= 0 {
		maxEvents = DefaultMaxEvents
	}
	if maxEventBytes <= 0 {
		maxEventBytes = MaxEventBytes
	}
	d := getDecoder(body)
	defer putDecoder(d)
	var b Batch
	if err := d.expectObject(); err != nil {
		return Batch{}, err
	}
	seenBatch := false
	var batchTraits jsontext.Value
	for {
		name, done, err := d.name()
		if err != nil {
			return Batch{}, err
		}
		if done {
			break
		}
		switch string(name) {
		case "batch":
			seenBatch = true
			err = d.items(maxEvents, int64(maxEventBytes))
		case "writeKey":
			b.WriteKey, err = d.str("writeKey")
		case "sentAt":
			b.SentAt, err = d.time("sentAt")
		case "context":
			d.ctxTr = nil
			err = d.context(&b.Context)
			batchTraits = d.ctxTr
		default:
			err = d.skip()
		}
		if err != nil {
			return Batch{}, err
		}
		if d.prob != nil {
			return Batch{}, d.prob
		}
	}
	if err := d.eof(); err != nil {
		return Batch{}, err
	}
	if !seenBatch {
		return Batch{}, &FieldError{Field: "batch", Problem: "is required"}
	}
	if len(d.msgs) > 0 {
		b.Messages = make([]Message, len(d.msgs))
		copy(b.Messages, d.msgs)
		for i := range b.Messages {
			mergeBatch(&b.Messages[i], &b, batchTraits)
		}
	}
	if len(d.errs) > 0 {
		b.Errors = make([]ItemError, len(d.errs))
		copy(b.Errors, d.errs)
	}
	return b, nil
}

// items decodes the "batch" array. Per-item problems go to d.errs.
func (d *decoder) items(maxEvents int, maxBytes int64) error {
	if k := d.dec.PeekKind(); k != '[' {
		if err := d.skip(); err != nil {
			return err
		}
		return &FieldError{Field: "batch", Problem: "must be an array"}
	}
	if _, err := d.dec.ReadToken(); err != nil {
		return syntax(err)
	}
	for i := 0; ; i++ {
		start := d.dec.InputOffset()
		switch d.dec.PeekKind() {
		case ']':
			_, err := d.dec.ReadToken()
			return syntax(err)
		case '{':
		default:
			if i >= maxEvents {
				return tooMany(maxEvents)
			}
			if err := d.skip(); err != nil {
				return err
			}
			d.errs = append(d.errs, ItemError{Index: i, Err: &FieldError{Field: itemField(i, ""), Problem: "must be an object"}})
			continue
		}
		if i >= maxEvents {
			return tooMany(maxEvents)
		}
		if _, err := d.dec.ReadToken(); err != nil {
			return syntax(err)
		}
		d.prob, d.ctxTr = nil, nil
		var m Message
		if err := d.message(&m); err != nil {
			return err
		}
		var itemErr error
		if size := d.dec.InputOffset() - start; size > maxBytes {
			itemErr = fail(ErrTooLarge, "batch[%d] is %d bytes, larger than the %d-byte limit", i, size, maxBytes)
		} else if d.prob != nil {
			itemErr = prefixed(i, d.prob)
		} else {
			if m.Traits == nil {
				m.Traits = d.ctxTr
			}
			if err := m.Validate(); err != nil {
				itemErr = prefixed(i, err)
			}
		}
		d.prob, d.ctxTr = nil, nil
		if itemErr != nil {
			d.errs = append(d.errs, ItemError{Index: i, MessageID: m.MessageID, Err: itemErr})
			continue
		}
		m.Index = i
		d.msgs = append(d.msgs, m)
	}
}

func tooMany(n int) error {
	return fail(ErrTooManyEvents, "batch has more than %d events", n)
}

func itemField(i int, field string) string {
	if field == "" {
		return "batch[" + strconv.Itoa(i) + "]"
	}
	return "batch[" + strconv.Itoa(i) + "]." + field
}

// prefixed rewrites a *FieldError's path to be relative to the batch body.
func prefixed(i int, err error) error {
	var fe *FieldError
	if errors.As(err, &fe) {
		return &FieldError{Field: itemField(i, fe.Field), Problem: fe.Problem}
	}
	return err
}

// mergeBatch fills the fields m lacks from the batch-level ones.
func mergeBatch(m *Message, b *Batch, traits jsontext.Value) {
	if m.WriteKey == "" {
		m.WriteKey = b.WriteKey
	}
	if m.SentAt.IsZero() {
		m.SentAt = b.SentAt
	}
	if m.Traits == nil {
		m.Traits = traits
	}
	c, bc := &m.Context, &b.Context
	fill(&c.IP, bc.IP)
	fill(&c.UserAgent, bc.UserAgent)
	fill(&c.Locale, bc.Locale)
	fill(&c.Timezone, bc.Timezone)
	fill(&c.Page.Path, bc.Page.Path)
	fill(&c.Page.URL, bc.Page.URL)
	fill(&c.Page.Referrer, bc.Page.Referrer)
	fill(&c.Page.Title, bc.Page.Title)
	fill(&c.Page.Search, bc.Page.Search)
	fill(&c.Campaign.Name, bc.Campaign.Name)
	fill(&c.Campaign.Source, bc.Campaign.Source)
	fill(&c.Campaign.Medium, bc.Campaign.Medium)
	fill(&c.Campaign.Term, bc.Campaign.Term)
	fill(&c.Campaign.Content, bc.Campaign.Content)
	fill(&c.Library.Name, bc.Library.Name)
	fill(&c.Library.Version, bc.Library.Version)
	if c.Consent == nil {
		c.Consent = bc.Consent
	}
	if c.ConsentManagement == nil {
		c.ConsentManagement = bc.ConsentManagement
	}
}

func fill(dst *string, src string) {
	if *dst == "" {
		*dst = src
	}
}

// message decodes the members of an event object whose '{' was consumed.
// Schema problems are recorded in d.prob; the returned error is syntactic.
func (d *decoder) message(m *Message) error {
	for {
		name, done, err := d.name()
		if err != nil || done {
			return err
		}
		switch string(name) {
		case "type":
			m.Type, err = d.str("type")
			m.Type = canonicalType(m.Type)
		case "messageId":
			m.MessageID, err = d.id("messageId")
		case "anonymousId":
			m.AnonymousID, err = d.id("anonymousId")
		case "userId":
			m.UserID, err = d.id("userId")
		case "groupId":
			m.GroupID, err = d.id("groupId")
		case "previousId":
			m.PreviousID, err = d.id("previousId")
		case "event":
			m.Event, err = d.str("event")
		case "name":
			m.Name, err = d.str("name")
		case "category":
			m.Category, err = d.str("category")
		case "timestamp":
			m.Timestamp, err = d.time("timestamp")
		case "sentAt":
			m.SentAt, err = d.time("sentAt")
		case "originalTimestamp":
			m.OriginalTimestamp, err = d.time("originalTimestamp")
		case "writeKey":
			m.WriteKey, err = d.str("writeKey")
		case "context":
			err = d.context(&m.Context)
		case "properties":
			m.Properties, err = d.object("properties")
		case "traits":
			m.Traits, err = d.object("traits")
		default:
			err = d.other("", name)
		}
		if err != nil {
			return err
		}
	}
}

// context decodes context.* into c and context.traits into d.ctxTr.
func (d *decoder) context(c *Context) error {
	if ok, err := d.enter("context"); !ok || err != nil {
		return err
	}
	for {
		name, done, err := d.name()
		if err != nil || done {
			return err
		}
		switch string(name) {
		case "ip":
			c.IP, err = d.str("context.ip")
		case "userAgent":
			c.UserAgent, err = d.str("context.userAgent")
		case "locale":
			c.Locale, err = d.str("context.locale")
		case "timezone":
			c.Timezone, err = d.str("context.timezone")
		case "page":
			err = d.page(&c.Page)
		case "campaign":
			err = d.campaign(&c.Campaign)
		case "library":
			err = d.library(&c.Library)
		case "consent":
			c.Consent, err = d.object("context.consent")
		case "consentManagement":
			c.ConsentManagement, err = d.object("context.consentManagement")
		case "traits":
			d.ctxTr, err = d.object("context.traits")
		default:
			err = d.other("context", name)
		}
		if err != nil {
			return err
		}
	}
}

func (d *decoder) page(p *Page) error {
	if ok, err := d.enter("context.page"); !ok || err != nil {
		return err
	}
	for {
		name, done, err := d.name()
		if err != nil || done {
			return err
		}
		switch string(name) {
		case "path":
			p.Path, err = d.str("context.page.path")
		case "url":
			p.URL, err = d.str("context.page.url")
		case "referrer":
			p.Referrer, err = d.str("context.page.referrer")
		case "title":
			p.Title, err = d.str("context.page.title")
		case "search":
			p.Search, err = d.str("context.page.search")
		default:
			err = d.other("context.page", name)
		}
		if err != nil {
			return err
		}
	}
}

func (d *decoder) campaign(c *Campaign) error {
	if ok, err := d.enter("context.campaign"); !ok || err != nil {
		return err
	}
	for {
		name, done, err := d.name()
		if err != nil || done {
			return err
		}
		switch string(name) {
		case "name":
			c.Name, err = d.str("context.campaign.name")
		case "source":
			c.Source, err = d.str("context.campaign.source")
		case "medium":
			c.Medium, err = d.str("context.campaign.medium")
		case "term":
			c.Term, err = d.str("context.campaign.term")
		case "content":
			c.Content, err = d.str("context.campaign.content")
		default:
			err = d.other("context.campaign", name)
		}
		if err != nil {
			return err
		}
	}
}

func (d *decoder) library(l *Library) error {
	if ok, err := d.enter("context.library"); !ok || err != nil {
		return err
	}
	for {
		name, done, err := d.name()
		if err != nil || done {
			return err
		}
		switch string(name) {
		case "name":
			l.Name, err = d.str("context.library.name")
		case "version":
			l.Version, err = d.str("context.library.version")
		default:
			err = d.other("context.library", name)
		}
		if err != nil {
			return err
		}
	}
}

// enter consumes the '{' of a nested object and reports true. For null it
// consumes the value and reports false; for any other kind it also records
// a problem.
func (d *decoder) enter(field string) (bool, error) {
	switch d.dec.PeekKind() {
	case '{':
		_, err := d.dec.ReadToken()
		return err == nil, syntax(err)
	case 'n':
		return false, d.skip()
	default:
		if err := d.skip(); err != nil {
			return false, err
		}
		d.problem(field, "must be an object")
		return false, nil
	}
}

// expectObject consumes the '{' starting the body.
func (d *decoder) expectObject() error {
	switch d.dec.PeekKind() {
	case '{':
		_, err := d.dec.ReadToken()
		return syntax(err)
	case 0:
		_, err := d.dec.ReadToken()
		return syntax(err)
	default:
		if err := d.skip(); err != nil {
			return err
		}
		return &FieldError{Field: "body", Problem: "must be a JSON object"}
	}
}

// eof checks nothing but whitespace follows the top-level value.
func (d *decoder) eof() error {
	_, err := d.dec.ReadToken()
	switch {
	case err == io.EOF:
		return nil
	case err == nil:
		return fail(ErrMalformedJSON, "body is not valid JSON: data follows the top-level value")
	default:
		return syntax(err)
	}
}

// name reads the next member name of the current object, or reports done
// at its '}'. The returned bytes are valid until the next read.
func (d *decoder) name() ([]byte, bool, error) {
	if d.dec.PeekKind() == '}' {
		_, err := d.dec.ReadToken()
		return nil, true, syntax(err)
	}
	v, err := d.dec.ReadValue()
	if err != nil {
		return nil, false, syntax(err)
	}
	if bytes.IndexByte(v, '\\') < 0 {
		return v[1 : len(v)-1], false, nil
	}
	d.scratch, _ = jsontext.AppendUnquote(d.scratch[:0], v)
	return d.scratch, false, nil
}

func (d *decoder) skip() error { return syntax(d.dec.SkipValue()) }

// other reads the value of member name of the object at path parent ("" for
// the event itself), a member Vigie does not use: it is dropped, but held
// to the same JSON limits as every value of an event (MaxDepth,
// MaxNumberLength), so that the rule is the same everywhere.
func (d *decoder) other(parent string, name []byte) error {
	switch d.dec.PeekKind() {
	case '{', '[', '0':
	default:
		return d.skip()
	}
	// name stays valid: jsontext parses d.src (a bytes.Buffer) in place,
	// and d.scratch is only rewritten by the next d.name.
	v, err := d.dec.ReadValue()
	if err != nil {
		return syntax(err)
	}
	if d.prob == nil && !withinLimits(v) {
		field := string(name)
		if parent != "" {
			field = parent + "." + field
		}
		d.problem(locate(field, v))
	}
	return nil
}

func (d *decoder) problem(field, problem string) {
	if d.prob == nil {
		d.prob = &FieldError{Field: field, Problem: problem}
	}
}

// keep copies the quoted JSON string v, unquoted, into the arena and
// returns it as a string without a further allocation.
func (d *decoder) keep(v jsontext.Value) string {
	start := len(d.arena)
	if bytes.IndexByte(v, '\\') < 0 {
		d.arena = append(d.arena, v[1:len(v)-1]...)
	} else {
		// v was validated by the decoder, so unquoting cannot fail.
		d.arena, _ = jsontext.AppendUnquote(d.arena, v)
	}
	return d.view(start)
}

// view returns arena[start:] as a string sharing the arena's memory. This
// is safe because the arena is append-only: bytes below len(d.arena) are
// never written again, and the arena is never pooled.
func (d *decoder) view(start int) string {
	n := len(d.arena) - start
	if n == 0 {
		return ""
	}
	return unsafe.String(&d.arena[start], n)
}

// str reads a string (or null) member value.
func (d *decoder) str(field string) (string, error) {
	v, err := d.dec.ReadValue()
	if err != nil {
		return "", syntax(err)
	}
	switch v.Kind() {
	case '"':
		return d.keep(v), nil
	case 'n':
		return "", nil
	default:
		d.problem(field, "must be a string")
		return "", nil
	}
}

// id reads an identifier: a string, or a number kept as decimal text.
func (d *decoder) id(field string) (string, error) {
	v, err := d.dec.ReadValue()
	if err != nil {
		return "", syntax(err)
	}
	switch v.Kind() {
	case '"':
		return d.keep(v), nil
	case '0':
		start := len(d.arena)
		if isInteger(v) {
			d.arena = append(d.arena, v...)
		} else {
			f, err := strconv.ParseFloat(string(v), 64)
			if err != nil { // out of range
				d.problem(field, "number out of range")
				return "", nil
			}
			d.arena = strconv.AppendFloat(d.arena, f, 'f', -1, 64)
		}
		return d.view(start), nil
	case 'n':
		return "", nil
	default:
		d.problem(field, "must be a string or number")
		return "", nil
	}
}

func isInteger(v []byte) bool {
	if len(v) > 0 && v[0] == '-' {
		v = v[1:]
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(v) > 0
}

// time reads an ISO-8601 time string (or null).
func (d *decoder) time(field string) (time.Time, error) {
	v, err := d.dec.ReadValue()
	if err != nil {
		return time.Time{}, syntax(err)
	}
	switch v.Kind() {
	case '"':
	case 'n':
		return time.Time{}, nil
	default:
		d.problem(field, "not a valid ISO-8601 time")
		return time.Time{}, nil
	}
	var s string
	if raw := v[1 : len(v)-1]; bytes.IndexByte(raw, '\\') < 0 && len(raw) > 0 {
		// Parse straight from the decoder's buffer: parseTime retains
		// nothing of s (errors are discarded).
		s = unsafe.String(&raw[0], len(raw))
	} else {
		s = d.keep(v)
	}
	t, ok := parseTime(s)
	if !ok {
		d.problem(field, "not a valid ISO-8601 time")
	}
	return t, nil
}

// object reads a JSON object (or null) member value and returns a copy of
// its raw text.
func (d *decoder) object(field string) (jsontext.Value, error) {
	v, err := d.dec.ReadValue()
	if err != nil {
		return nil, syntax(err)
	}
	switch v.Kind() {
	case '{':
		if !withinLimits(v) {
			d.problem(locate(field, v))
			return nil, nil
		}
		start := len(d.arena)
		d.arena = append(d.arena, v...)
		end := len(d.arena)
		return jsontext.Value(d.arena[start:end:end]), nil
	case 'n':
		return nil, nil
	default:
		d.problem(field, "must be an object")
		return nil, nil
	}
}

// canonicalType maps a type to its lowercase constant without allocating
// for the known types.
func canonicalType(s string) string {
	for _, t := range [...]string{TypeTrack, TypePage, TypeIdentify, TypeScreen, TypeGroup, TypeAlias} {
		if strings.EqualFold(s, t) {
			return t
		}
	}
	return strings.ToLower(s)
}

// syntax wraps a jsontext error in ErrMalformedJSON. Only the byte offset is
// kept: the decoder's own message may quote member names or input bytes.
func syntax(err error) error {
	if err == nil {
		return nil
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fail(ErrMalformedJSON, "body is not valid JSON: it ends too early")
	}
	var se *jsontext.SyntacticError
	if errors.As(err, &se) {
		return fail(ErrMalformedJSON, "body is not valid JSON (at byte %d)", se.ByteOffset)
	}
	return ErrMalformedJSON
}
