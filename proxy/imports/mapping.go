package imports

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	_ "time/tzdata" // timestamp.timezone works without the system's zoneinfo
	"unicode/utf8"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/pseudonymize"
)

// Mapping is an import's description of its file: how to read it, what
// each row becomes (a track event with its properties, or an identify
// with its traits), who it is about, on which lawful basis, and which
// attributes it sets on the profile. The API takes it as JSON, the CLI as
// YAML with the same names (README.md, "Import from your systems").
type Mapping struct {
	// Format is csv or ndjson. Default: from the file name (.ndjson,
	// .jsonl: ndjson), else csv.
	Format string `json:"format,omitempty"`
	// Delimiter is the CSV field separator, one character. Default ",".
	Delimiter string `json:"delimiter,omitempty"`
	// Decimal is the decimal separator of numbers, "." (default) or ",".
	Decimal string `json:"decimal,omitempty"`
	// Event is the track event each row becomes ("Order Completed"); or
	// Type: identify. Exactly one of them.
	Event string `json:"event,omitempty"`
	// Type is track (with Event) or identify.
	Type string `json:"type,omitempty"`
	// Identity names the person of each row (required).
	Identity *Identity `json:"identity"`
	// NaturalKey are the columns that identify a row: importing a row with
	// the same values again adds nothing. Default: every mapped value.
	NaturalKey []string `json:"natural_key,omitempty"`
	// Timestamp is the event's time. Default: when the row is imported.
	Timestamp *Timestamp `json:"timestamp,omitempty"`
	// Properties of the track event, by name: a column (text) or
	// {column, type}.
	Properties map[string]jsontext.Value `json:"properties,omitempty"`
	// Traits of the identify event, by name, like Properties; personal
	// traits (e-mail, phone, names) go to the encrypted vault.
	Traits map[string]jsontext.Value `json:"traits,omitempty"`
	// Attributes are set on the subject's profile (scores, enrichments),
	// by name, like Properties: the "traits of type attribute".
	Attributes map[string]jsontext.Value `json:"attributes,omitempty"`
	// LawfulBasis of each row (required).
	LawfulBasis *LawfulBasis `json:"lawful_basis"`
	// Purposes the rows are imported for (required): a row is imported
	// only if its lawful basis grants all of them.
	Purposes []string `json:"purposes"`
	// Retention of the imported records, counted from each row's time, at
	// most retention.imported (e.g. "180d"). Default retention.imported.
	Retention string `json:"retention,omitempty"`
}

// Identity is the identity column of a mapping.
type Identity struct {
	// Column holding the identifier.
	Column string `json:"column"`
	// Kind is user_id (the site's user id, as identify's userId) or email
	// (resolved through the blind index).
	Kind string `json:"kind"`
}

// Timestamp says where a row's time is and how it is written.
type Timestamp struct {
	// Column holding the time.
	Column string `json:"column"`
	// Format: rfc3339 (default; a date alone, or a time without zone or
	// seconds, "2026-11-28 10:12", is accepted too), unix, unix_ms, or a
	// Go layout ("02/01/2006 15:04").
	Format string `json:"format,omitempty"`
	// Timezone of times written without an offset (IANA name). Default UTC.
	Timezone string `json:"timezone,omitempty"`
}

// LawfulBasis is the lawful basis of each row: a consent column with its
// date (and source), or a contract.
type LawfulBasis struct {
	// Basis is consent (default when Column is set) or contract.
	Basis string `json:"basis,omitempty"`
	// Column holding the consent: yes/no (true/false, 1/0, granted/denied,
	// opt-in/opt-out) for the mapping's purposes, or a list of the
	// purposes granted (separated by ; , | or spaces).
	Column string `json:"column,omitempty"`
	// DateColumn holding when the consent was given (required with
	// Column): the ledger keeps it, and a choice older than the ledger's
	// or than 13 months is not used.
	DateColumn string `json:"date_column,omitempty"`
	// DateFormat of DateColumn, as Timestamp.Format. Default rfc3339.
	DateFormat string `json:"date_format,omitempty"`
	// SourceColumn holding where the consent was collected (optional;
	// kept in the ledger's source, scrubbed).
	SourceColumn string `json:"source_column,omitempty"`
}

