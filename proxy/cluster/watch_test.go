package cluster

import (
	"bytes"
	"context"
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
