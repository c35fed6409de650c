package response

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json"

	"github.com/vigie-dev/vigie/plugins/response/model"
)

// Defaults of Config.
const (
	// DefaultHalfLife is how long until an exposure weighs half.
	DefaultHalfLife = 30 * 24 * time.Hour
	// DefaultFlushEvents is how many changes are applied before the
	// changed shards are written to the key-value store.
	DefaultFlushEvents = 1000
	// DefaultFlushInterval is the longest a change waits (while events
	// arrive) before it is written.
	DefaultFlushInterval = 5 * time.Second
)

// Default lists of Config (copied, never shared).
var (
	defaultPurposes          = []string{"personalization", "marketing"}
	defaultExcludeProperties = []string{"sensitive"}
	defaultResponses         = []string{"open", "click", "conversion"}
	defaultConversions       = []string{"Order Completed"}
)

// configSchema is the JSON Schema of Config.
const configSchema = `{"type":"object","additionalProperties":false,` +
	`"$defs":{"name":{"type":"string","pattern":"^[a-z0-9_-]{1,64}$"},` +
	`"duration":{"type":"string","description":"Go duration or a number of days like 7d"}},` +
	`"properties":{` +
	`"contact_types":{"type":"array","items":{"type":"object","additionalProperties":false,"required":["name","segments"],"properties":{` +
	`"name":{"$ref":"#/$defs/name","description":"not \"other\", the type of subjects of no listed type"},` +
	`"segments":{"type":"array","minItems":1,"items":{"type":"string","minLength":1},"description":"all must hold"}}}},` +
	`"message_types":{"type":"array","items":{"type":"object","additionalProperties":false,"required":["name"],"properties":{` +
	`"name":{"$ref":"#/$defs/name","description":"the message_type property of Email Sent / Message Shown"},` +
	`"window":{"$ref":"#/$defs/duration","description":"default 7d"},` +
	`"responses":{"type":"array","items":{"enum":["open","click","conversion"]},"description":"default all three"},` +
	`"conversions":{"type":"array","items":{"type":"string","minLength":1},"description":"event names; default [\"Order Completed\"]"}}}},` +
	`"half_life":{"$ref":"#/$defs/duration","description":"default 30d; 0 for no decay"},` +
	`"interval":{"type":"number","exclusiveMinimum":0,"exclusiveMaximum":1,"description":"default 0.9"},` +
	`"min_prior_strength":{"type":"number","exclusiveMinimum":0,"description":"default 2"},` +
	`"max_prior_strength":{"type":"number","exclusiveMinimum":0,"description":"default 200"},` +
	`"purposes":{"type":"array","items":{"type":"string","minLength":1},"description":"any-of; default [\"personalization\",\"marketing\"]"},` +
	`"exclude_properties":{"type":"array","items":{"type":"string","minLength":1},"description":"default [\"sensitive\"]"},` +
	`"max_pending":{"type":"integer","minimum":1,"description":"default 16"},` +
	`"flush_events":{"type":"integer","minimum":1,"description":"default 1000"},` +
	`"flush_interval":{"$ref":"#/$defs/duration","description":"default 5s"},` +
	`"candidates":{"type":"array","items":{"$ref":"#/$defs/name"},"description":"message types Next chooses among; default all"},` +
	`"profile_attribute":{"type":"string","pattern":"^([a-z0-9_]{1,64})?$","description":"profile attribute of the subject's next message type; default next_message_type, \"\" for none"}}}`

