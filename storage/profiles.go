package storage

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	badger "github.com/dgraph-io/badger/v4"
	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// Profile limits and lifetimes.
const (
	// bucketHorizon is how many hours of counter buckets a profile keeps,
	// counted back from the hour of its LastSeenMs (30 days).
	bucketHorizon = 720
	// maxCounterKeys caps the (type, key) counters of one profile; past it
	// the least recently used counter (oldest newest bucket) is dropped.
	maxCounterKeys = 500
	// maxCounterKeyLen truncates a counter key (track name or path) so a
	// profile stays small whatever clients send.
	maxCounterKeyLen = 256
	// maxTypeLen bounds an event type.
	maxTypeLen = 64
	// maxAttributes bounds the merged Attributes object of a profile.
	maxAttributes = 64 << 10
	// markerTTL is how long ObserveEvent and ApplySegment remember an event.
	markerTTL = 48 * time.Hour
	// segLogTTL is how long the recent segment changes log keeps an entry.
	segLogTTL = 30 * 24 * time.Hour
	// MaxPortableMarkers is how many event ids (and as many outcomes) a
	// portable profile remembers: more than a consumer's unacknowledged
	// messages (plugins: 4 × BatchSize), which are all that can be
	// delivered again after the profile moved.
	MaxPortableMarkers = 512
	// profileLockStripes is the number of per-subject lock stripes.
	profileLockStripes = 64
)

// Profile is what Vigie knows about one pseudonymous subject on one site,
// stored in a compact binary form (profiles_codec.go; older profiles are
// JSON, with the field names below) under p/<site>\x00<subject>. Everything in it is
// pseudonymous: subjects are HMACs and paths are already scrubbed.
type Profile struct {
	// Site is the site id.
	Site string `json:"s"`
	// Subject is the pseudonym.
	Subject string `json:"u"`
	// FirstSeenMs and LastSeenMs are the earliest and latest event times
	// observed, Unix milliseconds.
	FirstSeenMs int64 `json:"f,omitzero"`
	LastSeenMs  int64 `json:"l,omitzero"`
	// Purposes are the purposes granted by the subject's latest event (by
	// event time; an event older than LastSeenMs does not change them).
	Purposes []string `json:"p,omitempty"`
	// Counters holds hourly buckets per type + "\x00" + key, where key is
	// the track name, the page/screen path (the name when there is no
	// path) for page and screen, and "" for identify, group and alias.
	// Buckets are sorted by hour; those 720 hours (30 days) or more before
	// the hour of LastSeenMs are pruned on every write. At most 500 keys
	// are kept: past that, the key whose newest bucket is oldest (least
	// recently used) is dropped. Keys are truncated to 256 bytes.
	Counters map[string][]Bucket `json:"c,omitempty"`
	// Campaign is the last campaign seen (name, source, medium, term,
	// content; click ids are never kept).
	Campaign *vigiev1.Campaign `json:"cp,omitempty"`
	// Country is the last GeoIP country (ISO 3166-1 alpha-2) seen.
	Country string `json:"co,omitempty"`
	// Score is the lead score maintained by segmenter plugins.
	Score int64 `json:"sc,omitzero"`
	// Segments are the segments the subject is in, sorted.
	Segments []string `json:"sg,omitempty"`
	// Attributes is a JSON object maintained by segmenter plugins through
	// RFC 7396 merge patches; nil when empty.
	Attributes json.RawMessage `json:"a,omitempty"`
	// Events and Outcomes are, with Config.PortableProfiles (cluster
	// mode), the idempotency markers kept in the profile itself so that
	// they move with it: the xxhash64 of the ids of the last
	// MaxPortableMarkers events observed and of plugin "\x00" event id of
	// the last outcomes applied, oldest first (8 bytes each rather than
	// the id: the profile is written to KV after every batch). Empty
	// otherwise (node-local markers).
	Events   []uint64 `json:"-"`
	Outcomes []uint64 `json:"-"`
}

// Bucket counts events in one UTC hour.
type Bucket struct {
	// Hour is Unix seconds / 3600.
	Hour int64 `json:"h"`
	// N is the number of events in that hour.
	N int64 `json:"n"`
}

// Counter windows reported by Proto, in output order.
var protoWindows = [...]struct {
	name  string
	hours int64
}{{"1d", 24}, {"7d", 7 * 24}, {"30d", 30 * 24}}

// hourOf returns the UTC hour (Unix seconds / 3600, floored) of ms.
func hourOf(ms int64) int64 {
	h := ms / 3_600_000
	if ms%3_600_000 < 0 {
		h--
	}
	return h
}

// windowHours converts a window to whole hours, at least 1.
func windowHours(window time.Duration) int64 {
	return max(int64(window/time.Hour), 1)
}

