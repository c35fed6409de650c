package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/storage"
)

// openWatchStore opens a real store in a temp dir.
func openWatchStore(t *testing.T) *storage.Store {
	t.Helper()
	s, err := storage.Open(storage.Config{Dir: t.TempDir(), VaultKey: bytes.Repeat([]byte{7}, 32), MinFreeBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// putLedger publishes node a's entry for subject into VIGIE_LEDGER, as its
// outbox does.
func putLedger(t *testing.T, js jetstream.JetStream, subject string, e storage.ConsentEntry) {
	t.Helper()
	m, err := LedgerMessage("a", "demo", subject, e)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(context.Background(), m.Topic, m.Data, jetstream.WithMsgID(m.ID)); err != nil {
		t.Fatal(err)
	}
}

// runWatcher runs w until the returned stop is called.
func runWatcher(w *LedgerWatcher) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); w.Run(ctx) }()
	return func() { cancel(); wg.Wait() }
}

// applied waits up to d for subject's entry to reach s.
func applied(s *storage.Store, subject string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if _, err := s.Consent(context.Background(), "demo", subject); err == nil {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// recreateLedger deletes VIGIE_LEDGER and declares it again, empty: its
// revisions start again at 1 (NATS lost the bucket's stream).
func recreateLedger(t *testing.T, js jetstream.JetStream) {
	recreateBucket(t, js, streams.BucketLedger)
}

// recreateBucket deletes bucket and declares every bucket again: a store
// NATS lost, revisions from 1.
func recreateBucket(t *testing.T, js jetstream.JetStream, bucket string) {
	t.Helper()
	ctx := context.Background()
	if err := js.DeleteKeyValue(ctx, bucket); err != nil {
		t.Fatal(err)
	}
	if err := streams.NewDeclarer(streams.Settings{}).WithBuckets(Buckets()...).Ensure(ctx, js); err != nil {
		t.Fatal(err)
	}
}

// TestLedgerWatchSurvivesBucketReset: the watch keeps the revision it
// applied last; after the bucket was lost and declared again (revisions
// from 1), the entries written since are applied, whether the watch was
// stopped meanwhile (node restart) or kept running.
func TestLedgerWatchSurvivesBucketReset(t *testing.T) {
	for _, running := range []bool{false, true} {
		t.Run(fmt.Sprintf("running=%v", running), func(t *testing.T) {
			js := startJS(t)
			st := openWatchStore(t)
			w := &LedgerWatcher{JS: fixedJS{js}, Store: st, Node: "b", Marks: st, Retry: 50 * time.Millisecond,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
				Erase:  func(context.Context, string, string) error { return nil }}
			stop := runWatcher(w)
			at := time.Now().UnixMilli()
			for i := range 5 {
				putLedger(t, js, fmt.Sprintf("s%d", i), storage.ConsentEntry{Granted: []string{"analytics"}, AtMs: at})
			}
			if !applied(st, "s4", 5*time.Second) {
				t.Fatal("entries before the reset not applied")
			}
			if !running {
				stop()
			}
			recreateLedger(t, js)
			putLedger(t, js, "fresh", storage.ConsentEntry{Granted: []string{"analytics"}, AtMs: at + 1})
			if !running {
				stop = runWatcher(w)
			}
			defer stop()
			if !applied(st, "fresh", 10*time.Second) {
				t.Fatal("an entry written after the bucket was declared again (revision 1) was never applied: the watch kept its old mark")
			}
		})
	}
}

// publishLedger publishes node's entry (or tombstone) for subject into
// VIGIE_LEDGER, as that node's outbox does.
func publishLedger(t *testing.T, js jetstream.JetStream, node, subject string, e storage.ConsentEntry, erased bool) {
	t.Helper()
	var m storage.Message
	var err error
	if erased {
		var ms []storage.Message
		ms, err = LedgerTombstones(node, "demo", []string{subject}, time.UnixMilli(e.AtMs))
		if err == nil {
			m = ms[0]
		}
	} else {
		m, err = LedgerMessage(node, "demo", subject, e)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(context.Background(), m.Topic, m.Data, jetstream.WithMsgID(m.ID)); err != nil {
		t.Fatal(err)
	}
}

// bucketValue returns subject's value in VIGIE_LEDGER now.
func bucketValue(t *testing.T, js jetstream.JetStream, subject string) ledgerValue {
	t.Helper()
	kv, err := js.KeyValue(context.Background(), streams.BucketLedger)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(context.Background(), LedgerKey("demo", subject))
	if err != nil {
		t.Fatal(err)
	}
	var v ledgerValue
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestLedgerEntryPublishedLateDoesNotWin: a node's outbox can publish a
// subject's entry after another node's newer one (it was cut from NATS),
// and the bucket then keeps the older one: what a node started later
// reads. A node holding the newer entry puts it back, so the withdrawal
// stands on a node started afterwards; and a choice older than the
// subject's erasure neither brings the subject back on a node that erased
// it nor stays in the bucket. On the code before, the bucket kept the late
// grant and the node started afterwards stored it, and the erased subject
// got the late grant back.
func TestLedgerEntryPublishedLateDoesNotWin(t *testing.T) {
	js := startJS(t)
	st := openWatchStore(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	// The test publishes what the node's outbox would.
	enqueue := func(ctx context.Context, msgs ...storage.Message) error {
		for _, m := range msgs {
			if _, err := js.Publish(ctx, m.Topic, m.Data, jetstream.WithMsgID(m.ID)); err != nil {
				return err
			}
		}
		return nil
	}
	erase := func(ctx context.Context, site, subject string) error {
		_, err := st.EraseSubjects(ctx, site, []string{subject})
		return err
	}
	w := &LedgerWatcher{JS: fixedJS{js}, Store: st, Node: "b", Marks: st, Enqueue: enqueue, Retry: 50 * time.Millisecond,
		Logger: quiet, Erase: erase}
	stop := runWatcher(w)
	defer stop()
	waitTrue := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}

	// A withdrawal, then a grant made before it and published late.
	publishLedger(t, js, "a", "s1", storage.ConsentEntry{Granted: []string{"marketing"}, AtMs: 100}, false)
	publishLedger(t, js, "a", "s1", storage.ConsentEntry{Denied: []string{"marketing"}, AtMs: 200}, false)
	waitTrue("the withdrawal applied", func() bool {
		c, err := st.Consent(context.Background(), "demo", "s1")
		return err == nil && c.AtMs == 200
	})
	publishLedger(t, js, "c", "s1", storage.ConsentEntry{Granted: []string{"marketing"}, AtMs: 150}, false)
	waitTrue("the withdrawal back as the bucket's value", func() bool { return bucketValue(t, js, "s1").Entry.AtMs == 200 })
	if c, _ := st.Consent(context.Background(), "demo", "s1"); c.AtMs != 200 || len(c.Granted) != 0 {
		t.Fatalf("node b's entry %+v, want the withdrawal", c)
	}
	// A node started afterwards, with an empty store, reads the withdrawal.
	st2 := openWatchStore(t)
	stop2 := runWatcher(&LedgerWatcher{JS: fixedJS{js}, Store: st2, Node: "d", Marks: st2, Retry: 50 * time.Millisecond,
		Logger: quiet, Erase: func(context.Context, string, string) error { return nil }})
	defer stop2()
	if !applied(st2, "s1", 10*time.Second) {
		t.Fatal("the new node never read s1's entry")
	}
	if c, _ := st2.Consent(context.Background(), "demo", "s1"); len(c.Granted) != 0 || c.AtMs != 200 {
		t.Fatalf("a node started after the late grant holds %+v, want the withdrawal", c)
	}

	// Erased on node a (whose tombstone node b applies), then a choice
	// made before the erasure, published late.
	publishLedger(t, js, "a", "s2", storage.ConsentEntry{Granted: []string{"marketing"}, AtMs: 100}, false)
	if !applied(st, "s2", 10*time.Second) {
		t.Fatal("s2's grant never applied")
	}
	publishLedger(t, js, "a", "s2", storage.ConsentEntry{AtMs: 300}, true)
	waitTrue("s2 erased on node b", func() bool {
		_, err := st.Consent(context.Background(), "demo", "s2")
		return errors.Is(err, storage.ErrNotFound)
	})
	publishLedger(t, js, "c", "s2", storage.ConsentEntry{Granted: []string{"marketing"}, AtMs: 250}, false)
	waitTrue("the tombstone back as the bucket's value", func() bool { return bucketValue(t, js, "s2").Erased })
	if _, err := st.Consent(context.Background(), "demo", "s2"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the erased subject has a ledger entry again on node b: %v", err)
	}
	// The person coming back after the erasure is a new start.
	publishLedger(t, js, "c", "s2", storage.ConsentEntry{Granted: []string{"analytics"}, AtMs: 400}, false)
	waitTrue("the choice made after the erasure applied", func() bool {
		c, err := st.Consent(context.Background(), "demo", "s2")
		return err == nil && c.AtMs == 400
	})
	if v := bucketValue(t, js, "s2"); v.Erased || v.Entry.AtMs != 400 {
		t.Fatalf("bucket value %+v, want the choice made after the erasure", v)
	}
}