// fieldDoc is the long form of a property, trait or attribute.
type fieldDoc struct {
	Column string `json:"column"`
	Type   string `json:"type,omitempty"`
}

// Field types.
const (
	typeString    = "string"
	typeNumber    = "number"
	typeInteger   = "integer"
	typeBoolean   = "boolean"
	typeTimestamp = "timestamp"
)

var fieldTypes = []string{typeString, typeNumber, typeInteger, typeBoolean, typeTimestamp}

// Identity kinds.
const (
	KindUserID = "user_id"
	KindEmail  = "email"
)

// Formats.
const (
	FormatCSV    = "csv"
	FormatNDJSON = "ndjson"
)

// Limits of a mapping.
const (
	// MaxMappingBytes bounds a mapping document.
	MaxMappingBytes = 64 << 10
	// maxFields bounds the properties, traits and attributes together.
	maxFields = 256
	// maxNameLen bounds a column or field name.
	maxNameLen = 256
)

// Options are what the server knows that a mapping is checked against.
// The zero value checks the document alone (the CLI, before uploading).
type Options struct {
	// Purposes are the configured purposes; empty: any registered one.
	Purposes []string
	// ProfilePurposes allow a profile (attributes need one of them).
	// Default personalization, marketing.
	ProfilePurposes []string
	// MaxRetention is retention.imported (0: forever).
	MaxRetention time.Duration
	// FileName is the uploaded file's name, for the default format.
	FileName string
}

// field is one compiled property, trait or attribute.
type field struct {
	name string // in the event or profile
	path string // in the mapping, for errors ("properties.total")
	col  int    // index in plan.columns
	typ  string
}

// timeSpec parses times of one column.
type timeSpec struct {
	col    int
	path   string
	layout string // "" for rfc3339 (lenient), "unix", "unix_ms" or a Go layout
	loc    *time.Location
}

// plan is a compiled mapping: every column it reads by index.
type plan struct {
	doc       Mapping
	format    string
	delimiter rune
	comma     bool // decimal comma
	typ       string
	event     string
	columns   []string // distinct columns read, in first-use order
	colPaths  []string // the mapping field that first named each column
	identity  int
	kind      string
	natural   []int
	ts        *timeSpec
	props     []field
	traits    []field
	attrs     []field
	contract  bool
	consent   int // -1 without
	date      *timeSpec
	source    int // -1 without
	purposes  consent.Set
	retention time.Duration // 0: MaxRetention
}

// column returns the index of name in p.columns, adding it; path is the
// mapping field naming it.
func (p *plan) column(name, path string) int {
	if i := slices.Index(p.columns, name); i >= 0 {
		return i
	}
	p.columns = append(p.columns, name)
	p.colPaths = append(p.colPaths, path)
	return len(p.columns) - 1
}

// ParseMapping reads and checks a mapping (JSON) against opts. A problem is
// a *MappingError naming the field.
func ParseMapping(data []byte, opts Options) (*Mapping, error) {
	p, err := compile(data, opts)
	if err != nil {
		return nil, err
	}
	return &p.doc, nil
}

