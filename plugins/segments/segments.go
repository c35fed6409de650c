// Package segments is Vigie's built-in segmentation and lead-scoring
// plugin. Segments and scoring rules are CEL expressions
// (https://cel.dev) over the current event and the subject's profile,
// compiled and type-checked once when the plugin is configured.
//
// For each event the host gives it (pseudonymous, with a profiling purpose
// granted, profile already counting the event), the plugin:
//
//  1. sums the points of the scoring rules that are true for the event and
//     returns them as the profile's ScoreDelta;
//  2. evaluates every segment with profile.score including that delta, and
//     returns an ENTERED change for each segment that is now true and the
//     subject is not in, and an EXITED change for each that is now false
//     and the subject is in.
//
// A segment or rule applies only to events whose granted purposes include
// one of its purposes (default personalization or marketing); a subject in
// a segment whose purposes the event no longer grants exits it.
//
// The CEL variables are event (vigie.v1.Event) and profile
// (vigie.v1.Profile), with the protobuf field names; the functions are
// event.props(), event.traits(), profile.count(type, key, window),
// profile.count(type, window), profile.in_segment(name) and
// profile.days_since_first_seen(). README.md is the reference.
//
// Built-ins run as separate processes: Main serves the plugin, and the
// vigie binary re-executes itself into it.
package segments

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"cel.dev/cel-go/cel"
	"github.com/go-json-experiment/json"

	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// Version is the plugin's version, reported in its manifest.
const Version = "0.1.0"

// defaultPurposes apply to a segment or rule that lists none.
var defaultPurposes = []string{"personalization", "marketing"}

// configSchema is the JSON Schema of Config.
const configSchema = `{"type":"object","additionalProperties":false,` +
	`"$defs":{"name":{"type":"string","pattern":"` + sdk.NamePattern + `"},` +
	`"purposes":{"type":"array","items":{"type":"string","minLength":1},` +
	`"description":"any-of; default [\"personalization\",\"marketing\"]"}},` +
	`"properties":{` +
	`"segments":{"type":"array","items":{"type":"object","additionalProperties":false,"required":["name","when"],"properties":{` +
	`"name":{"$ref":"#/$defs/name","description":"unique; used in vigie.segments.<site>.<name>.entered|exited"},` +
	`"site":{"type":"string","description":"site id; empty for every site"},` +
	`"description":{"type":"string"},` +
	`"when":{"type":"string","description":"CEL expression over event and profile, must be bool"},` +
	`"purposes":{"$ref":"#/$defs/purposes"}}}},` +
	`"scoring":{"type":"array","items":{"type":"object","additionalProperties":false,"required":["name","when","points"],"properties":{` +
	`"name":{"$ref":"#/$defs/name","description":"unique among scoring rules"},` +
	`"site":{"type":"string","description":"site id; empty for every site"},` +
	`"when":{"type":"string","description":"CEL expression over event and profile, must be bool"},` +
	`"points":{"type":"integer","not":{"const":0},"description":"added to the score when true; may be negative"},` +
	`"purposes":{"$ref":"#/$defs/purposes"}}}}}}`

// Config is the plugin's configuration section (JSON). Every field has a
// default: with none, the plugin scores nothing and has no segments.
type Config struct {
	// Segments are evaluated in order for each event. Default: none.
	Segments []SegmentConfig `json:"segments"`
	// Scoring rules are summed for each event. Default: none.
	Scoring []ScoreConfig `json:"scoring"`
}

// SegmentConfig is one segment.
type SegmentConfig struct {
	// Name is 1-64 of [a-z0-9_-], unique among segments; required.
	Name string `json:"name"`
	// Site restricts the segment to one site. Default: every site.
	Site string `json:"site"`
	// Description is for people. Default: empty.
	Description string `json:"description"`
	// When is a CEL expression yielding bool; required.
	When string `json:"when"`
	// Purposes: the segment is evaluated only for events granting at least
	// one of them. Default: personalization, marketing.
	Purposes []string `json:"purposes"`
}

// ScoreConfig is one scoring rule.
type ScoreConfig struct {
	// Name is 1-64 of [a-z0-9_-], unique among scoring rules; required.
	Name string `json:"name"`
	// Site restricts the rule to one site. Default: every site.
	Site string `json:"site"`
	// When is a CEL expression yielding bool; required.
	When string `json:"when"`
	// Points are added to the score when When is true; non-zero, may be
	// negative; required.
	Points int64 `json:"points"`
	// Purposes: the rule is evaluated only for events granting at least
	// one of them. Default: personalization, marketing.
	Purposes []string `json:"purposes"`
}