// Count returns how many events of typ ("" = any type) whose key matches
// pattern (exact, or prefix when pattern ends in '*'; "" or "*" = any key)
// happened in the window ending at nowMs. Counting is hour-granular: it sums
// the buckets whose hour is among the last window/1h hours (at least one),
// including the hour of nowMs; later buckets are not counted.
func (p *Profile) Count(typ, pattern string, window time.Duration, nowMs int64) int64 {
	if p == nil {
		return 0
	}
	now := hourOf(nowMs)
	from := now - windowHours(window)
	prefix, isPrefix := strings.CutSuffix(pattern, "*")
	var n int64
	for k, bs := range p.Counters {
		t, key, _ := strings.Cut(k, "\x00")
		if typ != "" && t != typ {
			continue
		}
		if isPrefix && !strings.HasPrefix(key, prefix) || !isPrefix && pattern != "" && key != pattern {
			continue
		}
		n += sumBuckets(bs, from, now)
	}
	return n
}

// sumBuckets sums the buckets with from < Hour <= to (bs sorted by hour).
func sumBuckets(bs []Bucket, from, to int64) int64 {
	var n int64
	for i := len(bs) - 1; i >= 0 && bs[i].Hour > from; i-- {
		if bs[i].Hour <= to {
			n += bs[i].N
		}
	}
	return n
}