// Config is the plugin's configuration section (JSON). Every field has a
// default; with no message types the plugin models nothing.
type Config struct {
	// ContactTypes are tried in order; a subject is of the first whose
	// segments it is all in, else "other". Default: none.
	ContactTypes []ContactTypeConfig `json:"contact_types"`
	// MessageTypes are the message types modelled, named by the
	// message_type property of exposures. Default: none.
	MessageTypes []MessageTypeConfig `json:"message_types"`
	// HalfLife is a duration ("30d", "720h"); "0" disables decay.
	// Default 30d.
	HalfLife string `json:"half_life"`
	// Interval is the mass of the credible intervals. Default 0.9.
	Interval float64 `json:"interval"`
	// MinPriorStrength and MaxPriorStrength bound the prior's α+β.
	// Defaults 2 and 200.
	MinPriorStrength float64 `json:"min_prior_strength"`
	MaxPriorStrength float64 `json:"max_prior_strength"`
	// Purposes: a subject is modelled only while its events grant at
	// least one. Default personalization, marketing.
	Purposes []string `json:"purposes"`
	// ExcludeProperties: an event whose properties set one of these to a
	// value other than false, null, "" or 0 never enters the model.
	// Default ["sensitive"].
	ExcludeProperties []string `json:"exclude_properties"`
	// MaxPending is how many exposures per subject await a response.
	// Default 16.
	MaxPending int `json:"max_pending"`
	// FlushEvents and FlushInterval: changed state is written after this
	// many changes or this long, whichever comes first. Defaults 1000 and
	// 5s.
	FlushEvents   int    `json:"flush_events"`
	FlushInterval string `json:"flush_interval"`
	// Candidates are the message types the next best message is chosen
	// among (the profile attribute, and Next without candidates).
	// Default: every message type.
	Candidates []string `json:"candidates"`
	// ProfileAttribute is the profile attribute the plugin keeps each
	// modelled subject's next message type in (a Thompson draw per
	// subject and day, written when it changes), so that a CRM field
	// mapping can sync it. 1-64 of [a-z0-9_]; "" writes none. Default
	// DefaultProfileAttribute.
	ProfileAttribute *string `json:"profile_attribute"`
}

// DefaultProfileAttribute is Config.ProfileAttribute's default.
const DefaultProfileAttribute = "next_message_type"

// ContactTypeConfig is one contact type.
type ContactTypeConfig struct {
	// Name is 1-64 of [a-z0-9_-], not "other"; required.
	Name string `json:"name"`
	// Segments must all hold; at least one; required.
	Segments []string `json:"segments"`
}

// MessageTypeConfig is one message type.
type MessageTypeConfig struct {
	// Name is 1-64 of [a-z0-9_-]; required.
	Name string `json:"name"`
	// Window is how long after an exposure a response counts. Default 7d.
	Window string `json:"window"`
	// Responses are the kinds that count: open, click, conversion.
	// Default all three.
	Responses []string `json:"responses"`
	// Conversions are event names counted as conversions within the
	// window; [] for none. Default ["Order Completed"].
	Conversions []string `json:"conversions"`
}

// settings is a parsed, validated configuration.
type settings struct {
	model         model.Config
	conversions   map[string]bool // event names some message type converts on
	purposes      []string
	exclude       []string
	flushEvents   int
	flushInterval time.Duration
	candidates    []string
	attribute     string // profile attribute; "" for none
}

