package cluster

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/storage"
)

// Keys of KV VIGIE_REQUESTS (one home for their names):
//
//	req.<id>          the announcement of request id (the receiving node's outbox)
//	step.<id>.<node>  node's step result: status and counts, no identifier
//	part.<id>.<node>  node's part of an export, sealed under the keyring's vault key
//	view.<id>         the receiving node's last view of the request (status, steps)
//	ack.<id>.<plugin> a plugin's acknowledgement of an erasure, received by another node
//	contact.<event>   the contacts an erasure event's CRM syncers need (its request id, or
//	                  <id>.<node>: a member's contribution, which its own event carries),
//	                  sealed under the keyring's vault key, emptied at the receiving node's
//	                  receipt
//
// Every entry of a request goes with it once its retention passed (Purge).
const (
	reqPrefix     = "req."
	stepPrefix    = "step."
	partPrefix    = "part."
	viewPrefix    = "view."
	ackPrefix     = "ack."
	contactPrefix = "contact."
)

// MaxValue bounds what one node writes into one VIGIE_REQUESTS entry: a
// NATS message is at most 1 MB by default (max_payload), and an entry too
// large to publish would stay in the outbox for ever.
const MaxValue = 768 << 10

// Requests is the privacy requests' view of the cluster (KV
// VIGIE_REQUESTS and the membership): the outbox messages that announce a
// request and report a node's step, the reads of the steps, parts and
// views, and the watch that hands this node every request announced,
// including those announced while it was down. It is safe for concurrent
// use once configured.
type Requests struct {
	// JS gives the JetStream context.
	JS JetStreamer
	// Self is this node's id.
	Self string
	// Members lists the membership.
	Members *Membership
	// Marks keeps the revision the watch handled last (the store's
	// plugin-scoped KV, under markSpace); nil: the watch reads every
	// announcement again at each start.
	Marks MarkStore
	// Logger receives warnings (never identifiers).
	Logger *slog.Logger
	// Retry is the wait before watching again after a failure. Default 1s.
	Retry time.Duration
}

// markRequests names the watch's position in MarkStore.
const markRequests = "requests-revision"

// Node is this node's id.
func (r *Requests) Node() string { return r.Self }

// MemberNodes returns the id of every member, live or not.
func (r *Requests) MemberNodes(ctx context.Context) ([]string, error) {
	all, err := r.Members.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(all))
	for _, m := range all {
		out = append(out, m.Node)
	}
	return out, nil
}

// LiveNodes returns the id of every live member.
func (r *Requests) LiveNodes(ctx context.Context) ([]string, error) { return r.Members.Live(ctx) }

// message is the outbox message putting v at key; its id is derived from
// the key and the value, so a republish is deduplicated and a new value is
// not.
func message(key string, v []byte) storage.Message {
	sum := sha256.Sum256(append([]byte(key+"\x00"), v...))
	return storage.Message{Topic: streams.KVSubject(streams.BucketRequests, key), ID: "req-" + hex.EncodeToString(sum[:16]), Data: v}
}

// AnnounceMessage is the outbox message announcing request id (its value
// v: no identifier in clear).
func (r *Requests) AnnounceMessage(id string, v []byte) storage.Message {
	return message(reqPrefix+streams.KeyToken(id), v)
}

// StepMessage is the outbox message reporting node's step of request id.
func (r *Requests) StepMessage(id, node string, v []byte) storage.Message {
	return message(stepPrefix+streams.KeyToken(id)+"."+streams.KeyToken(node), v)
}

// PartMessage is the outbox message carrying node's sealed part of request
// id's export.
func (r *Requests) PartMessage(id, node string, sealed []byte) storage.Message {
	return message(partPrefix+streams.KeyToken(id)+"."+streams.KeyToken(node), sealed)
}

// ViewMessage is the outbox message putting the receiving node's view of
// request id, so that every node answers its status.
func (r *Requests) ViewMessage(id string, v []byte) storage.Message {
	return message(viewPrefix+streams.KeyToken(id), v)
}

// AckMessage is the outbox message carrying plugin's acknowledgement of
// request id, received by a node other than the request's.
func (r *Requests) AckMessage(id, plugin string, v []byte) storage.Message {
	return message(ackPrefix+streams.KeyToken(id)+"."+streams.KeyToken(plugin), v)
}

// ContactMessage is the outbox message carrying the sealed contacts of
// erasure event eventID (nil: emptied), for a syncer handling the event on
// any node.
func (r *Requests) ContactMessage(eventID string, sealed []byte) storage.Message {
	return message(contactPrefix+streams.KeyToken(eventID), sealed)
}

// Contact reads the sealed contacts of erasure event eventID (nil if none
// or emptied).
func (r *Requests) Contact(ctx context.Context, eventID string) ([]byte, error) {
	return r.get(ctx, contactPrefix+streams.KeyToken(eventID))
}