// Proto returns the profile in the plugin contract's form, with one Counter
// per (type, key, window) whose count is positive, for the windows 1d, 7d
// and 30d ending at nowMs, sorted by type, then key, then window length.
func (p *Profile) Proto(nowMs int64) *vigiev1.Profile {
	if p == nil {
		return nil
	}
	out := &vigiev1.Profile{
		Site:        p.Site,
		Subject:     p.Subject,
		FirstSeenMs: p.FirstSeenMs,
		LastSeenMs:  p.LastSeenMs,
		Segments:    slices.Clone(p.Segments),
		Score:       p.Score,
		Country:     p.Country,
		Attributes:  slices.Clone([]byte(p.Attributes)),
	}
	if p.Campaign != nil {
		out.LastCampaign = scrubCampaign(p.Campaign)
	}
	// type has no \x00, so byte order of type\x00key is (type, key) order.
	keys := make([]string, 0, len(p.Counters))
	for k := range p.Counters {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	now := hourOf(nowMs)
	for _, k := range keys {
		t, key, _ := strings.Cut(k, "\x00")
		for _, w := range protoWindows {
			if n := sumBuckets(p.Counters[k], now-w.hours, now); n > 0 {
				out.Counters = append(out.Counters, &vigiev1.Counter{Type: t, Key: key, Window: w.name, Count: n})
			}
		}
	}
	return out
}

// scrubCampaign copies the campaign fields Vigie keeps (never click ids).
func scrubCampaign(c *vigiev1.Campaign) *vigiev1.Campaign {
	return &vigiev1.Campaign{Name: c.GetName(), Source: c.GetSource(), Medium: c.GetMedium(), Term: c.GetTerm(), Content: c.GetContent()}
}

// counterKey returns the Counters key of an event.
func counterKey(ev *vigiev1.Event) string {
	var key string
	switch ev.GetType() {
	case "track":
		key = ev.GetName()
	case "page", "screen":
		key = ev.GetPage().GetPath()
		if key == "" {
			key = ev.GetName()
		}
	}
	if len(key) > maxCounterKeyLen {
		cut := maxCounterKeyLen
		for cut > 0 && !utf8.RuneStart(key[cut]) {
			cut--
		}
		key = key[:cut]
	}
	return ev.GetType() + "\x00" + key
}

// observe folds ev into p (which has Site and Subject set).
func (p *Profile) observe(ev *vigiev1.Event) {
	ts := ev.GetTimestampMs()
	latest := p.LastSeenMs == 0 || ts >= p.LastSeenMs
	if p.FirstSeenMs == 0 || ts < p.FirstSeenMs {
		p.FirstSeenMs = ts
	}
	if latest {
		p.LastSeenMs = ts
		p.Purposes = slices.Clone(ev.GetPurposes())
		if c := ev.GetCampaign(); c.GetName() != "" || c.GetSource() != "" {
			p.Campaign = scrubCampaign(c)
		}
		if g := ev.GetGeo().GetCountry(); g != "" {
			p.Country = g
		}
	}
	h := hourOf(ts)
	if h > hourOf(p.LastSeenMs)-bucketHorizon {
		if p.Counters == nil {
			p.Counters = make(map[string][]Bucket, 1)
		}
		k := counterKey(ev)
		p.Counters[k] = addBucket(p.Counters[k], h)
		p.capCounters(k)
	}
	p.prune()
}

// addBucket adds one event in hour h to bs, keeping bs sorted.
func addBucket(bs []Bucket, h int64) []Bucket {
	i := len(bs)
	for i > 0 && bs[i-1].Hour > h {
		i--
	}
	if i > 0 && bs[i-1].Hour == h {
		bs[i-1].N++
		return bs
	}
	return slices.Insert(bs, i, Bucket{Hour: h, N: 1})
}

// capCounters drops least recently used keys (never keep) while there are
// more than maxCounterKeys.
func (p *Profile) capCounters(keep string) {
	for len(p.Counters) > maxCounterKeys {
		victim, oldest := "", int64(0)
		for k, bs := range p.Counters {
			if k == keep || len(bs) == 0 {
				continue
			}
			if last := bs[len(bs)-1].Hour; victim == "" || last < oldest || last == oldest && k < victim {
				victim, oldest = k, last
			}
		}
		if victim == "" {
			return
		}
		delete(p.Counters, victim)
	}
}

// prune drops buckets bucketHorizon hours or more before the hour of
// LastSeenMs, and keys left without buckets.
func (p *Profile) prune() {
	limit := hourOf(p.LastSeenMs) - bucketHorizon
	for k, bs := range p.Counters {
		i := 0
		for i < len(bs) && bs[i].Hour <= limit {
			i++
		}
		switch {
		case i == len(bs):
			delete(p.Counters, k)
		case i > 0:
			p.Counters[k] = slices.Delete(bs, 0, i)
		}
	}
}

// Campaigns are stored with short names and without click ids.
type campaignJSON struct {
	Name    string `json:"n,omitempty"`
	Source  string `json:"s,omitempty"`
	Medium  string `json:"m,omitempty"`
	Term    string `json:"t,omitempty"`
	Content string `json:"c,omitempty"`
}

// profileJSONOpts encodes and decodes profiles: campaigns in their short
// form, and invalid UTF-8 tolerated (replaced) rather than failing a write.
var profileJSONOpts = jsonv2.JoinOptions(
	jsonv2.WithMarshalers(jsonv2.MarshalToFunc(func(enc *jsontext.Encoder, c *vigiev1.Campaign) error {
		if c == nil {
			return enc.WriteToken(jsontext.Null)
		}
		return jsonv2.MarshalEncode(enc, campaignJSON{c.GetName(), c.GetSource(), c.GetMedium(), c.GetTerm(), c.GetContent()}, jsontext.AllowInvalidUTF8(true))
	})),
	jsonv2.WithUnmarshalers(jsonv2.UnmarshalFromFunc(func(dec *jsontext.Decoder, c *vigiev1.Campaign) error {
		var cj campaignJSON
		if err := jsonv2.UnmarshalDecode(dec, &cj); err != nil {
			return err
		}
		*c = vigiev1.Campaign{Name: cj.Name, Source: cj.Source, Medium: cj.Medium, Term: cj.Term, Content: cj.Content}
		return nil
	})),
	jsontext.AllowInvalidUTF8(true),
)

// decodeProfileJSON decodes a profile stored as JSON (the format before
// the binary one of profiles_codec.go).
func decodeProfileJSON(v []byte, site, subject string) (*Profile, error) {
	p := new(Profile)
	if err := jsonv2.Unmarshal(v, p, profileJSONOpts); err != nil {
		return nil, fmt.Errorf("%w: profile: %w", ErrCorrupt, err)
	}
	p.Site, p.Subject = site, subject
	return p, nil
}

// encodeProfileJSON encodes p as JSON (tests of the legacy format only).
func encodeProfileJSON(p *Profile) ([]byte, error) {
	v, err := jsonv2.Marshal(p, profileJSONOpts)
	if err != nil {
		return nil, fmt.Errorf("storage: encode profile: %w", err)
	}
	return v, nil
}

// profileLocks serializes read-modify-writes of profiles and segment sizes.
// The store runs Badger with conflict detection off (see store.go), so
// concurrent transactions would silently lose updates: instead, every write
// of a profile holds its subject's stripe, and every write of segment sizes,
// the segment log, pending changes or the change sequence also holds segMu.
// Lock order: stripe, segMu, writeGate. A batch (profiles_batch.go) holds
// several stripes, always taken in increasing index order.
type profileLocks struct {
	stripes [profileLockStripes]sync.Mutex
	segMu   sync.Mutex
	// seq is the next segment change sequence; valid when seqLoaded.
	// Guarded by segMu.
	seq       uint64
	seqLoaded bool
}

// stripe returns the lock of (site, subject).
func (l *profileLocks) stripe(site, subject string) *sync.Mutex {
	return &l.stripes[stripeIndex(site, subject)]
}

// stripeIndex returns the stripe of (site, subject): FNV-1a of
// site \x00 subject, modulo profileLockStripes.
func stripeIndex(site, subject string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(site); i++ {
		h = (h ^ uint32(site[i])) * 16777619
	}
	h *= 16777619 // the \x00 separator
	for i := 0; i < len(subject); i++ {
		h = (h ^ uint32(subject[i])) * 16777619
	}
	return h % profileLockStripes
}

// validSubject checks a non-empty site and subject.
func validSubject(site, subject string) error {
	if site == "" || subject == "" {
		return fmt.Errorf("%w: empty site or subject", ErrInvalidKey)
	}
	if err := validName("site", site); err != nil {
		return err
	}
	return validName("subject", subject)
}

// validID checks a non-empty event id.
func validID(field, id string) error {
	if id == "" || len(id) > maxNameLen {
		return fmt.Errorf("%w: %s empty or too long", ErrInvalidKey, field)
	}
	return nil
}

// expiry returns the Badger ExpiresAt of a TTL starting now, rounded up to
// the next second so an entry lives at least ttl.
func expiry(ttl time.Duration) uint64 {
	t := time.Now().Add(ttl)
	sec := t.Unix()
	if t.Nanosecond() > 0 {
		sec++
	}
	return uint64(sec)
}

// getProfile reads a profile inside txn, or returns ErrNotFound.
func getProfile(txn *badger.Txn, site, subject string) (*Profile, error) {
	item, err := txn.Get(profileKey(site, subject))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	var p *Profile
	err = item.Value(func(v []byte) error {
		var derr error
		p, derr = decodeProfile(v, site, subject)
		return derr
	})
	return p, err
}

// putProfile writes p with a refreshed TTL (profiles_purge.go).
func (s *Store) putProfile(txn *badger.Txn, p *Profile) error {
	v, err := encodeProfile(p)
	if err != nil {
		return err
	}
	e := badger.NewEntry(profileKey(p.Site, p.Subject), v)
	e.ExpiresAt = s.profileExpiry()
	return txn.SetEntry(e)
}

// exists reports whether key is live in txn.
func exists(txn *badger.Txn, key []byte) (bool, error) {
	_, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

// setMarker writes an empty idempotency marker living markerTTL.
func setMarker(txn *badger.Txn, key []byte) error {
	e := badger.NewEntry(key, nil)
	e.ExpiresAt = expiry(markerTTL)
	return txn.SetEntry(e)
}

// ObserveEvent records ev in its subject's profile and returns the profile
// after the update. ev must be pseudonymous, with Site, Subject, Id, Type
// and a positive TimestampMs. It is idempotent per (Site, Id) for 48 hours:
// a repeat changes nothing and returns the current profile with
// observed=false (ErrNotFound if the profile was deleted since).
//
// It sets FirstSeenMs and LastSeenMs, adds one to the counter of (Type,
// key) in the hour of TimestampMs and, when ev is not older than
// LastSeenMs, sets Purposes, Campaign (if ev has a campaign name or source,
// without click ids) and Country (if ev has a GeoIP country). Writes of one
// subject are serialized, so concurrent calls never lose counts.
func (s *Store) ObserveEvent(ctx context.Context, ev *vigiev1.Event) (p *Profile, observed bool, err error) {
	rs, err := s.ObserveEvents(ctx, []*vigiev1.Event{ev})
	if err != nil {
		return nil, false, err
	}
	return rs[0].Profile, rs[0].Observed, rs[0].Err
}

// validEvent checks an event for ObserveEvent before anything is read.
func validEvent(ev *vigiev1.Event) error {
	if ev == nil {
		return fmt.Errorf("%w: nil event", ErrInvalidRecord)
	}
	if err := validSubject(ev.GetSite(), ev.GetSubject()); err != nil {
		return err
	}
	if err := validID("event id", ev.GetId()); err != nil {
		return err
	}
	if t := ev.GetType(); t == "" || len(t) > maxTypeLen || strings.IndexByte(t, 0) >= 0 {
		return fmt.Errorf("%w: event type empty, too long or contains NUL", ErrInvalidRecord)
	}
	if ev.GetTimestampMs() <= 0 {
		return fmt.Errorf("%w: event time missing", ErrInvalidRecord)
	}
	return nil
}

// Profile returns the stored profile of subject on site, or ErrNotFound.
func (s *Store) Profile(ctx context.Context, site, subject string) (*Profile, error) {
	if err := validSubject(site, subject); err != nil {
		return nil, err
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var p *Profile
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		p, err = getProfile(txn, site, subject)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: profile: %w", err)
	}
	return p, nil
}

// SegmentOutcome is what one segmenter plugin decided for one event.
type SegmentOutcome struct {
	// Plugin is the segmenter's name; with EventID it makes the outcome
	// idempotent.
	Plugin string
	// Site and Subject name the profile.
	Site, Subject string
	// EventID is the event the plugin looked at.
	EventID string
	// ScoreDelta is added to Profile.Score.
	ScoreDelta int64
	// Attributes is an RFC 7396 JSON merge patch (a JSON object) for
	// Profile.Attributes; nil for none.
	Attributes []byte
	// Changes are the proposed segment transitions, applied in order.
	Changes []*vigiev1.SegmentChange
	// AtMs is the time of the changes, Unix milliseconds; 0 means now.
	AtMs int64
	// CreatePurposes, when not empty, lets a missing profile be created
	// with these purposes, first and last seen at AtMs: attributes the
	// host provides before the event that brings them is observed (an
	// import). Default empty: a missing profile gives ErrNotFound.
	CreatePurposes []string
}

// segWrite accumulates the segment bookkeeping of one transaction.
type segWrite struct {
	changes []*vigiev1.SegmentChange
	deltas  map[segmentKey]int64 // size deltas
}

// segmentKey names a segment of a site.
type segmentKey struct{ site, segment string }

// add records one applied change.
func (w *segWrite) add(c *vigiev1.SegmentChange) {
	w.changes = append(w.changes, c)
	if w.deltas == nil {
		w.deltas = make(map[segmentKey]int64, 2)
	}
	k := segmentKey{c.Site, c.Segment}
	if c.Transition == vigiev1.Transition_TRANSITION_ENTERED {
		w.deltas[k]++
	} else {
		w.deltas[k]--
	}
}

// flushSegWrite writes sizes, log and pending entries of w (changes of any
// sites) into txn (the caller holds segMu) and returns the next sequence,
// to be stored in s.prof.seq after the commit.
func (s *Store) flushSegWrite(txn *badger.Txn, w *segWrite) (uint64, error) {
	seq, err := s.loadSegSeq(txn)
	if err != nil {
		return 0, err
	}
	shared := s.cfg.SharedSegments // sizes and log: FoldSegmentChanges
	for k, d := range w.deltas {
		if d == 0 || shared {
			continue
		}
		if err := addSegSize(txn, k.site, k.segment, d); err != nil {
			return 0, err
		}
	}
	logExp := expiry(segLogTTL)
	for _, c := range w.changes {
		v, err := proto.Marshal(c)
		if err != nil {
			return 0, fmt.Errorf("storage: encode segment change: %w", err)
		}
		if !shared {
			e := badger.NewEntry(segLogKey(c.GetSite(), seq), v)
			e.ExpiresAt = logExp
			if err := txn.SetEntry(e); err != nil {
				return 0, err
			}
		}
		if err := txn.Set(pendingKey(seq), v); err != nil {
			return 0, err
		}
		seq++
	}
	if err := txn.Set([]byte(keySegmentSeq), binary.BigEndian.AppendUint64(nil, seq)); err != nil {
		return 0, err
	}
	return seq, nil
}

// loadSegSeq returns the next segment change sequence (caller holds segMu).
func (s *Store) loadSegSeq(txn *badger.Txn) (uint64, error) {
	if s.prof.seqLoaded {
		return s.prof.seq, nil
	}
	item, err := txn.Get([]byte(keySegmentSeq))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var seq uint64
	err = item.Value(func(v []byte) error {
		if len(v) != seqLen {
			return fmt.Errorf("%w: segment sequence", ErrCorrupt)
		}
		seq = binary.BigEndian.Uint64(v)
		return nil
	})
	return seq, err
}

// addSegSize adds d to the size of segment on site, deleting it at zero.
func addSegSize(txn *badger.Txn, site, segment string, d int64) error {
	k := segSizeKey(site, segment)
	var n int64
	item, err := txn.Get(k)
	switch {
	case err == nil:
		err = item.Value(func(v []byte) error {
			if len(v) != 8 {
				return fmt.Errorf("%w: segment size", ErrCorrupt)
			}
			n = int64(binary.BigEndian.Uint64(v))
			return nil
		})
		if err != nil {
			return err
		}
	case !errors.Is(err, badger.ErrKeyNotFound):
		return err
	}
	if n += d; n <= 0 {
		return txn.Delete(k)
	}
	return txn.Set(k, binary.BigEndian.AppendUint64(nil, uint64(n)))
}

// validOutcome checks o before anything is read.
func validOutcome(o *SegmentOutcome) error {
	if o.Plugin == "" {
		return fmt.Errorf("%w: empty plugin", ErrInvalidKey)
	}
	if err := validName("plugin", o.Plugin); err != nil {
		return err
	}
	if err := validSubject(o.Site, o.Subject); err != nil {
		return err
	}
	if err := validID("event id", o.EventID); err != nil {
		return err
	}
	if len(o.Attributes) > maxAttributes {
		return fmt.Errorf("%w: attributes patch too large", ErrInvalidRecord)
	}
	if len(o.Attributes) > 0 && jsontext.Value(o.Attributes).Kind() != '{' {
		return fmt.Errorf("%w: attributes patch is not a JSON object", ErrInvalidRecord)
	}
	for _, c := range o.Changes {
		if c.GetSegment() == "" {
			return fmt.Errorf("%w: empty segment", ErrInvalidKey)
		}
		if err := validName("segment", c.GetSegment()); err != nil {
			return err
		}
		if t := c.GetTransition(); t != vigiev1.Transition_TRANSITION_ENTERED && t != vigiev1.Transition_TRANSITION_EXITED {
			return fmt.Errorf("%w: segment change without transition", ErrInvalidRecord)
		}
	}
	return nil
}

// ApplySegment applies o in one transaction. It is idempotent per (Plugin,
// Site, EventID) for 48 hours: a repeat returns applied=nil, dup=true. A
// proposed change is applied only if it is consistent with the profile as
// updated by the changes before it (ENTERED only when the segment is not in
// Segments, EXITED only when it is); the others are dropped silently, which
// makes each transition happen exactly once. For each applied change the
// same transaction updates Segments, the size of (site, segment), the
// recent changes log (kept 30 days) and the pending publications. Score and
// Attributes are updated too; a patch making Attributes larger than 64 KiB
// fails with ErrInvalidRecord. A missing profile gives ErrNotFound. The
// applied changes carry Site, Subject, EventId and AtMs.
func (s *Store) ApplySegment(ctx context.Context, o SegmentOutcome) (applied []*vigiev1.SegmentChange, dup bool, err error) {
	rs, err := s.ApplySegments(ctx, []SegmentOutcome{o})
	if err != nil {
		return nil, false, err
	}
	return rs[0].Applied, rs[0].Dup, rs[0].Err
}

// DeleteProfile deletes the profile of subject on site (consent withdrawn,
// erasure). In the same transaction it records an EXITED change (size,
// recent log, pending publication; EventId = reason, AtMs = now) for every
// segment the subject was in, and returns them. No profile: nil, nil.
func (s *Store) DeleteProfile(ctx context.Context, site, subject, reason string) ([]*vigiev1.SegmentChange, error) {
	ch, err := s.deleteProfile(ctx, site, subject, reason, nil)
	if err == nil && s.cfg.OnProfileDelete != nil {
		s.cfg.OnProfileDelete(ctx, site, subject, reason)
	}
	return ch, err
}

// deleteProfile is DeleteProfile; with only set, the profile is deleted
// only if only(its ExpiresAt) holds in the deleting transaction.
func (s *Store) deleteProfile(ctx context.Context, site, subject, reason string, only func(expiresAt uint64) bool) ([]*vigiev1.SegmentChange, error) {
	if err := validSubject(site, subject); err != nil {
		return nil, err
	}
	if len(reason) > maxNameLen {
		return nil, fmt.Errorf("%w: reason too long", ErrInvalidRecord)
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	mu := s.prof.stripe(site, subject)
	mu.Lock()
	defer mu.Unlock()
	s.prof.segMu.Lock()
	defer s.prof.segMu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.writeGate.RLock()
	defer s.writeGate.RUnlock()
	var (
		w      segWrite
		newSeq uint64
	)
	now := time.Now().UnixMilli()
	err := s.db.Update(func(txn *badger.Txn) error {
		if only != nil {
			item, err := txn.Get(profileKey(site, subject))
			if errors.Is(err, badger.ErrKeyNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			if !only(item.ExpiresAt()) {
				return nil
			}
		}
		if err := deleteProfileIn(txn, site, subject, reason, now, &w); err != nil {
			return err
		}
		if len(w.changes) > 0 {
			var err error
			if newSeq, err = s.flushSegWrite(txn, &w); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: delete profile: %w", err)
	}
	if len(w.changes) > 0 {
		s.prof.seq, s.prof.seqLoaded = newSeq, true
	}
	return w.changes, nil
}

// deleteProfileIn deletes the profile of subject on site inside txn, adding
// an EXITED change (AtMs now, EventId reason) to w for each of its
// segments. No profile: nothing.
func deleteProfileIn(txn *badger.Txn, site, subject, reason string, now int64, w *segWrite) error {
	p, err := getProfile(txn, site, subject)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, seg := range p.Segments {
		w.add(&vigiev1.SegmentChange{
			Site: site, Subject: subject, Segment: seg,
			Transition: vigiev1.Transition_TRANSITION_EXITED, AtMs: now, EventId: reason,
		})
	}
	return txn.Delete(profileKey(site, subject))
}

// ProfileRef names the profile of Subject on Site.
type ProfileRef struct{ Site, Subject string }

// DeleteProfiles is DeleteProfile for each of refs (repeated ones once), in
// one transaction (several only if Badger's size limit is reached; each
// deletes whole profiles), and returns all their exits. Every Badger
// transaction waits for the commits in flight when it starts, so the
// segment stage deletes the absent profiles of a batch's visitors who grant
// no profiling purpose with one call, not one per event. Config.
// OnProfileDelete is called for each distinct ref after the deletion.
func (s *Store) DeleteProfiles(ctx context.Context, refs []ProfileRef, reason string) ([]*vigiev1.SegmentChange, error) {
	if len(reason) > maxNameLen {
		return nil, fmt.Errorf("%w: reason too long", ErrInvalidRecord)
	}
	seen := make(map[ProfileRef]struct{}, len(refs))
	uniq := make([]ProfileRef, 0, len(refs))
	var mask uint64
	for _, r := range refs {
		if err := validSubject(r.Site, r.Subject); err != nil {
			return nil, err
		}
		if _, ok := seen[r]; ok {
			continue
		}
		seen[r] = struct{}{}
		uniq = append(uniq, r)
		mask |= 1 << stripeIndex(r.Site, r.Subject)
	}
	if len(uniq) == 0 {
		return nil, nil
	}
	changes, err := s.deleteProfiles(ctx, uniq, mask, reason)
	if err == nil && s.cfg.OnProfileDelete != nil {
		for _, r := range uniq {
			s.cfg.OnProfileDelete(ctx, r.Site, r.Subject, reason)
		}
	}
	return changes, err
}

// deleteProfiles is DeleteProfiles for distinct refs, whose stripes are
// mask, with the locks held (stripes, segMu, writeGate: profiles.go's
// order).
func (s *Store) deleteProfiles(ctx context.Context, refs []ProfileRef, mask uint64, reason string) ([]*vigiev1.SegmentChange, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	s.prof.lockStripes(mask)
	defer s.prof.unlockStripes(mask)
	s.prof.segMu.Lock()
	defer s.prof.segMu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.writeGate.RLock()
	defer s.writeGate.RUnlock()
	now := time.Now().UnixMilli()
	var all []*vigiev1.SegmentChange
	for from, size := 0, len(refs); from < len(refs); {
		to := min(from+size, len(refs))
		var (
			w      segWrite
			newSeq uint64
		)
		err := s.db.Update(func(txn *badger.Txn) error {
			for _, r := range refs[from:to] {
				if err := deleteProfileIn(txn, r.Site, r.Subject, reason, now, &w); err != nil {
					return err
				}
			}
			if len(w.changes) > 0 {
				var err error
				newSeq, err = s.flushSegWrite(txn, &w)
				return err
			}
			return nil
		})
		if errors.Is(err, badger.ErrTxnTooBig) && to-from > 1 {
			size = (to - from + 1) / 2
			continue
		}
		if err != nil {
			return all, fmt.Errorf("storage: delete profiles: %w", err)
		}
		if len(w.changes) > 0 {
			s.prof.seq, s.prof.seqLoaded = newSeq, true
			all = append(all, w.changes...)
		}
		from = to
	}
	return all, nil
}

// shredProfiles deletes every profile of subject and takes its segments out
// of the segment sizes, without logging or publishing changes naming it
// (eraseFromSizes). It scans the
// whole p/ prefix: profiles are small and erasure is rare, so a per-subject
// index is not worth its write cost. The caller (ShredSubject) holds segMu
// and writeGate exclusively, so no profile write runs concurrently.
func (s *Store) shredProfiles(ctx context.Context, subject string) error {
	var next uint64
	err := s.db.Update(func(txn *badger.Txn) error {
		var err error
		if next, err = s.loadSegSeq(txn); err != nil {
			return err
		}
		type hit struct {
			key  []byte
			site string
		}
		var hits []hit
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = []byte(prefixProfile)
		it := txn.NewIterator(opts)
		steps := 0
		for it.Rewind(); it.Valid(); it.Next() {
			if steps++; steps%ctxCheckEvery == 0 {
				if err := ctx.Err(); err != nil {
					it.Close()
					return err
				}
			}
			site, subj, ok := parseProfileKey(it.Item().Key())
			if ok && string(subj) == subject {
				hits = append(hits, hit{it.Item().KeyCopy(nil), string(site)})
			}
		}
		it.Close()
		for _, h := range hits {
			p, err := getProfile(txn, h.site, subject)
			if err != nil && !errors.Is(err, ErrCorrupt) {
				return err
			}
			if p != nil {
				deltas := map[string]int64{}
				for _, seg := range p.Segments {
					deltas[seg]--
				}
				if next, err = s.eraseFromSizes(txn, h.site, deltas, next); err != nil {
					return err
				}
			}
			if err := txn.Delete(h.key); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil && s.cfg.SharedSegments {
		s.prof.seq, s.prof.seqLoaded = next, true
	}
	return err
}

// PendingChange is a segment change committed but not yet published.
type PendingChange struct {
	// Key identifies the entry for AckPendingChanges.
	Key []byte
	// Change is the committed change.
	Change *vigiev1.SegmentChange
}

// PendingChanges returns up to max pending changes in commit order.
// Undecodable entries are skipped (and logged without their content).
func (s *Store) PendingChanges(ctx context.Context, max int) ([]PendingChange, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	if max <= 0 {
		return nil, nil
	}
	var out []PendingChange
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(prefixPending)
		opts.PrefetchSize = min(max, opts.PrefetchSize)
		it := txn.NewIterator(opts)
		defer it.Close()
		steps := 0
		for it.Rewind(); it.Valid() && len(out) < max; it.Next() {
			if steps++; steps%ctxCheckEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			c := new(vigiev1.SegmentChange)
			err := it.Item().Value(func(v []byte) error { return proto.Unmarshal(v, c) })
			if err != nil {
				s.log.Warn("storage: skipping undecodable pending segment change")
				continue
			}
			out = append(out, PendingChange{Key: it.Item().KeyCopy(nil), Change: c})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: pending changes: %w", err)
	}
	return out, nil
}

// AckPendingChanges deletes published entries. Keys already deleted are
// ignored; keys that are not pending-change keys are rejected with
// ErrInvalidKey before anything is deleted.
func (s *Store) AckPendingChanges(keys [][]byte) error {
	for _, k := range keys {
		if _, ok := parsePendingKey(k); !ok {
			return fmt.Errorf("%w: not a pending change key", ErrInvalidKey)
		}
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if len(keys) == 0 {
		return nil
	}
	s.writeGate.RLock()
	defer s.writeGate.RUnlock()
	wb := s.db.NewWriteBatch()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			wb.Cancel()
			return fmt.Errorf("storage: ack pending changes: %w", err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("storage: ack pending changes: %w", err)
	}
	return nil
}

// SegmentSizes returns the number of subjects currently in each segment of
// site; segments with no subject are omitted.
func (s *Store) SegmentSizes(ctx context.Context, site string) (map[string]int64, error) {
	if site == "" {
		return nil, fmt.Errorf("%w: empty site", ErrInvalidKey)
	}
	if err := validName("site", site); err != nil {
		return nil, err
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	prefix := segSizePrefix(site)
	out := map[string]int64{}
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		steps := 0
		for it.Rewind(); it.Valid(); it.Next() {
			if steps++; steps%ctxCheckEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			item := it.Item()
			err := item.Value(func(v []byte) error {
				if len(v) != 8 {
					return fmt.Errorf("%w: segment size", ErrCorrupt)
				}
				if n := int64(binary.BigEndian.Uint64(v)); n > 0 {
					out[string(item.Key()[len(prefix):])] = n
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: segment sizes: %w", err)
	}
	return out, nil
}

// RecentSegmentChanges returns up to limit of the latest segment changes
// committed on site (kept 30 days), newest first. limit <= 0 means 100; it
// is capped at 10 000.
func (s *Store) RecentSegmentChanges(ctx context.Context, site string, limit int) ([]*vigiev1.SegmentChange, error) {
	if site == "" {
		return nil, fmt.Errorf("%w: empty site", ErrInvalidKey)
	}
	if err := validName("site", site); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = defaultPage
	}
	limit = min(limit, maxPage)
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	prefix := segLogPrefix(site)
	var out []*vigiev1.SegmentChange
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Reverse = true
		opts.Prefix = prefix
		opts.PrefetchSize = min(limit, opts.PrefetchSize)
		it := txn.NewIterator(opts)
		defer it.Close()
		steps := 0
		for it.Seek(segLogKey(site, ^uint64(0))); it.Valid() && len(out) < limit; it.Next() {
			if steps++; steps%ctxCheckEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			c := new(vigiev1.SegmentChange)
			if err := it.Item().Value(func(v []byte) error { return proto.Unmarshal(v, c) }); err != nil {
				return fmt.Errorf("%w: segment change: %w", ErrCorrupt, err)
			}
			out = append(out, c)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: recent segment changes: %w", err)
	}
	return out, nil
}

// mergePatch applies the RFC 7396 JSON merge patch to target and returns
// the result, compact. Objects merge recursively; a null member deletes; any
// other patch value replaces. A patch that is not an object replaces target
// entirely. An empty or non-object target counts as {} when patched by an
// object. Member order: target's, then new members in patch order.
func mergePatch(target, patch []byte) ([]byte, error) {
	pv := jsontext.Value(slices.Clone(patch))
	if err := pv.Compact(); err != nil {
		return nil, err
	}
	if pv.Kind() != '{' {
		return pv, nil
	}
	merged, err := mergeObject(target, pv)
	if err != nil {
		return nil, err
	}
	return encodeMembers(merged)
}

// member is one name/value pair of a JSON object.
type member struct {
	name  string
	value jsontext.Value
}

// mergeObject merges the object patch into target (any JSON or empty).
func mergeObject(target []byte, patch jsontext.Value) ([]member, error) {
	var tm []member
	if len(target) > 0 && jsontext.Value(target).Kind() == '{' {
		var err error
		if tm, err = readMembers(target); err != nil {
			return nil, err
		}
	}
	pm, err := readMembers(patch)
	if err != nil {
		return nil, err
	}
	for _, m := range pm {
		i := slices.IndexFunc(tm, func(t member) bool { return t.name == m.name })
		switch {
		case m.value.Kind() == 'n':
			if i >= 0 {
				tm = slices.Delete(tm, i, i+1)
			}
			continue
		case m.value.Kind() == '{':
			var old []byte
			if i >= 0 {
				old = tm[i].value
			}
			sub, err := mergeObject(old, m.value)
			if err != nil {
				return nil, err
			}
			if m.value, err = encodeMembers(sub); err != nil {
				return nil, err
			}
		}
		if i >= 0 {
			tm[i].value = m.value
		} else {
			tm = append(tm, m)
		}
	}
	return tm, nil
}

// readMembers decodes the members of a JSON object.
func readMembers(obj []byte) ([]member, error) {
	dec := jsontext.NewDecoder(strings.NewReader(string(obj)))
	if tok, err := dec.ReadToken(); err != nil {
		return nil, err
	} else if tok.Kind() != '{' {
		return nil, errors.New("not a JSON object")
	}
	var ms []member
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken()
		if err != nil {
			return nil, err
		}
		name := tok.String()
		v, err := dec.ReadValue()
		if err != nil {
			return nil, err
		}
		ms = append(ms, member{name, slices.Clone(v)})
	}
	if _, err := dec.ReadToken(); err != nil {
		return nil, err
	}
	return ms, nil
}

// encodeMembers encodes members as a compact JSON object.
func encodeMembers(ms []member) (jsontext.Value, error) {
	var b strings.Builder
	enc := jsontext.NewEncoder(&b)
	if err := enc.WriteToken(jsontext.BeginObject); err != nil {
		return nil, err
	}
	for _, m := range ms {
		if err := enc.WriteToken(jsontext.String(m.name)); err != nil {
			return nil, err
		}
		if err := enc.WriteValue(m.value); err != nil {
			return nil, err
		}
	}
	if err := enc.WriteToken(jsontext.EndObject); err != nil {
		return nil, err
	}
	return jsontext.Value(strings.TrimSuffix(b.String(), "\n")), nil
}
