// Package sensitive detects special categories of personal data (GDPR
// Art. 9 and 10) in a hit before anything of it is kept, in three layers:
// the names of properties and traits (at any depth), the values (health
// terms in free text, and national identification numbers as the scrubber
// recognises them), and the page context (URL path, title and page name,
// plus the operator's own map of sensitive sections, sensitive_paths).
//
// The CJEU (C-252/21, Meta v Bundeskartellamt, 4 July 2023) holds that
// collecting visits to pages tied to a special category can itself be
// processing of special-category data: the page layer exists for that.
//
// Terms are multilingual lists (en, fr, de, es, it) embedded from terms/,
// matched on normalized text: case-, accent- and separator-insensitive,
// camelCase split, on word boundaries, with stems and inflection endings
// declared per term. Matching walks one trie over the normalized bytes of
// each token start and allocates nothing when nothing matches.
//
// The package decides nothing about storage: it reports Findings, and a
// site's Policy says what each category's Action is. The pipeline applies
// it (proxy/pipeline/sensitive.go).
package sensitive

import (
	"fmt"
	"strings"
)

// Category is a special category of personal data.
type Category uint8

// Categories, in the order of Art. 9(1), then Art. 10, then national
// identification numbers (Art. 87).
const (
	// Health is data concerning health (Art. 9(1), 4(15)): conditions,
	// diagnoses, treatments, disability, pregnancy.
	Health Category = iota
	// EthnicOrigin is racial or ethnic origin.
	EthnicOrigin
	// Religion is religious or philosophical beliefs.
	Religion
	// PoliticalOpinion is political opinions.
	PoliticalOpinion
	// TradeUnion is trade union membership.
	TradeUnion
	// SexLife is a person's sex life or sexual orientation.
	SexLife
	// Biometric is biometric data for identifying a person (Art. 4(14)).
	Biometric
	// Genetic is genetic data (Art. 4(13)).
	Genetic
	// CriminalRecord is data on criminal convictions and offences (Art. 10).
	CriminalRecord
	// NationalID is a national identification number (Art. 87; e.g. the
	// French NIR, which is also the health insurance number), as the
	// scrubber recognises one by its check digits. Not an Art. 9 category:
	// its default action is DropField.
	NationalID
	// NumCategories is the number of categories.
	NumCategories
)

var categoryNames = [NumCategories]string{
	"health", "ethnic_origin", "religion", "political_opinion", "trade_union",
	"sex_life", "biometric", "genetic", "criminal_record", "national_id",
}

// categoryLabels describe each category for people (the register).
var categoryLabels = [NumCategories]string{
	"Health (conditions, diagnoses, treatments, disability, pregnancy)",
	"Racial or ethnic origin",
	"Religious or philosophical beliefs",
	"Political opinions",
	"Trade union membership",
	"Sex life or sexual orientation",
	"Biometric data for identifying a person",
	"Genetic data",
	"Criminal convictions and offences",
	"National identification numbers",
}

var categoryArticles = [NumCategories]string{"9(1)", "9(1)", "9(1)", "9(1)", "9(1)", "9(1)", "9(1)", "9(1)", "10", "87"}

// String is the category's configuration name ("health", "sex_life"…).
func (c Category) String() string {
	if c < NumCategories {
		return categoryNames[c]
	}
	return "unknown"
}

// Label describes the category for people.
func (c Category) Label() string {
	if c < NumCategories {
		return categoryLabels[c]
	}
	return ""
}

// Article is the GDPR article that makes the category special ("9(1)",
// "10", "87").
func (c Category) Article() string {
	if c < NumCategories {
		return categoryArticles[c]
	}
	return ""
}

// Marker is the text that stands for a match of the category in redacted
// examples ("[health]").
func (c Category) Marker() string { return "[" + c.String() + "]" }

// ParseCategory returns the category named s.
func ParseCategory(s string) (Category, error) {
	for i, n := range categoryNames {
		if n == s {
			return Category(i), nil
		}
	}
	return 0, fmt.Errorf("%w: %q (one of %s)", ErrUnknownCategory, s, strings.Join(categoryNames[:], ", "))
}

