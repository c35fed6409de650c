package streams

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// HandleTTL is how long KeyValue reuses a bucket's handle before it asks
// the server again. Opening a handle is a stream-info round trip through
// the cluster, which per dedup claim, click or segment batch cost as much
// as the KV operation itself. A handle names the bucket, not one instance
// of its stream, so it keeps working when the bucket is declared again;
// asking again at this interval is what notices, within a second, a bucket
// lost with a wiped store (jetstream.ErrBucketNotFound).
const HandleTTL = time.Second

// handles caches open bucket handles by JetStream context and bucket name.
var handles struct {
	sync.Mutex
	m map[handleKey]handle
}

type handleKey struct {
	js   jetstream.JetStream
	name string
}

type handle struct {
	kv jetstream.KeyValue
	at time.Time
}

// KeyValue returns js's handle of bucket name, as js.KeyValue does, reusing
// one opened less than HandleTTL ago. It is safe for concurrent use.
func KeyValue(ctx context.Context, js jetstream.JetStream, name string) (jetstream.KeyValue, error) {
	key := handleKey{js, name}
	now := time.Now()
	handles.Lock()
	h, ok := handles.m[key]
	handles.Unlock()
	if ok && now.Sub(h.at) < HandleTTL {
		return h.kv, nil
	}
	kv, err := js.KeyValue(ctx, name)
	handles.Lock()
	defer handles.Unlock()
	if err != nil {
		delete(handles.m, key)
		return nil, err
	}
	if handles.m == nil {
		handles.m = make(map[handleKey]handle)
	}
	for k, h := range handles.m { // handles of earlier connections' contexts
		if now.Sub(h.at) > time.Minute {
			delete(handles.m, k)
		}
	}
	handles.m[key] = handle{kv, now}
	return kv, nil
}
