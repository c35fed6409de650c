package plugins

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// ContactResolution is what the audit trail learns of contact details
// given to a plugin: who, where, which fields and how many subjects, never
// the values or the subjects.
type ContactResolution struct {
	// Plugin is the plugin's name.
	Plugin string
	// Site is the site of the subjects.
	Site string
	// Fields are the names of the fields given (email, phone, first_name,
	// last_name, traits.<name>), sorted.
	Fields []string
	// Count is how many subjects' details were given.
	Count int
	// Via is "sync" (attached to sync items) or "host" (the plugin's
	// ContactResolve call).
	Via string
}

// auditContacts tells Config.ContactAudit of the contacts in items, one
// record per site, before they are handed to plugin p.
func (rt *Runtime) auditContacts(ctx context.Context, p *proc, via string, items []*vigiev1.SyncItem) error {
	if rt.cfg.ContactAudit == nil {
		return nil
	}
	bySite := map[string]*ContactResolution{}
	var order []string
	for _, it := range items {
		c := it.GetContact()
		if c == nil {
			continue
		}
		site := itemSite(it)
		r := bySite[site]
		if r == nil {
			r = &ContactResolution{Plugin: p.spec.Name, Site: site, Via: via}
			bySite[site] = r
			order = append(order, site)
		}
		r.Count++
		for _, f := range contactFields(c) {
			if !slices.Contains(r.Fields, f) {
				r.Fields = append(r.Fields, f)
			}
		}
	}
	for _, site := range order {
		r := bySite[site]
		slices.Sort(r.Fields)
		if err := rt.cfg.ContactAudit(ctx, *r); err != nil {
			return fmt.Errorf("plugins: contact resolution not audited: %w", err)
		}
	}
	return nil
}

// itemSite is the site of a sync item.
func itemSite(it *vigiev1.SyncItem) string {
	switch {
	case it.GetSegmentChange() != nil:
		return it.GetSegmentChange().GetSite()
	case it.GetIdentify() != nil:
		return it.GetIdentify().GetSite()
	case it.GetPrivacy() != nil:
		return it.GetPrivacy().GetSite()
	case it.GetResync() != nil:
		return it.GetResync().GetSite()
	}
	return ""
}

// contactFields names the non-empty fields of c.
func contactFields(c *sdk.Contact) []string {
	var out []string
	for _, f := range []struct{ name, v string }{
		{"email", c.GetEmail()}, {"phone", c.GetPhone()}, {"first_name", c.GetFirstName()}, {"last_name", c.GetLastName()},
	} {
		if f.v != "" {
			out = append(out, f.name)
		}
	}
	var traits map[string]json.RawMessage
	if json.Unmarshal(c.GetTraits(), &traits) == nil {
		for k := range traits {
			if !plainName(k) {
				// A key that does not look like a field name could hold
				// a value; it is not written to the audit trail.
				k = "other"
			}
			if f := "traits." + k; !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
	}
	return out
}

// plainName reports whether s looks like a field name: 1 to 64 of
// [A-Za-z0-9_.-], not all digits.
func plainName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	digits := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_', c == '-', c == '.':
			digits = false
		default:
			return false
		}
	}
	return !digits
}
