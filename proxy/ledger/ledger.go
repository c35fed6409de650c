// Package ledger is Vigie's consent ledger: the last explicit consent choice
// of each subject on each site, read for every event that carries no
// consent signal of its own, so that a choice made once (a banner, a
// preference page, a withdrawal) applies to the subject's very next event.
//
// Each new choice is committed together with its privacy event
// (vigie.privacy.<site>.consent) in the storage outbox, in one transaction:
// the syncers (a CRM) hear of every recorded choice, withdrawals included,
// even when NATS is down and Vigie restarts before it is back. Nothing here
// waits for NATS.
//
// The ledger keeps a write-through cache in front of its Backend. The
// Backend is an interface so that a replicated implementation (JetStream KV,
// for several Vigie nodes) can serve it; *storage.Store is the single-node
// one.
package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
)

// Backend stores ledger entries. PutConsent commits the entry and msgs (the
// privacy events announcing it) atomically; Consent returns
// storage.ErrNotFound when the subject has no entry.
type Backend interface {
	Consent(ctx context.Context, site, subject string) (storage.ConsentEntry, error)
	PutConsent(ctx context.Context, site, subject string, e storage.ConsentEntry, msgs ...storage.Message) error
}

var _ Backend = (*storage.Store)(nil)

// Config configures a Ledger.
type Config struct {
	// Backend holds the entries (required).
	Backend Backend
	// Purposes are the configured purposes; a choice denies each of them
	// it does not grant (necessary is never recorded as denied).
	Purposes []consent.Purpose
	// ProfilePurposes allow a profile: when a choice withdraws every one
	// of them from a subject that had one, OnDrop is called.
	ProfilePurposes []consent.Purpose
	// OnDrop is called after a choice withdrew every profile purpose
	// (optional): the caller deletes the subject's profile.
	OnDrop func(ctx context.Context, site, subject string)
	// Logger receives warnings (never identifiers). Default slog.Default().
	Logger *slog.Logger
	// MaxCache bounds the cache; past it, it is emptied (entries are read
	// again from the Backend). Default 100 000.
	MaxCache int
	// Lifetime is how long a recorded choice applies on each site, counted
	// from when it was made and never extended by the subject's later
	// events (nor by an objection or restriction written later); an
	// expired choice reads as none (consent must be asked again), and the
	// same choice made again is recorded anew. Absent or 0:
	// storage.ConsentTTL (13 months).
	Lifetime map[string]time.Duration
	// Now is the clock (tests). Default time.Now.
	Now func() time.Time
}

// defaultMaxCache is Config.MaxCache's default.
const defaultMaxCache = 100_000

// Ledger is the consent ledger. It is safe for concurrent use.
type Ledger struct {
	cfg Config
	log *slog.Logger
	all []consent.Purpose // configured purposes but necessary

	mu    sync.Mutex
	cache map[string]Entry // site \x00 subject
	// gen counts the cache's writes and drops: a miss fills the cache
	// only if none happened while it read the Backend (else it could put
	// back an entry older than the one a write or a drop left).
	gen uint64
}

// Entry is a subject's recorded choice; Found is false when there is none.
// Objected and Restricted are the subject's objection (Art. 21) and
// restriction (Art. 18), which apply whatever the choice.
type Entry struct {
	Granted, Denied consent.Set
	Found           bool
	Objected        consent.Set
	Restricted      bool
	// At is when the choice was made; Expires when it stops applying (At
	// plus the site's lifetime).
	At, Expires time.Time
	// Expired is true when the subject's last choice has ended (Found is
	// then false; an objection or restriction still applies).
	Expired bool
	// stored is the entry as stored (nil: none).
	stored *storage.ConsentEntry
}

// Proof is where a recorded choice came from.
type Proof struct {
	// Source is payload, pixel, preference_page, request… Default
	// "explicit".
	Source string
	// EventID is the event that carried the choice, if any.
	EventID string
	// Hash is the hex SHA-256 of the signal as sent (HashSignal).
	Hash string
	// At is when the choice was made, if earlier than now (an imported
	// consent proof's date). Default: now.
	At time.Time
}

