// Package cluster provides what several Vigie nodes sharing one NATS
// JetStream cluster need beyond a single node (cluster mode,
// cluster.node_id set): the shared messageId dedup (KV VIGIE_DEDUP,
// Dedup), the membership (KV VIGIE_NODES, Membership), the privacy
// requests across the nodes (KV VIGIE_REQUESTS, Requests) and the shared
// consent ledger (KV VIGIE_LEDGER: LedgerBackend
// writes each entry through the node's outbox, LedgerWatcher applies every
// other node's entries to this node's store and ledger cache) and the
// shared vault (KV VIGIE_VAULT, VaultBucket).
//
// Single-node mode uses none of it: no KV round trip on the hot path.
package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/storage"
)

// Buckets are the KV buckets this package uses; the bus declares them in
// cluster mode.
func Buckets() []string {
	return []string{streams.BucketDedup, streams.BucketLedger, streams.BucketNodes, streams.BucketRequests, streams.BucketDecisions, streams.BucketClicks, streams.BucketImports, streams.BucketVault, streams.BucketResponse}
}

// JetStreamer gives the current JetStream context (nil while there is
// none); *bus.Bus is one.
type JetStreamer interface {
	JetStream() jetstream.JetStream
}

// kvTimeout bounds one KV operation on the request path.
const kvTimeout = 2 * time.Second

// bucket opens name (a handle opened less than streams.HandleTTL ago is
// reused), or returns ErrUnavailable.
func bucket(ctx context.Context, js JetStreamer, name string) (jetstream.KeyValue, error) {
	j := js.JetStream()
	if j == nil {
		return nil, ErrUnavailable
	}
	kv, err := streams.KeyValue(ctx, j, name)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		// Not declared yet (the cluster was not formed when the node
		// started) or lost with a wiped store: declare again, as the
		// outbox's publisher does for streams, since no event reaches the
		// outbox while its claims fail.
		if e, ok := js.(Ensurer); ok {
			if derr := e.EnsureStreams(ctx); derr == nil {
				kv, err = streams.KeyValue(ctx, j, name)
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: bucket %s: %w", ErrUnavailable, name, err)
	}
	return kv, nil
}

// Ensurer is what a JetStreamer may also do: declare every stream and
// bucket the node owns (proxy/bus.Bus does, rate-limited), called when a
// bucket is missing.
type Ensurer interface {
	EnsureStreams(ctx context.Context) error
}

// Dedup is the cluster's messageId dedup over KV VIGIE_DEDUP, whose TTL
// is the dedup window. A node claims a record's key before storing it
// (Create: the atomic first writer wins) with a pending value; the record's
// own outbox transaction carries StoredMessage, which marks the key stored
// once published. A later claim of the key, on any node, is then a
// duplicate; a claim still pending is refused as busy (the client retries)
// until ClaimTimeout has passed, then taken over (a claim whose node
// crashed or whose answer was lost before it stored the record). It is
// safe for concurrent use.
type Dedup struct {
	js   JetStreamer
	node string
	// now is the clock (tests).
	now func() time.Time
}

// ClaimTimeout is how long a pending claim holds its key: past it, the
// record was not stored (its StoredMessage would have been published) and
// another claim takes the key over.
const ClaimTimeout = 10 * time.Second

// Claim outcomes.
const (
	// Claimed: the key is this node's; store the record with its
	// StoredMessage.
	Claimed = iota
	// Duplicate: a record with this key is stored.
	Duplicate
	// Busy: another claim of the key is pending; retry later.
	Busy
)

// NewDedup returns the dedup of node over js's VIGIE_DEDUP bucket.
func NewDedup(js JetStreamer, node string) *Dedup { return &Dedup{js: js, node: node, now: time.Now} }

// DedupKey is the KV key of a record's dedup key material on site.
func DedupKey(site string, dedup []byte) string {
	return streams.KeyToken(site) + "." + hex.EncodeToString(dedup)
}

// Dedup values: "stored <node>", or "pending <node> <unix ms>".
const (
	storedValue  = "stored "
	pendingValue = "pending "
)

// StoredMessage is the outbox message that marks key stored by node.
func StoredMessage(node, key string) storage.Message {
	sum := sha256.Sum256([]byte(key))
	return storage.Message{Topic: streams.KVSubject(streams.BucketDedup, key),
		ID: "dedup-" + hex.EncodeToString(sum[:16]), Data: []byte(storedValue + node)}
}

// claimConcurrency bounds the claims one Claim has in flight: each is a
// replicated KV write (a round trip through the cluster's leader), so a
// batch's claims are pipelined rather than made one after the other.
const claimConcurrency = 32

// Claim claims every non-empty key of keys and returns each outcome
// (Claimed for an empty key; Duplicate for a key repeated in keys). The
// claims run concurrently, at most claimConcurrency at a time. On error
// the keys it claimed are released (best effort: a claim left behind
// holds its key ClaimTimeout) and the error wraps ErrUnavailable: the
// caller answers 503, and the client's retry is deduplicated then.
func (d *Dedup) Claim(ctx context.Context, keys []string) (out []int, err error) {
	ctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	kv, err := bucket(ctx, d.js, streams.BucketDedup)
	if err != nil {
		return nil, err
	}
	out = make([]int, len(keys))
	errs := make([]error, len(keys))
	first := make(map[string]int, len(keys)) // key → index of its first occurrence
	var wg sync.WaitGroup
	sem := make(chan struct{}, claimConcurrency)
	for i, k := range keys {
		if k == "" {
			continue
		}
		if _, dup := first[k]; dup { // twice in one request: the first is stored
			out[i] = Duplicate
			continue
		}
		first[k] = i
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			out[i], errs[i] = d.claim(ctx, kv, k)
		}()
	}
	wg.Wait()
	var claimed []string
	for k, i := range first {
		if errs[i] == nil && out[i] == Claimed {
			claimed = append(claimed, k)
		}
	}
	if err := errors.Join(errs...); err != nil {
		d.Release(context.WithoutCancel(ctx), claimed)
		return nil, fmt.Errorf("%w: dedup: %w", ErrUnavailable, err)
	}
	return out, nil
}

