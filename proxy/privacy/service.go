package privacy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/plugins"
	"github.com/vigie-dev/vigie/proxy/blind"
	"github.com/vigie-dev/vigie/proxy/collect"
	"github.com/vigie-dev/vigie/proxy/ledger"
	"github.com/vigie-dev/vigie/proxy/pipeline"
	"github.com/vigie-dev/vigie/proxy/pseudonymize"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
)

// Config configures a Service. Fields without a default are required.
type Config struct {
	// Store keeps the data and the requests.
	Store *storage.Store
	// Ledger is the consent ledger (objection and restriction flags).
	Ledger *ledger.Ledger
	// ErasedMessages returns the outbox messages committed with an
	// erasure's result (cluster mode: the consent ledger's tombstones,
	// which make every other node erase the subjects). Default none.
	ErasedMessages func(site string, subjects []string) ([]storage.Message, error)
	// Blind computes the blind index.
	Blind *blind.Index
	// Sites are the configured sites, for the pseudonyms of an identifier.
	Sites map[string]*pipeline.Site
	// Purposes are the configured purpose names (an objection names some).
	Purposes []string
	// Plugins are the enabled plugins' names: an erasure waits for each
	// one's acknowledgement. Default: none.
	Plugins []string
	// NodeScoped reports, in cluster mode, whether a plugin's erasures are
	// acknowledged by every node's instance (plugins.Runtime.NodeScoped):
	// the erasure then waits for each member's, one step per member.
	// Nil: none is.
	NodeScoped func(plugin string) bool
	// JetStream is the bus whose streams an erasure cleans. Nil: the
	// stream steps fail (the request ends partial).
	JetStream jetstream.JetStream
	// Streams are the streams an erasure cleans. Default streams.All().
	Streams []string
	// Auditor records every request. Default: none.
	Auditor Auditor
	// Logger receives warnings (never identifiers). Default slog.Default().
	Logger *slog.Logger
	// Peers is the rest of the cluster (cluster mode): a request is
	// announced to every member, each runs its part, and the request is
	// done when every member's step is. Nil (a single node): none.
	Peers Peers
	// PollInterval is how often the runner looks for work besides being
	// woken. Default 2s.
	PollInterval time.Duration
	// Retention is how long a completed request is kept (the store's
	// Retention.Requests, retention.requests): in cluster mode, Peers'
	// entries of a request are purged once it passed. Default
	// storage.DefaultRequestRetention.
	Retention time.Duration
	// PurgeInterval is how often, in cluster mode, the entries of the
	// requests past Retention are purged from Peers, the first time at
	// Start. Default 24h.
	PurgeInterval time.Duration
}

// Service runs privacy requests. Create it with New; Start starts its
// runner, Stop stops it.
type Service struct {
	cfg Config
	log *slog.Logger

	mu   sync.Mutex // serializes read-modify-writes of requests
	wake chan struct{}

	supp atomic.Pointer[map[string]struct{}] // site \x00 kind \x00 mac

	stop context.CancelFunc
	done chan struct{}
	wg   sync.WaitGroup // the announcement watch
}

var _ plugins.PrivacyAcker = (*Service)(nil)

// New validates cfg; nothing starts.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Ledger == nil || cfg.Blind == nil || len(cfg.Sites) == 0 {
		return nil, fmt.Errorf("%w: Store, Ledger, Blind and Sites are required", ErrInvalidConfig)
	}
	if cfg.Streams == nil {
		cfg.Streams = streams.All()
	}
	if cfg.Auditor == nil {
		cfg.Auditor = noAudit{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 2 * time.Second
	}
	if cfg.Retention <= 0 {
		cfg.Retention = storage.DefaultRequestRetention
	}
	if cfg.PurgeInterval <= 0 {
		cfg.PurgeInterval = 24 * time.Hour
	}
	s := &Service{cfg: cfg, log: cfg.Logger, wake: make(chan struct{}, 1)}
	empty := map[string]struct{}{}
	s.supp.Store(&empty)
	return s, nil
}

