// Package response is Vigie's built-in reaction-modelling plugin: it
// learns how each contact type (a segment, or a combination of segments)
// responds to each message type, and recommends the next best message by
// Thompson sampling. The statistics live in package model; this package
// feeds it from events and keeps its state in the host's key-value store.
//
// It is a segmenter: the host gives it pseudonymous events with their
// subject's profile (and segments). It reads
//
//   - exposures: "Email Sent" and "Message Shown" track events whose
//     properties name a configured message_type (and a campaign; holdout:
//     true marks a subject held out of the message);
//   - responses: "Email Opened" and "Email Link Clicked" made by a human
//     (the event's email.class is "human": privacy-proxy prefetches and
//     scanners never count), "Message Clicked", and the conversion events
//     configured per message type, within its window.
//
// Only subjects whose events grant one of the configured purposes
// (personalization or marketing by default) are modelled: an event that
// grants none removes its subject's contribution, as Forget does for an
// erasure. An objection to one of the purposes (GDPR Art. 21, a privacy
// event the host gives the plugin through the PrivacyListener hook)
// removes it too and keeps it out until lifted, whatever its later events
// grant. Events flagged sensitive (configured property names) never
// enter. The only change the plugin makes to a profile is the attribute
// holding the subject's next message type (profile_attribute), for a CRM
// field mapping to sync; it changes no segment.
//
// Built-ins run as separate processes: Main serves the plugin, and the
// vigie binary re-executes itself into it.
package response

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"hash/fnv"
	"log/slog"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/vigie-dev/vigie/plugins/response/model"
	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// Version is the plugin's version, reported in its manifest.
const Version = "0.1.0"

// Names of the events the plugin reads (besides configured conversions).
const (
	// EventEmailSent is an e-mail sent to a subject (an exposure).
	EventEmailSent = "Email Sent"
	// EventMessageShown is a site message shown to a subject (an
	// exposure).
	EventMessageShown = "Message Shown"
	// EventEmailOpened is an e-mail open (a response when human).
	EventEmailOpened = "Email Opened"
	// EventEmailClicked is a click in an e-mail (a response when human).
	EventEmailClicked = "Email Link Clicked"
	// EventMessageClicked is a click on a site message (a response).
	EventMessageClicked = "Message Clicked"
)

// humanClass is the e-mail event class of a person (proxy/email's
// ClassHuman; this plugin imports sdk only). Any other class — a privacy
// proxy prefetching images, a scanner following links, unknown — is a
// machine's and never counts.
const humanClass = "human"

// Properties of exposure and response events.
const (
	propMessageType = "message_type"
	propCampaign    = "campaign"
	propHoldout     = "holdout"
)

// Attribution key prefixes: opens and clicks match exposures of their
// channel and campaign.
const (
	keyEmail = "email:"
	keySite  = "site:"
)

// pruneEvery is how often (wall time, checked when flushing) the models
// drop expired exposures and decayed-away contributions.
const pruneEvery = time.Hour

// Modeler is the response plugin. The zero value is not usable; use New.
// Its methods are safe for concurrent use.
type Modeler struct {
	settings atomic.Pointer[settings]
	mu       sync.Mutex // guards sites, src, stopFlush and every site's state
	sites    map[string]*site
	src      mrand.Source
	now      func() time.Time
	stats    stats
	// stopFlush stops the background flusher started by Configure.
	stopFlush func()
}

// New returns a plugin that models nothing until Configure.
func New() *Modeler {
	var seed [16]byte
	_, _ = rand.Read(seed[:])
	return &Modeler{
		sites: map[string]*site{},
		src:   mrand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:])),
		now:   time.Now,
	}
}

// Configure applies the plugin's configuration section (JSON; nil or
// empty models nothing). Models already loaded are written out and
// reloaded under the new configuration on their next event (types are
// matched by name). On error the previous configuration stays in effect.
func (p *Modeler) Configure(ctx context.Context, config []byte) error {
	st, err := parseConfig(config)
	if err != nil {
		return err
	}
	// The flusher takes p.mu: it is stopped before, and started again
	// (with the new interval) whatever happens below.
	_ = p.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	defer func() {
		cur := p.settings.Load()
		if cur != nil && p.stopFlush == nil {
			p.stopFlush = p.startFlusher(sdk.HostFrom(ctx), cur.flushInterval)
		}
	}()
	for name, s := range p.sites {
		if err := p.flush(ctx, s); err != nil {
			return err
		}
		delete(p.sites, name)
	}
	p.settings.Store(st)
	return nil
}

