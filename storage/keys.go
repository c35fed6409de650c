package storage

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Key layout. Every key the package writes is built and parsed in this file.
// <ms> is the event time as 8-byte big-endian unix milliseconds, so keys of
// one site sort by time; <seq> is an 8-byte big-endian outbox sequence.
// Sites and subjects never contain \x00 (validated), so \x00 terminates them
// and a "<x>\x00" prefix selects exactly one site or subject.
//
//	key                                   value                         TTL
//	e/<site>\x00<ms><id>                  event bytes (vigiev1.Event)   Record.TTL
//	s/<subject>\x00<site>\x00<ms><id>     empty (event key derivable)   Record.TTL
//	d/<site>\x00<dedup>                   empty                         Config.DedupWindow
//	                                                                    (KeepDedup: Record.TTL)
//	o/<seq>                               event reference:
//	                                      uvarint(len topic) topic
//	                                      event key                     none
//	                                      or message (own payload):
//	                                      0x00 uvarint(len topic) topic
//	                                      uvarint(len id) id data       none
//	v/k/<subject>\x00                     AES-GCM(VaultKey, data key,
//	                                      AAD=subject)                  none
//	v/t/<subject>\x00<site>               AES-GCM(data key, traits,
//	                                      AAD=subject \x00 site)        Record.TTL
//	p/<site>\x00<subject>                 Profile as compact JSON       Config.ProfileTTL
//	pe/<site>\x00<event id>               empty (ObserveEvent marker)   48h
//	pa/<plugin>\x00<site>\x00<event id>    empty (ApplySegment marker)   48h
//	ps/<site>\x00<segment>                8-byte big-endian size        none
//	pl/<site>\x00<seq>                    SegmentChange (protobuf)      30 days
//	pc/<seq>                              SegmentChange (protobuf)      none
//	k/<plugin>\x00<key>                   plugin KV value               KVPut ttl
//	m/segseq                              8-byte big-endian next <seq>  none
//	m/segfold                             SegmentMark: 8-byte epoch,
//	                                      8-byte stream sequence        none
//	cl/<site>\x00<subject>                JSON ConsentEntry (ledger)    ConsentTTL
//	ec/<site>\x00<campaign>\x00<hour ms>   8-byte big-endian count       EmailCount.TTL
//	   <kind>\x00<class>\x00<link>         (anonymous e-mail hits)       from the hour
//	si/<site>                             site added at run time        none (kept: the
//	                                      (opaque, proxy's JSON)        site's definition)
//	rh/<site>\x00<hour>[<part>]           rollup hour bucket (binary,   RollupEntry.ExpiresAt
//	                                      plugins/rollup)
//	rd/<site>\x00<day>[<part>]            rollup day bucket             RollupEntry.ExpiresAt
//	rc/<site>\x00<hour>                   ingestion decision counters   RollupEntry.ExpiresAt
//	rm/<name>                             RollupMark: 8-byte epoch,
//	                                      8-byte stream sequence        none
//	au/<ms><seq>                          JSON AuditEntry               Retention.Audit
//	ch/<site>\x00<subject>\x00<ms>         JSON ConsentEntry (history)   ConsentTTL
//	bi/<site>\x00<kind>\x00<mac><subject>  empty (blind index)           Record.TTL
//	sb/<site>\x00<subject>\x00<kind>\x00<mac> empty (bi/ reverse)       Record.TTL
//	sl/<site>\x00<subject>\x00<linked>     empty (both directions)       Record.TTL
//	su/<site>\x00<kind>\x00<mac>           JSON Suppression              none
//	sh/<site>\x00<subject>\x00<ms><plugin> JSON SyncRecord                SyncRecord TTL
//	pr/<id>                               JSON privacy request          none (PurgeExpired:
//	                                      (proxy/privacy)               Retention.Requests after
//	                                                                    completed_at)
//	px/<id>                               its subjects (JSON list)      none
//	sd/<site>\x00<day ms><category>\x00<layer>
//	                                      JSON sensitive-data detection
//	                                      counts and examples           the caller's TTL after
//	                                                                    the day (anonymous
//	                                                                    retention)
//	pk/<id>                               an erasure's contacts for its
//	                                      destinations (SealSecret)     none
//	rs/<plugin>                           a syncer's resync job (JSON,
//	                                      plugins runtime)              none
//	ij/<job>                              import job (proxy/imports)    ImportJobTTL
//	ie/<job>\x00<row>                     per-row import error          ImportJobTTL
//	ik/<sha256 of Idempotency-Key>        import idempotency record     ImportJobTTL
//
// <mac> is a MACLen-byte keyed MAC (IndexEntry): fixed length, so the
// subject that follows it in a bi/ key needs no separator. The blind index
// (bi/, with its reverse sb/ so that an erasure finds a subject's entries)
// and the subject links (sl/) are one key per pair, never a list to read,
// modify and write: they are written by the committer with the events and
// deleted by erasures outside it, and Badger's conflict detection is off.
//
// What has no TTL is either bounded by PurgeExpired or kept on purpose; the
// table prefixLifetimes in purge.go says which, for every prefix.
//
// In the import keys <row> is the 8-byte big-endian row number, so a job's
// errors sort by row; the values are opaque to this package.
//
// In the rollup keys <hour> is the 4-byte big-endian number of whole hours
// since the Unix epoch (UTC) and <day> the number of whole days, so the
// buckets of one site sort by time and a range is one prefix scan. <part>,
// absent for part 0, is an 8-byte big-endian part number: a bucket's later
// parts (changes written since its part 0) sort right after it. The values
// are opaque to this package (plugins/rollup encodes them).
//
// An outbox entry is one of two kinds, told apart by its first byte. An
// event reference (first byte: the uvarint length of a non-empty topic,
// never 0) names the event's key: the bytes are read when it is published,
// so an event erased before then is never published, and its Nats-Msg-Id
// is the event id. A message (first byte 0x00) carries its own subject,
// Nats-Msg-Id and payload, fixed when it was committed (privacy events,
// written in the same transaction as the ledger entry they report). Both
// kinds share the o/<seq> sequence, so they are published in commit order.
//
// The outbox sequence is not persisted separately: Open resumes after the
// last live o/ key (if the outbox is empty, numbering may restart, which is
// harmless because only the order of live entries matters). The segment
// change sequence (shared by pl/ and pc/) is persisted under m/segseq in the
// transaction that uses it, because the pl/ log must keep its order even
// when nothing is pending. The rest of the m/ prefix is reserved for future
// metadata. No prefix above is a prefix of another ("p/" does not match
// "pe/"), and every per-site scan uses a full "<prefix><site>\x00" prefix.
const (
	prefixEvent   = "e/"
	prefixSubject = "s/"
	prefixDedup   = "d/"
	prefixOutbox  = "o/"
	prefixDataKey = "v/k/"
	prefixTraits  = "v/t/"

	prefixProfile  = "p/"
	prefixObserved = "pe/"
	prefixApplied  = "pa/"
	prefixSegSize  = "ps/"
	prefixSegLog   = "pl/"
	prefixPending  = "pc/"
	prefixKV       = "k/"
	keySegmentSeq  = "m/segseq"
	keySegmentFold = "m/segfold"

	prefixEmailCount = "ec/"
)