// Start loads the suppression set and starts the runner, which first
// resumes the requests a stop left unfinished.
func (s *Service) Start(ctx context.Context) error {
	set := map[string]struct{}{}
	err := s.cfg.Store.Suppressions(ctx, func(site string, e storage.IndexEntry, _ storage.Suppression) {
		set[suppKey(site, e.Kind, e.MAC)] = struct{}{}
	})
	if err != nil {
		return fmt.Errorf("privacy: load suppressions: %w", err)
	}
	s.supp.Store(&set)
	rctx, cancel := context.WithCancel(context.Background())
	s.stop, s.done = cancel, make(chan struct{})
	go s.run(rctx)
	if s.cfg.Peers != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.cfg.Peers.Watch(rctx, s.accept)
		}()
		s.wg.Add(1)
		go s.purgeLoop(rctx)
	}
	return nil
}

// Stop stops the runner and waits for it (a step it is running is left
// for the next start) until ctx is done.
func (s *Service) Stop(ctx context.Context) error {
	if s.stop == nil {
		return nil
	}
	s.stop()
	watched := make(chan struct{})
	go func() { s.wg.Wait(); <-s.done; close(watched) }()
	select {
	case <-watched:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("privacy: stop: %w", ctx.Err())
	}
}

func suppKey(site, kind string, mac []byte) string {
	return site + "\x00" + kind + "\x00" + string(mac)
}

// Suppressed reports whether m names a person erased with suppression (by
// its user id, anonymous id, or identify e-mail or phone): the caller
// drops it before anything is decided or stored. It costs nothing while no
// one is suppressed, one keyed MAC per identifier otherwise.
func (s *Service) Suppressed(site string, m *collect.Message) bool {
	set := *s.supp.Load()
	if len(set) == 0 {
		return false
	}
	hit := func(kind, value, region string) bool {
		if value == "" {
			return false
		}
		mac := s.cfg.Blind.MAC(site, kind, value, region)
		_, ok := set[suppKey(site, kind, mac)]
		return mac != nil && ok
	}
	if hit(blind.UserID, m.UserID, "") || hit(blind.AnonymousID, m.AnonymousID, "") || hit(blind.AnonymousID, m.PreviousID, "") {
		return true
	}
	// The erased subjects themselves, by a MAC of their pseudonym: the
	// anonymous ids (cookies) seen with the person are known only so.
	if st := s.cfg.Sites[site]; st != nil {
		for _, id := range []struct {
			kind  pseudonymize.Kind
			value string
		}{{pseudonymize.UserID, m.UserID}, {pseudonymize.AnonymousID, m.AnonymousID}, {pseudonymize.AnonymousID, m.PreviousID}} {
			if id.value == "" {
				continue
			}
			if ps := st.Subjects(id.kind, id.value); len(ps) > 0 && hit(KindSubject, ps[0], "") {
				return true
			}
		}
	}
	if len(m.Traits) == 0 {
		return false
	}
	var traits map[string]any
	if json.Unmarshal(m.Traits, &traits) != nil {
		return false
	}
	region := blind.Region(m.Context.Locale)
	for _, k := range []struct{ kind, name string }{{blind.Email, "email"}, {blind.Phone, "phone"}} {
		if v, ok := traits[k.name].(string); ok && hit(k.kind, v, region) {
			return true
		}
	}
	return false
}

// Input is a request as the API receives it.
type Input struct {
	Type       Type
	Site       string
	Kind       string
	Value      string
	Suppress   bool
	Purposes   []string
	Lift       bool
	Traits     map[string]any
	Actor      string
	TraitNames []string
}