// startFlusher writes, every interval, the state changed since the last
// write (Segment writes it only as events arrive, so the last changes of
// a burst would otherwise wait for the next event), with host: the host
// services outlive the hook that gave them. It returns its stop function.
func (p *Modeler) startFlusher(host sdk.Host, interval time.Duration) func() {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		ctx := sdk.ContextWithHost(context.Background(), host)
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			p.mu.Lock()
			for _, s := range p.sites {
				if s.unflushed == 0 && !s.summaryStale && len(s.m.Dirty()) == 0 {
					continue
				}
				if err := p.flush(ctx, s); err != nil {
					host.Log(ctx, slog.LevelWarn, "response model state not written; retried", slog.String("site", s.name), slog.String("err", err.Error()))
				}
			}
			p.mu.Unlock()
		}
	}()
	return func() {
		close(stop)
		<-done
	}
}

// Close stops the background flusher (the plugin process stops it by
// exiting); it does not write pending state.
func (p *Modeler) Close() error {
	p.mu.Lock()
	stop := p.stopFlush
	p.stopFlush = nil
	p.mu.Unlock()
	if stop != nil {
		stop()
	}
	return nil
}

// Validate checks a configuration section exactly as Configure does,
// without a running plugin.
func Validate(config []byte) error {
	_, err := parseConfig(config)
	return err
}

// eventKind is what an event is to the model.
type eventKind uint8

const (
	kindNone eventKind = iota
	kindExposure
	kindOpen
	kindClick
	kindConversion
)

// classify tells what ev is to the model.
func classify(ev *vigiev1.Event, st *settings) eventKind {
	if ev.GetType() != "track" {
		return kindNone
	}
	switch ev.GetName() {
	case EventEmailSent, EventMessageShown:
		return kindExposure
	case EventEmailOpened:
		return kindOpen
	case EventEmailClicked, EventMessageClicked:
		return kindClick
	}
	if st.conversions[ev.GetName()] {
		return kindConversion
	}
	return kindNone
}