// Limits on key parts, far below Badger's 64 KiB key limit.
const (
	maxNameLen  = 255 // site, subject, id
	maxDedupLen = 255
	maxTopicLen = 1024
	timeLen     = 8
	seqLen      = 8
)

// validName checks a site or subject (what may not be empty is checked by
// the caller).
func validName(field, s string) error {
	if len(s) > maxNameLen || strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%w: %s too long or contains NUL", ErrInvalidKey, field)
	}
	return nil
}

// appendEventKey appends e/<site>\x00<ms><id> to dst.
func appendEventKey(dst []byte, site string, ms uint64, id string) []byte {
	dst = append(dst, prefixEvent...)
	dst = append(dst, site...)
	dst = append(dst, 0)
	dst = binary.BigEndian.AppendUint64(dst, ms)
	return append(dst, id...)
}

// siteEventPrefix returns e/<site>\x00.
func siteEventPrefix(site string) []byte {
	return append(append([]byte(prefixEvent), site...), 0)
}

// appendSubjectKey appends s/<subject>\x00<site>\x00<ms><id> to dst.
func appendSubjectKey(dst []byte, subject, site string, ms uint64, id string) []byte {
	dst = append(dst, prefixSubject...)
	dst = append(dst, subject...)
	dst = append(dst, 0)
	dst = append(dst, site...)
	dst = append(dst, 0)
	dst = binary.BigEndian.AppendUint64(dst, ms)
	return append(dst, id...)
}