// Create accepts a request: it finds the person's subjects now (the
// identifier's value is used here only, never stored), stores the request
// with its steps and wakes the runner.
func (s *Service) Create(ctx context.Context, in Input) (*Request, error) {
	now := time.Now().UTC()
	r := &Request{
		ID:   ulid.MustNew(ulid.Timestamp(now), ulid.DefaultEntropy()).String(),
		Type: in.Type, Site: in.Site, Status: StatusPending, CreatedAt: now, Deadline: Deadline(now),
		IdentifierKind: in.Kind,
	}
	l := s.lookupOf(in.Site, in.Kind, in.Value)
	subjects, err := s.resolveKeys(ctx, in.Site, l)
	if err != nil {
		return nil, err
	}
	r.Subjects, r.SubjectCount = subjects, len(subjects)
	step := func(name string) { r.Steps = append(r.Steps, Step{Name: name, Status: StatusPending}) }
	step("resolve")
	r.Steps[0].set(StatusDone, fmt.Sprintf("%d subject(s) found", len(subjects)))
	switch in.Type {
	case TypeAccess, TypeExport:
		step("collect")
	case TypeErase:
		if in.Suppress {
			r.Options.Suppress = true
			kind := in.Kind
			if kind == KindCookie {
				kind = KindAnonymousID
			}
			if mac := s.cfg.Blind.MAC(in.Site, kind, in.Value, ""); mac != nil {
				r.Options.SuppressMACs = append(r.Options.SuppressMACs, SuppressMAC{Kind: kind, MAC: mac})
			}
			step("suppress")
		}
		step("publish")
		for _, name := range eraseDataSteps {
			step(name)
		}
	case TypeObject, TypeRestrict:
		r.Options.Lift = in.Lift
		if in.Type == TypeObject && !in.Lift {
			r.Options.Purposes = in.Purposes
			if len(r.Options.Purposes) == 0 {
				r.Options.Purposes = []string{string(consent.Marketing)}
			}
		}
		step("ledger")
		step("profile")
	case TypeRectify:
		b, err := json.Marshal(in.Traits)
		if err != nil {
			return nil, err
		}
		r.Options.TraitNames = in.TraitNames
		r.Options.SealedTraits = s.cfg.Store.SealSecret(r.ID, b)
		step("vault")
	}
	step("receipt")
	l.SuppressMACs = r.Options.SuppressMACs
	if in.Type == TypeErase {
		l.Subjects = subjects // sealed: the others announce only the rest
	}
	announce, err := s.announce(ctx, r, l)
	if err != nil {
		return nil, err
	}
	if len(subjects) > 0 {
		if err := s.cfg.Store.PutRequestSubjects(ctx, r.ID, subjects); err != nil {
			return nil, err
		}
	}
	if err := s.save(ctx, r, announce...); err != nil {
		return nil, err
	}
	fields := []string{"identifier." + in.Kind}
	for _, n := range in.TraitNames {
		fields = append(fields, "traits."+n)
	}
	s.audit(ctx, AuditEntry{At: now, Actor: in.Actor, Action: "privacy.request." + string(in.Type), Site: in.Site, RequestID: r.ID, Fields: fields})
	s.signal()
	return r, nil
}

// eraseDataSteps are the steps storage.EraseSubjects carries out together.
var eraseDataSteps = []string{"ledger", "events", "subject_index", "links", "profile", "vault", "blind_index", "history", "physical"}

// lookupOf is what finds the subjects of an identifier on site: the
// pseudonyms of a user id or anonymous id under every active key, the
// blind-index entries of an e-mail, phone or user id.
func (s *Service) lookupOf(site, kind, value string) lookup {
	st := s.cfg.Sites[site]
	var l lookup
	entry := func(bk string) {
		if e, ok := s.cfg.Blind.Entry(site, bk, value, ""); ok {
			l.Entries = append(l.Entries, e)
		}
	}
	switch kind {
	case KindUserID:
		l.Pseudonyms = append(l.Pseudonyms, st.Subjects(pseudonymize.UserID, value)...)
		entry(blind.UserID)
	case KindAnonymousID, KindCookie:
		l.Pseudonyms = append(l.Pseudonyms, st.Subjects(pseudonymize.AnonymousID, value)...)
	case KindEmail:
		entry(blind.Email)
	case KindPhone:
		entry(blind.Phone)
	}
	return l
}

// resolveKeys finds the subjects of lookup l on site in this node's
// store: the pseudonyms, those the blind index names, then every subject
// linked to those. Only subjects the store keeps something of are
// returned.
func (s *Service) resolveKeys(ctx context.Context, site string, l lookup) ([]string, error) {
	cands := slices.Clone(l.Pseudonyms)
	for _, e := range l.Entries {
		subs, err := s.cfg.Store.BlindLookup(ctx, site, e)
		if err != nil {
			return nil, err
		}
		cands = append(cands, subs...)
	}
	const maxSubjects = 256
	seen := map[string]bool{}
	var out []string
	for len(cands) > 0 && len(out) < maxSubjects {
		c := cands[0]
		cands = cands[1:]
		if c == "" || seen[c] {
			continue
		}
		seen[c] = true
		has, err := s.cfg.Store.HasSubject(ctx, site, c)
		if err != nil {
			return nil, err
		}
		if !has {
			continue
		}
		out = append(out, c)
		links, err := s.cfg.Store.SubjectLinks(ctx, site, c)
		if err != nil {
			return nil, err
		}
		cands = append(cands, links...)
	}
	return out, nil
}

