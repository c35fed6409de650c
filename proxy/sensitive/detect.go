package sensitive

import (
	"fmt"
	"slices"
	"strings"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/vigie-dev/vigie/proxy/pseudonymize"
)

// Policy is a site's handling of special categories.
type Policy struct {
	// Actions is each category's action. Default: DefaultAction.
	Actions [NumCategories]Action
	// Names, Values and Page switch the keyword layers on. Default: all
	// on. The sensitive_paths layer applies whenever Paths is not empty.
	Names, Values, Page bool
	// Paths are the site's own sensitive sections. Default none.
	Paths []PathRule
}

// DefaultPolicy is the policy documented on Policy's fields.
func DefaultPolicy() Policy {
	p := Policy{Names: true, Values: true, Page: true}
	for c := Category(0); c < NumCategories; c++ {
		p.Actions[c] = DefaultAction(c)
	}
	return p
}

// RequiresConsent reports whether a category's action is RequireConsent
// (the purpose "sensitive" must then exist).
func (p Policy) RequiresConsent() bool {
	return slices.Contains(p.Actions[:], RequireConsent)
}

// Detector finds special categories in hits for one site's policy. It is
// safe for concurrent use.
type Detector struct {
	policy Policy
	paths  []pathRule
	t      *trie
}

// New compiles p.
func New(p Policy) (*Detector, error) {
	d := &Detector{policy: p, t: builtinTrie}
	for _, r := range p.Paths {
		c, err := compilePath(r)
		if err != nil {
			return nil, err
		}
		d.paths = append(d.paths, c)
	}
	return d, nil
}

// Policy is the detector's policy.
func (d *Detector) Policy() Policy { return d.policy }

// Input is what of a hit is scanned. Texts are as received (before
// scrubbing): nothing of them is kept by the detector except redacted
// examples.
type Input struct {
	// Properties and Traits are raw JSON objects (validated), or nil.
	Properties, Traits []byte
	// Path is the page's URL path (%XX escapes allowed).
	Path string
	// Title is the page title; Name the page or screen name.
	Title, Name string
}

// Page fields a detection can name.
const (
	pagePath = iota
	pageTitle
	pageName
	numPageFields
)

var pageFieldNames = [numPageFields]string{"page.path", "page.title", "page.name"}

// Hit is one detection, as the DPO's view shows it: never a value, never
// the visitor.
type Hit struct {
	// Category and Layer of the detection.
	Category Category
	Layer    Layer
	// Field is where: a property or trait name with its parents
	// ("properties.form.medical_history", "traits.religion"; "[]" for an
	// array element), or page.path, page.title, page.name. Scrubbed as
	// every stored name is.
	Field string
	// Pattern is the sensitive_paths pattern that matched, if any.
	Pattern string
	// Example is a redacted example: for names and page texts, the text
	// with each match replaced by its category's marker and then scrubbed
	// ("traits.[health]_history", "/conditions/[health]-type-2"); for a
	// value, the marker alone (a value is never shown).
	Example string
}

// maxExample bounds an example's length.
const maxExample = 160

// member is a property or trait that matched (for DropField).
type member struct {
	start int
	cats  Categories
}

// Findings are the detections in one hit. The zero value is empty and
// costs nothing.
type Findings struct {
	// Categories is every category detected, whatever the layer.
	Categories Categories
	// Layers are the categories detected per layer.
	Layers [NumLayers]Categories
	// Hits holds one Hit per category and layer detected (the first).
	Hits []Hit

	props, traits []member
	page          [numPageFields]Categories
}

// Any reports whether anything was detected.
func (f *Findings) Any() bool { return f.Categories != 0 }

// Scan looks for special categories in in and adds them to f. When nothing
// matches it allocates nothing.
func (d *Detector) Scan(in *Input, f *Findings) {
	pol := &d.policy
	var found [NumLayers]Categories
	if pol.Names || pol.Values {
		for _, raw := range [2][]byte{in.Properties, in.Traits} {
			if len(raw) > 0 {
				j := jscan{d: d, s: bytesString(raw)}
				j.value(0, 0)
				found[LayerNames] |= j.found[LayerNames]
				found[LayerValues] |= j.found[LayerValues]
			}
		}
	}
	var page [numPageFields]Categories
	if pol.Page {
		var buf [fastLen]byte
		if in.Path != "" {
			page[pagePath] = d.t.matchText(&buf, in.Path, srcURL, LayerPage)
		}
		if in.Title != "" {
			page[pageTitle] = d.t.matchText(&buf, in.Title, srcPlain, LayerPage)
		}
		switch {
		case in.Name == in.Title:
			page[pageName] = page[pageTitle] // scanned once
		case in.Name != "":
			page[pageName] = d.t.matchText(&buf, in.Name, srcPlain, LayerPage)
		}
		found[LayerPage] = page[pagePath] | page[pageTitle] | page[pageName]
	}
	var declared Categories
	if in.Path != "" {
		for i := range d.paths {
			if d.paths[i].match(in.Path) {
				declared = declared.With(d.paths[i].rule.Category)
			}
		}
		found[LayerSensitivePaths] = declared
	}
	var all Categories
	for _, c := range found {
		all |= c
	}
	if all == 0 {
		return
	}
	d.collect(in, f, found, page)
}

