package imports

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/proxy/blind"
	"github.com/vigie-dev/vigie/proxy/ledger"
	"github.com/vigie-dev/vigie/proxy/pipeline"
	"github.com/vigie-dev/vigie/proxy/pseudonymize"
	"github.com/vigie-dev/vigie/storage"
	"github.com/vigie-dev/vigie/storage/storagetest"
)

// newTestService is a started Service over a real store in a temp dir,
// with the real pipeline, ledger and blind index, and no bus (events stay
// in the outbox).
func newTestService(t testing.TB) *Service {
	t.Helper()
	st := storagetest.OpenConfig(t, storage.Config{MaxOutbox: 10_000_000})
	p, err := pipeline.New(pipeline.Config{
		Keys:  []pseudonymize.Key{{ID: "k1", Secret: bytes.Repeat([]byte{7}, 32)}},
		Sites: []pipeline.SiteConfig{{ID: "demo", Policy: consent.DefaultPolicy()}},
	})
	if err != nil {
		t.Fatal(err)
	}
	site, _ := p.Site("demo")
	bi, _ := blind.New(bytes.Repeat([]byte{3}, 32))
	svc, err := New(Config{
		Store: st, Pipeline: p, Sites: map[string]*pipeline.Site{"demo": site},
		Ledger: ledger.New(ledger.Config{Backend: st, Purposes: []consent.Purpose{consent.Necessary, consent.Analytics, consent.Personalization, consent.Marketing}}),
		Blind:  bi, Dir: filepath.Join(t.TempDir(), "imports"),
		Purposes: []string{"necessary", "analytics", "personalization", "marketing"}, Retention: 395 * 24 * time.Hour,
		OutboxHighWater: 100_000_000,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop(context.Background()) })
	return svc
}

// submit queues a job for the file at path (moved into the service's
// directory) with mapping, as POST /admin/v1/imports would.
func submit(t testing.TB, s *Service, mapping, path string) string {
	t.Helper()
	p, err := compile([]byte(mapping), s.options(path))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("job-%d", time.Now().UnixNano())
	if err := os.Rename(path, s.dataPath(id)); err != nil {
		t.Fatal(err)
	}
	rec := &record{Job: Job{ID: id, Site: "demo", Status: StatusQueued, Format: p.format, Mapping: []byte(mapping),
		File: FileInfo{Bytes: fi.Size()}, CreatedAt: time.Now()}}
	if err := s.put(context.Background(), rec, nil, nil); err != nil {
		t.Fatal(err)
	}
	s.enqueue(id)
	return id
}

