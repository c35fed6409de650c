package cluster

import (
	"context"
	"crypto/rand"
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
// its node's name; what is not reported reads as nil.
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
