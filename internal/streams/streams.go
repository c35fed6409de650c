// Package streams is the single home of Vigie's NATS JetStream layout: the
// name, subjects and configuration of every stream and (cluster mode) every
// KV bucket (cluster.go), the subjects messages are published on, and the
// classification of the errors that mean a stream
// or a consumer is missing (NATS lost its store) together with a
// rate-limited Declarer that creates the streams again.
//
//	stream          subjects                                      written by
//	VIGIE_EVENTS    vigie.events.<site>.<type>                     outbox publisher
//	VIGIE_PRIVACY   vigie.privacy.<site>.consent|erase|object|     outbox publisher
//	                restrict|rectify
//	VIGIE_ENRICHED  vigie.enriched.<site>.<type>                   enrich stage
//	                (cluster: vigie.enriched.<site>.<partition>.<type>)
//	VIGIE_SEGMENTS  vigie.segments.<site>.<segment>.entered|exited segment stage
//	VIGIE_DEAD      vigie.dead.<plugin>, vigie.replay.<consumer>,  consumers, replay,
//	                vigie.sync.<plugin>.<site>                     resync jobs
//
// VIGIE_DEAD holds the messages addressed to one plugin or one consumer
// rather than to every reader: dead letters, their replays, and the items
// of a syncer's full resync.
package streams

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// Stream names.
const (
	// Events carries every stored event (from the outbox).
	Events = "VIGIE_EVENTS"
	// Privacy carries privacy events (consent changes, erasures…), from the
	// outbox, for the syncers.
	Privacy = "VIGIE_PRIVACY"
	// Enriched carries events after the enrich stage.
	Enriched = "VIGIE_ENRICHED"
	// Segments carries segment entries and exits.
	Segments = "VIGIE_SEGMENTS"
	// Dead carries dead letters, their replays and resync items: messages
	// addressed to one plugin or consumer.
	Dead = "VIGIE_DEAD"
)

// Subject prefixes; each ends with a dot.
const (
	EventsPrefix   = "vigie.events."
	PrivacyPrefix  = "vigie.privacy."
	EnrichedPrefix = "vigie.enriched."
	SegmentsPrefix = "vigie.segments."
	DeadPrefix     = "vigie.dead."
	ReplayPrefix   = "vigie.replay."
	SyncPrefix     = "vigie.sync."
)

// Kinds of privacy events, the last token of their subject, one per
// vigiev1.PrivacyAction.
const (
	KindConsent  = "consent"
	KindErase    = "erase"
	KindObject   = "object"
	KindRestrict = "restrict"
	KindRectify  = "rectify"
)

// PrivacyKind is the subject token of a privacy action (KindConsent for an
// unknown one, as for CONSENT_CHANGED).
func PrivacyKind(a vigiev1.PrivacyAction) string {
	switch a {
	case vigiev1.PrivacyAction_PRIVACY_ACTION_ERASURE:
		return KindErase
	case vigiev1.PrivacyAction_PRIVACY_ACTION_OBJECT:
		return KindObject
	case vigiev1.PrivacyAction_PRIVACY_ACTION_RESTRICT:
		return KindRestrict
	case vigiev1.PrivacyAction_PRIVACY_ACTION_RECTIFY:
		return KindRectify
	}
	return KindConsent
}

// PrivacyKindSubjects is the subject filter of every site's privacy events
// of one kind: vigie.privacy.*.<kind>.
func PrivacyKindSubjects(kind string) string { return PrivacyPrefix + "*." + kind }

// EventSubject is the subject of a stored event: vigie.events.<site>.<type>.
func EventSubject(site, typ string) string { return EventsPrefix + site + "." + typ }

// EnrichedSubject is the subject of an enriched event:
// vigie.enriched.<site>.<type>.
func EnrichedSubject(site, typ string) string { return EnrichedPrefix + site + "." + typ }