// waitJob polls job id until it ended.
func waitJob(t testing.TB, s *Service, id string, each func(Job)) Job {
	t.Helper()
	for {
		j, err := s.Job(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if each != nil {
			each(j)
		}
		if j.Status != StatusQueued && j.Status != StatusRunning {
			return j
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// memMapping reads three columns of a wide file: the note, the largest
// column, is never imported.
const memMapping = `{"event":"Order Completed","identity":{"column":"customer","kind":"user_id"},
 "natural_key":["order_id"],"properties":{"order_id":"order_id","total":{"column":"total","type":"number"}},
 "lawful_basis":{"basis":"contract"},"purposes":["personalization"]}`

// writeOrders writes a CSV of orders of about size bytes to a new file
// and returns its path and row count.
func writeOrders(t testing.TB, size int64) (string, int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "orders.csv")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprintln(w, "order_id,customer,total,note")
	note := strings.Repeat("lorem ipsum dolor sit amet ", 16)
	n := 0
	var written int64
	for ; written < size; n++ {
		k, _ := fmt.Fprintf(w, "o-%08d,c-%d,%d.%02d,\"%s %d\"\n", n, n%20_000, n%500, n%100, note, n)
		written += int64(k)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path, n
}

// heapBytes is the live heap as the last garbage collection marked it.
func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestImportMemoryIsFlat: a 50 MB file is imported at steady memory. A
// dry run does all of a row's work but the writes (reading, mapping, the
// blind index and ledger reads, the pipeline): its live heap stays within
// a few MiB of where it started in every quarter of the file. The real
// run adds Badger's memtables (32 MiB each, at most numMemtables of them
// plus one being flushed) and nothing that grows with the file. The 1 GB
// run is in BENCHMARKS.md.
func TestImportMemoryIsFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("imports 50 MB")
	}
	s := newTestService(t)
	mb := func(b uint64) float64 { return float64(b) / (1 << 20) }
	for _, dry := range []bool{true, false} {
		path, n := writeOrders(t, 50<<20)
		runtime.GC()
		base := heapBytes()
		id := submitDry(t, s, memMapping, path, dry)
		peak := watchHeap(t, s, id)
		j, _ := s.Job(context.Background(), id)
		if j.Status != StatusDone || j.Rows.Accepted != int64(n) {
			t.Fatalf("dry %v: job %s %+v (%s)", dry, j.Status, j.Rows, j.Error)
		}
		t.Logf("dry run %v: %d rows, live heap before %.1f MiB, peak by quarter of the file %.1f, %.1f, %.1f, %.1f MiB, %.0f rows/s",
			dry, n, mb(base), mb(peak[0]), mb(peak[1]), mb(peak[2]), mb(peak[3]), j.Progress.RowsPerSecond)
		limit := base + 16<<20
		if !dry {
			limit = base + (3+1)*32<<20 + 16<<20
		}
		for q, p := range peak {
			if p > limit {
				t.Fatalf("dry run %v: live heap %.1f MiB in quarter %d of a 50 MiB file (%.1f MiB before)", dry, mb(p), q+1, mb(base))
			}
		}
	}
}

// submitDry is submit, as a dry run when dry.
func submitDry(t testing.TB, s *Service, mapping, path string, dry bool) string {
	t.Helper()
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	id := submit(t, s, mapping, path)
	rec, err := s.load(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	rec.DryRun = dry
	if err := s.put(context.Background(), rec, nil, nil); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.closed, s.queue = false, nil
	s.mu.Unlock()
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return id
}

// watchHeap samples the live heap until job id ends and returns its peak
// in each quarter of the file.
func watchHeap(t testing.TB, s *Service, id string) [4]uint64 {
	t.Helper()
	var peak [4]uint64
	for {
		j, err := s.Job(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if j.Status != StatusQueued && j.Status != StatusRunning {
			return peak
		}
		if j.Progress.BytesTotal > 0 {
			q := min(int(4*j.Progress.BytesDone/j.Progress.BytesTotal), 3)
			peak[q] = max(peak[q], heapBytes())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// TestResumeCountsOwnRows: a job stopped between appending a batch and
// committing its checkpoint (Committing) resumes with that batch's rows
// counted accepted, not duplicates, and nothing stored twice.
func TestResumeCountsOwnRows(t *testing.T) {
	s := newTestService(t)
	var b strings.Builder
	b.WriteString("order_id,customer,total,note\n")
	for i := range 1200 {
		fmt.Fprintf(&b, "o-%d,c-%d,1,\n", i, i)
	}
	path := filepath.Join(t.TempDir(), "o.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	// Stop the worker so the job stays queued, then play a first run that
	// appended its first batch and stopped before the checkpoint.
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	id := submit(t, s, memMapping, path)
	rec, err := s.load(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	j := &run{s: s, rec: rec, start: time.Now(), cache: map[string]resolved{}, reader: s.cfg.Ledger.Reader(context.Background())}
	if msg := j.open(); msg != "" {
		t.Fatal(msg)
	}
	rec.Status = StatusRunning
	ctx := context.Background()
	var recs []storage.Record
	for range s.cfg.BatchSize {
		if _, _, err := j.src.next(j.vals); err != nil {
			t.Fatal(err)
		}
		if e := j.p.build(&j.r, j.vals, time.Now(), j.configured); e != nil {
			t.Fatal(e.reason)
		}
		sr, _, e, err := j.prepare(ctx, 0, time.Now())
		if err != nil || e != nil {
			t.Fatal(err, e)
		}
		recs = append(recs, sr)
	}
	j.close()
	if _, err := s.cfg.Store.Append(ctx, recs); err != nil {
		t.Fatal(err)
	}
	rec.Committing = true
	if err := s.put(ctx, rec, nil, nil); err != nil {
		t.Fatal(err)
	}
	// The next start resumes it.
	s2 := &Service{cfg: s.cfg, log: s.log, running: map[string]context.CancelFunc{}, cancels: map[string]bool{},
		inflight: map[string]bool{}, wake: make(chan struct{}, 1)}
	if err := s2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s2.Stop(ctx)
	done := waitJob(t, s2, id, nil)
	if done.Rows != (Rows{Read: 1200, Accepted: 1200}) {
		t.Fatalf("resumed job: %+v %v", done.Rows, done.SkippedByReason)
	}
	st, _ := s.cfg.Store.Stats(ctx)
	if st.Events["demo"] != 1200 {
		t.Fatalf("%d events for 1200 rows", st.Events["demo"])
	}
}
