// Package reaction is the host's read of the response plugin's model
// (plugins/response): the table of contact types × message types with
// posterior means and credible intervals, the next best message for a
// subject or a segment by Thompson sampling, and the holdout uplift. It
// reads what the plugin writes in its key-value space (in the host's
// store): the cells summary, written with every flush of the plugin's
// state (at most flush_interval behind), and the objected subjects. So
// the admin API and the console answer while the plugin restarts, without
// a call into the plugin process and without the per-subject state.
package reaction

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/vigie-dev/vigie/plugins/response"
	"github.com/vigie-dev/vigie/plugins/response/model"
	"github.com/vigie-dev/vigie/storage"
)

// DefaultPlugin is the name the response plugin is configured under.
const DefaultPlugin = "response"

// Store is what the reader needs of the host's store (*storage.Store).
type Store interface {
	// KVGet reads plugin's key-value space (storage.ErrNotFound when
	// absent).
	KVGet(ctx context.Context, plugin, key string) ([]byte, error)
	// Profile returns a subject's profile (storage.ErrNotFound).
	Profile(ctx context.Context, site, subject string) (*storage.Profile, error)
}

// Config configures a Reader.
type Config struct {
	// Store is the host's store; required.
	Store Store
	// Plugin is the plugin's configured name. Default DefaultPlugin.
	Plugin string
	// PluginConfig is the plugin's configuration section (JSON), the one
	// the plugin runs with; it is validated as the plugin validates it.
	PluginConfig []byte
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Peers, in cluster mode, gives the other nodes' summaries, added to
	// this node's (each node models the subjects of the partitions it
	// owns; a summary that does not decode is left out); nil for a
	// single node.
	Peers Peers
}

// Peers gives the other nodes' summaries of the model
// (proxy/cluster.ResponseSummaries).
type Peers interface {
	// Others returns the other nodes' summaries of site.
	Others(ctx context.Context, site string) ([][]byte, error)
}

// Reader reads the response model. It is safe for concurrent use.
type Reader struct {
	cfg  Config
	view response.View
	mu   sync.Mutex // guards src
	src  mrand.Source
}

// Model is what the console needs from the response model (a Reader).
type Model interface {
	// Table returns site's model.
	Table(ctx context.Context, site string) (Table, error)
	// Next recommends a message type for a subject or a segment.
	Next(ctx context.Context, site string, q Query) (Pick, error)
	// Uplift compares a message type with no message, per contact type.
	Uplift(ctx context.Context, site, messageType, contactType string) ([]Uplift, error)
}

var _ Model = (*Reader)(nil)

// New returns a Reader for the plugin configured with cfg.PluginConfig.
func New(cfg Config) (*Reader, error) {
	if cfg.Store == nil {
		return nil, errors.New("reaction: no store")
	}
	if cfg.Plugin == "" {
		cfg.Plugin = DefaultPlugin
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	view, err := response.ParseView(cfg.PluginConfig)
	if err != nil {
		return nil, err
	}
	var seed [16]byte
	_, _ = rand.Read(seed[:])
	return &Reader{cfg: cfg, view: view,
		src: mrand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:]))}, nil
}

// MessageTypes lists the configured message types.
func (r *Reader) MessageTypes() []string {
	out := make([]string, len(r.view.Model.MessageTypes))
	for i, mt := range r.view.Model.MessageTypes {
		out[i] = mt.Name
	}
	return out
}

// ContactType is a configured contact type.
type ContactType struct {
	Name     string   `json:"name"`
	Segments []string `json:"segments"`
}

// Cell is one contact type × message type: the decayed counts and the
// posterior of its response rate.
type Cell struct {
	ContactType string `json:"contact_type"`
	MessageType string `json:"message_type"`
	// Exposures and Responses are the decayed counts (treated arm).
	Exposures float64 `json:"exposures"`
	Responses float64 `json:"responses"`
	// Mean, Lower and Upper are the posterior mean and credible interval.
	Mean  float64 `json:"mean"`
	Lower float64 `json:"lower"`
	Upper float64 `json:"upper"`
	// PriorMean and PriorStrength are the prior learnt from the message
	// type's other cells.
	PriorMean     float64 `json:"prior_mean"`
	PriorStrength float64 `json:"prior_strength"`
}

// Table is a site's model as of At.
type Table struct {
	Site string    `json:"site"`
	At   time.Time `json:"at"`
	// LatestEvent is the time of the latest event the model has seen
	// (zero before any).
	LatestEvent time.Time `json:"latest_event,omitzero"`
	// Interval is the mass of the credible intervals.
	Interval     float64       `json:"interval"`
	ContactTypes []ContactType `json:"contact_types"`
	MessageTypes []string      `json:"message_types"`
	// Cells are every contact type (configuration order, "other" last) ×
	// message type (configuration order).
	Cells []Cell `json:"cells"`
}

