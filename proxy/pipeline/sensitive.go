package pipeline

import (
	"strings"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/proxy/collect"
	"github.com/vigie-dev/vigie/proxy/sensitive"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// newDetector builds a site's detector (nil policy: the default one).
func newDetector(p *sensitive.Policy) (*sensitive.Detector, error) {
	pol := sensitive.DefaultPolicy()
	if p != nil {
		pol = *p
	}
	return sensitive.New(pol)
}

// SensitivePolicy is the site's handling of special categories of data.
func (s *Site) SensitivePolicy() sensitive.Policy { return s.sens.Policy() }

// reasonSensitive is the reason of a decision the sensitive-data action
// made (anonymous, or dropped).
const reasonSensitive = "sensitive data"

// sensitive scans m for special categories of data (names, values, page
// context, the site's sensitive_paths) into res.Sensitive and applies the
// site's actions: drop (true: store nothing), anonymous (the decision
// returned is anonymous; res.Decision stays the visitor's choice),
// require_consent (anonymous unless the purpose "sensitive" is granted)
// or drop_field (the message returned is a copy without what matched).
// Nothing matched: m and d unchanged, nothing allocated.
func (s *Site) sensitive(m *collect.Message, d consent.Decision, res *Result) (*collect.Message, consent.Decision, bool) {
	cp, fromProps := pageContext(m)
	in := sensitive.Input{Properties: m.Properties, Traits: m.Traits, Path: cp.Path, Title: cp.Title}
	if in.Path == "" {
		in.Path = urlPath(cp.URL)
	}
	if m.Type == "page" || m.Type == "screen" {
		in.Name = m.Name
	}
	f := &res.Sensitive
	s.sens.Scan(&in, f)
	if !f.Any() {
		return m, d, false
	}
	granted := d.Outcome == consent.Pseudonymous && d.Granted.Has(consent.Sensitive)
	v := s.sens.Verdict(f, granted)
	if v.DropEvent {
		return m, d, true
	}
	if v.Anonymous && d.Outcome == consent.Pseudonymous {
		d = consent.Decision{Outcome: consent.Anonymous, Granted: consent.NewSet(consent.Necessary), Reason: reasonSensitive}
	}
	if v.DropFields == 0 {
		return m, d, false
	}
	mm := *m
	mm.Properties = f.StripProperties(m.Properties, v.DropFields)
	mm.Traits = f.StripTraits(m.Traits, v.DropFields)
	path, title, name := f.PageFields(v.DropFields)
	if path {
		// The page's address goes whole: path, URL and query.
		mm.Context.Page.Path, mm.Context.Page.URL, mm.Context.Page.Search = "", "", ""
		if fromProps {
			mm.Properties = sensitive.DropMembers(mm.Properties, "path", "url", "search")
		}
	}
	if title {
		mm.Context.Page.Title = ""
		if fromProps {
			mm.Properties = sensitive.DropMembers(mm.Properties, "title")
		}
	}
	if name {
		mm.Name = ""
	}
	return &mm, d, false
}

// markSensitive lists the categories detected on the event, so that no
// later stage profiles, syncs or models it.
func markSensitive(ev *vigiev1.Event, f *sensitive.Findings) {
	if f.Any() {
		ev.Sensitive = f.Categories.Names()
	}
}

// urlPath is the path of a URL (absolute or not), without query or
// fragment.
func urlPath(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	if i := strings.Index(u, "://"); i >= 0 {
		u = u[i+3:]
		j := strings.IndexByte(u, '/')
		if j < 0 {
			return ""
		}
		return u[j:]
	}
	return u
}