// subjectPrefix returns s/<subject>\x00.
func subjectPrefix(subject string) []byte {
	return append(append([]byte(prefixSubject), subject...), 0)
}

// eventKeyFromSubjectKey maps s/<subject>\x00<site>\x00<ms><id> to
// e/<site>\x00<ms><id>, appending to dst.
func eventKeyFromSubjectKey(dst, skey []byte) ([]byte, bool) {
	rest, ok := bytes.CutPrefix(skey, []byte(prefixSubject))
	if !ok {
		return dst, false
	}
	i := bytes.IndexByte(rest, 0)
	if i < 0 {
		return dst, false
	}
	tail := rest[i+1:] // <site>\x00<ms><id>
	j := bytes.IndexByte(tail, 0)
	if j < 0 || len(tail)-j-1 < timeLen {
		return dst, false
	}
	dst = append(dst, prefixEvent...)
	return append(dst, tail...), true
}

// parseEventKey splits e/<site>\x00<ms><id>.
func parseEventKey(key []byte) (site []byte, ms uint64, id []byte, ok bool) {
	rest, ok := bytes.CutPrefix(key, []byte(prefixEvent))
	if !ok {
		return nil, 0, nil, false
	}
	i := bytes.IndexByte(rest, 0)
	if i < 0 || len(rest)-i-1 < timeLen {
		return nil, 0, nil, false
	}
	t := rest[i+1:]
	return rest[:i], binary.BigEndian.Uint64(t), t[timeLen:], true
}

// appendDedupKey appends d/<site>\x00<dedup> to dst.
func appendDedupKey(dst []byte, site string, dedup []byte) []byte {
	dst = append(dst, prefixDedup...)
	dst = append(dst, site...)
	dst = append(dst, 0)
	return append(dst, dedup...)
}

// appendOutboxKey appends o/<seq> to dst.
func appendOutboxKey(dst []byte, seq uint64) []byte {
	dst = append(dst, prefixOutbox...)
	return binary.BigEndian.AppendUint64(dst, seq)
}

// parseOutboxKey returns the sequence of an o/<seq> key.
func parseOutboxKey(key []byte) (uint64, bool) {
	rest, ok := bytes.CutPrefix(key, []byte(prefixOutbox))
	if !ok || len(rest) != seqLen {
		return 0, false
	}
	return binary.BigEndian.Uint64(rest), true
}

// appendOutboxValue appends uvarint(len topic) topic eventKey to dst.
func appendOutboxValue(dst []byte, topic string, eventKey []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(topic)))
	dst = append(dst, topic...)
	return append(dst, eventKey...)
}

// parseOutboxValue splits an event reference outbox value into topic and
// event key.
func parseOutboxValue(v []byte) (topic, eventKey []byte, ok bool) {
	return cutUvarint(v)
}

// outboxMessageTag is the first byte of an outbox message value.
const outboxMessageTag = 0x00

// outboxFlagged follows outboxMessageTag in a message value that has a
// flags byte (then topic, id, data as in any message): a topic length is
// never 0, so older values are read unchanged.
const outboxFlagged = 0x00

// outboxFlagKVDelete marks a Message.KVDelete.
const outboxFlagKVDelete = 0x01

// appendOutboxMessage appends 0x00 [0x00 flags] uvarint(len topic) topic
// uvarint(len id) id data to dst; the flags only for a KV delete.
func appendOutboxMessage(dst []byte, topic, id string, data []byte, kvDelete bool) []byte {
	dst = append(dst, outboxMessageTag)
	if kvDelete {
		dst = append(dst, outboxFlagged, outboxFlagKVDelete)
	}
	dst = binary.AppendUvarint(dst, uint64(len(topic)))
	dst = append(dst, topic...)
	dst = binary.AppendUvarint(dst, uint64(len(id)))
	dst = append(dst, id...)
	return append(dst, data...)
}