// compile parses data into a plan.
func compile(data []byte, opts Options) (*plan, error) {
	if len(data) > MaxMappingBytes {
		return nil, bad("mapping", fmt.Sprintf("larger than %d bytes", MaxMappingBytes))
	}
	var m Mapping
	if err := json.Unmarshal(data, &m, json.RejectUnknownMembers(true)); err != nil {
		return nil, jsonProblem("", err)
	}
	p := &plan{doc: m, consent: -1, source: -1}
	checkName := func(path, v string) error {
		switch {
		case strings.TrimSpace(v) == "":
			return bad(path, "required")
		case len(v) > maxNameLen || !utf8.ValidString(v):
			return bad(path, fmt.Sprintf("at most %d bytes of UTF-8", maxNameLen))
		}
		return nil
	}
	switch f := strings.ToLower(m.Format); f {
	case "":
		p.format = FormatCSV
		if n := strings.ToLower(opts.FileName); strings.HasSuffix(n, ".ndjson") || strings.HasSuffix(n, ".jsonl") {
			p.format = FormatNDJSON
		}
	case FormatCSV, FormatNDJSON:
		p.format = f
	default:
		return nil, bad("format", "csv or ndjson")
	}
	p.delimiter = ','
	if m.Delimiter != "" {
		r, n := utf8.DecodeRuneInString(m.Delimiter)
		if n != len(m.Delimiter) || r == '"' || r == '\r' || r == '\n' || r == utf8.RuneError {
			return nil, bad("delimiter", `one character, not a quote or a line break (e.g. "," ";" "\t")`)
		}
		p.delimiter = r
	}
	switch m.Decimal {
	case "", ".":
	case ",":
		p.comma = true
		if p.delimiter == ',' && p.format == FormatCSV {
			return nil, bad("decimal", `"," needs another delimiter (e.g. ";")`)
		}
	default:
		return nil, bad("decimal", `"." or ","`)
	}
	switch t := strings.ToLower(m.Type); {
	case (t == "" || t == "track") && m.Event != "":
		p.typ, p.event = "track", m.Event
		if err := checkName("event", m.Event); err != nil {
			return nil, err
		}
	case t == "identify" && m.Event == "":
		p.typ = "identify"
	case t == "identify":
		return nil, bad("event", "not with type identify (an identify has traits, no event name)")
	case t == "" || t == "track":
		return nil, bad("event", `required: the event each row becomes (e.g. "Order Completed"), or type: identify`)
	default:
		return nil, bad("type", "track (with event) or identify")
	}
	if m.Identity == nil {
		return nil, bad("identity", "required: {column, kind: user_id or email}")
	}
	if err := checkName("identity.column", m.Identity.Column); err != nil {
		return nil, err
	}
	p.identity = p.column(m.Identity.Column, "identity.column")
	switch m.Identity.Kind {
	case KindUserID, KindEmail:
		p.kind = m.Identity.Kind
	case "":
		return nil, bad("identity.kind", "required: user_id or email")
	default:
		return nil, bad("identity.kind", "user_id or email")
	}
	if m.Timestamp != nil {
		ts, err := timeSpecOf(p, "timestamp.column", m.Timestamp.Column, "timestamp.format", m.Timestamp.Format,
			"timestamp.timezone", m.Timestamp.Timezone)
		if err != nil {
			return nil, err
		}
		p.ts = ts
	}
	n := 0
	for _, g := range []struct {
		path string
		docs map[string]jsontext.Value
		out  *[]field
	}{{"properties", m.Properties, &p.props}, {"traits", m.Traits, &p.traits}, {"attributes", m.Attributes, &p.attrs}} {
		names := make([]string, 0, len(g.docs))
		for name := range g.docs {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			path := g.path + "." + name
			if n++; n > maxFields {
				return nil, bad(g.path, fmt.Sprintf("more than %d properties, traits and attributes", maxFields))
			}
			if err := checkName(path, name); err != nil {
				return nil, bad(g.path, "a name is empty or longer than 256 bytes")
			}
			f, err := fieldOf(p, path, name, g.docs[name])
			if err != nil {
				return nil, err
			}
			*g.out = append(*g.out, f)
		}
	}
	if len(p.traits) > 0 && p.typ != "identify" {
		return nil, bad("traits", "only with type identify (a track event has properties)")
	}
	if len(p.props) > 0 && p.typ == "identify" {
		return nil, bad("properties", "only with a track event (an identify has traits)")
	}
	for i, c := range m.NaturalKey {
		path := fmt.Sprintf("natural_key[%d]", i)
		if err := checkName(path, c); err != nil {
			return nil, err
		}
		p.natural = append(p.natural, p.column(c, path))
	}
	if err := basisOf(p, m.LawfulBasis); err != nil {
		return nil, err
	}
	if err := purposesOf(p, m, opts); err != nil {
		return nil, err
	}
	if m.Retention != "" {
		d, err := config.ParseDuration(m.Retention)
		if err != nil || d <= 0 {
			return nil, bad("retention", "a duration such as 180d, 13mo or 2160h")
		}
		if opts.MaxRetention > 0 && d > opts.MaxRetention {
			return nil, bad("retention", fmt.Sprintf("at most retention.imported (%dd)", opts.MaxRetention/(24*time.Hour)))
		}
		p.retention = d
	}
	if err := noPersonalData(p); err != nil {
		return nil, err
	}
	return p, nil
}