// AllCategories lists every category in order.
func AllCategories() []Category {
	out := make([]Category, NumCategories)
	for i := range out {
		out[i] = Category(i)
	}
	return out
}

// Categories is a set of categories. The zero value is empty.
type Categories uint16

// Has reports whether c is in the set.
func (s Categories) Has(c Category) bool { return s&(1<<c) != 0 }

// With returns the set with c added.
func (s Categories) With(c Category) Categories { return s | 1<<c }

// Names returns the categories' names in category order (nil when empty).
func (s Categories) Names() []string {
	if s == 0 {
		return nil
	}
	var out []string
	for c := Category(0); c < NumCategories; c++ {
		if s.Has(c) {
			out = append(out, c.String())
		}
	}
	return out
}

// Layer is where a detection was made.
type Layer uint8

// Layers.
const (
	// LayerNames is the names of properties and traits, at any depth.
	LayerNames Layer = iota
	// LayerValues is string and number values of properties and traits.
	LayerValues
	// LayerPage is the page context: URL path, title, page or screen name.
	LayerPage
	// LayerSensitivePaths is the site's sensitive_paths map, matched on
	// the URL path.
	LayerSensitivePaths
	// NumLayers is the number of layers.
	NumLayers
)

var layerNames = [NumLayers]string{"names", "values", "page", "sensitive_paths"}

// String is the layer's name ("names", "values", "page",
// "sensitive_paths").
func (l Layer) String() string {
	if l < NumLayers {
		return layerNames[l]
	}
	return "unknown"
}

// ParseLayer returns the layer named s.
func ParseLayer(s string) (Layer, error) {
	for i, n := range layerNames {
		if n == s {
			return Layer(i), nil
		}
	}
	return 0, fmt.Errorf("%w: %q (one of %s)", ErrUnknownLayer, s, strings.Join(layerNames[:], ", "))
}

// AllLayers lists every layer in order.
func AllLayers() []Layer { return []Layer{LayerNames, LayerValues, LayerPage, LayerSensitivePaths} }

// Action is what happens to an event in which a category was detected.
type Action uint8

// Actions. When several categories are detected, the strictest applies
// to the event: DropEvent, then Anonymous (or RequireConsent without the
// grant), then DropField; RequireConsent with the grant keeps the event.
const (
	// Anonymous keeps the event anonymous only (no identifier, as
	// unconsented traffic is kept): never profiled, never synced, never in
	// a model. The default of every Art. 9 and 10 category.
	Anonymous Action = iota
	// DropField removes what matched (the property or trait, the page
	// path or title) and keeps the rest of the event as consent allows.
	DropField
	// DropEvent stores nothing of the event (it is still counted in the
	// detections).
	DropEvent
	// RequireConsent keeps the event as consent allows only if the
	// dedicated purpose "sensitive" is granted (explicitly: it can never be
	// a default purpose); otherwise as Anonymous. Even then the event is
	// marked sensitive and never profiled, synced or modelled.
	RequireConsent
	numActions
)

var actionNames = [numActions]string{"anonymous", "drop_field", "drop_event", "require_consent"}

// String is the action's configuration name.
func (a Action) String() string {
	if a < numActions {
		return actionNames[a]
	}
	return "unknown"
}

// ParseAction returns the action named s.
func ParseAction(s string) (Action, error) {
	for i, n := range actionNames {
		if n == s {
			return Action(i), nil
		}
	}
	return 0, fmt.Errorf("%w: %q (one of %s)", ErrUnknownAction, s, strings.Join(actionNames[:], ", "))
}

// DefaultAction is the action of c when the site sets none: Anonymous for
// the Art. 9 and 10 categories, DropField for national identification
// numbers (the scrubber has already replaced the number by a marker).
func DefaultAction(c Category) Action {
	if c == NationalID {
		return DropField
	}
	return Anonymous
}