// Query names whom Next recommends for: a subject (its contact type from
// its profile's segments) or a segment alone.
type Query struct {
	// Subject is a pseudonym.
	Subject string
	// Segment is a segment name (used when Subject is empty).
	Segment string
	// Candidates are message types; empty: the configured candidates.
	Candidates []string
}

// Candidate is one message type Next considered.
type Candidate struct {
	MessageType string  `json:"message_type"`
	Exposures   float64 `json:"exposures"`
	Responses   float64 `json:"responses"`
	Mean        float64 `json:"mean"`
	Lower       float64 `json:"lower"`
	Upper       float64 `json:"upper"`
	// Draw is the rate sampled from the posterior; the highest wins.
	Draw float64 `json:"draw"`
}

// Pick is a recommendation.
type Pick struct {
	Site        string      `json:"site"`
	ContactType string      `json:"contact_type"`
	MessageType string      `json:"message_type"`
	Candidates  []Candidate `json:"candidates"`
	At          time.Time   `json:"at"`
	// Method names how it was chosen.
	Method string `json:"method"`
}

// Arm is the conversion-rate posterior of one arm of a cell.
type Arm struct {
	Exposures   float64 `json:"exposures"`
	Conversions float64 `json:"conversions"`
	Mean        float64 `json:"mean"`
	Lower       float64 `json:"lower"`
	Upper       float64 `json:"upper"`
}

// Uplift is the effect of a message type over no message on conversions
// for one contact type: treated exposures against holdout exposures.
type Uplift struct {
	ContactType string `json:"contact_type"`
	MessageType string `json:"message_type"`
	Treated     Arm    `json:"treated"`
	Holdout     Arm    `json:"holdout"`
	// Mean, Lower and Upper are the difference treated − holdout and its
	// credible interval; ProbPositive is P(uplift > 0).
	Mean         float64 `json:"mean"`
	Lower        float64 `json:"lower"`
	Upper        float64 `json:"upper"`
	ProbPositive float64 `json:"prob_positive"`
	Draws        int     `json:"draws"`
}

