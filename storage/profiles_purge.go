package storage

import (
	"context"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// A profile ends Config.ProfileTTL after its last update (its last
// observed event or segment decision): PurgeExpired then deletes it
// through DeleteProfile, so that its segment exits are published and the
// segment sizes follow, as when consent is withdrawn. Its Badger entry
// carries the deadline as its ExpiresAt, plus profileGrace: the TTL only
// ends a profile the purge did not reach (Vigie stopped for longer than
// the grace), so that the retention holds whatever happens, and the purge
// needs no value read to find the due profiles.
//
// A profile written before this scheme (ExpiresAt without the grace) is
// purged up to profileGrace earlier than its ProfileTTL.
const profileGrace = 7 * 24 * time.Hour

// ReasonIdle is the EventId of the exits of a profile purged after
// Config.ProfileTTL without an event.
const ReasonIdle = "profile-ttl"

// profileExpiry is the ExpiresAt of a profile written now.
func (s *Store) profileExpiry() uint64 { return expiry(s.cfg.ProfileTTL + profileGrace) }

// profileDueAt is when a profile whose entry expires at expiresAt (Unix
// seconds) is due for the purge; zero for an entry without a TTL.
func profileDueAt(expiresAt uint64) time.Time {
	if expiresAt == 0 {
		return time.Time{}
	}
	return time.Unix(int64(expiresAt), 0).Add(-profileGrace)
}

// profileDue reports whether a profile entry expiring at expiresAt is due
// as of now.
func profileDue(expiresAt uint64, now time.Time) bool {
	due := profileDueAt(expiresAt)
	return !due.IsZero() && !due.After(now)
}

// purgeProfiles deletes, as of now, the profiles not updated for
// Config.ProfileTTL, each with DeleteProfile's exits (EventId ReasonIdle),
// checked again in the deleting transaction so that a profile updated
// meanwhile stays.
func (s *Store) purgeProfiles(ctx context.Context, now time.Time) (int, error) {
	return s.sweep(ctx, prefixProfile, func(_ *badger.Txn, item *badger.Item) bool {
		_, _, ok := parseProfileKey(item.Key())
		return ok && profileDue(item.ExpiresAt(), now)
	}, func(keys [][]byte) (int, error) {
		n := 0
		for _, k := range keys {
			site, subject, _ := parseProfileKey(k)
			deleted := false
			_, err := s.deleteProfile(ctx, string(site), string(subject), ReasonIdle, func(exp uint64) bool {
				deleted = profileDue(exp, now)
				return deleted
			})
			if err != nil {
				return n, err
			}
			if deleted {
				n++
				if s.cfg.OnProfileDelete != nil {
					s.cfg.OnProfileDelete(ctx, string(site), string(subject), ReasonIdle)
				}
			}
		}
		return n, nil
	})
}
