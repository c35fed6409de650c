package cluster

import (
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigie-dev/vigie/proxy/email"
)

// TestClickHistorySharedByNodes: two nodes' histories on one bucket count
// each other's clicks; concurrent clicks on one message's links from both
// are all kept (compare-and-set, no lost update); without JetStream a node
// answers from its own clicks.
func TestClickHistorySharedByNodes(t *testing.T) {
	js := startJS(t)
	quiet := slog.New(slog.DiscardHandler)
	node := func(j jetstream.JetStream) *ClickHistory {
		return &ClickHistory{JS: fixedJS{j}, Local: email.NewMemoryHistory(email.MemoryHistoryConfig{}), Logger: quiet}
	}
	a, b := node(js), node(js)
	t0 := time.Now()
	const w = 2 * time.Second
	if n := a.ObserveClick("m1", "https://x/one", t0, w); n != 0 {
		t.Fatalf("first click: %d others", n)
	}
	if n := b.ObserveClick("m1", "https://x/two", t0.Add(500*time.Millisecond), w); n != 1 {
		t.Fatalf("node b's click after node a's on another link: %d others, want 1", n)
	}
	if n := b.ObserveClick("m1", "https://x/three", t0.Add(5*time.Second), w); n != 0 {
		t.Fatalf("a click past the window: %d others, want 0", n)
	}
	if n := a.ObserveClick("m2", "https://x/one", t0.Add(600*time.Millisecond), w); n != 0 {
		t.Fatalf("another message: %d others, want 0", n)
	}

	// Six links clicked at once, three from each node.
	var wg sync.WaitGroup
	t1 := t0.Add(time.Minute)
	for i := range 6 {
		h := a
		if i%2 == 1 {
			h = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.ObserveClick("m3", fmt.Sprintf("https://x/%d", i), t1, w)
		}()
	}
	wg.Wait()
	if n := a.ObserveClick("m3", "https://x/last", t1.Add(100*time.Millisecond), w); n != 6 {
		t.Fatalf("after 6 concurrent clicks on two nodes: %d others seen, want 6 (a lost update)", n)
	}

	// No JetStream: the node's own clicks.
	off := node(nil)
	off.ObserveClick("m4", "https://x/one", t0, w)
	if n := off.ObserveClick("m4", "https://x/two", t0.Add(100*time.Millisecond), w); n != 1 {
		t.Fatalf("without the bucket: %d others, want the node's own 1", n)
	}
}
