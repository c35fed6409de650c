package cluster

import (
	"context"
	"crypto/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/storage"
)

// publish writes msg into its bucket as the outbox does.
func publish(t *testing.T, f fixedJS, msg storage.Message) {
	t.Helper()
	if _, err := f.js.Publish(context.Background(), msg.Topic, msg.Data); err != nil {
		t.Fatal(err)
	}
}

// openStore opens a Badger store in a temp dir (the watch's marks).
func openStore(t *testing.T, dir string) *storage.Store {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	s, err := storage.Open(storage.Config{Dir: dir, VaultKey: key})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// watchFor runs r.Watch until it handed want announcements (or 10 s) and
// returns them.
func watchFor(t *testing.T, r *Requests, want int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Watch(ctx, func(_ context.Context, v []byte) error {
			got = append(got, string(v))
			if len(got) == want {
				cancel()
			}
			return nil
		})
	}()
	<-done
	return got
}

// TestRequestsWatchResumesAfterItsMark: the watch hands every announcement
// (never the steps, parts or views beside them); restarted, it hands only
// those announced meanwhile (a node that was down catches up, once).
func TestRequestsWatchResumesAfterItsMark(t *testing.T) {
	f := fixedJS{startJS(t)}
	dir := t.TempDir()
	st := openStore(t, dir)
	r := &Requests{JS: f, Self: "b", Marks: st}
	publish(t, f, r.AnnounceMessage("01A", []byte("a1")))
	publish(t, f, r.StepMessage("01A", "b", []byte(`{"status":"done"}`)))
	publish(t, f, r.ViewMessage("01A", []byte("view")))
	publish(t, f, r.AnnounceMessage("01B", []byte("a2")))
	if got := watchFor(t, r, 2); len(got) != 2 || got[0] != "a1" || got[1] != "a2" {
		t.Fatalf("first watch: %q", got)
	}
	publish(t, f, r.AnnounceMessage("01C", []byte("a3")))
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = openStore(t, dir) // the node restarts on its data dir
	defer st.Close()
	r.Marks = st
	if got := watchFor(t, r, 1); len(got) != 1 || got[0] != "a3" {
		t.Fatalf("after the restart: %q, want only the announcement made meanwhile", got)
	}
}

// TestRequestsWatchSurvivesBucketReset: after VIGIE_REQUESTS was lost and
// declared again (revisions from 1, below the saved mark), the
// announcements made since are handed over, not skipped.
func TestRequestsWatchSurvivesBucketReset(t *testing.T) {
	f := fixedJS{startJS(t)}
	st := openStore(t, t.TempDir())
	defer st.Close()
	r := &Requests{JS: f, Self: "b", Marks: st}
	for _, id := range []string{"01A", "01B", "01C"} {
		publish(t, f, r.AnnounceMessage(id, []byte("before-"+id)))
	}
	if got := watchFor(t, r, 3); len(got) != 3 {
		t.Fatalf("first watch: %q", got)
	}
	recreateBucket(t, f.js, streams.BucketRequests)
	publish(t, f, r.AnnounceMessage("01D", []byte("after")))
	if got := watchFor(t, r, 1); len(got) != 1 || got[0] != "after" {
		t.Fatalf("after the reset: %q, want the announcement made since", got)
	}
}

// TestRequestsReadStepsPartsViews: what a node reports is read back under
// its node's name; what is not reported reads as nil, an emptied part as
// empty.
func TestRequestsReadStepsPartsViews(t *testing.T) {
	f := fixedJS{startJS(t)}
	r := &Requests{JS: f, Self: "a"}
	ctx := context.Background()
	publish(t, f, r.StepMessage("01A", "b", []byte("step-b")))
	publish(t, f, r.PartMessage("01A", "b", []byte("sealed-b")))
	publish(t, f, r.ViewMessage("01A", []byte("view-a")))
	tests := []struct {
		name string
		read func() ([]byte, error)
		want string
	}{
		{"step of b", func() ([]byte, error) { return r.Step(ctx, "01A", "b") }, "step-b"},
		{"step of c (not reported)", func() ([]byte, error) { return r.Step(ctx, "01A", "c") }, ""},
		{"part of b", func() ([]byte, error) { return r.Part(ctx, "01A", "b") }, "sealed-b"},
		{"view", func() ([]byte, error) { return r.View(ctx, "01A") }, "view-a"},
		{"view of another request", func() ([]byte, error) { return r.View(ctx, "01Z") }, ""},
	}
	for _, tc := range tests {
		got, err := tc.read()
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: %q %v, want %q", tc.name, got, err, tc.want)
		}
	}
	// An emptied part (a later erasure) reads as empty, a part never put
	// as nil: the export tells a part not yet shared from an erased one.
	publish(t, f, r.PartMessage("01A", "c", nil))
	if got, err := r.Part(ctx, "01A", "c"); err != nil || got == nil || len(got) != 0 {
		t.Errorf("emptied part of c: %q (nil %v) %v, want empty, not nil", got, got == nil, err)
	}
	if got, err := r.Part(ctx, "01A", "d"); err != nil || got != nil {
		t.Errorf("part of d (never put): %q %v, want nil", got, err)
	}
	// A republished message (same id) is one entry; a new value is another.
	if a, b := r.StepMessage("01A", "b", []byte("x")), r.StepMessage("01A", "b", []byte("x")); a.ID != b.ID {
		t.Error("the same step message has two ids")
	}
	if a, b := r.StepMessage("01A", "b", []byte("x")), r.StepMessage("01A", "b", []byte("y")); a.ID == b.ID {
		t.Error("two step values share an id: the second would be dropped as a duplicate")
	}
}