// collect is Scan's second pass, once something matched: it records the
// hits, their examples and what DropField would remove.
func (d *Detector) collect(in *Input, f *Findings, found [NumLayers]Categories, page [numPageFields]Categories) {
	for l, c := range found {
		f.Layers[l] |= c
		f.Categories |= c
	}
	for i, raw := range [2][]byte{in.Properties, in.Traits} {
		if len(raw) == 0 || found[LayerNames]|found[LayerValues] == 0 {
			continue
		}
		root := [2]string{"properties", "traits"}[i]
		j := jscan{d: d, s: bytesString(raw), collect: true, root: root}
		j.value(0, 0)
		for _, h := range j.hits {
			f.add(h)
		}
		if i == 0 {
			f.props = append(f.props, j.members...)
		} else {
			f.traits = append(f.traits, j.members...)
		}
	}
	texts := [numPageFields]string{in.Path, in.Title, in.Name}
	modes := [numPageFields]uint8{srcURL, srcPlain, srcPlain}
	for k, cats := range page {
		if cats == 0 {
			continue
		}
		f.page[k] |= cats
		ex := example(redact(texts[k], d.t.spans(newNorm(texts[k], modes[k]), LayerPage)))
		for c := Category(0); c < NumCategories; c++ {
			if cats.Has(c) {
				f.add(Hit{Category: c, Layer: LayerPage, Field: pageFieldNames[k], Example: ex})
			}
		}
	}
	for i := range d.paths {
		r := &d.paths[i]
		if found[LayerSensitivePaths].Has(r.rule.Category) && r.match(in.Path) {
			f.page[pagePath] = f.page[pagePath].With(r.rule.Category)
			f.add(Hit{Category: r.rule.Category, Layer: LayerSensitivePaths, Field: "page.path",
				Pattern: r.rule.Pattern, Example: r.rule.Pattern})
		}
	}
}

// add keeps h if its category and layer have no hit yet.
func (f *Findings) add(h Hit) {
	for _, o := range f.Hits {
		if o.Category == h.Category && o.Layer == h.Layer {
			return
		}
	}
	f.Hits = append(f.Hits, h)
}

// example scrubs and bounds a redacted example.
func example(s string) string {
	s = pseudonymize.ScrubText(s, nil)
	if len(s) > maxExample {
		cut := maxExample
		for cut > 0 && s[cut]&0xC0 == 0x80 {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// Verdict is what a site's policy makes of some findings.
type Verdict struct {
	// DropEvent: store nothing.
	DropEvent bool
	// Anonymous: keep the event anonymous only.
	Anonymous bool
	// DropFields are the categories whose matches are removed.
	DropFields Categories
}

// Verdict applies the policy's actions to f; sensitiveGranted says the
// event's consent grants the purpose "sensitive".
func (d *Detector) Verdict(f *Findings, sensitiveGranted bool) Verdict {
	var v Verdict
	for c := Category(0); c < NumCategories; c++ {
		if !f.Categories.Has(c) {
			continue
		}
		switch d.policy.Actions[c] {
		case DropEvent:
			v.DropEvent = true
		case Anonymous:
			v.Anonymous = true
		case RequireConsent:
			v.Anonymous = v.Anonymous || !sensitiveGranted
		case DropField:
			v.DropFields = v.DropFields.With(c)
		}
	}
	return v
}

// StripProperties returns the properties raw (as given to Scan) without
// the members where a category of cats matched (names or values), or raw
// itself when there are none.
func (f *Findings) StripProperties(raw []byte, cats Categories) []byte {
	return strip(raw, f.props, cats)
}

// StripTraits is StripProperties for the traits.
func (f *Findings) StripTraits(raw []byte, cats Categories) []byte {
	return strip(raw, f.traits, cats)
}

// PageFields says which page texts a category of cats matched in.
func (f *Findings) PageFields(cats Categories) (path, title, name bool) {
	return f.page[pagePath]&cats != 0, f.page[pageTitle]&cats != 0, f.page[pageName]&cats != 0
}

// String summarises f for logs and tests ("health:names,page").
func (f *Findings) String() string {
	var parts []string
	for c := Category(0); c < NumCategories; c++ {
		if !f.Categories.Has(c) {
			continue
		}
		var ls []string
		for l := Layer(0); l < NumLayers; l++ {
			if f.Layers[l].Has(c) {
				ls = append(ls, l.String())
			}
		}
		parts = append(parts, c.String()+":"+strings.Join(ls, ","))
	}
	return strings.Join(parts, " ")
}

// GoString is String, for %#v.
func (f *Findings) GoString() string { return fmt.Sprintf("sensitive.Findings{%s}", f.String()) }

// jsonPath renders a field path from its key spans (s[start:end] of each
// key's content, or an array element when start < 0).
func jsonPath(root, s string, keys []keySpan) string {
	b := []byte(root)
	for _, k := range keys {
		if k.start < 0 {
			b = append(b, "[]"...)
			continue
		}
		b = append(b, '.')
		name := s[k.start:k.end]
		if strings.IndexByte(name, '\\') >= 0 {
			if u, err := jsontext.AppendUnquote(nil, `"`+name+`"`); err == nil {
				name = string(u)
			}
		}
		b = append(b, name...)
	}
	return string(b)
}
