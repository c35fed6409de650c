package streams

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestKeyValueReusesItsHandle checks that KeyValue asks the server for a
// bucket's handle once per HandleTTL, that a reused handle still works
// once the bucket is declared again, and that a lost bucket is noticed
// once the TTL has passed.
func TestKeyValueReusesItsHandle(t *testing.T) {
	js := startJS(t)
	ctx := context.Background()
	cfg := jetstream.KeyValueConfig{Bucket: "HANDLES"}
	if _, err := js.CreateKeyValue(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	var infos atomic.Int64
	sub, err := js.Conn().Subscribe("$JS.API.STREAM.INFO.KV_HANDLES", func(*nats.Msg) { infos.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := js.Conn().Flush(); err != nil {
		t.Fatal(err)
	}

	var kv jetstream.KeyValue
	for range 50 {
		if kv, err = KeyValue(ctx, js, "HANDLES"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	js.Conn().Flush()
	if n := infos.Load(); n != 1 {
		t.Errorf("50 calls within the TTL asked the server %d times, want 1", n)
	}

	// Declared again (a wiped store, then the declarer): the handle the
	// cache holds writes into the new bucket.
	if err := js.DeleteKeyValue(ctx, "HANDLES"); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateKeyValue(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	kv, err = KeyValue(ctx, js, "HANDLES")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("again")); err != nil {
		t.Fatalf("cached handle after the bucket was declared again: %v", err)
	}
	if e, err := kv.Get(ctx, "k"); err != nil || string(e.Value()) != "again" {
		t.Fatalf("read back through the cached handle: %v", err)
	}

	// Lost: noticed once the handle's TTL has passed.
	if err := js.DeleteKeyValue(ctx, "HANDLES"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(HandleTTL + 50*time.Millisecond)
	if _, err := KeyValue(ctx, js, "HANDLES"); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Fatalf("after the TTL, a deleted bucket: err %v, want ErrBucketNotFound", err)
	}
}