// model reads site's summary, with the other nodes' added in cluster
// mode; a site the plugin has written nothing for yet is an empty model
// (every cell at its prior).
func (r *Reader) model(ctx context.Context, site string) (*model.Model, error) {
	raw, err := r.cfg.Store.KVGet(ctx, r.cfg.Plugin, response.SummaryKey(site))
	switch {
	case errors.Is(err, storage.ErrNotFound) && r.cfg.Peers == nil:
		return model.New(r.view.Model)
	case errors.Is(err, storage.ErrNotFound):
		empty, err := model.New(r.view.Model)
		if err != nil {
			return nil, err
		}
		if raw, err = empty.MarshalSummary(); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	m, err := model.NewSummary(r.view.Model, raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if r.cfg.Peers == nil {
		return m, nil
	}
	others, err := r.cfg.Peers.Others(ctx, site)
	if err != nil {
		return nil, fmt.Errorf("%w: the other nodes' share: %w", ErrUnavailable, err)
	}
	for _, o := range others {
		// A share that does not read (a node of another version during a
		// rolling upgrade) is left out rather than failing every read.
		if om, err := model.NewSummary(r.view.Model, o); err == nil {
			_ = m.AddSummary(om) // one configuration: the same shape
		}
	}
	return m, nil
}

// Table returns site's model as of now.
func (r *Reader) Table(ctx context.Context, site string) (Table, error) {
	m, err := r.model(ctx, site)
	if err != nil {
		return Table{}, err
	}
	now := r.cfg.Now()
	t := Table{Site: site, At: now, LatestEvent: m.Clock(), Interval: m.Config().Interval, MessageTypes: m.MessageTypes()}
	for _, ct := range r.view.Model.ContactTypes {
		t.ContactTypes = append(t.ContactTypes, ContactType{Name: ct.Name, Segments: slices.Clone(ct.Segments)})
	}
	t.ContactTypes = append(t.ContactTypes, ContactType{Name: model.Other, Segments: []string{}})
	for _, e := range m.Table(now) {
		t.Cells = append(t.Cells, Cell{
			ContactType: e.ContactType, MessageType: e.MessageType, Exposures: e.Exposures, Responses: e.Responses,
			Mean: e.Mean, Lower: e.Lower, Upper: e.Upper, PriorMean: e.PriorMean, PriorStrength: e.PriorStrength,
		})
	}
	return t, nil
}

// Next recommends, by Thompson sampling on the cell posteriors, the
// message type among q's candidates for q's subject (the contact type of
// its profile's segments) or segment. A subject without a profile is
// ErrUnknownSubject; one whose latest event granted none of the plugin's
// purposes, or whose objection keeps it out of the model, is
// ErrNotModelled: recommending a marketing message to a person who
// objected to it would be processing for that purpose.
func (r *Reader) Next(ctx context.Context, site string, q Query) (Pick, error) {
	cands := q.Candidates
	if len(cands) == 0 {
		cands = r.view.Candidates
	}
	for _, c := range cands {
		if !slices.ContainsFunc(r.view.Model.MessageTypes, func(mt model.MessageType) bool { return mt.Name == c }) {
			return Pick{}, fmt.Errorf("%w: %q", ErrUnknownMessageType, c)
		}
	}
	if len(cands) == 0 {
		return Pick{}, ErrNoCandidates
	}
	segments := []string{q.Segment}
	if q.Subject != "" {
		p, err := r.cfg.Store.Profile(ctx, site, q.Subject)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			return Pick{}, ErrUnknownSubject
		case err != nil:
			return Pick{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		if !slices.ContainsFunc(p.Purposes, func(pu string) bool { return slices.Contains(r.view.Purposes, pu) }) {
			return Pick{}, fmt.Errorf("%w: its consent grants none of %v", ErrNotModelled, r.view.Purposes)
		}
		objected, err := r.objected(ctx, site, q.Subject)
		if err != nil {
			return Pick{}, err
		}
		if objected {
			return Pick{}, fmt.Errorf("%w: the person objected", ErrNotModelled)
		}
		segments = p.Segments
	}
	m, err := r.model(ctx, site)
	if err != nil {
		return Pick{}, err
	}
	now := r.cfg.Now()
	r.mu.Lock()
	pick, err := m.NextFor(r.src, segments, cands, now)
	r.mu.Unlock()
	if err != nil {
		return Pick{}, err
	}
	out := Pick{Site: site, ContactType: pick.ContactType, MessageType: pick.MessageType, At: now, Method: "thompson_sampling"}
	for _, c := range pick.Candidates {
		out.Candidates = append(out.Candidates, Candidate{MessageType: c.MessageType, Exposures: c.Exposures, Responses: c.Responses,
			Mean: c.Mean, Lower: c.Lower, Upper: c.Upper, Draw: c.Draw})
	}
	return out, nil
}

// objected reports whether the plugin keeps subject out of site's model
// for an objection.
func (r *Reader) objected(ctx context.Context, site, subject string) (bool, error) {
	raw, err := r.cfg.Store.KVGet(ctx, r.cfg.Plugin, response.ObjectedKey(site, subject))
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		// Unreadable: answer as if objected rather than recommend.
		return true, nil
	}
	_, found := slices.BinarySearch(list, subject)
	return found, nil
}

// Uplift estimates, on site, the conversion uplift of messageType over no
// message (holdout exposures) for contactType, or for every contact type
// when it is empty.
func (r *Reader) Uplift(ctx context.Context, site, messageType, contactType string) ([]Uplift, error) {
	m, err := r.model(ctx, site)
	if err != nil {
		return nil, err
	}
	cts := m.ContactTypes()
	if contactType != "" {
		if !slices.Contains(cts, contactType) {
			return nil, fmt.Errorf("%w: %q", ErrUnknownContactType, contactType)
		}
		cts = []string{contactType}
	}
	now := r.cfg.Now()
	var out []Uplift
	for _, ct := range cts {
		r.mu.Lock()
		u, err := m.Uplift(r.src, ct, messageType, now, 0)
		r.mu.Unlock()
		switch {
		case errors.Is(err, model.ErrUnknownMessageType):
			return nil, fmt.Errorf("%w: %q", ErrUnknownMessageType, messageType)
		case errors.Is(err, model.ErrNoConversions):
			return nil, fmt.Errorf("%w: %q", ErrNoConversions, messageType)
		case err != nil:
			return nil, err
		}
		out = append(out, Uplift{
			ContactType: ct, MessageType: messageType, Treated: arm(u.Treated), Holdout: arm(u.Holdout),
			Mean: u.Mean, Lower: u.Lower, Upper: u.Upper, ProbPositive: u.ProbPositive, Draws: u.Draws,
		})
	}
	return out, nil
}

// arm is the JSON form of one arm's conversion posterior.
func arm(e model.Estimate) Arm {
	return Arm{Exposures: e.Exposures, Conversions: e.Responses, Mean: e.Mean, Lower: e.Lower, Upper: e.Upper}
}