// SegmentSubject is the subject of a segment change:
// vigie.segments.<site>.<segment>.entered|exited.
func SegmentSubject(c *vigiev1.SegmentChange) string {
	dir := "entered"
	if c.GetTransition() == vigiev1.Transition_TRANSITION_EXITED {
		dir = "exited"
	}
	return SegmentsPrefix + c.GetSite() + "." + c.GetSegment() + "." + dir
}

// PrivacySubject is the subject of a privacy event:
// vigie.privacy.<site>.<kind>, kind from PrivacyKind.
func PrivacySubject(e *vigiev1.PrivacyEvent) string {
	return PrivacyPrefix + e.GetSite() + "." + PrivacyKind(e.GetAction())
}

// PrivacyMsgID is the Nats-Msg-Id of a privacy event:
// privacy:<site>:<action>:<request id>. It is derived from the event alone
// (its request id is drawn once, when the event is made, and is unique per
// request), so the same event published again is the same message.
func PrivacyMsgID(e *vigiev1.PrivacyEvent) string {
	return fmt.Sprintf("privacy:%s:%d:%s", e.GetSite(), e.GetAction(), e.GetRequestId())
}

// DeadSubject is where a plugin's dead letters go: vigie.dead.<plugin>.
func DeadSubject(plugin string) string { return DeadPrefix + plugin }

// ReplaySubject is where a consumer's replayed dead letters go:
// vigie.replay.<durable>.
func ReplaySubject(durable string) string { return ReplayPrefix + durable }

// SyncSubject is where the items of a full resync of syncer plugin for
// site go: vigie.sync.<plugin>.<site>.
func SyncSubject(plugin, site string) string { return SyncPrefix + plugin + "." + site }

// SyncSubjects is the subject filter of every resync item of plugin:
// vigie.sync.<plugin>.*.
func SyncSubjects(plugin string) string { return SyncPrefix + plugin + ".*" }

// StreamOf returns the stream that captures subject (KV_<bucket> for a
// cluster bucket's $KV subject), or "" for a subject outside Vigie's
// layout.
func StreamOf(subject string) string {
	if strings.HasPrefix(subject, kvPrefix) {
		return kvStreamOf(subject)
	}
	for _, s := range layout {
		for _, p := range s.prefixes {
			if strings.HasPrefix(subject, p) {
				return s.name
			}
		}
	}
	return ""
}

// layout lists every stream and the subject prefixes it captures.
var layout = []struct {
	name     string
	prefixes []string
}{
	{Events, []string{EventsPrefix}},
	{Privacy, []string{PrivacyPrefix}},
	{Enriched, []string{EnrichedPrefix}},
	{Segments, []string{SegmentsPrefix}},
	{Dead, []string{DeadPrefix, ReplayPrefix, SyncPrefix}},
}

// All is the name of every stream, in layout order.
func All() []string {
	out := make([]string, len(layout))
	for i, s := range layout {
		out[i] = s.name
	}
	return out
}

// Settings are what the configuration decides about the streams. The zero
// value of each field selects its documented default.
type Settings struct {
	// Replicas of every stream. Default 1.
	Replicas int
	// DuplicateWindow of VIGIE_EVENTS and VIGIE_ENRICHED, the two streams
	// every event crosses (Nats-Msg-Id deduplication; JetStream holds every
	// id of the window in memory). Default 30s.
	DuplicateWindow time.Duration
	// MaxAge bounds the age of messages on every stream, VIGIE_EVENTS
	// included: the bus is a conduit, so the end of a retention or an
	// erasure reaches it within MaxAge. Configuration keeps it at most the
	// shortest retention. Default 7 days.
	MaxAge time.Duration
	// DedupTTL is VIGIE_DEDUP's TTL (cluster mode): the messageId dedup
	// window. Default DefaultDedupTTL.
	DedupTTL time.Duration
	// ProfileTTL is VIGIE_PROFILES' TTL: a profile not written for this
	// long goes. Default 0: none (an idle profile is purged by its owner).
	ProfileTTL time.Duration
	// VaultTTL is VIGIE_VAULT's TTL. Default 0: none (erasure and
	// replacement remove entries).
	VaultTTL time.Duration
	// ImportsTTL is VIGIE_IMPORTS' TTL: how long an import job is kept
	// (storage.ImportJobTTL). Default 0: none.
	ImportsTTL time.Duration
	// DecisionsTTL is VIGIE_DECISIONS' TTL: the rollup retention (an
	// hour's entry is rewritten while the hour is counted). Default 0:
	// none.
	DecisionsTTL time.Duration
}