// parseOutboxMessage splits an outbox message value (after its tag byte)
// into topic, id, data and its KV delete flag.
func parseOutboxMessage(v []byte) (topic, id, data []byte, kvDelete, ok bool) {
	if len(v) > 0 && v[0] == outboxFlagged {
		if len(v) < 2 {
			return nil, nil, nil, false, false
		}
		kvDelete, v = v[1]&outboxFlagKVDelete != 0, v[2:]
	}
	topic, rest, ok := cutUvarint(v)
	if !ok {
		return nil, nil, nil, false, false
	}
	id, data, ok = cutUvarint(rest)
	return topic, id, data, kvDelete, ok
}

// cutUvarint splits uvarint(n) followed by n bytes off the front of v.
func cutUvarint(v []byte) (field, rest []byte, ok bool) {
	n, w := binary.Uvarint(v)
	if w <= 0 || n > uint64(len(v)-w) {
		return nil, nil, false
	}
	return v[w : w+int(n)], v[w+int(n):], true
}

// dataKeyKey returns v/k/<subject>\x00.
func dataKeyKey(subject string) []byte {
	return append(append([]byte(prefixDataKey), subject...), 0)
}

// traitsPrefix returns v/t/<subject>\x00.
func traitsPrefix(subject string) []byte {
	return append(append([]byte(prefixTraits), subject...), 0)
}

// appendTraitsKey appends v/t/<subject>\x00<site> to dst.
func appendTraitsKey(dst []byte, subject, site string) []byte {
	dst = append(dst, prefixTraits...)
	dst = append(dst, subject...)
	dst = append(dst, 0)
	return append(dst, site...)
}

// traitsAAD is the additional data binding traits to subject and site.
func traitsAAD(subject, site string) []byte {
	b := make([]byte, 0, len(subject)+1+len(site))
	b = append(b, subject...)
	b = append(b, 0)
	return append(b, site...)
}

// appendNames appends prefix, then names separated by \x00 (no trailing
// \x00), to dst.
func appendNames(dst []byte, prefix string, names ...string) []byte {
	dst = append(dst, prefix...)
	for i, n := range names {
		if i > 0 {
			dst = append(dst, 0)
		}
		dst = append(dst, n...)
	}
	return dst
}

// profileKey returns p/<site>\x00<subject>.
func profileKey(site, subject string) []byte {
	return appendNames(make([]byte, 0, len(prefixProfile)+len(site)+1+len(subject)), prefixProfile, site, subject)
}

// parseProfileKey splits p/<site>\x00<subject>.
func parseProfileKey(key []byte) (site, subject []byte, ok bool) {
	rest, ok := bytes.CutPrefix(key, []byte(prefixProfile))
	if !ok {
		return nil, nil, false
	}
	site, subject, ok = bytes.Cut(rest, []byte{0})
	if !ok || bytes.IndexByte(subject, 0) >= 0 {
		return nil, nil, false
	}
	return site, subject, true
}

// observedKey returns pe/<site>\x00<id>.
func observedKey(site, id string) []byte {
	return appendNames(nil, prefixObserved, site, id)
}

// appliedKey returns pa/<plugin>\x00<site>\x00<id>.
func appliedKey(plugin, site, id string) []byte {
	return appendNames(nil, prefixApplied, plugin, site, id)
}

// segSizeKey returns ps/<site>\x00<segment>.
func segSizeKey(site, segment string) []byte {
	return appendNames(nil, prefixSegSize, site, segment)
}

// segSizePrefix returns ps/<site>\x00.
func segSizePrefix(site string) []byte {
	return append(appendNames(nil, prefixSegSize, site), 0)
}

// segLogKey returns pl/<site>\x00<seq>.
func segLogKey(site string, seq uint64) []byte {
	dst := append(appendNames(nil, prefixSegLog, site), 0)
	return binary.BigEndian.AppendUint64(dst, seq)
}

// segLogPrefix returns pl/<site>\x00.
func segLogPrefix(site string) []byte {
	return append(appendNames(nil, prefixSegLog, site), 0)
}

// pendingKey returns pc/<seq>.
func pendingKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(prefixPending), seq)
}

