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
//	VIGIE_CLICKS    <hash of the message>        the node that got the click (CAS; TTL = ClicksTTL)
//	VIGIE_IMPORTS   <job id>                     outbox of the node running the import (its view; TTL = ImportsTTL)
//	VIGIE_RESPONSE  <site>.<node>                each node, its response model summary of the site (TTL = ResponseTTL)
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
	// BucketClicks holds each e-mail message's last clicks (link hashes
	// and times) for scanner detection across nodes.
	BucketClicks = "VIGIE_CLICKS"
	// BucketImports holds each import job's view, so every node lists
	// and shows every node's jobs.
	BucketImports = "VIGIE_IMPORTS"
	// BucketResponse holds each node's summary of the response model
	// (the cells of the subjects of the partitions it owns), which every
	// node's reader adds up.
	BucketResponse = "VIGIE_RESPONSE"
)

// Defaults of the bucket settings.
const (
	// DefaultDedupTTL is VIGIE_DEDUP's TTL when Settings.DedupTTL is 0:
	// storage.dedup_window's default.
	DefaultDedupTTL = 48 * time.Hour
	// ClicksTTL is how long VIGIE_CLICKS keeps a message's clicks after
	// its last one: far past any burst window (seconds).
	ClicksTTL = 10 * time.Minute
	// ResponseTTL is how long VIGIE_RESPONSE keeps a node's summary after
	// its last put: a running node puts it again well within it, so only
	// a node stopped or removed for that long drops out of the sum.
	ResponseTTL = time.Hour
)

// buckets lists every cluster bucket, in declaration order.
var buckets = []string{BucketDedup, BucketLedger, BucketNodes, BucketLeases, BucketRequests, BucketProfiles, BucketVault, BucketKeyring, BucketDecisions, BucketSegmentSizes, BucketClicks, BucketImports, BucketResponse}

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
		case BucketClicks:
			c.TTL = ClicksTTL
		case BucketImports:
			c.TTL = s.ImportsTTL
		case BucketResponse:
			c.TTL = ResponseTTL
		}
		out = append(out, c)
	}
	return out
}

// erasable are the buckets whose stream is declared without DenyDelete
// (ErasableStreamConfig), so that a value can be erased (ErasesOnDelete).
var erasable = []string{BucketVault}

// ErasableStreamConfig is the stream of bucket c as
// jetstream.CreateKeyValue declares it (nats.go v1's choices: history,
// no size limits, rollups, direct get, discard new, the duplicate window
// at most 2 minutes), except that messages may be deleted: a KV bucket's
// stream denies it, and a stream that denies deletes cannot allow them
// later.
func ErasableStreamConfig(c jetstream.KeyValueConfig) jetstream.StreamConfig {
	dup := 2 * time.Minute
	if c.TTL > 0 && c.TTL < dup {
		dup = c.TTL
	}
	return jetstream.StreamConfig{
		Name: KVStream(c.Bucket), Subjects: []string{kvPrefix + c.Bucket + ".>"},
		MaxMsgsPerSubject: max(int64(c.History), 1), MaxBytes: -1, MaxAge: c.TTL, MaxMsgSize: -1,
		Storage: c.Storage, Replicas: max(c.Replicas, 1), AllowRollup: true, Duplicates: dup,
		MaxMsgs: -1, MaxConsumers: -1, AllowDirect: true, Discard: jetstream.DiscardNew,
	}
}

// Erasable reports whether bucket's stream is declared with
// ErasableStreamConfig rather than as a KV bucket.
func Erasable(bucket string) bool { return slices.Contains(erasable, bucket) }

// KVStream is the stream behind a KV bucket (KV_<bucket>).
func KVStream(bucket string) string { return "KV_" + bucket }

// callsPrefix begins the core NATS subjects (request-reply, in no stream)
// on which a node answers requests other nodes pass on to it.
const callsPrefix = "vigie.calls."

// ImportCallSubject is the subject on which node answers requests for its
// import jobs passed on by other nodes.
func ImportCallSubject(node string) string { return callsPrefix + "imports." + KeyToken(node) }

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

// ErasesOnDelete reports whether a KV delete published on subject must
// first erase the key's current value from the stream's files
// (JetStream's secure delete: overwritten on every replica, not only
// marked removed): VIGIE_VAULT's, whose value a keyring holder could
// decrypt.
func ErasesOnDelete(subject string) bool {
	for _, b := range erasable {
		if kvStreamOf(subject) == KVStream(b) {
			return true
		}
	}
	return false
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