// SegmentInfo describes a configured segment, for listings.
type SegmentInfo struct {
	// Name, Site, Description and When are as configured.
	Name        string
	Site        string
	Description string
	When        string
	// Purposes are the segment's purposes, defaults applied.
	Purposes []string
}

// Segmenter is the segmentation and scoring plugin. The zero value is not
// usable; use New. Its methods are safe for concurrent use.
type Segmenter struct {
	compiled atomic.Pointer[compiled]
	pool     sync.Pool // of *evalState
}

// compiled is one configuration, its expressions compiled.
type compiled struct {
	segments []item
	rules    []item
}

// item is a compiled segment or scoring rule.
type item struct {
	kind     string // "segment" or "scoring rule", for messages
	name     string
	site     string
	purposes []string
	points   int64
	prg      cel.Program
	// costTracked: the expression runs under cel.CostLimit (see program).
	costTracked bool
	info        SegmentInfo
}

// appliesTo reports whether the item is scoped to site (every item
// applies when its own site is empty).
func (it *item) appliesTo(site string) bool {
	return it.site == "" || it.site == site
}

// grants reports whether purposes contains one of the item's purposes.
func (it *item) grants(purposes []string) bool {
	for _, p := range it.purposes {
		if slices.Contains(purposes, p) {
			return true
		}
	}
	return false
}

// New returns a Segmenter with no segments and no scoring rules until
// Configure is called.
func New() *Segmenter {
	return &Segmenter{}
}

// Configure applies the plugin's configuration section (JSON; nil or
// empty means no segments and no rules). Every expression is compiled and
// type-checked now; all problems are reported together, each wrapped in
// ErrConfig and prefixed with its segment or rule name. On error the
// previous configuration stays in effect.
func (s *Segmenter) Configure(_ context.Context, config []byte) error {
	c, err := compile(config)
	if err != nil {
		return err
	}
	s.compiled.Store(c)
	return nil
}

// Validate checks a configuration section exactly as Configure does,
// without a running plugin (for the host and CLI at startup).
func Validate(config []byte) error {
	_, err := compile(config)
	return err
}

// Names lists the segments of a valid configuration section, in order.
func Names(config []byte) ([]SegmentInfo, error) {
	c, err := compile(config)
	if err != nil {
		return nil, err
	}
	out := make([]SegmentInfo, len(c.segments))
	for i := range c.segments {
		out[i] = c.segments[i].info
	}
	return out, nil
}

// Segment scores the event and reports the segments its subject entered
// or left, each change stamped with the event's time (its timestamp, else
// its receive time) and id. Scoring rules see the profile as given (score before this
// event); segments see profile.score including this event's ScoreDelta.
// Update is nil when the score does not change. An expression that fails
// to evaluate fails the event with ErrEval, naming the segment or rule.
func (s *Segmenter) Segment(ctx context.Context, ev *sdk.Event, p *sdk.Profile) (*sdk.SegmentResult, error) {
	res := &sdk.SegmentResult{}
	c := s.compiled.Load()
	if c == nil || (len(c.segments) == 0 && len(c.rules) == 0) {
		return res, nil
	}
	if ev == nil {
		ev = &vigiev1.Event{}
	}
	if p == nil {
		p = &vigiev1.Profile{}
	}
	site, subject := ev.GetSite(), ev.GetSubject()
	if site == "" {
		site = p.GetSite()
	}
	if subject == "" {
		subject = p.GetSubject()
	}
	purposes, at := ev.GetPurposes(), eventTime(ev)

	st := s.state()
	defer s.release(st)
	st.reset(ev, p)

	var delta int64
	for i := range c.rules {
		r := &c.rules[i]
		if !r.appliesTo(site) || !r.grants(purposes) {
			continue
		}
		ok, err := evalBool(ctx, r.prg, st)
		if err != nil {
			return nil, fmt.Errorf("%w: %s %q: %w", ErrEval, r.kind, r.name, err)
		}
		if ok {
			delta += r.points
		}
	}
	if delta != 0 {
		res.Update = &sdk.ProfileUpdate{ScoreDelta: delta}
		st.setProfile(withScore(p, p.GetScore()+delta))
	}

	current := p.GetSegments()
	for i := range c.segments {
		seg := &c.segments[i]
		if !seg.appliesTo(site) {
			continue
		}
		in := slices.Contains(current, seg.name)
		now := false
		if seg.grants(purposes) {
			var err error
			if now, err = evalBool(ctx, seg.prg, st); err != nil {
				return nil, fmt.Errorf("%w: %s %q: %w", ErrEval, seg.kind, seg.name, err)
			}
		}
		if now == in {
			continue
		}
		t := vigiev1.Transition_TRANSITION_ENTERED
		if in {
			t = vigiev1.Transition_TRANSITION_EXITED
		}
		res.Changes = append(res.Changes, &sdk.SegmentChange{
			Site: site, Subject: subject, Segment: seg.name,
			Transition: t, AtMs: at, EventId: ev.GetId(),
		})
	}
	return res, nil
}