// parsePendingKey returns the sequence of a pc/<seq> key.
func parsePendingKey(key []byte) (uint64, bool) {
	rest, ok := bytes.CutPrefix(key, []byte(prefixPending))
	if !ok || len(rest) != seqLen {
		return 0, false
	}
	return binary.BigEndian.Uint64(rest), true
}

// kvKey returns k/<plugin>\x00<key>.
func kvKey(plugin, key string) []byte {
	return appendNames(make([]byte, 0, len(prefixKV)+len(plugin)+1+len(key)), prefixKV, plugin, key)
}

// Privacy prefixes (see the layout above).
const (
	prefixHistory  = "ch/"
	prefixBlind    = "bi/"
	prefixBlindRev = "sb/"
	prefixLink     = "sl/"
	prefixSuppress = "su/"
	prefixSync     = "sh/"
	prefixRequest  = "pr/" // purged Retention.Requests after completed_at
	prefixReqSubj  = "px/"
)

// siteSubjectPrefix returns <prefix><site>\x00<subject>\x00.
func siteSubjectPrefix(prefix, site, subject string) []byte {
	return append(appendNames(nil, prefix, site, subject), 0)
}

// blindPrefix returns bi/<site>\x00<kind>\x00<mac>: every subject of one
// blind-index value.
func blindPrefix(site, kind string, mac []byte) []byte {
	return append(append(appendNames(nil, prefixBlind, site, kind), 0), mac...)
}

// blindRevKey returns sb/<site>\x00<subject>\x00<kind>\x00<mac>.
func blindRevKey(site, subject, kind string, mac []byte) []byte {
	return append(append(appendNames(nil, prefixBlindRev, site, subject, kind), 0), mac...)
}

// parseBlindRevSuffix splits <kind>\x00<mac>, the part of an sb/ key after
// its site-subject prefix.
func parseBlindRevSuffix(rest []byte) (kind string, mac []byte, ok bool) {
	k, m, ok := bytes.Cut(rest, []byte{0})
	if !ok || len(m) != MACLen {
		return "", nil, false
	}
	return string(k), m, true
}

// linkKey returns sl/<site>\x00<subject>\x00<linked>.
func linkKey(site, subject, linked string) []byte {
	return appendNames(nil, prefixLink, site, subject, linked)
}

// suppressKey returns su/<site>\x00<kind>\x00<mac>.
func suppressKey(site, kind string, mac []byte) []byte {
	return append(append(appendNames(nil, prefixSuppress, site, kind), 0), mac...)
}

// historyKey returns ch/<site>\x00<subject>\x00<ms><xxhash64(v)>: two
// different records of one millisecond (a batch's events share their
// receipt time) are both kept, in no particular order; the same record
// written again is kept once. Keys written before the hash was added end
// at <ms> and are read alike.
func historyKey(site, subject string, ms int64, v []byte) []byte {
	k := binary.BigEndian.AppendUint64(siteSubjectPrefix(prefixHistory, site, subject), uint64(max(ms, 0)))
	return binary.BigEndian.AppendUint64(k, xxhash.Sum64(v))
}

// syncKey returns sh/<site>\x00<subject>\x00<ms><plugin>\x00<xxhash64(v)>,
// unique per record as historyKey is (a plugin's syncers run side by side,
// so two of its records of a subject can share their millisecond). Keys
// written before end at <plugin>.
func syncKey(site, subject string, ms int64, plugin string, v []byte) []byte {
	k := binary.BigEndian.AppendUint64(siteSubjectPrefix(prefixSync, site, subject), uint64(max(ms, 0)))
	k = append(append(k, plugin...), 0)
	return binary.BigEndian.AppendUint64(k, xxhash.Sum64(v))
}

// requestSubjectsKey returns px/<id>.
func requestSubjectsKey(id string) []byte { return append([]byte(prefixReqSubj), id...) }

// requestKey returns pr/<id>.
func requestKey(id string) []byte { return append([]byte(prefixRequest), id...) }

// prefixConsent is the consent ledger: cl/<site>\x00<subject> → JSON
// ConsentEntry, TTL ConsentEntry's retention.
const prefixConsent = "cl/"

// consentKey returns cl/<site>\x00<subject>.
func consentKey(site, subject string) []byte {
	k := make([]byte, 0, len(prefixConsent)+len(site)+1+len(subject))
	k = append(k, prefixConsent...)
	k = append(k, site...)
	k = append(k, 0)
	return append(k, subject...)
}