func (d *Dedup) claim(ctx context.Context, kv jetstream.KeyValue, k string) (int, error) {
	pending := []byte(pendingValue + d.node + " " + strconv.FormatInt(d.now().UnixMilli(), 10))
	_, err := kv.Create(ctx, k, pending)
	if err == nil {
		return Claimed, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return 0, err
	}
	e, err := kv.Get(ctx, k)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Busy, nil // released or expired meanwhile: the retry claims it
	}
	if err != nil {
		return 0, err
	}
	v := string(e.Value())
	rest, ok := strings.CutPrefix(v, pendingValue)
	if !ok {
		return Duplicate, nil
	}
	_, at, _ := strings.Cut(rest, " ")
	ms, _ := strconv.ParseInt(at, 10, 64)
	if d.now().Sub(time.UnixMilli(ms)) < ClaimTimeout {
		return Busy, nil
	}
	if _, err := kv.Update(ctx, k, pending, e.Revision()); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return Busy, nil // another node took it over first
		}
		return 0, err
	}
	return Claimed, nil
}

// Release deletes keys Claim claimed for records that were then not
// stored, so that their retry is stored at once (best effort: a claim left
// behind holds its key ClaimTimeout).
func (d *Dedup) Release(ctx context.Context, keys []string) {
	if len(keys) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	kv, err := bucket(ctx, d.js, streams.BucketDedup)
	if err != nil {
		return
	}
	for _, k := range keys {
		_ = kv.Delete(ctx, k)
	}
}

// ledgerValue is a VIGIE_LEDGER entry: the subject's ledger entry with
// where it belongs and the node that wrote it.
type ledgerValue struct {
	Site    string               `json:"site"`
	Subject string               `json:"subject"`
	Node    string               `json:"node"`
	Entry   storage.ConsentEntry `json:"entry"`
	// Erased marks a tombstone: the subject was erased on Node at
	// Entry.AtMs, and every node erases it.
	Erased bool `json:"erased,omitempty"`
}