// Defaults of Settings.
const (
	DefaultReplicas        = 1
	DefaultDuplicateWindow = 30 * time.Second
	DefaultMaxAge          = 7 * 24 * time.Hour
	// derivedDuplicates is the duplicate window of the streams that do not
	// carry every event (privacy events, segment changes, dead letters: far
	// fewer messages, republished later: a privacy event from the outbox
	// after an outage).
	derivedDuplicates = 2 * time.Minute
)

// WithDefaults returns s with defaults filled in.
func (s Settings) WithDefaults() Settings {
	if s.Replicas <= 0 {
		s.Replicas = DefaultReplicas
	}
	if s.DuplicateWindow <= 0 {
		s.DuplicateWindow = DefaultDuplicateWindow
	}
	if s.MaxAge <= 0 {
		s.MaxAge = DefaultMaxAge
	}
	if s.DedupTTL <= 0 {
		s.DedupTTL = DefaultDedupTTL
	}
	return s
}

// Configs returns the configuration of the named streams (every stream
// when names is empty), in layout order.
func Configs(s Settings, names ...string) []jetstream.StreamConfig {
	s = s.WithDefaults()
	var out []jetstream.StreamConfig
	for _, l := range layout {
		if len(names) > 0 && !slices.Contains(names, l.name) {
			continue
		}
		c := jetstream.StreamConfig{Name: l.name, Storage: jetstream.FileStorage, Replicas: s.Replicas, MaxAge: s.MaxAge}
		for _, p := range l.prefixes {
			c.Subjects = append(c.Subjects, p+">")
		}
		if l.name == Events || l.name == Enriched {
			c.Duplicates = s.DuplicateWindow
		} else {
			c.Duplicates = derivedDuplicates
		}
		// JetStream refuses a duplicate window longer than MaxAge.
		c.Duplicates = min(c.Duplicates, c.MaxAge)
		out = append(out, c)
	}
	return out
}