// noPersonalData refuses a mapping whose names hold personal data (an
// e-mail in the event's name, a phone in a column's): the job keeps its
// mapping as sent, in clear, and shows it. A mapping names columns and
// fields, never a person. The error names the mapping field and the
// class found, never the value; field names are checked first, as the
// path of a column names its field.
func noPersonalData(p *plan) error {
	class := func(v string) string {
		var c pseudonymize.Counts
		if pseudonymize.ScrubText(v, &c) == v {
			return ""
		}
		for cl := range pseudonymize.NumClasses {
			if c.Of(cl) > 0 {
				return cl.String()
			}
		}
		return "personal data"
	}
	msg := func(what, cl string) string {
		return what + " holds personal data (" + cl + "); a mapping names columns and fields, never a person: rename it"
	}
	if cl := class(p.event); cl != "" {
		return bad("event", msg("the event's name", cl))
	}
	for _, g := range []struct {
		path   string
		fields []field
	}{{"properties", p.props}, {"traits", p.traits}, {"attributes", p.attrs}} {
		for _, f := range g.fields {
			if cl := class(f.name); cl != "" {
				return bad(g.path, msg("a name", cl))
			}
		}
	}
	for i, c := range p.columns {
		if cl := class(c); cl != "" {
			return bad(p.colPaths[i], msg("the column's name", cl))
		}
	}
	for path, ts := range map[string]*timeSpec{"timestamp.format": p.ts, "lawful_basis.date_format": p.date} {
		if ts != nil && ts.layout != "" {
			if cl := class(ts.layout); cl != "" {
				return bad(path, msg("the time format", cl))
			}
		}
	}
	return nil
}

// fieldOf compiles one property, trait or attribute: a column name, or
// {column, type}.
func fieldOf(p *plan, path, name string, raw jsontext.Value) (field, error) {
	f := field{name: name, path: path, typ: typeString}
	var col string
	switch raw.Kind() {
	case '"':
		if err := json.Unmarshal(raw, &col); err != nil {
			return f, bad(path, "a column name or {column, type}")
		}
	case '{':
		var d fieldDoc
		if err := json.Unmarshal(raw, &d, json.RejectUnknownMembers(true)); err != nil {
			return f, jsonProblem(path, err)
		}
		col = d.Column
		if d.Type != "" {
			if !slices.Contains(fieldTypes, d.Type) {
				return f, bad(path+".type", strings.Join(fieldTypes, ", "))
			}
			f.typ = d.Type
		}
		path += ".column"
	default:
		return f, bad(path, "a column name or {column, type}")
	}
	if strings.TrimSpace(col) == "" || len(col) > maxNameLen {
		return f, bad(path, "a column name is required (at most 256 bytes)")
	}
	f.col = p.column(col, path)
	return f, nil
}

// timeSpecOf compiles a time column: colPath, fmtPath and zonePath name
// the mapping fields of the column, format and time zone.
func timeSpecOf(p *plan, colPath, col, fmtPath, format, zonePath, zone string) (*timeSpec, error) {
	if strings.TrimSpace(col) == "" {
		return nil, bad(colPath, "required")
	}
	ts := &timeSpec{col: p.column(col, colPath), path: colPath, loc: time.UTC}
	switch f := strings.ToLower(format); {
	case f == "" || f == "rfc3339":
	case f == "unix" || f == "unix_ms":
		ts.layout = f
	case strings.Contains(format, "2006") || strings.Contains(format, "06"):
		ts.layout = format
	default:
		return nil, bad(fmtPath, `rfc3339, unix, unix_ms or a Go layout written with the reference time (e.g. "02/01/2006 15:04")`)
	}
	if zone != "" {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			return nil, bad(zonePath, "an IANA time zone such as Europe/Paris")
		}
		ts.loc = loc
	}
	return ts, nil
}