// LedgerStore is the node's own ledger store; *storage.Store is one.
type LedgerStore interface {
	Consent(ctx context.Context, site, subject string) (storage.ConsentEntry, error)
	PutConsent(ctx context.Context, site, subject string, e storage.ConsentEntry, msgs ...storage.Message) error
}

// LedgerBackend is the consent ledger's backend in cluster mode: reads
// are the node's store (no KV round trip); a write commits, in the same
// store transaction, a message that the outbox publishes into KV
// VIGIE_LEDGER, so every node's LedgerWatcher applies it.
type LedgerBackend struct {
	// Store is the node's store.
	Store LedgerStore
	// Node is this node's id.
	Node string
}

// Consent reads the node's store.
func (b LedgerBackend) Consent(ctx context.Context, site, subject string) (storage.ConsentEntry, error) {
	return b.Store.Consent(ctx, site, subject)
}

// PutConsent stores e with msgs and the VIGIE_LEDGER put announcing it.
func (b LedgerBackend) PutConsent(ctx context.Context, site, subject string, e storage.ConsentEntry, msgs ...storage.Message) error {
	m, err := LedgerMessage(b.Node, site, subject, e)
	if err != nil {
		return err
	}
	return b.Store.PutConsent(ctx, site, subject, e, append(msgs[:len(msgs):len(msgs)], m)...)
}

// LedgerKey is the VIGIE_LEDGER key of subject on site.
func LedgerKey(site, subject string) string {
	return streams.KeyToken(site) + "." + streams.KeyToken(subject)
}

// LedgerMessage is the outbox message that puts e into VIGIE_LEDGER; its
// id is derived from the entry alone, so a republish is deduplicated.
func LedgerMessage(node, site, subject string, e storage.ConsentEntry) (storage.Message, error) {
	v, err := json.Marshal(ledgerValue{Site: site, Subject: subject, Node: node, Entry: e})
	if err != nil {
		return storage.Message{}, fmt.Errorf("cluster: ledger entry: %w", err)
	}
	k := LedgerKey(site, subject)
	sum := sha256.Sum256(append([]byte(k+"\x00"+strconv.FormatInt(e.AtMs, 10)+"\x00"), v...))
	return storage.Message{Topic: streams.KVSubject(streams.BucketLedger, k), ID: "ledger-" + hex.EncodeToString(sum[:16]), Data: v}, nil
}

// LedgerTombstones are the outbox messages, committed with an erasure's
// result, that replace the erased subjects' VIGIE_LEDGER entries with a
// tombstone (site, pseudonym, node, time: no choice is kept); every other
// node's LedgerWatcher then erases the subjects from its own store.
func LedgerTombstones(node, site string, subjects []string, at time.Time) ([]storage.Message, error) {
	var out []storage.Message
	for _, subj := range subjects {
		v, err := json.Marshal(ledgerValue{Site: site, Subject: subj, Node: node, Erased: true, Entry: storage.ConsentEntry{AtMs: at.UnixMilli()}})
		if err != nil {
			return nil, fmt.Errorf("cluster: ledger tombstone: %w", err)
		}
		k := LedgerKey(site, subj)
		sum := sha256.Sum256(append([]byte(k+"\x00erased\x00"), v...))
		out = append(out, storage.Message{Topic: streams.KVSubject(streams.BucketLedger, k), ID: "ledger-" + hex.EncodeToString(sum[:16]), Data: v})
	}
	return out, nil
}

// MarkStore keeps the watch's position; *storage.Store is one (its
// plugin-scoped KV, under the name markSpace that no plugin can have).
type MarkStore interface {
	KVGet(ctx context.Context, plugin, key string) ([]byte, error)
	KVPut(ctx context.Context, plugin, key string, value []byte, ttl time.Duration) error
}

// markSpace and markKey name the watch's position in MarkStore.
const (
	markSpace = "vigie.cluster"
	markKey   = "ledger-revision"
)

