package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/internal/tmpfstest"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
)

const mib = 1 << 20

// fakeDisk is an injected Config.FreeSpace: the free space of each
// directory is set by the test, and calls are counted.
type fakeDisk struct {
	mu    sync.Mutex
	free  map[string]uint64 // by directory; others get def
	def   uint64
	calls atomic.Int64
}

func (f *fakeDisk) set(dir string, free uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if dir == "" {
		f.def = free
		return
	}
	if f.free == nil {
		f.free = map[string]uint64{}
	}
	f.free[dir] = free
}

func (f *fakeDisk) probe(dir string) (uint64, error) {
	f.calls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if v, ok := f.free[dir]; ok {
		return v, nil
	}
	return f.def, nil
}

// openFake opens a store whose free space is fd's, with a 100 MiB reserve.
func openFake(t *testing.T, fd *fakeDisk, interval time.Duration, watch ...string) (*storage.Store, string) {
	t.Helper()
	dir := t.TempDir()
	s := openDir(t, storage.Config{
		Dir: dir, VaultKey: newKey(), MinFreeBytes: 100 * mib,
		FreeSpace: fd.probe, DiskCheckInterval: interval, WatchDirs: watch,
	})
	return s, dir
}

// waitDisk waits until the store's Disk().Full is full.
func waitDisk(t *testing.T, s *storage.Store, full bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.Disk().Full != full {
		if time.Now().After(deadline) {
			t.Fatalf("Disk().Full did not become %v: %+v", full, s.Disk())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func profileEvent(id string) *vigiev1.Event {
	return &vigiev1.Event{Id: id, Site: "site", Subject: "u1", Type: "track", Name: "Buy",
		TimestampMs: base.UnixMilli(), Mode: vigiev1.Mode_MODE_PSEUDONYMOUS}
}

// TestDiskFullRefusesWritesAndRecovers: below the reserve every write that
// grows the disk fails with ErrDiskFull and stores nothing, deletions still
// work, and writes resume without reopening once the free space is back
// above the reserve plus an eighth.
func TestDiskFullRefusesWritesAndRecovers(t *testing.T) {
	ctx := context.Background()
	fd := &fakeDisk{def: 1 << 30}
	s, _ := openFake(t, fd, 5*time.Millisecond)
	mustAppend(t, s, rec("site", "a1", base, "u1", "d1"))
	if err := s.KVPut(ctx, "p", "gone-later", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ObserveEvents(ctx, []*vigiev1.Event{profileEvent("e0")}); err != nil {
		t.Fatal(err)
	}
	if d := s.Disk(); d.Full || d.FreeBytes != 1<<30 || d.MinFreeBytes != 100*mib || d.ResumeBytes != 100*mib+100*mib/8 {
		t.Fatalf("disk status %+v", d)
	}

	fd.set("", 99*mib)
	waitDisk(t, s, true)
	writes := []struct {
		name string
		do   func() error
	}{
		{"Append", func() error {
			_, err := s.Append(ctx, []storage.Record{rec("site", "a2", base, "u1", "d2")})
			return err
		}},
		{"PutConsent", func() error {
			return s.PutConsent(ctx, "site", "u1", storage.ConsentEntry{Granted: []string{"analytics"}, AtMs: 1})
		}},
		{"KVPut", func() error { return s.KVPut(ctx, "p", "k", []byte("v"), 0) }},
		{"ObserveEvents", func() error { _, err := s.ObserveEvents(ctx, []*vigiev1.Event{profileEvent("e1")}); return err }},
		{"ApplySegments", func() error {
			_, err := s.ApplySegments(ctx, []storage.SegmentOutcome{{Plugin: "rules", Site: "site", Subject: "u1", EventID: "e0",
				Changes: []*vigiev1.SegmentChange{{Segment: "vip", Transition: vigiev1.Transition_TRANSITION_ENTERED}}}})
			return err
		}},
	}
	for _, w := range writes {
		if err := w.do(); !errors.Is(err, storage.ErrDiskFull) {
			t.Errorf("%s on a full disk: %v, want ErrDiskFull", w.name, err)
		}
	}
	if got := allEvents(t, s, "site"); len(got) != 1 {
		t.Fatalf("events after refused appends: %v", got)
	}
	if _, err := s.Consent(ctx, "site", "u1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("consent written on a full disk: %v", err)
	}
	// Deletions free space: they go on.
	if err := s.KVDelete(ctx, "p", "gone-later"); err != nil {
		t.Errorf("KVDelete on a full disk: %v", err)
	}
	if _, err := s.DeleteProfile(ctx, "site", "u1", "erased"); err != nil {
		t.Errorf("DeleteProfile on a full disk: %v", err)
	}
	items, err := s.Outbox(ctx, 10)
	if err != nil || len(items) != 1 {
		t.Fatalf("outbox: %v %v", items, err)
	}
	if err := s.AckOutbox([][]byte{items[0].Key}); err != nil {
		t.Errorf("AckOutbox on a full disk: %v", err)
	}

	// Above the reserve but below the resume threshold: still refusing
	// (no flapping at the boundary).
	fd.set("", 101*mib)
	time.Sleep(30 * time.Millisecond)
	if !s.Disk().Full {
		t.Fatal("resumed below MinFreeBytes + 1/8")
	}
	fd.set("", 200*mib)
	waitDisk(t, s, false)
	for _, w := range writes {
		if err := w.do(); err != nil {
			t.Errorf("%s after recovery: %v", w.name, err)
		}
	}
	if got := allEvents(t, s, "site"); !slices.Equal(slices.Sorted(slices.Values(got)), []string{"event:site:a1", "event:site:a2"}) {
		t.Fatalf("events after recovery: %v", got)
	}
}

// TestDiskFullRefusesQueuedAppends: records already waiting for the
// committer when the disk fills are refused too, not written.
func TestDiskFullRefusesQueuedAppends(t *testing.T) {
	fd := &fakeDisk{def: 1 << 30}
	s, _ := openFake(t, fd, time.Millisecond)
	var wg sync.WaitGroup
	var refused, stored atomic.Int64
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				_, err := s.Append(context.Background(), []storage.Record{rec("site", fmt.Sprintf("g%d-%03d", g, i), base, "", "")})
				switch {
				case errors.Is(err, storage.ErrDiskFull):
					refused.Add(1)
				case err != nil:
					t.Error(err)
					return
				default:
					stored.Add(1)
				}
				if g == 0 && i == 50 {
					fd.set("", mib)
				}
			}
		}()
	}
	wg.Wait()
	if refused.Load() == 0 {
		t.Fatal("no append refused after the disk filled")
	}
	if n := int64(len(allEvents(t, s, "site"))); n != stored.Load() {
		t.Fatalf("%d events stored, %d appends succeeded", n, stored.Load())
	}
}

// TestDiskCheckedAfterWritesNotPerEvent: free space is not measured per
// Append (no syscall on the hot path), but as soon as Append has written a
// share of the headroom, without waiting for the timer.
func TestDiskCheckedAfterWritesNotPerEvent(t *testing.T) {
	fd := &fakeDisk{def: 1 << 30}
	s, _ := openFake(t, fd, time.Hour)
	for i := range 100 {
		mustAppend(t, s, rec("site", ids("s", 100)[i], base, "", ""))
	}
	if n := fd.calls.Load(); n != 1 {
		t.Fatalf("free space measured %d times for 100 small appends, want once (at Open)", n)
	}
	fd.set("", 99*mib)
	big := bytes.Repeat([]byte("x"), 64<<10)
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; ; i++ {
		r := rec("site", fmt.Sprintf("big%05d", i), base, "", "")
		r.Data = big
		_, err := s.Append(context.Background(), []storage.Record{r})
		if errors.Is(err, storage.ErrDiskFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("still accepting after %d KiB written on a full disk", i*64)
		}
	}
	if n := fd.calls.Load(); n < 2 || n > 40 {
		t.Fatalf("free space measured %d times", n)
	}
}

// TestDiskFullWatchDirs: a watched directory (the JetStream store) short of
// space fills the store even when its own directory has room.
func TestDiskFullWatchDirs(t *testing.T) {
	fd := &fakeDisk{def: 1 << 30}
	js := filepath.Join(t.TempDir(), "jetstream")
	s, _ := openFake(t, fd, 5*time.Millisecond, js)
	fd.set(js, 10*mib)
	waitDisk(t, s, true)
	if _, err := s.Append(context.Background(), []storage.Record{rec("site", "a", base, "", "")}); !errors.Is(err, storage.ErrDiskFull) {
		t.Fatalf("append: %v", err)
	}
}

// TestOpenOnFullDisk: Open refuses before Badger creates a file.
func TestOpenOnFullDisk(t *testing.T) {
	fd := &fakeDisk{def: 50 * mib}
	dir := filepath.Join(t.TempDir(), "badger")
	s, err := storage.Open(storage.Config{Dir: dir, VaultKey: newKey(), MinFreeBytes: 100 * mib, FreeSpace: fd.probe})
	if !errors.Is(err, storage.ErrDiskFull) {
		if s != nil {
			_ = s.Close()
		}
		t.Fatalf("open on a full disk: %v, want ErrDiskFull", err)
	}
	if _, serr := os.Stat(dir); !errors.Is(serr, os.ErrNotExist) {
		t.Fatalf("Badger opened on a full disk: %v (%v)", serr, err)
	}
	t.Log(err)
}

// TestStatfsFree measures a real tmpfs, through a directory not created
// yet, and Open refuses it when its free space is under the reserve.
func TestStatfsFree(t *testing.T) {
	mnt := tmpfstest.Mount(t, 32*mib)
	tmpfstest.Fill(t, mnt, "filler", 8*mib)
	got, err := storage.StatfsFree(filepath.Join(mnt, "not", "yet"))
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(tmpfstest.Free(t, mnt)); got != want || got < 7*mib || got > 9*mib {
		t.Fatalf("StatfsFree = %d, statfs says %d", got, want)
	}
	_, err = storage.Open(storage.Config{Dir: filepath.Join(mnt, "badger"), VaultKey: newKey(), MinFreeBytes: 16 * mib})
	if !errors.Is(err, storage.ErrDiskFull) {
		t.Fatalf("open on a tmpfs with 8 MiB free, 16 MiB reserve: %v", err)
	}
}