// prefixSite holds the sites added at run time (console, vigie sites add):
// si/<site> → the proxy's JSON of the site, kept.
const prefixSite = "si/"

// siteKey returns si/<site>.
func siteKey(site string) []byte { return append([]byte(prefixSite), site...) }

// Rollup prefixes (see the table at the top of this file).
const (
	prefixRollupHour      = "rh/"
	prefixRollupDay       = "rd/"
	prefixRollupDecisions = "rc/"
	prefixRollupMark      = "rm/" // rm/<name> → RollupMark
)

// rollupPrefixes are the value prefixes indexed by RollupKind.
var rollupPrefixes = [...]string{
	RollupHour:      prefixRollupHour,
	RollupDay:       prefixRollupDay,
	RollupDecisions: prefixRollupDecisions,
}

// rollupIndexLen is the size of <hour> and <day> in rollup keys.
const rollupIndexLen = 4

// rollupSitePrefix returns r?/<site>\x00 for kind.
func rollupSitePrefix(kind RollupKind, site string) []byte {
	p := rollupPrefixes[kind]
	k := make([]byte, 0, len(p)+len(site)+1+rollupIndexLen)
	k = append(k, p...)
	k = append(k, site...)
	return append(k, 0)
}

// rollupKey returns r?/<site>\x00<index>, followed by <part> when part > 0.
func rollupKey(kind RollupKind, site string, index uint32, part uint64) []byte {
	k := binary.BigEndian.AppendUint32(rollupSitePrefix(kind, site), index)
	if part > 0 {
		k = binary.BigEndian.AppendUint64(k, part)
	}
	return k
}

// parseRollupIndex returns the <index> and <part> of a rollup key that
// starts with prefix (the site prefix of rollupSitePrefix).
func parseRollupIndex(key, prefix []byte) (index uint32, part uint64, ok bool) {
	rest, ok := bytes.CutPrefix(key, prefix)
	switch {
	case !ok:
		return 0, 0, false
	case len(rest) == rollupIndexLen:
		return binary.BigEndian.Uint32(rest), 0, true
	case len(rest) == rollupIndexLen+8:
		part = binary.BigEndian.Uint64(rest[rollupIndexLen:])
		return binary.BigEndian.Uint32(rest), part, part > 0
	}
	return 0, 0, false
}

// rollupMarkKey returns rm/<name>.
func rollupMarkKey(name string) []byte {
	return append([]byte(prefixRollupMark), name...)
}

// prefixAudit is the audit trail: au/<ms><seq> → JSON AuditEntry, TTL
// Retention.Audit. <ms> is the entry's time, <seq> a per-process counter,
// so keys sort by time.
const prefixAudit = "au/"

// auditKeyLen is the length of an au/ key.
const auditKeyLen = len(prefixAudit) + timeLen + seqLen

// auditKey returns au/<ms><seq>.
func auditKey(ms, seq uint64) []byte {
	k := make([]byte, 0, auditKeyLen)
	k = append(k, prefixAudit...)
	k = binary.BigEndian.AppendUint64(k, ms)
	return binary.BigEndian.AppendUint64(k, seq)
}

