package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigie-dev/vigie/internal/streams"
)

// fixedJS serves one JetStream context.
type fixedJS struct{ js jetstream.JetStream }

func (f fixedJS) JetStream() jetstream.JetStream { return f.js }

// startJS runs an embedded JetStream server with the cluster buckets.
func startJS(t *testing.T) jetstream.JetStream {
	t.Helper()
	js := startBareJS(t)
	if err := streams.NewDeclarer(streams.Settings{}).WithBuckets(Buckets()...).Ensure(context.Background(), js); err != nil {
		t.Fatal(err)
	}
	return js
}

// startBareJS runs an embedded JetStream server with nothing declared.
func startBareJS(t *testing.T) jetstream.JetStream {
	t.Helper()
	srv, err := server.NewServer(&server.Options{JetStream: true, StoreDir: t.TempDir(), DontListen: true, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close(); srv.Shutdown(); srv.WaitForShutdown() })
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// ensuringJS is a JetStreamer that declares the buckets when asked, as
// proxy/bus.Bus does, counting the calls.
type ensuringJS struct {
	fixedJS
	calls int
}

func (e *ensuringJS) EnsureStreams(ctx context.Context) error {
	e.calls++
	return streams.NewDeclarer(streams.Settings{}).WithBuckets(Buckets()...).Ensure(ctx, e.js)
}

// TestDedupDeclaresMissingBucket: a node whose buckets could not be
// declared at start (the cluster was not formed yet) declares them at its
// first claim instead of refusing every event until a restart.
func TestDedupDeclaresMissingBucket(t *testing.T) {
	e := &ensuringJS{fixedJS: fixedJS{startBareJS(t)}}
	got, err := NewDedup(e, "a").Claim(context.Background(), []string{"demo.k"})
	if err != nil || len(got) != 1 || got[0] != Claimed {
		t.Fatalf("claim: %v %v, want claimed", got, err)
	}
	if e.calls != 1 {
		t.Fatalf("EnsureStreams called %d times, want 1", e.calls)
	}
}

// TestDedupClaims walks one key through its life: claimed, busy while
// pending, a duplicate once marked stored, taken over when a claim was
// left pending past ClaimTimeout, claimable again once released.
func TestDedupClaims(t *testing.T) {
	ctx := context.Background()
	js := startJS(t)
	now := time.Now()
	a := &Dedup{js: fixedJS{js}, node: "a", now: func() time.Time { return now }}
	b := &Dedup{js: fixedJS{js}, node: "b", now: func() time.Time { return now }}
	markStored := func(node, key string) {
		m := StoredMessage(node, key)
		if _, err := js.Publish(ctx, m.Topic, m.Data, jetstream.WithMsgID(m.ID)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		before func()
		by     *Dedup
		keys   []string
		want   []int
	}{
		{name: "first claim", by: a, keys: []string{"demo.k1", "", "demo.k2"}, want: []int{Claimed, Claimed, Claimed}},
		{name: "repeated in one request", by: a, keys: []string{"demo.k3", "demo.k3"}, want: []int{Claimed, Duplicate}},
		{name: "pending on another node", by: b, keys: []string{"demo.k1"}, want: []int{Busy}},
		{name: "stored", before: func() { markStored("a", "demo.k1") }, by: b, keys: []string{"demo.k1"}, want: []int{Duplicate}},
		{name: "pending past the timeout", before: func() { now = now.Add(ClaimTimeout + time.Second) }, by: b, keys: []string{"demo.k2"}, want: []int{Claimed}},
		{name: "taken over, so busy for the first node", by: a, keys: []string{"demo.k2"}, want: []int{Busy}},
		{name: "released", before: func() { b.Release(ctx, []string{"demo.k2"}) }, by: a, keys: []string{"demo.k2"}, want: []int{Claimed}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.before != nil {
				tc.before()
			}
			got, err := tc.by.Claim(ctx, tc.keys)
			if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("Claim(%v) = %v, %v; want %v", tc.keys, got, err, tc.want)
			}
		})
	}
}

// TestDedupUnavailable: without a JetStream context a claim fails with
// ErrUnavailable (the request is answered 503).
func TestDedupUnavailable(t *testing.T) {
	_, err := NewDedup(fixedJS{}, "a").Claim(context.Background(), []string{"demo.k"})
	if err == nil || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err %v, want ErrUnavailable", err)
	}
}

// TestMembershipListsLiveAndDeadNodes: heartbeats make members, a member
// whose heartbeats stopped stays listed but not live, and Remove takes it
// out; the join time survives heartbeats.
func TestMembershipListsLiveAndDeadNodes(t *testing.T) {
	js := fixedJS{startJS(t)}
	ctx := context.Background()
	now := time.UnixMilli(1_000_000)
	clock := func() time.Time { return now }
	a := &Membership{JS: js, Node: "a", Now: clock}
	b := &Membership{JS: js, Node: "b", Now: clock}
	for _, m := range []*Membership{a, b} {
		if err := m.Heartbeat(ctx); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(LiveFor / 2)
	if err := a.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	live, err := a.Live(ctx)
	if err != nil || fmt.Sprint(live) != "[a b]" {
		t.Fatalf("live = %v, %v; want [a b]", live, err)
	}
	now = now.Add(LiveFor/2 + time.Millisecond) // b's last beat is LiveFor+1ms old
	all, err := a.List(ctx)
	if err != nil || len(all) != 2 {
		t.Fatalf("members = %+v, %v", all, err)
	}
	if !all[0].Live || all[1].Live {
		t.Fatalf("live flags = %v %v; want a live, b not", all[0].Live, all[1].Live)
	}
	if all[0].JoinedMs != 1_000_000 || all[0].SeenMs != 1_000_000+LiveFor.Milliseconds()/2 {
		t.Fatalf("a = %+v: join time not kept or heartbeat not recorded", all[0])
	}
	if err := a.Remove(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if all, _ = a.List(ctx); len(all) != 1 || all[0].Node != "a" {
		t.Fatalf("after Remove(b): %+v", all)
	}
}