// save stores r.
func (s *Service) save(ctx context.Context, r *Request, msgs ...storage.Message) error {
	b, err := r.encode()
	if err != nil {
		return err
	}
	if s.cfg.Peers != nil && r.Origin == "" {
		m, err := s.viewMessage(r)
		if err != nil {
			return err
		}
		msgs = append(msgs[:len(msgs):len(msgs)], m)
	}
	return s.cfg.Store.PutPrivacyRequest(ctx, r.ID, b, msgs...)
}

// Get returns request id.
func (s *Service) Get(ctx context.Context, id string) (*Request, error) {
	b, err := s.cfg.Store.PrivacyRequest(ctx, id)
	if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrInvalidKey) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	r, err := decodeRequest(b)
	if err != nil {
		return nil, err
	}
	if r.Subjects, err = s.cfg.Store.RequestSubjects(ctx, id); err != nil {
		return nil, err
	}
	return r, nil
}

// List returns every request, oldest first, filtered by status and type
// when they are not empty.
func (s *Service) List(ctx context.Context, status Status, typ Type) ([]*Request, error) {
	var out []*Request
	err := s.cfg.Store.PrivacyRequests(ctx, func(_ string, v []byte) error {
		r, err := decodeRequest(v)
		if err != nil {
			s.log.Warn("privacy request does not decode; skipped")
			return nil
		}
		if r.Subjects, err = s.cfg.Store.RequestSubjects(ctx, r.ID); err != nil {
			return err
		}
		if (status == "" || r.Status == status) && (typ == "" || r.Type == typ) {
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// update applies fn to request id under the lock and saves it (with msgs)
// when fn returns true.
func (s *Service) update(ctx context.Context, id string, fn func(r *Request) (bool, []storage.Message, error)) (*Request, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	changed, msgs, err := fn(r)
	if err != nil || !changed {
		return r, err
	}
	return r, s.save(ctx, r, msgs...)
}

// PrivacyAck records a plugin's acknowledgement of an erasure as the
// plugin's step (plugins.PrivacyAcker). A finished request, or on a
// single node an unknown one, is ignored; in cluster mode an
// acknowledgement of a request this node does not hold is forwarded
// (another node's erasure whose announcement has not reached it yet).
func (s *Service) PrivacyAck(ctx context.Context, a plugins.PrivacyAck) error {
	forward := false
	id, node, ofPart := strings.Cut(a.RequestID, ".") // partEventID
	if ofPart && s.cfg.Peers == nil {
		return nil
	}
	_, err := s.update(ctx, id, func(r *Request) (bool, []storage.Message, error) {
		switch {
		case ofPart && (node != s.cfg.Peers.Node() || r.Origin == ""):
			forward = true // node's own event: its plugin step is there
			return false, nil, nil
		case !ofPart && r.Origin != "" && s.cfg.Peers != nil:
			forward = true // another node's erasure: its plugin step is there
			return false, nil, nil
		}
		st := r.step(pluginStep(a.Plugin, a.Node))
		if st == nil && a.Node != "" { // published before its plugin was node-scoped
			st = r.step(pluginStep(a.Plugin, ""))
		}
		if st == nil || r.finished() || (st.Status.terminal() && st.Status != StatusFailed) {
			return false, nil, nil
		}
		st.set(ackStatus(a.Status), a.Detail)
		return true, nil, nil
	})
	if err == nil && forward {
		err = s.forwardAck(ctx, id, a)
	}
	if errors.Is(err, ErrNotFound) {
		if s.cfg.Peers == nil {
			return nil
		}
		// Another node's erasure this node has not seen announced yet
		// (the plugins share their consumers, so this node's plugin may
		// take the event before the watch hands the request over): its
		// plugin step is on the node that published it.
		err = s.forwardUnknownAck(ctx, a)
	}
	if err == nil {
		s.signal()
	}
	return err
}

// ackStatus is a plugin acknowledgement's status as a step's (failed when
// it is none of done, not_supported, skipped, failed).
func ackStatus(status string) Status {
	switch st := Status(status); st {
	case StatusDone, StatusNotSupported, StatusSkipped, StatusFailed:
		return st
	}
	return StatusFailed
}

func (s *Service) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run is the runner goroutine.
func (s *Service) run(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		s.runPending(ctx)
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-t.C:
		}
	}
}

// runPending advances every unfinished request, oldest first.
func (s *Service) runPending(ctx context.Context) {
	var ids []string
	err := s.cfg.Store.PrivacyRequests(ctx, func(id string, v []byte) error {
		var head struct {
			Status Status `json:"status"`
		}
		if json.Unmarshal(v, &head) == nil && head.Status != StatusDone && head.Status != StatusFailed && head.Status != StatusPartial {
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("privacy requests not readable; retrying", "err", err)
		}
		return
	}
	for _, id := range ids {
		if ctx.Err() != nil {
			return
		}
		if err := s.advance(ctx, id); err != nil && ctx.Err() == nil {
			s.log.Warn("privacy request step failed; retrying", "request_id", id, "err", err)
		}
	}
}

// advance runs request id's steps in order until one must wait (a plugin's
// acknowledgement) or the request is over.
func (s *Service) advance(ctx context.Context, id string) error {
	if s.cfg.Peers != nil {
		r, err := s.Get(ctx, id)
		if err != nil {
			return err
		}
		if r.Origin == "" || slices.ContainsFunc(r.Steps, func(st Step) bool {
			return strings.HasPrefix(st.Name, pluginStepPrefix) && !st.Status.terminal()
		}) {
			// The other nodes' steps (or, in a part, the plugins'
			// acknowledgements of its own event, handled elsewhere)
			// unreadable (NATS unreachable): this node's own steps go on;
			// the next poll reads them.
			if err := s.pollNodes(ctx, r); err != nil && ctx.Err() == nil {
				s.log.Warn("privacy: the other nodes' steps are unreadable; retrying", "request_id", id, "err", err)
			}
		}
	}
	for ctx.Err() == nil {
		r, err := s.Get(ctx, id)
		if err != nil {
			return err
		}
		st := r.next()
		if st == nil {
			return nil
		}
		if strings.HasPrefix(st.Name, pluginStepPrefix) {
			return nil // waiting for the plugin's acknowledgement
		}
		if r.Status == StatusPending {
			if _, err := s.update(ctx, id, func(r *Request) (bool, []storage.Message, error) {
				r.Status = StatusRunning
				return true, nil, nil
			}); err != nil {
				return err
			}
		}
		if err := s.runStep(ctx, r, st.Name); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// markRunning commits step name as running before a long step, so that the
// request shows it and a crash re-runs it.
func (s *Service) markRunning(ctx context.Context, id, name string) error {
	_, err := s.update(ctx, id, func(r *Request) (bool, []storage.Message, error) {
		st := r.step(name)
		if st == nil || st.Status == StatusRunning {
			return false, nil, nil
		}
		st.set(StatusRunning, "")
		return true, nil, nil
	})
	return err
}

// finish sets the request's final status from its steps.
func finish(r *Request) {
	now := time.Now().UTC()
	r.CompletedAt = &now
	r.Status = StatusDone
	for _, st := range r.Steps {
		if st.Status == StatusFailed || st.Status == StatusNotSupported {
			r.Status = StatusPartial
		}
	}
}

// privacyEvent is the privacy event of a request.
func privacyEvent(r *Request, action vigiev1.PrivacyAction) *vigiev1.PrivacyEvent {
	pe := &vigiev1.PrivacyEvent{Site: r.Site, Action: action, AtMs: time.Now().UnixMilli(), RequestId: r.ID, Subjects: slices.Clone(r.Subjects)}
	if len(r.Subjects) > 0 {
		pe.Subject = r.Subjects[0]
	}
	return pe
}

// audit records e in the audit trail; an entry that cannot be recorded is
// logged, not a reason to refuse or stop a request.
func (s *Service) audit(ctx context.Context, e AuditEntry) {
	if err := s.cfg.Auditor.Audit(ctx, e); err != nil {
		s.log.Warn("privacy: audit entry not recorded", "action", e.Action, "err", err)
	}
}