// IsMissing reports whether err means that a stream or a consumer does not
// exist (any more): NATS restarted on an empty store, or someone deleted
// it. Whoever owns the stream or consumer should declare it again.
//
//   - jetstream.ErrNoStreamResponse: a publish no stream answered (no stream
//     captures the subject).
//   - nats.ErrNoResponders: the same seen directly, or a pull request to a
//     consumer that does not exist.
//   - jetstream.ErrStreamNotFound, ErrConsumerNotFound,
//     ErrConsumerDoesNotExist: API answers (also matched by error code).
//   - jetstream.ErrConsumerDeleted: the consumer was deleted under a pull.
//   - jetstream.ErrNoHeartbeat: a pull consumer with heartbeats stopped
//     hearing from its consumer.
func IsMissing(err error) bool {
	if err == nil {
		return false
	}
	for _, target := range []error{
		jetstream.ErrNoStreamResponse, nats.ErrNoResponders,
		jetstream.ErrStreamNotFound, jetstream.ErrConsumerNotFound, jetstream.ErrConsumerDoesNotExist,
		jetstream.ErrConsumerDeleted, jetstream.ErrNoHeartbeat,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// Defaults of Declarer.
const (
	// DefaultInterval is the least time between two declarations by one
	// Declarer.
	DefaultInterval = time.Second
	// DefaultSettle is how long Redeclare waits before declaring.
	DefaultSettle = 500 * time.Millisecond
)

// Declarer creates or updates a set of streams: once before first use, and
// again whenever an error says one is missing, but never more often than
// once per Interval, so that a burst of failing publishes and fetches
// causes one round of declarations rather than a storm. Its methods are
// safe for concurrent use; concurrent callers wait for the round in
// progress rather than starting another.
type Declarer struct {
	// Interval is the least time between two declarations. Default
	// DefaultInterval.
	Interval time.Duration
	// Settle is how long Redeclare waits before declaring: an error saying
	// a stream or consumer is missing can arrive while NATS is still
	// deleting it (a pull gets "consumer deleted" during the deletion), and
	// nats-server 2.15 leaves a stream or consumer created during its own
	// deletion broken for good (publishes unanswered, updates failing on
	// its meta file). Default DefaultSettle.
	Settle   time.Duration
	settings Settings
	names    []string
	buckets  []string

	mu       sync.Mutex
	declared bool
	last     time.Time
	lastErr  error
	rounds   int64 // declaration rounds run so far
}

// NewDeclarer returns a Declarer of the named streams (every stream when
// names is empty) configured by s.
func NewDeclarer(s Settings, names ...string) *Declarer {
	return &Declarer{settings: s.WithDefaults(), names: names}
}

// WithBuckets makes d declare the named KV buckets (BucketConfigs) too,
// after its streams; it returns d. Call it before first use.
func (d *Declarer) WithBuckets(names ...string) *Declarer {
	d.buckets = names
	return d
}

// Ensure declares the streams unless a declaration already succeeded. A
// failed declaration is retried at most once per Interval; in between,
// Ensure returns the last error.
func (d *Declarer) Ensure(ctx context.Context, js jetstream.JetStream) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.declared {
		return nil
	}
	if time.Since(d.last) < d.interval() {
		return fmt.Errorf("%w: %w", ErrRateLimited, d.lastErr)
	}
	return d.declareLocked(ctx, js)
}

// Redeclare declares the streams again, after Settle, unless a declaration
// started less than Interval ago; it reports whether it declared them.
// Callers arriving meanwhile wait for it, then skip.
func (d *Declarer) Redeclare(ctx context.Context, js jetstream.JetStream) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if time.Since(d.last) < d.interval() {
		return false, nil
	}
	settle := d.Settle
	if settle <= 0 {
		settle = DefaultSettle
	}
	t := time.NewTimer(settle)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false, ctx.Err()
	case <-t.C:
	}
	return true, d.declareLocked(ctx, js)
}

func (d *Declarer) interval() time.Duration {
	if d.Interval <= 0 {
		return DefaultInterval
	}
	return d.Interval
}

func (d *Declarer) declareLocked(ctx context.Context, js jetstream.JetStream) error {
	d.last = time.Now()
	d.rounds++
	if js == nil {
		d.lastErr = ErrNoJetStream
		return d.lastErr
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, c := range Configs(d.settings, d.names...) {
		if _, err := js.CreateOrUpdateStream(ctx, c); err != nil {
			d.declared, d.lastErr = false, fmt.Errorf("streams: declare %s: %w", c.Name, err)
			return d.lastErr
		}
	}
	if len(d.buckets) > 0 {
		for _, c := range BucketConfigs(d.settings, d.buckets...) {
			var err error
			if Erasable(c.Bucket) {
				_, err = js.CreateOrUpdateStream(ctx, ErasableStreamConfig(c))
			} else {
				_, err = js.CreateOrUpdateKeyValue(ctx, c)
			}
			if err != nil {
				d.declared, d.lastErr = false, fmt.Errorf("streams: declare bucket %s: %w", c.Bucket, err)
				return d.lastErr
			}
		}
	}
	d.declared, d.lastErr = true, nil
	return nil
}