// TestRequestsMemberNodes: every member is listed, live or not; only the
// live ones are live.
func TestRequestsMemberNodes(t *testing.T) {
	f := fixedJS{startJS(t)}
	now := time.Now()
	old := &Membership{JS: f, Node: "old", Now: func() time.Time { return now.Add(-time.Minute) }}
	self := &Membership{JS: f, Node: "self"}
	ctx := context.Background()
	for _, m := range []*Membership{old, self} {
		if err := m.Heartbeat(ctx); err != nil {
			t.Fatal(err)
		}
	}
	r := &Requests{JS: f, Self: "self", Members: self}
	all, err := r.MemberNodes(ctx)
	if err != nil || len(all) != 2 || all[0] != "old" || all[1] != "self" {
		t.Fatalf("members %v %v", all, err)
	}
	live, err := r.LiveNodes(ctx)
	if err != nil || len(live) != 1 || live[0] != "self" {
		t.Fatalf("live %v %v", live, err)
	}
}

// TestRequestsPurge: every entry of an expired request goes, those of its
// members' own erasure events (<id>.<node>: acknowledgements, contacts)
// included; another request's entries stay; a second purge finds nothing.
func TestRequestsPurge(t *testing.T) {
	f := fixedJS{startJS(t)}
	r := &Requests{JS: f, Self: "a"}
	ctx := context.Background()
	for _, id := range []string{"01OLD", "01NEW"} {
		for _, m := range []storage.Message{
			r.AnnounceMessage(id, []byte("req")),
			r.StepMessage(id, "node-b", []byte("step")),
			r.PartMessage(id, "node-b", []byte("sealed")),
			r.ViewMessage(id, []byte("view-"+id)),
			r.AckMessage(id, "crm", []byte("ack")),
			r.AckMessage(id+".node-b", "crm", []byte("ack of b's event")),
			r.ContactMessage(id, []byte("sealed contacts")),
			r.ContactMessage(id+".node-b", []byte("sealed contacts of b's event")),
		} {
			publish(t, f, m)
		}
	}
	publish(t, f, r.AckMessage("01ORPHAN.node-c", "crm", []byte("late ack"))) // no view
	var handed []string
	expired := func(id string, view []byte) bool {
		handed = append(handed, id+"="+string(view))
		return id == "01OLD" || id == "01ORPHAN"
	}
	n, err := r.Purge(ctx, expired)
	if err != nil || n != 2 {
		t.Fatalf("purge: %d %v, want 2 requests", n, err)
	}
	slices.Sort(handed)
	if want := []string{"01NEW=view-01NEW", "01OLD=view-01OLD", "01ORPHAN="}; !slices.Equal(handed, want) {
		t.Errorf("expired was handed %v, want %v", handed, want)
	}
	kv, err := f.js.KeyValue(ctx, streams.BucketRequests)
	if err != nil {
		t.Fatal(err)
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for k := range lister.Keys() {
		left = append(left, k)
	}
	if len(left) != 8 || slices.ContainsFunc(left, func(k string) bool {
		return strings.Contains(k, "OLD") || strings.Contains(k, streams.KeyToken("01OLD.node-b"))
	}) {
		t.Errorf("keys left: %v, want the 8 of 01NEW", left)
	}
	if c, err := r.Contact(ctx, "01NEW.node-b"); err != nil || string(c) != "sealed contacts of b's event" {
		t.Errorf("01NEW's contacts: %q %v", c, err)
	}
	if n, err := r.Purge(ctx, expired); err != nil || n != 0 {
		t.Errorf("second purge: %d %v, want nothing", n, err)
	}
}