// LedgerWatcher applies the VIGIE_LEDGER entries of every node to this
// node's store and ledger cache.
type LedgerWatcher struct {
	// JS gives the JetStream context.
	JS JetStreamer
	// Store is the node's store.
	Store LedgerStore
	// Forget drops a subject from the ledger cache after its entry
	// changed (ledger.Ledger.Forget).
	Forget func(site, subject string)
	// Applied, if set, is told of each entry stored here, with the
	// entry it replaced (the zero entry if none), after Forget
	// (ledger.Ledger.Applied: it runs the ledger's OnDrop for a
	// withdrawal of the profile purposes).
	Applied func(ctx context.Context, site, subject string, prev, next storage.ConsentEntry)
	// Node is this node's id: its own tombstones are skipped.
	Node string
	// Erase erases a subject from this node's store after another node
	// erased it (storage.Store.EraseSubjects); required.
	Erase func(ctx context.Context, site, subject string) error
	// Enqueue commits messages to the node's outbox (storage.Store.
	// Enqueue). An entry that reaches the bucket after a newer one of
	// the same subject (its node's outbox was late: cut from NATS, or
	// retrying) is what the bucket then keeps, and what a node that was
	// down or is new reads; a node holding the newer entry (or having
	// erased the subject since) puts it back through its outbox, so the
	// bucket's last value is again the subject's newest. Nil: no repair.
	Enqueue func(ctx context.Context, msgs ...storage.Message) error
	// Marks keeps the revision applied last, with the creation time of
	// the bucket's stream, so that a restart resumes after it (nil: every
	// entry is read again at start, and tombstones are applied only once
	// started). A bucket lost and declared again (revisions from 1 again,
	// another creation time) is read again from its start, at the next
	// watch or within bucketCheckInterval of a running one.
	// It also remembers, by a hash of site and pseudonym, when each
	// subject was erased (for ConsentTTL), so that an entry older than
	// the erasure, published late, neither brings the subject back into
	// the ledger nor stays the bucket's value. Nil: neither.
	Marks MarkStore
	// Logger receives warnings (never identifiers).
	Logger *slog.Logger
	// Retry is the wait before watching again after a failure. Default
	// 1s.
	Retry time.Duration
}

// Run watches VIGIE_LEDGER until ctx ends: from the revision after the one
// applied last (first start: every entry present), then each new one. An entry newer (by
// its AtMs) than the node's own is stored without any message (the
// writing node announced it) and its cache entry dropped; an older or
// equal one, this node's own among them, is skipped.
func (w *LedgerWatcher) Run(ctx context.Context) {
	keepWatching(ctx, w.Retry, w.Logger, "consent ledger", w.watch)
}

func (w *LedgerWatcher) watch(ctx context.Context) error {
	kv, err := bucket(ctx, w.JS, streams.BucketLedger)
	if err != nil {
		return err
	}
	return follow(ctx, kv, "", watchMark{w.Marks, markKey}, "consent ledger", w.Logger,
		func(ctx context.Context, e jetstream.KeyValueEntry) error {
			w.apply(ctx, e.Value(), e.Revision())
			return nil
		})
}