// Segment feeds one event to its site's model. It never changes the
// profile or segments: the result is always empty. A failure to read or
// write the model's state fails the event (ErrState), which the host
// retries; replaying an event counts nothing twice (exposures by event
// id, responses once per exposure).
func (p *Modeler) Segment(ctx context.Context, ev *sdk.Event, prof *sdk.Profile) (*sdk.SegmentResult, error) {
	res := &sdk.SegmentResult{}
	st := p.settings.Load()
	if st == nil || len(st.model.MessageTypes) == 0 || ev == nil {
		return res, nil
	}
	site, subject := ev.GetSite(), ev.GetSubject()
	if site == "" {
		site = prof.GetSite()
	}
	if subject == "" {
		subject = prof.GetSubject()
	}
	if subject == "" || ev.GetMode() != vigiev1.Mode_MODE_PSEUDONYMOUS {
		return res, nil
	}
	granted := grantsAny(ev.GetPurposes(), st.purposes)
	kind := classify(ev, st)
	if granted && kind == kindNone {
		return res, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s, err := p.site(ctx, st, site)
	if err != nil {
		return nil, err
	}
	if s.objected[subject] {
		// An objection stops the modelling until it is lifted, whatever
		// consent the event carries.
		p.stats.objected.Add(1)
		return res, p.forget(ctx, s, subject)
	}
	if !granted {
		// Consent no longer covers the modelling: take the subject out.
		p.stats.notGranted.Add(1)
		return res, p.forget(ctx, s, subject)
	}
	props, err := properties(ev)
	if err != nil {
		// Properties come scrubbed from the pipeline; unreadable ones
		// cannot be checked for sensitivity, so the event stays out.
		p.stats.excluded.Add(1)
		return res, nil
	}
	if excluded(props, st.exclude) {
		p.stats.excluded.Add(1)
		return res, nil
	}
	at := eventTime(ev, p.now)
	var outcome model.Outcome
	switch kind {
	case kindExposure:
		mt, _ := stringProp(props, propMessageType)
		campaign, _ := stringProp(props, propCampaign)
		arm := model.Treated
		if holdout, _ := boolProp(props, propHoldout); holdout {
			arm = model.Holdout
		}
		prefix := keyEmail
		if ev.GetName() == EventMessageShown {
			prefix = keySite
		}
		outcome, err = s.m.Expose(model.Exposure{
			ID: ev.GetId(), Subject: subject, Segments: prof.GetSegments(), MessageType: mt,
			Arm: arm, Key: prefix + campaign, At: at,
		})
	case kindOpen, kindClick:
		var key string
		if ev.GetName() == EventMessageClicked {
			campaign, _ := stringProp(props, propCampaign)
			key = keySite + campaign
		} else {
			if ev.GetEmail().GetClass() != humanClass {
				p.stats.machine.Add(1)
				return res, nil
			}
			key = keyEmail + ev.GetEmail().GetCampaign()
		}
		k := model.Click
		if kind == kindOpen {
			k = model.Open
		}
		outcome, err = s.m.Respond(model.Response{Subject: subject, Kind: k, Key: key, At: at})
	case kindConversion:
		outcome, err = s.m.Respond(model.Response{Subject: subject, Kind: model.Conversion, Event: ev.GetName(), At: at})
	}
	if err != nil {
		return res, nil // no time: nothing to model (never for a stored event)
	}
	p.stats.count(kind, outcome)
	if outcome != model.Counted {
		return res, nil
	}
	s.unflushed++
	s.summaryStale = true
	if s.unflushed >= st.flushEvents || p.now().Sub(s.flushed) >= st.flushInterval {
		if err := p.flush(ctx, s); err != nil {
			return nil, err
		}
	}
	res.Update = p.recommend(st, s, subject, prof)
	return res, nil
}

// recommend returns the profile update setting the subject's next message
// type (a Thompson draw seeded by the subject and the UTC day, so that it
// stays put within a day and varies across subjects), or nil when it is
// unchanged or not kept. Called with p.mu held.
func (p *Modeler) recommend(st *settings, s *site, subject string, prof *sdk.Profile) *sdk.ProfileUpdate {
	if st.attribute == "" || len(st.candidates) == 0 {
		return nil
	}
	now := p.now()
	h := fnv.New64a()
	_, _ = h.Write([]byte(subject))
	mt, err := s.m.PickFor(mrand.NewPCG(h.Sum64(), uint64(now.Unix()/86400)), prof.GetSegments(), st.candidates, now)
	if err != nil {
		return nil
	}
	var attrs map[string]jsontext.Value
	if raw := prof.GetAttributes(); len(raw) > 0 && json.Unmarshal(raw, &attrs) == nil {
		if cur, ok := stringProp(attrs, st.attribute); ok && cur == mt {
			return nil
		}
	}
	patch, err := json.Marshal(map[string]string{st.attribute: mt})
	if err != nil {
		return nil
	}
	return &sdk.ProfileUpdate{Attributes: patch}
}

// Forget removes everything subject contributed to site's model and
// writes the changed state at once; the host calls it for an objection to
// marketing (GDPR Art. 21(3)) or an erasure. Forgetting a subject the
// model does not hold is not an error.
func (p *Modeler) Forget(ctx context.Context, site, subject string) error {
	st := p.settings.Load()
	if st == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s, err := p.site(ctx, st, site)
	if err != nil {
		return err
	}
	return p.forget(ctx, s, subject)
}

// forget removes subject from s and writes the state while anything is
// unwritten, so that a retry after a failed write still writes it.
// Called with p.mu held.
func (p *Modeler) forget(ctx context.Context, s *site, subject string) error {
	if s.m.Forget(subject) {
		p.stats.forgotten.Add(1)
	}
	if len(s.m.Dirty()) == 0 {
		return nil
	}
	return p.flush(ctx, s)
}

// HandlePrivacy applies a privacy event to every subject it names (its
// subject and its linked pseudonyms):
//
//   - an erasure forgets them (and any objection the plugin kept: the
//     ledger's goes with the erasure);
//   - a consent change that leaves none of the configured purposes
//     forgets them;
//   - an objection naming one of the configured purposes forgets them and
//     keeps them out of the model, whatever their later events grant,
//     until an objection without those purposes (or its lifting) comes;
//     this state is written before HandlePrivacy returns.
//
// Other events change nothing.
func (p *Modeler) HandlePrivacy(ctx context.Context, ev *vigiev1.PrivacyEvent) error {
	st := p.settings.Load()
	if st == nil {
		return nil
	}
	subjects := privacySubjects(ev)
	if len(subjects) == 0 {
		return nil
	}
	var object, unobject bool
	switch ev.GetAction() {
	case vigiev1.PrivacyAction_PRIVACY_ACTION_ERASURE:
		unobject = true
	case vigiev1.PrivacyAction_PRIVACY_ACTION_CONSENT_CHANGED:
		if grantsAny(ev.GetPurposes(), st.purposes) {
			return nil
		}
	case vigiev1.PrivacyAction_PRIVACY_ACTION_OBJECT:
		// An objection event carries the whole objection: it replaces the
		// previous one.
		object = !ev.GetLifted() && grantsAny(ev.GetObjected(), st.purposes)
		unobject = !object
	default:
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s, err := p.site(ctx, st, ev.GetSite())
	if err != nil {
		return err
	}
	changed := false
	for _, subj := range subjects {
		switch {
		case object && !s.objected[subj]:
			s.objected[subj], changed = true, true
		case unobject && s.objected[subj]:
			delete(s.objected, subj)
			changed = true
		}
	}
	if changed {
		if err := p.putObjected(ctx, s, subjects); err != nil {
			return err
		}
	}
	if unobject && ev.GetAction() == vigiev1.PrivacyAction_PRIVACY_ACTION_OBJECT {
		return nil // lifting forgets nothing
	}
	for _, subj := range subjects {
		if s.m.Forget(subj) {
			p.stats.forgotten.Add(1)
		}
	}
	if len(s.m.Dirty()) == 0 {
		return nil
	}
	return p.flush(ctx, s)
}

// PrivacyEvents implements sdk.PrivacyListener: each event through
// HandlePrivacy, in order.
func (p *Modeler) PrivacyEvents(ctx context.Context, events []*vigiev1.PrivacyEvent) error {
	for _, ev := range events {
		if err := p.HandlePrivacy(ctx, ev); err != nil {
			return err
		}
	}
	return nil
}

// Objected reports whether subject's objection keeps it out of site's
// model.
func (p *Modeler) Objected(ctx context.Context, site, subject string) (bool, error) {
	st := p.settings.Load()
	if st == nil {
		return false, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s, err := p.site(ctx, st, site)
	if err != nil {
		return false, err
	}
	return s.objected[subject], nil
}

// privacySubjects are the pseudonyms a privacy event names, its subject
// first, each once.
func privacySubjects(ev *vigiev1.PrivacyEvent) []string {
	var out []string
	for _, s := range append([]string{ev.GetSubject()}, ev.GetSubjects()...) {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// forgetter adapts the Modeler to sdk.Forgetter (erasures), for a host
// that gives it erasures only.
type forgetter struct{ p *Modeler }

// Forget implements sdk.Forgetter.
func (f forgetter) Forget(ctx context.Context, events []*vigiev1.PrivacyEvent) error {
	return f.p.PrivacyEvents(ctx, events)
}

// Next recommends, by Thompson sampling, the message type among
// candidates (all configured types when empty) for a subject in segments
// (or for one segment, given alone) on site.
func (p *Modeler) Next(ctx context.Context, site string, segments, candidates []string) (model.Pick, error) {
	st := p.settings.Load()
	if st == nil {
		return model.Pick{}, ErrUnknownSite
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s, err := p.site(ctx, st, site)
	if err != nil {
		return model.Pick{}, err
	}
	if len(candidates) == 0 {
		candidates = st.candidates
	}
	return s.m.NextFor(p.src, segments, candidates, p.now())
}

// Table returns site's model as of now: every contact type × message
// type with its posterior mean and credible interval.
func (p *Modeler) Table(ctx context.Context, site string) ([]model.Estimate, error) {
	st := p.settings.Load()
	if st == nil {
		return nil, ErrUnknownSite
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s, err := p.site(ctx, st, site)
	if err != nil {
		return nil, err
	}
	return s.m.Table(p.now()), nil
}

// Stats are counts of what the plugin did with the events it was given.
type Stats struct {
	// Exposures and Responses were counted in a cell (responses include
	// conversions).
	Exposures, Responses uint64
	// Unmatched responses had no exposure awaiting them; Duplicates
	// repeated one already counted; Ignored named no configured message
	// type.
	Unmatched, Duplicates, Ignored uint64
	// Machine were e-mail opens and clicks by machines; Excluded were
	// flagged sensitive (or unreadable); NotGranted granted none of the
	// purposes; Objected were of subjects whose objection keeps them out;
	// Forgotten are subjects removed.
	Machine, Excluded, NotGranted, Objected, Forgotten uint64
}

// Stats returns the counts since the plugin started.
func (p *Modeler) Stats() Stats {
	s := &p.stats
	return Stats{
		Exposures: s.exposures.Load(), Responses: s.responses.Load(),
		Unmatched: s.unmatched.Load(), Duplicates: s.duplicates.Load(), Ignored: s.ignored.Load(),
		Machine: s.machine.Load(), Excluded: s.excluded.Load(), NotGranted: s.notGranted.Load(), Objected: s.objected.Load(),
		Forgotten: s.forgotten.Load(),
	}
}

// stats are the live counters behind Stats.
type stats struct {
	exposures, responses, unmatched, duplicates, ignored atomic.Uint64
	machine, excluded, notGranted, objected, forgotten   atomic.Uint64
}

// count records what the model did with an event of kind.
func (s *stats) count(kind eventKind, o model.Outcome) {
	switch {
	case o == model.Counted && kind == kindExposure:
		s.exposures.Add(1)
	case o == model.Counted:
		s.responses.Add(1)
	case o == model.Duplicate:
		s.duplicates.Add(1)
	case o == model.NoExposure:
		s.unmatched.Add(1)
	default:
		s.ignored.Add(1)
	}
}

// grantsAny reports whether granted contains one of want.
func grantsAny(granted, want []string) bool {
	for _, w := range want {
		if slices.Contains(granted, w) {
			return true
		}
	}
	return false
}

// eventTime is the event's time, never later than when Vigie received it
// (a client clock in the future would otherwise age every other event).
func eventTime(ev *vigiev1.Event, now func() time.Time) time.Time {
	ms, recv := ev.GetTimestampMs(), ev.GetReceivedAtMs()
	switch {
	case ms <= 0 && recv <= 0:
		return now()
	case ms <= 0 || (recv > 0 && ms > recv):
		ms = recv
	}
	return time.UnixMilli(ms)
}

// properties decodes the event's properties object (raw values).
func properties(ev *vigiev1.Event) (map[string]jsontext.Value, error) {
	raw := ev.GetProperties()
	if len(raw) == 0 {
		return nil, nil
	}
	var props map[string]jsontext.Value
	if err := json.Unmarshal(raw, &props); err != nil {
		return nil, err
	}
	return props, nil
}

// excluded reports whether props sets one of names to a value other than
// false, null, "", 0.
func excluded(props map[string]jsontext.Value, names []string) bool {
	for _, n := range names {
		v, ok := props[n]
		if !ok {
			continue
		}
		switch v.Kind() {
		case 'n', 'f':
			continue
		case '"':
			var s string
			if json.Unmarshal(v, &s) == nil && s == "" {
				continue
			}
		case '0':
			var f float64
			if json.Unmarshal(v, &f) == nil && f == 0 {
				continue
			}
		}
		return true
	}
	return false
}

// stringProp returns props[name] if it is a string.
func stringProp(props map[string]jsontext.Value, name string) (string, bool) {
	v, ok := props[name]
	if !ok || v.Kind() != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}

// boolProp returns props[name] if it is a boolean.
func boolProp(props map[string]jsontext.Value, name string) (bool, bool) {
	switch props[name].Kind() {
	case 't':
		return true, true
	case 'f':
		return false, true
	}
	return false, false
}

// Uplift estimates, on site, the conversion uplift of messageType over no
// message for contactType, from treated and holdout exposures.
func (p *Modeler) Uplift(ctx context.Context, site, contactType, messageType string) (model.Uplift, error) {
	st := p.settings.Load()
	if st == nil {
		return model.Uplift{}, ErrUnknownSite
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s, err := p.site(ctx, st, site)
	if err != nil {
		return model.Uplift{}, err
	}
	return s.m.Uplift(p.src, contactType, messageType, p.now(), 0)
}

// Plugin returns the plugin's manifest and hooks, served by Main.
func Plugin() sdk.Plugin { return pluginOf(New()) }

// pluginOf returns the manifest and hooks of p.
func pluginOf(p *Modeler) sdk.Plugin {
	return sdk.Plugin{
		Manifest: sdk.Manifest{
			Name:        "response",
			Version:     Version,
			Description: "Models how each contact type responds to each message type (Beta-Binomial, decayed, Thompson sampling) from exposures, human opens, clicks and conversions.",
			// Track events only: exposures, opens, clicks and conversions.
			Filter: sdk.Filter{Types: []string{"track"}},
			// No manifest purposes: they are all-of, and the model needs
			// any of personalization or marketing; Segment checks them.
			Capabilities: []sdk.Capability{sdk.CapKV},
			ConfigSchema: []byte(configSchema),
		},
		Configurer:      p,
		Segmenter:       p,
		Forgetter:       forgetter{p},
		PrivacyListener: p,
	}
}

// Main serves the plugin; it does not return. The vigie binary calls it
// when re-executed as the response plugin.
func Main() {
	sdk.Serve(Plugin())
}