// HashSignal is the Proof.Hash of a consent signal as it was sent.
func HashSignal(raw []byte) string {
	if len(raw) == 0 {
		return ""
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

// New returns a ledger over cfg.Backend.
func New(cfg Config) *Ledger {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxCache <= 0 {
		cfg.MaxCache = defaultMaxCache
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	l := &Ledger{cfg: cfg, log: cfg.Logger}
	for _, p := range cfg.Purposes {
		if p != consent.Necessary {
			l.all = append(l.all, p)
		}
	}
	return l
}

func key(site, subject string) string { return site + "\x00" + subject }

// lifetime is how long a choice applies on site.
func (l *Ledger) lifetime(site string) time.Duration {
	if d := l.cfg.Lifetime[site]; d > 0 {
		return d
	}
	return storage.ConsentTTL
}

// Get returns subject's entry on site, from the cache or the Backend; a
// choice older than the site's lifetime is not Found but Expired (its
// objection and restriction still apply). An unreadable Backend is logged
// and reads as no entry.
func (l *Ledger) Get(ctx context.Context, site, subject string) Entry {
	e := l.get(ctx, site, subject)
	if e.Found && !l.cfg.Now().Before(e.Expires) {
		e.Found, e.Expired = false, true
		e.Granted, e.Denied = consent.Set{}, consent.Set{}
	}
	return e
}

// get is Get without the expiry check.
func (l *Ledger) get(ctx context.Context, site, subject string) Entry {
	k := key(site, subject)
	l.mu.Lock()
	e, ok := l.cache[k]
	gen := l.gen
	l.mu.Unlock()
	if ok {
		return e
	}
	ce, err := l.cfg.Backend.Consent(ctx, site, subject)
	switch {
	case err == nil:
		e.Found = ce.Chose()
		e.Granted, _ = consent.ParseSet(ce.Granted...)
		e.Denied, _ = consent.ParseSet(ce.Denied...)
		e.Objected, _ = consent.ParseSet(ce.Objected...)
		e.Restricted = ce.Restricted
		e.At = ce.ChoseAt()
		e.Expires = e.At.Add(l.lifetime(site))
		e.stored = &ce
	case !errors.Is(err, storage.ErrNotFound):
		l.log.Warn("consent ledger unreadable; deciding without it", "err", err)
		return e
	}
	l.mu.Lock()
	if l.gen == gen {
		l.store(k, e)
	}
	l.mu.Unlock()
	return e
}

// put caches e, the entry a write just stored.
func (l *Ledger) put(k string, e Entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gen++
	l.store(k, e)
}

// store caches e; l.mu is held.
func (l *Ledger) store(k string, e Entry) {
	if l.cache == nil || len(l.cache) >= l.cfg.MaxCache {
		l.cache = make(map[string]Entry, 1024)
	}
	l.cache[k] = e
}

// Forget drops subject's entry from the cache (after an erasure removed
// it from the Backend).
func (l *Ledger) Forget(site, subject string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gen++
	delete(l.cache, key(site, subject))
}

// Applied tells the ledger that next replaced prev (the zero entry if
// there was none) in the Backend from outside the ledger (another node's
// choice, applied by the cluster's watch): the cache entry is dropped and,
// if the change withdrew every profile purpose from a subject that had
// one, OnDrop is called, as for a choice recorded here.
func (l *Ledger) Applied(ctx context.Context, site, subject string, prev, next storage.ConsentEntry) {
	l.Forget(site, subject)
	had, _ := consent.ParseSet(prev.Granted...)
	has, _ := consent.ParseSet(next.Granted...)
	if prev.Chose() && l.profiled(had) && !l.profiled(has) && l.cfg.OnDrop != nil {
		l.cfg.OnDrop(ctx, site, subject)
	}
}

// profiled reports whether s holds a profile purpose.
func (l *Ledger) profiled(s consent.Set) bool {
	return slices.ContainsFunc(l.cfg.ProfilePurposes, func(p consent.Purpose) bool { return s.Has(p) })
}

// Record stores an explicit choice, with its privacy event, when it differs
// from the recorded one. A decision that is not pseudonymous records that
// nothing is granted. The error is the Backend's (the choice is then not
// recorded: the caller answers so that the client retries).
func (l *Ledger) Record(ctx context.Context, site, subject string, d consent.Decision) error {
	return l.RecordWithProof(ctx, site, subject, d, Proof{})
}

// RecordFrom is Record with the choice's source named (e.g.
// "preference_page"), kept with the entry as its proof.
func (l *Ledger) RecordFrom(ctx context.Context, site, subject string, d consent.Decision, source string) error {
	return l.RecordWithProof(ctx, site, subject, d, Proof{Source: source})
}

// RecordWithProof is Record with the choice's proof, kept in the subject's
// consent history. The subject's objection and restriction are kept.
func (l *Ledger) RecordWithProof(ctx context.Context, site, subject string, d consent.Decision, proof Proof) error {
	old := l.get(ctx, site, subject) // expired or not: a profile may be left of it
	granted := d.Granted
	if d.Outcome != consent.Pseudonymous {
		granted = consent.Set{}
	}
	var refused []consent.Purpose
	for _, p := range l.all {
		if !granted.Has(p) {
			refused = append(refused, p)
		}
	}
	denied := consent.NewSet(refused...)
	now := l.cfg.Now()
	if old.Found && now.Before(old.Expires) && old.Granted == granted && old.Denied == denied {
		return nil
	}
	at := now
	if !proof.At.IsZero() && proof.At.Before(now) {
		at = proof.At
	}
	if proof.Source == "" {
		proof.Source = "explicit"
	}
	e := storage.ConsentEntry{Granted: granted.Names(), Denied: denied.Names(), Source: proof.Source, AtMs: at.UnixMilli(),
		EventID: proof.EventID, Proof: proof.Hash, Objected: old.Objected.Names(), Restricted: old.Restricted}
	if old.Objected.Len() == 0 {
		e.Objected = nil
	}
	msg, err := PrivacyMessage(&vigiev1.PrivacyEvent{
		Site: site, Subject: subject, Action: vigiev1.PrivacyAction_PRIVACY_ACTION_CONSENT_CHANGED,
		Purposes: e.Granted, AtMs: e.AtMs,
		RequestId: ulid.MustNew(ulid.Timestamp(now), ulid.DefaultEntropy()).String(),
	})
	if err == nil {
		err = l.cfg.Backend.PutConsent(ctx, site, subject, e, msg)
	}
	if err != nil {
		l.log.Warn("consent choice not recorded", "err", err)
		return err
	}
	at = time.UnixMilli(e.AtMs)
	l.put(key(site, subject), Entry{Granted: granted, Denied: denied, Found: true, Objected: old.Objected, Restricted: old.Restricted,
		At: at, Expires: at.Add(l.lifetime(site)), stored: &e})
	if old.Found && l.profiled(old.Granted) && !l.profiled(granted) && l.cfg.OnDrop != nil {
		l.cfg.OnDrop(ctx, site, subject)
	}
	return nil
}

// PrivacyMessage is the outbox message of a privacy event: its subject and
// deterministic Nats-Msg-Id come from package streams, so that the event
// published again after a crash is deduplicated.
func PrivacyMessage(e *vigiev1.PrivacyEvent) (storage.Message, error) {
	data, err := proto.Marshal(e)
	if err != nil {
		return storage.Message{}, err
	}
	return storage.Message{Topic: streams.PrivacySubject(e), ID: streams.PrivacyMsgID(e), Data: data}, nil
}

// SetLimits records, for every one of subjects on site, an objection
// (objected: the purposes objected to, empty to lift it; nil keeps it as it
// is) and a restriction (nil keeps it), keeping their consent choices, with
// msgs (the privacy events announcing them) committed with the first
// subject's entry. source names where it came from ("request",
// "preference_page"…).
func (l *Ledger) SetLimits(ctx context.Context, site string, subjects []string, objected *consent.Set, restricted *bool, source string, msgs ...storage.Message) error {
	now := l.cfg.Now().UnixMilli()
	for i, subject := range subjects {
		old := l.get(ctx, site, subject)
		e := storage.ConsentEntry{Objected: old.Objected.Names(), Restricted: old.Restricted}
		if old.stored != nil {
			e = *old.stored
		}
		if e.Chose() && e.ChoiceAtMs == 0 {
			e.ChoiceAtMs = e.AtMs // an objection or restriction does not extend the choice
		}
		e.Source, e.AtMs, e.EventID, e.Proof = source, now, "", ""
		ne := old
		if objected != nil {
			ne.Objected = *objected
		}
		if restricted != nil {
			ne.Restricted = *restricted
		}
		e.Objected, e.Restricted = nil, ne.Restricted
		if ne.Objected.Len() > 0 {
			e.Objected = ne.Objected.Names()
		}
		var m []storage.Message
		if i == 0 {
			m = msgs
		}
		if err := l.cfg.Backend.PutConsent(ctx, site, subject, e, m...); err != nil {
			return err
		}
		ne.stored = &e
		l.put(key(site, subject), ne)
	}
	return nil
}

// Reader returns the ledger as the pipeline reads it during one request.
func (l *Ledger) Reader(ctx context.Context) Reader {
	return Reader{l: l, ctx: ctx}
}

// Reader adapts a Ledger to pipeline.LedgerReader for one request.
type Reader struct {
	l   *Ledger
	ctx context.Context
}

// Consent returns subject's recorded choice on site as a signal, and
// whether there is one (pipeline.LedgerReader).
func (r Reader) Consent(site, subject string) (consent.Signal, bool) {
	e := r.l.Get(r.ctx, site, subject)
	if !e.Found {
		return consent.Signal{}, false
	}
	return consent.Signal{Source: consent.SourceLedger, Granted: e.Granted, Denied: e.Denied}, true
}

// Limits returns subject's objection and restriction on site
// (pipeline.LimitReader).
func (r Reader) Limits(site, subject string) (consent.Set, bool) {
	e := r.l.Get(r.ctx, site, subject)
	return e.Objected, e.Restricted
}
