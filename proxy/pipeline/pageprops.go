package pipeline

import (
	"bytes"
	"io"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/vigie-dev/vigie/proxy/collect"
)

// pageContext is the page a message describes: its context.page, or for a
// page call without one (server-side SDKs) the page fields of its
// properties.
func pageContext(m *collect.Message) (p collect.Page, fromProperties bool) {
	cp := m.Context.Page
	if noPage(cp) && m.Type == "page" {
		return pageFromProperties(m.Properties), true
	}
	return cp, false
}

// noPage reports whether p names no page at all.
func noPage(p collect.Page) bool { return p.URL == "" && p.Path == "" && p.Referrer == "" }

// pageFromProperties reads Segment's page properties (path, url, referrer,
// title, search: the fields server-side SDKs send for page calls, which
// carry no context.page) from the top level of a properties object. Fields
// that are not strings are ignored; invalid JSON gives an empty Page.
func pageFromProperties(raw []byte) collect.Page {
	var p collect.Page
	if len(raw) == 0 {
		return p
	}
	dec := jsontext.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return collect.Page{}
	}
	for dec.PeekKind() != '}' {
		name, err := dec.ReadToken()
		if err != nil {
			return collect.Page{}
		}
		var dst *string
		switch name.String() {
		case "path":
			dst = &p.Path
		case "url":
			dst = &p.URL
		case "referrer":
			dst = &p.Referrer
		case "title":
			dst = &p.Title
		case "search":
			dst = &p.Search
		}
		if dst == nil || dec.PeekKind() != '"' {
			if err := dec.SkipValue(); err != nil {
				return collect.Page{}
			}
			continue
		}
		v, err := dec.ReadToken()
		if err != nil {
			return collect.Page{}
		}
		*dst = v.String()
	}
	if _, err := dec.ReadToken(); err != nil { // the closing '}'
		return collect.Page{}
	}
	if _, err := dec.ReadToken(); err != io.EOF { // nothing after it
		return collect.Page{}
	}
	return p
}