// parseConfig parses and validates a configuration section.
func parseConfig(raw []byte) (*settings, error) {
	var cfg Config
	if len(raw) > 0 && string(raw) != "null" {
		if err := json.Unmarshal(raw, &cfg, json.RejectUnknownMembers(true)); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	st := &settings{
		purposes:    orDefault(cfg.Purposes, defaultPurposes),
		exclude:     orDefault(cfg.ExcludeProperties, defaultExcludeProperties),
		flushEvents: cfg.FlushEvents,
		conversions: map[string]bool{},
		model: model.Config{
			Interval:         cfg.Interval,
			MinPriorStrength: cfg.MinPriorStrength,
			MaxPriorStrength: cfg.MaxPriorStrength,
			MaxPending:       cfg.MaxPending,
		},
	}
	var err error
	if st.model.HalfLife, err = parseDuration("half_life", cfg.HalfLife, DefaultHalfLife); err != nil {
		return nil, err
	}
	if st.flushInterval, err = parseDuration("flush_interval", cfg.FlushInterval, DefaultFlushInterval); err != nil {
		return nil, err
	}
	if cfg.FlushEvents < 0 {
		return nil, fmt.Errorf("%w: flush_events %d must be at least 1", ErrConfig, cfg.FlushEvents)
	}
	if cfg.FlushEvents == 0 {
		st.flushEvents = DefaultFlushEvents
	}
	if cfg.MaxPending < 0 {
		return nil, fmt.Errorf("%w: max_pending %d must be at least 1", ErrConfig, cfg.MaxPending)
	}
	for _, list := range [][]string{st.purposes, st.exclude} {
		if slices.Contains(list, "") {
			return nil, fmt.Errorf("%w: empty purpose or property name", ErrConfig)
		}
	}
	for _, ct := range cfg.ContactTypes {
		st.model.ContactTypes = append(st.model.ContactTypes, model.ContactType{Name: ct.Name, Segments: ct.Segments})
	}
	for _, mc := range cfg.MessageTypes {
		mt := model.MessageType{Name: mc.Name, Conversions: orDefault(mc.Conversions, defaultConversions)}
		for _, c := range mt.Conversions {
			st.conversions[c] = true
		}
		if mt.Window, err = parseDuration("message type "+strconv.Quote(mc.Name)+" window", mc.Window, model.DefaultWindow); err != nil {
			return nil, err
		}
		if mt.Window == 0 {
			return nil, fmt.Errorf("%w: message type %q: window must be positive", ErrConfig, mc.Name)
		}
		for _, r := range orDefault(mc.Responses, defaultResponses) {
			k, err := model.ParseKind(r)
			if err != nil {
				return nil, fmt.Errorf("%w: message type %q: %w", ErrConfig, mc.Name, err)
			}
			mt.Responses |= k
		}
		if mt.Responses == 0 {
			return nil, fmt.Errorf("%w: message type %q: responses must list at least one kind", ErrConfig, mc.Name)
		}
		st.model.MessageTypes = append(st.model.MessageTypes, mt)
	}
	// The model validates the rest (names, strengths, interval).
	m, err := model.New(st.model)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	st.candidates = m.MessageTypes()
	if cfg.Candidates != nil {
		st.candidates = nil
		for _, c := range cfg.Candidates {
			if !m.HasMessageType(c) {
				return nil, fmt.Errorf("%w: candidates: %q is not a message type", ErrConfig, c)
			}
			if !slices.Contains(st.candidates, c) {
				st.candidates = append(st.candidates, c)
			}
		}
	}
	st.attribute = DefaultProfileAttribute
	if a := cfg.ProfileAttribute; a != nil {
		if *a != "" && !validAttribute(*a) {
			return nil, fmt.Errorf("%w: profile_attribute %q must be 1-64 of [a-z0-9_], or \"\" for none", ErrConfig, *a)
		}
		st.attribute = *a
	}
	return st, nil
}

// validAttribute reports whether s is a valid profile attribute name.
func validAttribute(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

// View is what a reader of the stored model in another process (the
// host's admin API and console) needs to know of a configuration.
type View struct {
	// Model is the model's configuration, for model.NewSummary.
	Model model.Config
	// Candidates are the message types the next best message is chosen
	// among by default.
	Candidates []string
	// Purposes are the purposes of which a modelled subject grants one.
	Purposes []string
	// ProfileAttribute is the profile attribute of the next message type
	// ("" for none).
	ProfileAttribute string
}

// ParseView parses and validates a configuration section (as Configure
// does) into what a reader needs.
func ParseView(config []byte) (View, error) {
	st, err := parseConfig(config)
	if err != nil {
		return View{}, err
	}
	return View{Model: st.model, Candidates: slices.Clone(st.candidates), Purposes: slices.Clone(st.purposes), ProfileAttribute: st.attribute}, nil
}

// orDefault returns list, or a copy of def when list is nil (absent);
// an empty list stays empty.
func orDefault(list, def []string) []string {
	if list == nil {
		return slices.Clone(def)
	}
	return list
}

// parseDuration parses a Go duration or a number of days ("7d", "1.5d");
// empty gives def.
func parseDuration(field, s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var f float64
		if f, err = strconv.ParseFloat(days, 64); err == nil {
			if f*24 > float64(math.MaxInt64/int64(time.Hour)) || f != f {
				err = strconv.ErrRange
			}
			d = time.Duration(f * float64(24*time.Hour))
		}
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%w: %s %q is not a duration (e.g. 7d, 36h, 0)", ErrConfig, field, s)
	}
	return d, nil
}
