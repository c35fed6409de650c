package bus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/storage"
)

// memOutbox is an in-memory Outbox whose AckOutbox can be made to fail, to
// play a crash between publishing and removing the entries.
type memOutbox struct {
	mu       sync.Mutex
	items    []storage.OutboxItem
	failAcks int
	sig      chan struct{}
}

func (m *memOutbox) OutboxAfter(_ context.Context, after []byte, max int) ([]storage.OutboxItem, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []storage.OutboxItem
	for _, it := range m.items {
		if after != nil && string(it.Key) <= string(after) {
			continue
		}
		if len(out) == max {
			break
		}
		out = append(out, it)
	}
	return out, nil
}

func (m *memOutbox) AckOutbox(keys [][]byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failAcks > 0 {
		m.failAcks--
		return errors.New("simulated crash before delete")
	}
	drop := map[string]bool{}
	for _, k := range keys {
		drop[string(k)] = true
	}
	kept := m.items[:0]
	for _, it := range m.items {
		if !drop[string(it.Key)] {
			kept = append(kept, it)
		}
	}
	m.items = kept
	return nil
}

func (m *memOutbox) OutboxSignal() <-chan struct{} { return m.sig }

func (m *memOutbox) OutboxLen() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return int64(len(m.items))
}

func startBus(t *testing.T) *Bus {
	t.Helper()
	b, err := New(Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func streamCount(t *testing.T, b *Bus) uint64 {
	t.Helper()
	return countOf(t, b, streams.Events)
}

func countOf(t *testing.T, b *Bus, stream string) uint64 {
	t.Helper()
	st, err := b.JetStream().Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestRepublishAfterCrashIsDeduplicated(t *testing.T) {
	b := startBus(t)
	ob := &memOutbox{sig: make(chan struct{}, 1), failAcks: 1}
	for i := 0; i < 25; i++ {
		ob.items = append(ob.items, storage.OutboxItem{
			Key: []byte(fmt.Sprintf("k%02d", i)), Topic: streams.EventSubject("demo", "track"),
			MsgID: fmt.Sprintf("ev-%d", i), Data: []byte(fmt.Sprintf("payload %d", i)),
		})
	}
	p, err := NewPublisher(PublisherConfig{Bus: b, Outbox: ob, MaxInFlight: 10})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// First batch is published but "crashes" before the outbox delete.
	if _, err := p.drainOnce(ctx); err == nil {
		t.Fatal("drainOnce hid the failed delete")
	}
	if got := streamCount(t, b); got != 10 {
		t.Fatalf("stream has %d after first batch, want 10", got)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := streamCount(t, b); got != 25 {
		t.Fatalf("stream has %d, want 25 (republished entries must be deduplicated by Nats-Msg-Id)", got)
	}
	if ob.OutboxLen() != 0 || p.Published() != 25 {
		t.Fatalf("outbox %d, published %d", ob.OutboxLen(), p.Published())
	}
	st, _ := b.JetStream().Stream(ctx, streams.Events)
	m, err := st.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get(jetstream.MsgIDHeader) != "ev-0" || string(m.Data) != "payload 0" {
		t.Fatalf("first message: %v %q", m.Header, m.Data)
	}
}

func TestPublisherRunDeliversAndStops(t *testing.T) {
	b := startBus(t)
	ob := &memOutbox{sig: make(chan struct{}, 1)}
	p, err := NewPublisher(PublisherConfig{Bus: b, Outbox: ob})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	ob.mu.Lock()
	ob.items = append(ob.items, storage.OutboxItem{Key: []byte("a"), Topic: streams.EventSubject("s", "page"), MsgID: "e1", Data: []byte("x")})
	ob.mu.Unlock()
	ob.sig <- struct{}{}
	deadline := time.Now().Add(10 * time.Second)
	for ob.OutboxLen() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("not delivered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop")
	}
}

func TestEmbeddedServerOpensNoPortByDefault(t *testing.T) {
	b := startBus(t)
	if a := b.srv.Addr(); a != nil {
		t.Fatalf("embedded server listens on %v", a)
	}
	if !b.Connected() {
		t.Fatal("not connected in-process")
	}
}

func TestPublisherRoutesByStreamAndRedeclaresLostStreams(t *testing.T) {
	b := startBus(t)
	ob := &memOutbox{sig: make(chan struct{}, 1)}
	p, err := NewPublisher(PublisherConfig{Bus: b, Outbox: ob, MaxInFlight: 10, AckTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	add := func(n int) {
		ob.mu.Lock()
		defer ob.mu.Unlock()
		ob.items = append(ob.items,
			storage.OutboxItem{Key: []byte(fmt.Sprintf("k%02d-a", n)), Topic: streams.EventSubject("demo", "track"), MsgID: fmt.Sprintf("ev-%d", n), Data: []byte("e")},
			storage.OutboxItem{Key: []byte(fmt.Sprintf("k%02d-b", n)), Topic: "vigie.privacy.demo.consent", MsgID: fmt.Sprintf("privacy-%d", n), Data: []byte("p")})
	}
	// Both streams exist from Start, without any plugin: each message goes
	// to the stream of its subject.
	add(0)
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if e, pr := countOf(t, b, streams.Events), countOf(t, b, streams.Privacy); e != 1 || pr != 1 {
		t.Fatalf("events %d, privacy %d; want 1 and 1", e, pr)
	}
	// NATS loses both streams: the publisher declares them again and
	// carries on.
	for _, st := range []string{streams.Events, streams.Privacy} {
		if err := b.JetStream().DeleteStream(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(streams.DefaultInterval) // let the rate limit of Start's declaration pass
	add(1)
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if e, pr := countOf(t, b, streams.Events), countOf(t, b, streams.Privacy); e != 1 || pr != 1 {
		t.Fatalf("after the loss: events %d, privacy %d; want 1 and 1", e, pr)
	}
}

// TestPublisherErasesVaultValues: a VIGIE_VAULT delete erases the key's
// value from the stream's files before its marker (the put in the same
// batch is published first, the delete at the next drain); other keys
// stay. The bytes are gone from the store files, not only marked removed.
func TestPublisherErasesVaultValues(t *testing.T) {
	dir := t.TempDir()
	b, err := New(Config{StoreDir: dir, Buckets: []string{streams.BucketVault}})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	a, c := streams.KVSubject(streams.BucketVault, "demo.sa"), streams.KVSubject(streams.BucketVault, "demo.sc")
	ob := &memOutbox{sig: make(chan struct{}, 1), items: []storage.OutboxItem{
		{Key: []byte("k1"), Topic: a, MsgID: "put-a", Data: []byte("sealed-entry-of-a")},
		{Key: []byte("k2"), Topic: c, MsgID: "put-c", Data: []byte("sealed-entry-of-c")},
		{Key: []byte("k3"), Topic: a, MsgID: "del-a", KVDelete: true},
	}}
	p, err := NewPublisher(PublisherConfig{Bus: b, Outbox: ob})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	kv, err := b.JetStream().KeyValue(ctx, streams.BucketVault)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, "demo.sa"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("erased key: %v", err)
	}
	if e, err := kv.Get(ctx, "demo.sc"); err != nil || string(e.Value()) != "sealed-entry-of-c" {
		t.Fatalf("other key: %v", err)
	}
	b.Close()
	found := false
	_ = filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			data, _ := os.ReadFile(path)
			if bytes.Contains(data, []byte("sealed-entry-of-a")) {
				t.Errorf("the erased value is still in %s", path)
			}
			found = found || bytes.Contains(data, []byte("sealed-entry-of-c"))
		}
		return nil
	})
	if !found {
		t.Fatal("the kept value is in no store file: the scan proves nothing")
	}
}