// Ack reads plugin's acknowledgement of request id (nil if none).
func (r *Requests) Ack(ctx context.Context, id, plugin string) ([]byte, error) {
	return r.get(ctx, ackPrefix+streams.KeyToken(id)+"."+streams.KeyToken(plugin))
}

// get reads key; (nil, nil) when it is absent.
func (r *Requests) get(ctx context.Context, key string) ([]byte, error) {
	v, _, err := r.entry(ctx, key)
	return v, err
}

// entry reads key and whether it is present (its value may be empty).
func (r *Requests) entry(ctx context.Context, key string) ([]byte, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	kv, err := bucket(ctx, r.JS, streams.BucketRequests)
	if err != nil {
		return nil, false, err
	}
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("%w: requests: %w", ErrUnavailable, err)
	}
	return e.Value(), true, nil
}

// Step reads node's step result of request id (nil while it has not
// reported).
func (r *Requests) Step(ctx context.Context, id, node string) ([]byte, error) {
	return r.get(ctx, stepPrefix+streams.KeyToken(id)+"."+streams.KeyToken(node))
}

// Part reads node's sealed export part of request id: nil if none,
// empty (not nil) once emptied.
func (r *Requests) Part(ctx context.Context, id, node string) ([]byte, error) {
	v, ok, err := r.entry(ctx, partPrefix+streams.KeyToken(id)+"."+streams.KeyToken(node))
	if ok && v == nil {
		v = []byte{}
	}
	return v, err
}

// View reads the receiving node's last view of request id (nil if none).
func (r *Requests) View(ctx context.Context, id string) ([]byte, error) {
	return r.get(ctx, viewPrefix+streams.KeyToken(id))
}

// purgeTimeout bounds one Purge: listing the bucket's keys and purging
// those of the expired requests.
const purgeTimeout = 5 * time.Minute

// Purge removes every entry of each request that expired says has
// outlived its retention: it is handed the request id and its view (nil
// when there is none). The entries of a member's own erasure event
// (<id>.<node>) go with their request's. The view goes last, so a purge
// cut short is finished by the next one; a request already purged is
// not listed again, so Purge can run on every node. A purge leaves a
// marker per key (its name only), removed by a later Purge. It returns
// how many requests it purged.
func (r *Requests) Purge(ctx context.Context, expired func(id string, view []byte) bool) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, purgeTimeout)
	defer cancel()
	kv, err := bucket(ctx, r.JS, streams.BucketRequests)
	if err != nil {
		return 0, err
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return 0, fmt.Errorf("%w: requests: %w", ErrUnavailable, err)
	}
	keys := map[string][]string{} // request id → its keys
	for k := range lister.Keys() {
		_, rest, _ := strings.Cut(k, ".")
		tok, _, _ := strings.Cut(rest, ".")
		v, ok := streams.TokenValue(tok)
		if !ok {
			continue
		}
		id, _, _ := strings.Cut(v, ".") // <id>.<node>: a member's own event
		keys[id] = append(keys[id], k)
	}
	if err := ctx.Err(); err != nil { // the listing was cut short
		return 0, fmt.Errorf("%w: requests: %w", ErrUnavailable, err)
	}
	// The markers of an earlier purge (older than 30 min) go first: they
	// would otherwise pile up, one per key of every request.
	if err := kv.PurgeDeletes(ctx); err != nil {
		return 0, fmt.Errorf("%w: requests: %w", ErrUnavailable, err)
	}
	n := 0
	for id, ks := range keys {
		view, err := r.View(ctx, id)
		if err != nil {
			return n, err
		}
		if !expired(id, view) {
			continue
		}
		last := viewPrefix + streams.KeyToken(id)
		slices.SortFunc(ks, func(a, b string) int { return cmp.Compare(btoi(a == last), btoi(b == last)) })
		for _, k := range ks {
			if err := kv.Purge(ctx, k); err != nil {
				return n, fmt.Errorf("%w: requests: purge: %w", ErrUnavailable, err)
			}
		}
		n++
	}
	return n, nil
}

// btoi is 1 for true.
func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Watch hands fn every announcement (req.<id>) until ctx ends: first those
// after the revision handled last (first start: every one present), then
// each new one. An announcement fn fails is handed again after Retry (the
// position is kept only past what fn accepted).
func (r *Requests) Watch(ctx context.Context, fn func(ctx context.Context, v []byte) error) {
	keepWatching(ctx, r.Retry, r.Logger, "privacy request", func(ctx context.Context) error { return r.watch(ctx, fn) })
}

func (r *Requests) watch(ctx context.Context, fn func(ctx context.Context, v []byte) error) error {
	kv, err := bucket(ctx, r.JS, streams.BucketRequests)
	if err != nil {
		return err
	}
	return follow(ctx, kv, reqPrefix+"*", watchMark{r.Marks, markRequests}, "privacy request", r.Logger,
		func(ctx context.Context, e jetstream.KeyValueEntry) error { return fn(ctx, e.Value()) })
}
