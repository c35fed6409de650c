package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// Kinds of data in an Outlook, each one key prefix.
const (
	KindProfiles       = "profiles"
	KindEvents         = "events"
	KindVault          = "vault"
	KindConsent        = "consent"
	KindConsentHistory = "consent_history"
	KindAudit          = "audit"
	KindRequests       = "requests"
	KindSegmentLog     = "segment_log"
	KindPendingChanges = "pending_changes"
	KindSyncHistory    = "sync_history"
	KindPluginKV       = "plugin_kv"
)

// How the data of an Upcoming ends.
const (
	// EndsByTTL: Badger ends each item at its time (it is then
	// unreadable; its bytes go with the next compaction).
	EndsByTTL = "ttl"
	// EndsByPurge: PurgeExpired deletes each item at its first run after
	// the item's time.
	EndsByPurge = "purge"
)

// DefaultOutlookHorizon is OutlookQuery.Horizon's default.
const DefaultOutlookHorizon = 7 * 24 * time.Hour

// Upcoming is how much of one kind of data ends within an Outlook's
// horizon: counts only, nothing about whom.
type Upcoming struct {
	// Kind is one of the Kind constants.
	Kind string `json:"kind"`
	// Class refines Kind for events: what OutlookQuery.EventClass named.
	Class string `json:"class,omitempty"`
	// Ends is EndsByTTL or EndsByPurge.
	Ends string `json:"ends"`
	// Due is how many items end within the horizon.
	Due int `json:"due"`
	// Next is when the first of them ends (for EndsByPurge, the purge run
	// that deletes it); zero when none ends within the horizon.
	Next time.Time `json:"next,omitzero"`
}

// OutlookQuery says what Outlook looks at.
type OutlookQuery struct {
	// Now is the time the horizon starts. Default time.Now().
	Now time.Time
	// Horizon is how far ahead to count. Default DefaultOutlookHorizon.
	Horizon time.Duration
	// EventClass names the class of an event ending within the horizon
	// (its stored body is read for it, e.g. to name the retention setting
	// of its purposes); nil: one class for every event.
	EventClass func(ev *vigiev1.Event) string
}

// outlookKinds are the kinds Outlook reports, in order.
var outlookKinds = []struct {
	kind, prefix, ends string
}{
	{KindProfiles, prefixProfile, EndsByPurge},
	{KindEvents, prefixEvent, EndsByTTL},
	{KindVault, prefixTraits, EndsByTTL},
	{KindConsent, prefixConsent, EndsByTTL},
	{KindConsentHistory, prefixHistory, EndsByTTL},
	{KindAudit, prefixAudit, EndsByTTL},
	{KindRequests, prefixRequest, EndsByPurge},
	{KindSegmentLog, prefixSegLog, EndsByTTL},
	{KindPendingChanges, prefixPending, EndsByPurge},
	{KindSyncHistory, prefixSync, EndsByTTL},
	{KindPluginKV, prefixKV, EndsByTTL},
}