// state takes an evalState from the pool.
func (s *Segmenter) state() *evalState {
	if st, ok := s.pool.Get().(*evalState); ok {
		return st
	}
	env, _ := celEnv() // compiled != nil implies the environment was built
	return newEvalState(env.CELTypeAdapter())
}

// release returns st to the pool.
func (s *Segmenter) release(st *evalState) {
	st.clear()
	s.pool.Put(st)
}

// withScore returns a shallow copy of p with its score set to score.
func withScore(p *vigiev1.Profile, score int64) *vigiev1.Profile {
	return &vigiev1.Profile{
		Site:         p.GetSite(),
		Subject:      p.GetSubject(),
		FirstSeenMs:  p.GetFirstSeenMs(),
		LastSeenMs:   p.GetLastSeenMs(),
		Counters:     p.GetCounters(),
		Segments:     p.GetSegments(),
		Score:        score,
		LastCampaign: p.GetLastCampaign(),
		Country:      p.GetCountry(),
		Attributes:   p.GetAttributes(),
	}
}

// compile parses and compiles a configuration section.
func compile(raw []byte) (*compiled, error) {
	var cfg Config
	if len(raw) > 0 && string(raw) != "null" {
		if err := json.Unmarshal(raw, &cfg, json.RejectUnknownMembers(true)); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	env, err := celEnv()
	if err != nil {
		return nil, fmt.Errorf("segments: CEL environment: %w", err)
	}
	c := &compiled{}
	var errs []error
	seen := map[string]bool{}
	for _, sc := range cfg.Segments {
		it, err := compileItem(env, "segment", sc.Name, sc.Site, sc.When, sc.Purposes, seen)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		it.info = SegmentInfo{Name: sc.Name, Site: sc.Site, Description: sc.Description, When: sc.When, Purposes: it.purposes}
		c.segments = append(c.segments, it)
	}
	clear(seen)
	for _, rc := range cfg.Scoring {
		it, err := compileItem(env, "scoring rule", rc.Name, rc.Site, rc.When, rc.Purposes, seen)
		if err == nil && rc.Points == 0 {
			err = fmt.Errorf("%w: scoring rule %q: points must be non-zero", ErrConfig, rc.Name)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		it.points = rc.Points
		c.rules = append(c.rules, it)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// compileItem validates and compiles one segment or scoring rule; seen
// holds the names of its kind already used.
func compileItem(env *cel.Env, kind, name, site, when string, purposes []string, seen map[string]bool) (item, error) {
	fail := func(format string, args ...any) (item, error) {
		return item{}, fmt.Errorf("%w: %s %q: %s", ErrConfig, kind, name, fmt.Sprintf(format, args...))
	}
	// Segment names are NATS subject tokens, like plugin names: the
	// same rule.
	if !sdk.ValidName(name) {
		return fail("name must be %s", sdk.NameRule)
	}
	if seen[name] {
		return fail("duplicate name")
	}
	seen[name] = true
	if len(purposes) == 0 {
		purposes = defaultPurposes
	}
	for _, p := range purposes {
		if p == "" {
			return fail("empty purpose")
		}
	}
	if when == "" {
		return fail("when is required")
	}
	ast, iss := env.Compile(when)
	if iss.Err() != nil {
		return fail("%s", iss.Err())
	}
	if out := ast.OutputType(); !out.IsExactType(cel.BoolType) {
		hint := ""
		if out.IsExactType(cel.DynType) {
			hint = " (compare a dynamic value, e.g. `event.props().vip == true`)"
		}
		return fail("expression must be bool, not %s%s", cel.FormatCELType(out), hint)
	}
	prg, tracked, err := program(env, ast)
	if err != nil {
		return fail("%s", err)
	}
	return item{kind: kind, name: name, site: site, purposes: slices.Clone(purposes), prg: prg, costTracked: tracked}, nil
}

// Plugin returns the plugin's manifest and hooks, served by Main.
func Plugin() sdk.Plugin {
	s := New()
	return sdk.Plugin{
		Manifest: sdk.Manifest{
			Name:         "segments",
			Version:      Version,
			Description:  "Scores profiles and maintains segment membership from CEL rules over each event and its subject's profile.",
			ConfigSchema: []byte(configSchema),
		},
		Configurer: s,
		Segmenter:  s,
	}
}

// Main serves the plugin; it does not return. The vigie binary calls it
// when re-executed as the segments plugin.
func Main() {
	sdk.Serve(Plugin())
}
