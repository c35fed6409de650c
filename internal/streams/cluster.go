package streams

import (
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/nats-io/nats.go/jetstream"
)

// KV buckets of cluster mode (cluster.node_id set): the state several Vigie
// nodes share. A single node declares none of them.
//
//	bucket          key                          written by
//	VIGIE_DEDUP     <site>.<hex dedup key>       ingesting node, before the commit (TTL = dedup window)
//	VIGIE_LEDGER    <site>.<subject>             outbox of the node that recorded the choice
//	VIGIE_NODES     <node>                       each node (heartbeat)
//	VIGIE_LEASES    part.<n>                     the partition's owner (expiry inside the value)
//	VIGIE_REQUESTS  req.<id>, view.<id>,         outbox of the request's node, and of each node
//	                step.<id>.<node>,            for its step, its sealed export part, the
//	                part.<id>.<node>, ack.…,     acknowledgements it received and the sealed
//	                contact.<event>              contacts of its erasure event (purged with
//	                                             the request's retention)
//	VIGIE_PROFILES  <partition>.<site>.<subject> the partition's owner (TTL = profile TTL)
//	VIGIE_VAULT     <site>.<subject>             outbox of the ingesting node (ciphertext only)
//	VIGIE_KEYRING   keyring                      the first node (sealed under the master key)
//	VIGIE_DECISIONS <site>.<hour>.<node>         each node, its own decision counters (TTL = DecisionsTTL)
//	VIGIE_SEGMENT_SIZES <node>                   each node, its segment sizes at its VIGIE_SEGMENTS position
const (
	BucketDedup    = "VIGIE_DEDUP"
	BucketLedger   = "VIGIE_LEDGER"
	BucketNodes    = "VIGIE_NODES"
	BucketLeases   = "VIGIE_LEASES"
	BucketRequests = "VIGIE_REQUESTS"
	BucketProfiles = "VIGIE_PROFILES"
	BucketVault    = "VIGIE_VAULT"
	BucketKeyring  = "VIGIE_KEYRING"
	// BucketDecisions holds each node's decision counters per site and
	// hour (cumulative), summed by every node's overview.
	BucketDecisions = "VIGIE_DECISIONS"
	// BucketSegmentSizes holds each node's segment sizes with the
	// VIGIE_SEGMENTS position they count up to: a node that has not read
	// the stream from its start starts from one of them.
	BucketSegmentSizes = "VIGIE_SEGMENT_SIZES"
)

// Defaults of the bucket settings.
const (
	// DefaultDedupTTL is VIGIE_DEDUP's TTL when Settings.DedupTTL is 0:
	// storage.dedup_window's default.
	DefaultDedupTTL = 48 * time.Hour
)

// buckets lists every cluster bucket, in declaration order.
var buckets = []string{BucketDedup, BucketLedger, BucketNodes, BucketLeases, BucketRequests, BucketProfiles, BucketVault, BucketKeyring, BucketDecisions, BucketSegmentSizes}

// AllBuckets is the name of every cluster KV bucket.
func AllBuckets() []string { return slices.Clone(buckets) }

// BucketConfigs returns the configuration of the named buckets (every one
// when names is empty): file storage, history 1, Settings.Replicas copies,
// the TTLs of Settings.
func BucketConfigs(s Settings, names ...string) []jetstream.KeyValueConfig {
	s = s.WithDefaults()
	var out []jetstream.KeyValueConfig
	for _, b := range buckets {
		if len(names) > 0 && !slices.Contains(names, b) {
			continue
		}
		c := jetstream.KeyValueConfig{Bucket: b, History: 1, Storage: jetstream.FileStorage, Replicas: s.Replicas}
		switch b {
		case BucketDedup:
			c.TTL = s.DedupTTL
		case BucketProfiles:
			c.TTL = s.ProfileTTL
		case BucketVault:
			c.TTL = s.VaultTTL
		case BucketDecisions:
			c.TTL = s.DecisionsTTL
		}
		out = append(out, c)
	}
	return out
}

// KVStream is the stream behind a KV bucket (KV_<bucket>).
func KVStream(bucket string) string { return "KV_" + bucket }

// kvPrefix starts the subject of every KV key.
const kvPrefix = "$KV."

// KVSubject is the subject a put of key in bucket is published on: a
// message committed to the outbox on this subject is a KV write.
func KVSubject(bucket, key string) string { return kvPrefix + bucket + "." + key }

// The header a KV delete is published with (jetstream.KeyValue.Delete's),
// for a delete committed to the outbox (storage.Message.KVDelete).
const (
	KVOperationHeader = "KV-Operation"
	KVOperationDelete = "DEL"
)

// kvStreamOf returns the stream of a $KV.<bucket>.<key> subject, or "".
func kvStreamOf(subject string) string {
	rest, ok := strings.CutPrefix(subject, kvPrefix)
	if !ok {
		return ""
	}
	b, _, ok := strings.Cut(rest, ".")
	if !ok || !slices.Contains(buckets, b) {
		return ""
	}
	return KVStream(b)
}

// KeyToken returns s as one KV key token: s itself when it is made of
// A-Z a-z 0-9 _ - only (sites and pseudonyms are), else "=" and its hex.
func KeyToken(s string) string {
	ok := s != ""
	for i := 0; i < len(s) && ok; i++ {
		c := s[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
	}
	if ok {
		return s
	}
	const hexd = "0123456789abcdef"
	b := make([]byte, 1, 1+2*len(s))
	b[0] = '='
	for i := 0; i < len(s); i++ {
		b = append(b, hexd[s[i]>>4], hexd[s[i]&15])
	}
	return string(b)
}

// TokenValue returns the s KeyToken(s) returned tok for; false if tok is
// not such a token.
func TokenValue(tok string) (string, bool) {
	h, ok := strings.CutPrefix(tok, "=")
	if !ok {
		return tok, tok != "" && KeyToken(tok) == tok
	}
	b, err := hex.DecodeString(h)
	if err != nil || len(b) == 0 {
		return "", false
	}
	return string(b), true
}

// Partition is the segmentation partition of subject on site among n:
// xxhash64 of site \x00 subject modulo n. Anonymous events (no subject)
// take partition 0; n ≤ 1 is always 0.
func Partition(site, subject string, n int) int {
	if n <= 1 || subject == "" {
		return 0
	}
	d := xxhash.New()
	_, _ = d.WriteString(site)
	_, _ = d.Write([]byte{0})
	_, _ = d.WriteString(subject)
	return int(d.Sum64() % uint64(n))
}

// EnrichedPartitionSubject is the subject of an enriched event in cluster
// mode: vigie.enriched.<site>.<partition>.<type>.
func EnrichedPartitionSubject(site string, partition int, typ string) string {
	return EnrichedPrefix + site + "." + strconv.Itoa(partition) + "." + typ
}

// EnrichedFilter is the subject filter of the enriched events of site and
// type (either may be "*"): vigie.enriched.<site>.<type>, or, partitioned
// (cluster mode), vigie.enriched.<site>.<partition>.<type> with partition
// "*" for every partition.
func EnrichedFilter(site, typ string, partitioned bool, partition string) string {
	if !partitioned {
		return EnrichedSubject(site, typ)
	}
	return EnrichedPrefix + site + "." + partition + "." + typ
}

// EnrichedType returns the type token of an enriched subject, partitioned
// or not.
func EnrichedType(subject string) string {
	rest, ok := strings.CutPrefix(subject, EnrichedPrefix)
	if !ok {
		return ""
	}
	return rest[strings.LastIndexByte(rest, '.')+1:]
}
