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

// TestLeaderLastMsg checks LeaderLastMsg against a real server: it reads
// what KeyValue.Get reads (value, revision, a delete marker's header and
// data, nothing for a key never written), and asks the stream's leader
// (STREAM.MSG.GET), never the direct get any replica may answer.
func TestLeaderLastMsg(t *testing.T) {
	ctx := context.Background()
	js := startJS(t)
	if err := NewDeclarer(Settings{}).WithBuckets(BucketProfiles).Ensure(ctx, js); err != nil {
		t.Fatal(err)
	}
	var direct, leader atomic.Int32
	for subj, n := range map[string]*atomic.Int32{"$JS.API.DIRECT.GET.>": &direct, "$JS.API.STREAM.MSG.GET.>": &leader} {
		sub, err := js.Conn().Subscribe(subj, func(*nats.Msg) { n.Add(1) })
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	kv, err := js.KeyValue(ctx, BucketProfiles)
	if err != nil {
		t.Fatal(err)
	}
	stream, subject := KVStream(BucketProfiles), KVSubject(BucketProfiles, "3.demo.p1")

	if _, err := LeaderLastMsg(ctx, js, stream, subject); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("never written: %v, want ErrMsgNotFound", err)
	}
	rev, err := kv.Put(ctx, "3.demo.p1", []byte(`{"v":1}`))
	if err != nil {
		t.Fatal(err)
	}
	m, err := LeaderLastMsg(ctx, js, stream, subject)
	if err != nil || string(m.Data) != `{"v":1}` || m.Sequence != rev || m.Subject != subject {
		t.Fatalf("after a put: %+v, %v; want the value at revision %d", m, err, rev)
	}
	// A delete marker as DeleteSharedProfile publishes it.
	del := nats.NewMsg(subject)
	del.Header.Set(KVOperationHeader, KVOperationDelete)
	del.Data = []byte("1234")
	if _, err := js.PublishMsg(ctx, del); err != nil {
		t.Fatal(err)
	}
	m, err = LeaderLastMsg(ctx, js, stream, subject)
	if err != nil || m.Header.Get(KVOperationHeader) != KVOperationDelete || string(m.Data) != "1234" {
		t.Fatalf("after a delete: %+v, %v; want the marker with its header and time", m, err)
	}
	if _, err := LeaderLastMsg(ctx, js, "KV_NONE", subject); err == nil || errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("unknown stream: %v, want an error other than not found", err)
	}
	if err := js.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(2 * time.Second); leader.Load() < 4 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond) // the counting handlers run on their own goroutines
	}
	if direct.Load() != 0 || leader.Load() != 4 {
		t.Fatalf("%d direct gets and %d leader gets, want 0 and 4", direct.Load(), leader.Load())
	}
}
