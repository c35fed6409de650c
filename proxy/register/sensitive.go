package register

import (
	"fmt"
	"slices"
	"strings"

	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/sensitive"
)

// SpecialCategory is how one special category of data (Art. 9, 10, and
// national identification numbers) is handled: a row of the register's
// special-categories sheet.
type SpecialCategory struct {
	Category string `json:"category"`
	Label    string `json:"label"`
	Article  string `json:"article"`
	// Sites says, per site, the action and how it is detected.
	Sites []SiteHandling `json:"sites"`
}

// SiteHandling is one site's handling of a special category.
type SiteHandling struct {
	Site string `json:"site"`
	// Action is anonymous, drop_field, drop_event or require_consent.
	Action string `json:"action"`
	// Effect says what the action does, for people.
	Effect string `json:"effect"`
	// Layers are the detection layers on.
	Layers []string `json:"layers"`
	// SensitivePaths are the site's own sections declared of the category.
	SensitivePaths []string `json:"sensitive_paths,omitempty"`
}

// actionEffects describe the actions.
var actionEffects = map[sensitive.Action]string{
	sensitive.Anonymous:      "kept anonymous only (no identifier); never profiled, synced or modelled",
	sensitive.DropField:      "the matching fields (property, trait, page path or title) are removed; the rest is kept as consent allows, never profiled, synced or modelled",
	sensitive.DropEvent:      "nothing is stored (the detection is counted)",
	sensitive.RequireConsent: "kept with identifiers only with the explicit consent purpose \"sensitive\" (Art. 9(2)(a)), anonymous otherwise; never profiled, synced or modelled",
}

// specialCategories builds the special-categories sheet from the sites'
// sensitive sections.
func specialCategories(cfg config.Config) []SpecialCategory {
	var out []SpecialCategory
	for _, c := range sensitive.AllCategories() {
		sc := SpecialCategory{Category: c.String(), Label: c.Label(), Article: c.Article()}
		for _, s := range cfg.Sites {
			p, err := s.SensitivePolicy()
			if err != nil {
				continue // a validated configuration has none
			}
			h := SiteHandling{Site: s.ID, Action: p.Actions[c].String(), Effect: actionEffects[p.Actions[c]], Layers: layers(p)}
			for _, r := range p.Paths {
				if r.Category == c {
					h.SensitivePaths = append(h.SensitivePaths, r.Pattern)
				}
			}
			slices.Sort(h.SensitivePaths)
			sc.Sites = append(sc.Sites, h)
		}
		out = append(out, sc)
	}
	return out
}

func layers(p sensitive.Policy) []string {
	var out []string
	for _, l := range []struct {
		on   bool
		name string
	}{{p.Names, "names"}, {p.Values, "values"}, {p.Page, "page"}, {len(p.Paths) > 0, "sensitive_paths"}} {
		if l.on {
			out = append(out, l.name)
		}
	}
	return out
}

// sensitiveStatement is each activity's answer to "is sensitive data
// processed?".
func sensitiveStatement(cfg config.Config) string {
	consent := false
	for _, s := range cfg.Sites {
		if p, err := s.SensitivePolicy(); err == nil && p.RequiresConsent() {
			consent = true
		}
	}
	b := strings.Builder{}
	b.WriteString("Sites must not send special categories of data, but visits to pages about them can be (CJEU C-252/21). ")
	b.WriteString("Vigie detects them before anything is kept — in property and trait names, health terms and national identification numbers in values, ")
	b.WriteString("and the page context (URL path, title, the sites' sensitive_paths), in English, French, German, Spanish and Italian — ")
	b.WriteString("and applies each site's action per category (see the special categories sheet). ")
	b.WriteString("An event in which one is detected is never profiled, given to a syncer or modelled; by default it is kept anonymous only.")
	if consent {
		b.WriteString(fmt.Sprintf(" Where the action is require_consent, identifiers are kept only with the explicit consent purpose %q (Art. 9(2)(a)).", "sensitive"))
	}
	return b.String()
}