// parseAuditKey returns the time and sequence of an au/ key.
func parseAuditKey(key []byte) (ms, seq uint64, ok bool) {
	rest, ok := bytes.CutPrefix(key, []byte(prefixAudit))
	if !ok || len(rest) != timeLen+seqLen {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(rest), binary.BigEndian.Uint64(rest[timeLen:]), true
}

// emailCountPrefix returns ec/<site>\x00, or ec/<site>\x00<campaign>\x00
// when campaign is not empty.
func emailCountPrefix(site, campaign string) []byte {
	k := append(append([]byte(prefixEmailCount), site...), 0)
	if campaign != "" {
		k = append(append(k, campaign...), 0)
	}
	return k
}

// appendEmailCountKey appends
// ec/<site>\x00<campaign>\x00<hour ms><kind>\x00<class>\x00<link> to dst.
func appendEmailCountKey(dst []byte, c *EmailCount) []byte {
	dst = append(dst, prefixEmailCount...)
	dst = append(dst, c.Site...)
	dst = append(dst, 0)
	dst = append(dst, c.Campaign...)
	dst = append(dst, 0)
	dst = binary.BigEndian.AppendUint64(dst, uint64(c.Hour.UnixMilli()))
	dst = append(dst, c.Kind...)
	dst = append(dst, 0)
	dst = append(dst, c.Class...)
	dst = append(dst, 0)
	return append(dst, c.Link...)
}

// parseEmailCountKey is the inverse of appendEmailCountKey.
func parseEmailCountKey(k []byte) (EmailCount, bool) {
	var c EmailCount
	rest, ok := bytes.CutPrefix(k, []byte(prefixEmailCount))
	if !ok {
		return c, false
	}
	next := func() (string, bool) {
		i := bytes.IndexByte(rest, 0)
		if i < 0 {
			return "", false
		}
		v := string(rest[:i])
		rest = rest[i+1:]
		return v, true
	}
	var okS, okC bool
	if c.Site, okS = next(); !okS {
		return c, false
	}
	if c.Campaign, okC = next(); !okC || len(rest) < timeLen {
		return c, false
	}
	c.Hour = time.UnixMilli(int64(binary.BigEndian.Uint64(rest[:timeLen]))).UTC()
	rest = rest[timeLen:]
	if c.Kind, ok = next(); !ok {
		return c, false
	}
	if c.Class, ok = next(); !ok {
		return c, false
	}
	c.Link = string(rest)
	return c, true
}

// prefixDetected holds the sensitive-data detection counts (sensitive.go;
// "sd/": sensitive detections):
// sd/<site>\x00<day><category>\x00<layer> → JSON, where <day> is the UTC
// day's midnight as 8-byte big-endian unix milliseconds, so one site's
// days sort in order.
const prefixDetected = "sd/"

// sensitiveKey returns sd/<site>\x00<day><category>\x00<layer>.
func sensitiveKey(site string, dayMs uint64, category, layer string) []byte {
	k := make([]byte, 0, len(prefixDetected)+len(site)+1+timeLen+len(category)+1+len(layer))
	k = append(k, prefixDetected...)
	k = append(k, site...)
	k = append(k, 0)
	k = binary.BigEndian.AppendUint64(k, dayMs)
	k = append(k, category...)
	k = append(k, 0)
	return append(k, layer...)
}

// sensitiveSitePrefix returns sd/<site>\x00, or sd/ for every site.
func sensitiveSitePrefix(site string) []byte {
	if site == "" {
		return []byte(prefixDetected)
	}
	return append(append([]byte(prefixDetected), site...), 0)
}

// parseSensitiveKey splits a sd/ key.
func parseSensitiveKey(key []byte) (site string, dayMs uint64, category, layer string, ok bool) {
	rest, ok := bytes.CutPrefix(key, []byte(prefixDetected))
	if !ok {
		return "", 0, "", "", false
	}
	i := bytes.IndexByte(rest, 0)
	if i < 0 || len(rest)-i-1 < timeLen {
		return "", 0, "", "", false
	}
	site, rest = string(rest[:i]), rest[i+1:]
	dayMs, rest = binary.BigEndian.Uint64(rest), rest[timeLen:]
	j := bytes.IndexByte(rest, 0)
	if j < 0 {
		return "", 0, "", "", false
	}
	return site, dayMs, string(rest[:j]), string(rest[j+1:]), true
}

// Import prefixes (see the table at the top of this file).
const (
	prefixImportJob   = "ij/"
	prefixImportError = "ie/"
	prefixImportIdem  = "ik/"
)

// importJobKey returns ij/<job>.
func importJobKey(job string) []byte { return append([]byte(prefixImportJob), job...) }

// importErrorPrefix returns ie/<job>\x00.
func importErrorPrefix(job string) []byte {
	return append(appendNames(nil, prefixImportError, job), 0)
}

// importErrorKey returns ie/<job>\x00<row>.
func importErrorKey(job string, row uint64) []byte {
	return binary.BigEndian.AppendUint64(importErrorPrefix(job), row)
}

// importIdemKey returns ik/<hash>.
func importIdemKey(hash []byte) []byte { return append([]byte(prefixImportIdem), hash...) }