// basisOf compiles the lawful basis.
func basisOf(p *plan, lb *LawfulBasis) error {
	if lb == nil {
		return bad("lawful_basis", "required: {column, date_column[, source_column]} for consent, or {basis: contract}")
	}
	switch lb.Basis {
	case "contract":
		if lb.Column != "" || lb.DateColumn != "" || lb.SourceColumn != "" {
			return bad("lawful_basis", "a contract has no consent column")
		}
		p.contract = true
		return nil
	case "", "consent":
	default:
		return bad("lawful_basis.basis", "consent or contract")
	}
	if strings.TrimSpace(lb.Column) == "" {
		return bad("lawful_basis.column", "required for consent: the column holding each row's consent (or basis: contract)")
	}
	p.consent = p.column(lb.Column, "lawful_basis.column")
	if strings.TrimSpace(lb.DateColumn) == "" {
		return bad("lawful_basis.date_column", "required with a consent column: when each consent was given")
	}
	ts, err := timeSpecOf(p, "lawful_basis.date_column", lb.DateColumn, "lawful_basis.date_format", lb.DateFormat, "", "")
	if err != nil {
		return err
	}
	p.date = ts
	if lb.SourceColumn != "" {
		p.source = p.column(lb.SourceColumn, "lawful_basis.source_column")
	}
	return nil
}

// purposesOf compiles the purposes.
func purposesOf(p *plan, m Mapping, opts Options) error {
	if len(m.Purposes) == 0 {
		return bad("purposes", "required: what the rows are imported for (e.g. [marketing])")
	}
	for i, name := range m.Purposes {
		path := fmt.Sprintf("purposes[%d]", i)
		s, err := consent.ParseSet(name)
		if err != nil || name == string(consent.Necessary) {
			return bad(path, "not a configured purpose (necessary needs no lawful basis)")
		}
		if len(opts.Purposes) > 0 && !slices.Contains(opts.Purposes, strings.ToLower(strings.TrimSpace(name))) {
			return bad(path, "not a configured purpose")
		}
		p.purposes = consent.NewSet(append(setPurposes(p.purposes), setPurposes(s)...)...)
	}
	if len(p.attrs) > 0 {
		pp := opts.ProfilePurposes
		if len(pp) == 0 {
			pp = []string{string(consent.Personalization), string(consent.Marketing)}
		}
		ok := false
		for _, name := range pp {
			ok = ok || p.purposes.Has(consent.Purpose(name))
		}
		if !ok {
			return bad("attributes", "need a profile purpose ("+strings.Join(pp, " or ")+") in purposes")
		}
	}
	return nil
}

// setPurposes lists the purposes of s.
func setPurposes(s consent.Set) []consent.Purpose {
	var out []consent.Purpose
	for _, n := range s.Names() {
		out = append(out, consent.Purpose(n))
	}
	return out
}

// jsonProblem turns a JSON decoding error into a *MappingError naming the
// field (under prefix), never quoting the document.
func jsonProblem(prefix string, err error) error {
	field, problem := prefix, "not valid JSON"
	var se *json.SemanticError
	var sy *jsontext.SyntacticError
	switch {
	case errors.As(err, &se):
		field = join(prefix, pointerPath(se.JSONPointer))
		switch {
		case errors.Is(se.Err, json.ErrUnknownName):
			problem = "unknown field"
		case se.JSONKind != 0:
			problem = "wrong type (" + kindName(se.JSONKind) + ")"
		default:
			problem = "wrong type"
		}
	case errors.As(err, &sy):
		if at := join(prefix, pointerPath(sy.JSONPointer)); at != "" {
			problem = "not valid JSON (at " + at + ")"
		}
	}
	if field == "" {
		field = "mapping"
	}
	return bad(field, problem)
}

// join dots two paths.
func join(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "." + b
}

// pointerPath turns a JSON pointer (/properties/total/type) into a dotted
// path (properties.total.type); array indexes become [i].
func pointerPath(p jsontext.Pointer) string {
	var b strings.Builder
	for tok := range p.Tokens() {
		if tok != "" && strings.Trim(tok, "0123456789") == "" && b.Len() > 0 {
			b.WriteString("[" + tok + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	return b.String()
}

// kindName names a JSON kind for an error.
func kindName(k jsontext.Kind) string {
	switch k {
	case '"':
		return "got a string"
	case '0':
		return "got a number"
	case 't', 'f':
		return "got a boolean"
	case 'n':
		return "got null"
	case '{':
		return "got an object"
	case '[':
		return "got an array"
	}
	return "unexpected"
}