// Outlook counts, for every kind of personal data the store keeps, what
// ends within q.Horizon and when the first of it does: the retention a
// privacy page shows ("what will be purged next and when"). It reads
// every key of those prefixes without their values (except the events
// ending within the horizon, for EventClass, privacy requests and pending
// changes, whose time is in their value), in chunks, so it costs about
// one pass over the keys: callers cache it.
func (s *Store) Outlook(ctx context.Context, q OutlookQuery) ([]Upcoming, error) {
	if q.Now.IsZero() {
		q.Now = time.Now()
	}
	if q.Horizon <= 0 {
		q.Horizon = DefaultOutlookHorizon
	}
	end := q.Now.Add(q.Horizon)
	var out []Upcoming
	for _, k := range outlookKinds {
		byClass := map[string]*Upcoming{}
		var order []string
		add := func(class string, at time.Time) {
			if at.IsZero() || at.After(end) {
				return
			}
			if at.Before(q.Now) {
				if k.ends == EndsByTTL {
					return // already ended
				}
				at = q.Now // overdue: the next run deletes it
			}
			u := byClass[class]
			if u == nil {
				u = &Upcoming{Kind: k.kind, Class: class, Ends: k.ends}
				byClass[class] = u
				order = append(order, class)
			}
			u.Due++
			if u.Next.IsZero() || at.Before(u.Next) {
				u.Next = at
			}
		}
		_, err := s.sweep(ctx, k.prefix, func(_ *badger.Txn, item *badger.Item) bool {
			exp := item.ExpiresAt()
			switch k.prefix {
			case prefixProfile:
				if _, _, ok := parseProfileKey(item.Key()); ok {
					add("", profileDueAt(exp))
				}
			case prefixRequest:
				add("", s.requestDueAt(item))
			case prefixPending:
				add("", s.pendingDueAt(item))
			case prefixEvent:
				at := time.Unix(int64(exp), 0)
				if exp == 0 || at.After(end) {
					return false
				}
				class := ""
				if q.EventClass != nil {
					_ = item.Value(func(v []byte) error {
						ev := new(vigiev1.Event)
						if proto.Unmarshal(v, ev) == nil {
							class = q.EventClass(ev)
						}
						return nil
					})
				}
				add(class, at)
			default:
				if exp != 0 {
					add("", time.Unix(int64(exp), 0))
				}
			}
			return false
		}, func([][]byte) (int, error) { return 0, nil })
		if err != nil {
			return nil, fmt.Errorf("storage: outlook %s: %w", k.kind, err)
		}
		if len(order) == 0 {
			order = []string{""}
			byClass[""] = &Upcoming{Kind: k.kind, Ends: k.ends}
		}
		for _, c := range order {
			u := byClass[c]
			if u.Ends == EndsByPurge && !u.Next.IsZero() {
				u.Next = s.purgeRunAt(u.Next)
			}
			out = append(out, *u)
		}
	}
	return out, nil
}

// NextPurge is when the store's own purge (Config.PurgeInterval) runs
// next; zero when it does not run by itself.
func (s *Store) NextPurge() time.Time {
	ms := s.nextPurge.Load()
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// purgeRunAt is the first run of the store's purge at or after t (t itself
// when the purge does not run by itself).
func (s *Store) purgeRunAt(t time.Time) time.Time {
	next, every := s.NextPurge(), s.cfg.PurgeInterval
	if next.IsZero() || every <= 0 || !t.After(next) {
		if next.IsZero() {
			return t
		}
		return next
	}
	n := (t.Sub(next) + every - 1) / every
	return next.Add(n * every)
}

// requestDueAt is when PurgeExpired deletes the privacy request of item;
// zero for one not completed.
func (s *Store) requestDueAt(item *badger.Item) time.Time {
	var done time.Time
	_ = item.Value(func(v []byte) error {
		var r struct {
			CompletedAt json.RawMessage `json:"completed_at"`
		}
		if json.Unmarshal(v, &r) == nil {
			done = parseInstant(r.CompletedAt)
		}
		return nil
	})
	if done.IsZero() {
		return time.Time{}
	}
	return done.Add(s.cfg.Retention.Requests)
}

// pendingDueAt is when PurgeExpired drops the unpublished change of item.
func (s *Store) pendingDueAt(item *badger.Item) time.Time {
	if _, ok := parsePendingKey(item.Key()); !ok {
		return time.Time{}
	}
	var at int64
	_ = item.Value(func(v []byte) error {
		c := new(vigiev1.SegmentChange)
		if proto.Unmarshal(v, c) == nil {
			at = c.GetAtMs()
		}
		return nil
	})
	if at <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(at).Add(s.cfg.Retention.PendingChanges)
}

// RetentionOutlook is what will be purged next and when: per kind of
// data, counts only.
type RetentionOutlook struct {
	ComputedAt time.Time `json:"computed_at"`
	// Horizon is how far ahead Kinds count.
	Horizon string `json:"horizon"`
	// NextPurge is when the daily purge runs next (profiles idle for
	// profile_ttl, completed privacy requests, unpublished changes);
	// data with a TTL ends at its own time.
	NextPurge time.Time  `json:"next_purge,omitzero"`
	Kinds     []Upcoming `json:"kinds"`
}