// apply applies the entry raw, read at revision rev of the bucket.
func (w *LedgerWatcher) apply(ctx context.Context, raw []byte, rev uint64) {
	var v ledgerValue
	if err := json.Unmarshal(raw, &v); err != nil || v.Site == "" || v.Subject == "" {
		w.Logger.Warn("cluster: unreadable consent ledger entry skipped")
		return
	}
	if v.Erased {
		w.rememberErased(ctx, v.Site, v.Subject, v.Entry.AtMs)
		// A choice made after the erasure is a new start (the person
		// came back); this node's own erasure is done already, unless
		// an older choice published late was applied since.
		cur, err := w.Store.Consent(ctx, v.Site, v.Subject)
		if (err == nil && cur.AtMs > v.Entry.AtMs) || (v.Node == w.Node && err != nil) {
			return
		}
		if err := w.Erase(ctx, v.Site, v.Subject); err != nil {
			w.Logger.Warn("cluster: subject erased on another node not erased here", "err", err)
			return
		}
		if w.Forget != nil {
			w.Forget(v.Site, v.Subject)
		}
		return
	}
	if at, ok := w.erasedAt(ctx, v.Site, v.Subject); ok && at >= v.Entry.AtMs {
		// A choice made before the subject was erased, published late.
		w.repair(ctx, v, rev, ledgerValue{Site: v.Site, Subject: v.Subject, Node: w.Node, Erased: true, Entry: storage.ConsentEntry{AtMs: at}})
		return
	}
	cur, err := w.Store.Consent(ctx, v.Site, v.Subject)
	switch {
	case err == nil && cur.AtMs > v.Entry.AtMs:
		w.repair(ctx, v, rev, ledgerValue{Site: v.Site, Subject: v.Subject, Node: w.Node, Entry: cur})
		return
	case err == nil && cur.AtMs == v.Entry.AtMs:
		return
	case err != nil && !errors.Is(err, storage.ErrNotFound):
		w.Logger.Warn("cluster: consent ledger unreadable; entry applied anyway", "err", err)
	}
	if err := w.Store.PutConsent(ctx, v.Site, v.Subject, v.Entry); err != nil {
		w.Logger.Warn("cluster: consent ledger entry of another node not stored", "err", err)
		return
	}
	if w.Forget != nil {
		w.Forget(v.Site, v.Subject)
	}
	if w.Applied != nil {
		if err != nil {
			cur = storage.ConsentEntry{}
		}
		w.Applied(ctx, v.Site, v.Subject, cur, v.Entry)
	}
}

// repair puts newer, this node's own newer entry (or tombstone) of the
// subject of stale, back into VIGIE_LEDGER after stale reached the bucket
// at revision rev. Its message id is derived from rev and newer: this
// node's repairs of one stale revision are deduplicated, and a repair is
// never taken for the original put of the same entry (which the stream's
// duplicate window would drop).
func (w *LedgerWatcher) repair(ctx context.Context, stale ledgerValue, rev uint64, newer ledgerValue) {
	if w.Enqueue == nil {
		return
	}
	v, err := json.Marshal(newer)
	if err != nil {
		return
	}
	k := LedgerKey(stale.Site, stale.Subject)
	sum := sha256.Sum256(append([]byte(k+"\x00repair\x00"+strconv.FormatUint(rev, 10)+"\x00"), v...))
	m := storage.Message{Topic: streams.KVSubject(streams.BucketLedger, k), ID: "ledger-" + hex.EncodeToString(sum[:16]), Data: v}
	if err := w.Enqueue(ctx, m); err != nil {
		w.Logger.Warn("cluster: consent ledger entry published late not overwritten with the newer one", "err", err)
	}
}

// erasedMarkKey is where Marks keeps when subject was erased on site: a
// hash, not the pseudonym.
func erasedMarkKey(site, subject string) string {
	sum := sha256.Sum256([]byte("erased\x00" + site + "\x00" + subject))
	return "erased." + hex.EncodeToString(sum[:])
}

// rememberErased keeps that subject was erased on site at atMs.
func (w *LedgerWatcher) rememberErased(ctx context.Context, site, subject string, atMs int64) {
	if w.Marks == nil {
		return
	}
	if at, ok := w.erasedAt(ctx, site, subject); ok && at >= atMs {
		return
	}
	if err := w.Marks.KVPut(ctx, markSpace, erasedMarkKey(site, subject), []byte(strconv.FormatInt(atMs, 10)), storage.ConsentTTL); err != nil {
		w.Logger.Warn("cluster: erasure time of a subject not kept", "err", err)
	}
}

// erasedAt returns when subject was erased on site, if this node knows.
func (w *LedgerWatcher) erasedAt(ctx context.Context, site, subject string) (int64, bool) {
	if w.Marks == nil {
		return 0, false
	}
	b, err := w.Marks.KVGet(ctx, markSpace, erasedMarkKey(site, subject))
	if err != nil {
		return 0, false
	}
	at, err := strconv.ParseInt(string(b), 10, 64)
	return at, err == nil
}
