package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/storage"
	"github.com/vigie-dev/vigie/storage/storagetest"
)

func TestOpenConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  storage.Config
		want error
	}{
		{"no dir", storage.Config{VaultKey: newKey()}, storage.ErrInvalidConfig},
		{"no key", storage.Config{InMemory: true}, storage.ErrInvalidConfig},
		{"short key", storage.Config{InMemory: true, VaultKey: make([]byte, 16)}, storage.ErrInvalidConfig},
		{"in memory", storage.Config{InMemory: true, VaultKey: newKey()}, nil},
		{"dir", storage.Config{Dir: t.TempDir(), VaultKey: newKey()}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := storage.Open(tt.cfg)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open: err %v, want %v", err, tt.want)
			}
			if err == nil {
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				if err := s.Close(); err != nil {
					t.Fatalf("second Close: %v", err)
				}
			}
		})
	}
}

func TestAppendValidation(t *testing.T) {
	s := storagetest.OpenConfig(t, storage.Config{InMemory: true})
	good := rec("a", "1", base, "subj", "")
	tests := []struct {
		name   string
		modify func(*storage.Record)
		want   error
	}{
		{"empty site", func(r *storage.Record) { r.Site = "" }, storage.ErrInvalidKey},
		{"NUL in site", func(r *storage.Record) { r.Site = "a\x00b" }, storage.ErrInvalidKey},
		{"NUL in subject", func(r *storage.Record) { r.Subject = "s\x00" }, storage.ErrInvalidKey},
		{"long site", func(r *storage.Record) { r.Site = strings.Repeat("x", 256) }, storage.ErrInvalidKey},
		{"empty id", func(r *storage.Record) { r.ID = "" }, storage.ErrInvalidKey},
		{"long dedup", func(r *storage.Record) { r.Dedup = make([]byte, 300) }, storage.ErrInvalidKey},
		{"no topic", func(r *storage.Record) { r.Topic = "" }, storage.ErrInvalidRecord},
		{"zero time", func(r *storage.Record) { r.Time = time.Time{} }, storage.ErrInvalidRecord},
		{"pre-1970", func(r *storage.Record) { r.Time = time.Unix(-10, 0) }, storage.ErrInvalidRecord},
		{"negative ttl", func(r *storage.Record) { r.TTL = -time.Second }, storage.ErrInvalidRecord},
		{"traits without subject", func(r *storage.Record) { r.Subject = ""; r.Vault = []byte(`{}`) }, storage.ErrInvalidRecord},
		{"too large", func(r *storage.Record) { r.Data = make([]byte, 2<<20) }, storage.ErrInvalidRecord},
		{"valid", func(*storage.Record) {}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := s.OutboxLen()
			r := good
			r.ID = tt.name
			tt.modify(&r)
			// A bad record anywhere in the call rejects the whole call.
			_, err := s.Append(context.Background(), []storage.Record{rec("a", "ok-"+tt.name, base, "", ""), r})
			if !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
			wantLen := before
			if tt.want == nil {
				wantLen += 2
			}
			if got := s.OutboxLen(); got != wantLen {
				t.Fatalf("OutboxLen %d, want %d", got, wantLen)
			}
		})
	}
}

func TestGroupCommitConcurrent(t *testing.T) {
	s := storagetest.Open(t)
	const workers, calls = 100, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for c := range calls {
				id := fmt.Sprintf("w%03d-c%03d", w, c)
				at := base.Add(time.Duration(w*calls+c) * time.Millisecond)
				dups, err := s.Append(context.Background(), []storage.Record{rec("site", id, at, fmt.Sprintf("s%d", w), id)})
				if err != nil || dups[0] {
					errs <- fmt.Errorf("append %s: dup=%v err=%v", id, dups, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	const total = workers * calls
	if got := s.OutboxLen(); got != total {
		t.Fatalf("OutboxLen %d, want %d", got, total)
	}
	st, err := s.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Events["site"] != total {
		t.Fatalf("stored %d events, want %d", st.Events["site"], total)
	}
	if st.Commits >= total {
		t.Fatalf("%d commits for %d Append calls: no grouping", st.Commits, total)
	}
	t.Logf("%d Append calls in %d commits", total, st.Commits)
	items, err := s.Outbox(context.Background(), 2*total)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i, it := range items {
		if i > 0 && bytes.Compare(items[i-1].Key, it.Key) >= 0 {
			t.Fatalf("outbox keys not ascending at %d", i)
		}
		if want := "event:site:" + it.MsgID; string(it.Data) != want || it.Topic != "vigie.events.site.track" {
			t.Fatalf("item %d: data %q topic %q", i, it.Data, it.Topic)
		}
		seen[it.MsgID] = true
	}
	if len(items) != total || len(seen) != total {
		t.Fatalf("outbox has %d items (%d distinct), want %d", len(items), len(seen), total)
	}
	// Per-worker order is preserved: each worker's calls are sequential.
	last := map[string]string{}
	for _, it := range items {
		w := it.MsgID[:4]
		if last[w] >= it.MsgID {
			t.Fatalf("worker %s: %s published after %s", w, it.MsgID, last[w])
		}
		last[w] = it.MsgID
	}
}

func TestDedup(t *testing.T) {
	dir := t.TempDir()
	key := newKey()
	s := openDir(t, storage.Config{Dir: dir, VaultKey: key})
	steps := []struct {
		name string
		recs []storage.Record
		want []bool
	}{
		{"first", []storage.Record{rec("a", "1", base, "", "m1")}, []bool{false}},
		{"across calls", []storage.Record{rec("a", "2", base, "", "m1")}, []bool{true}},
		{"within call", []storage.Record{rec("a", "3", base, "", "m2"), rec("a", "4", base, "", "m2"), rec("a", "5", base, "", "m3")}, []bool{false, true, false}},
		{"other site same key", []storage.Record{rec("b", "6", base, "", "m1")}, []bool{false}},
		{"no dedup key", []storage.Record{rec("a", "7", base, "", ""), rec("a", "8", base, "", "")}, []bool{false, false}},
		{"reopen", nil, nil},
		{"after reopen", []storage.Record{rec("a", "9", base, "", "m3"), rec("b", "10", base, "", "m1"), rec("a", "11", base, "", "m4")}, []bool{true, true, false}},
	}
	wantDups := 0
	for _, st := range steps {
		if st.recs == nil {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openDir(t, storage.Config{Dir: dir, VaultKey: key})
			wantDups = 0 // counter is per process
			continue
		}
		got := mustAppend(t, s, st.recs...)
		if !slices.Equal(got, st.want) {
			t.Fatalf("%s: dups %v, want %v", st.name, got, st.want)
		}
		for _, d := range st.want {
			if d {
				wantDups++
			}
		}
	}
	// Duplicates stored nothing.
	wantA := []string{"event:a:7", "event:a:5", "event:a:3", "event:a:11", "event:a:1", "event:a:8"}
	slices.Sort(wantA)
	gotA := allEvents(t, s, "a")
	slices.Sort(gotA)
	if !slices.Equal(gotA, wantA) {
		t.Fatalf("site a events %v, want %v", gotA, wantA)
	}
	st, err := s.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Duplicates != int64(wantDups) {
		t.Fatalf("Duplicates %d, want %d", st.Duplicates, wantDups)
	}
	if st.OutboxDepth != 7 {
		t.Fatalf("OutboxDepth %d, want 7", st.OutboxDepth)
	}
}

func TestDedupConcurrentSameKey(t *testing.T) {
	s := storagetest.Open(t)
	const n = 32
	var stored atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			dups, err := s.Append(context.Background(), []storage.Record{rec("a", fmt.Sprint(i), base, "", "same")})
			if err != nil {
				t.Error(err)
				return
			}
			if !dups[0] {
				stored.Add(1)
			}
		})
	}
	wg.Wait()
	if stored.Load() != 1 || s.OutboxLen() != 1 {
		t.Fatalf("%d stored, outbox %d; want exactly 1", stored.Load(), s.OutboxLen())
	}
}

func TestExpiry(t *testing.T) {
	t.Parallel()
	s := storagetest.OpenConfig(t, storage.Config{DedupWindow: time.Second})
	short := rec("a", "short", base, "subj", "m1")
	short.TTL = time.Second
	short.Vault = []byte(`{"email":"x@example.com"}`)
	keep := rec("a", "keep", base.Add(-time.Hour), "subj", "")
	mustAppend(t, s, short, keep)
	if d := mustAppend(t, s, rec("a", "again", base, "", "m1")); !d[0] {
		t.Fatal("dedup key not seen within its window")
	}
	if _, err := s.VaultTraits("subj", "a"); err != nil {
		t.Fatalf("traits before expiry: %v", err)
	}
	time.Sleep(2100 * time.Millisecond)

	if got := allEvents(t, s, "a"); !slices.Equal(got, []string{"event:a:keep"}) {
		t.Fatalf("events after TTL: %v", got)
	}
	sub, err := s.SubjectEvents(context.Background(), "subj")
	if err != nil || len(sub) != 1 || string(sub[0]) != "event:a:keep" {
		t.Fatalf("subject events after TTL: %q, %v", sub, err)
	}
	if _, err := s.VaultTraits("subj", "a"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("traits after TTL: %v, want ErrNotFound", err)
	}
	// The expired event's outbox entry is skipped and deleted.
	items, err := s.Outbox(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || items[0].MsgID != "keep" || s.OutboxLen() != 1 {
		t.Fatalf("outbox after TTL: %d items, len %d", len(items), s.OutboxLen())
	}
	if d := mustAppend(t, s, rec("a", "later", base, "", "m1")); d[0] {
		t.Fatal("dedup key still present after its window")
	}
}

func TestOutboxOrderAckReopen(t *testing.T) {
	dir, key := t.TempDir(), newKey()
	s := openDir(t, storage.Config{Dir: dir, VaultKey: key})
	for i, id := range ids("e", 10) {
		// Times deliberately out of order: the outbox follows commit order.
		mustAppend(t, s, rec("a", id, base.Add(-time.Duration(i)*time.Minute), "", ""))
	}
	select {
	case <-s.OutboxSignal():
	default:
		t.Fatal("no outbox signal after commits")
	}
	first, err := s.Outbox(context.Background(), 3)
	if err != nil {
		t.Fatal(err)
	}
	if got := eventIDs(first); !slices.Equal(got, ids("e", 3)) {
		t.Fatalf("first page %v", got)
	}
	after, err := s.OutboxAfter(context.Background(), first[1].Key, 3)
	if err != nil {
		t.Fatal(err)
	}
	if got := eventIDs(after); !slices.Equal(got, ids("e", 5)[2:]) {
		t.Fatalf("page after the second entry: %v", got)
	}
	keys := [][]byte{first[0].Key, first[1].Key, first[2].Key}
	for range 2 { // acking twice must not double-count
		if err := s.AckOutbox(keys); err != nil {
			t.Fatal(err)
		}
		if s.OutboxLen() != 7 {
			t.Fatalf("OutboxLen %d after ack, want 7", s.OutboxLen())
		}
	}
	if err := s.AckOutbox([][]byte{[]byte("e/not-outbox")}); !errors.Is(err, storage.ErrInvalidKey) {
		t.Fatalf("ack of foreign key: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Outbox(context.Background(), 1); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("Outbox after Close: %v", err)
	}
	s = openDir(t, storage.Config{Dir: dir, VaultKey: key})
	if s.OutboxLen() != 7 {
		t.Fatalf("OutboxLen after reopen %d, want 7", s.OutboxLen())
	}
	mustAppend(t, s, rec("a", "new", base, "", ""))
	rest, err := s.Outbox(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	want := append(ids("e", 10)[3:], "new")
	if got := eventIDs(rest); !slices.Equal(got, want) {
		t.Fatalf("after reopen %v, want %v", got, want)
	}
}

func eventIDs(items []storage.OutboxItem) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.MsgID
	}
	return out
}

func TestOutboxFull(t *testing.T) {
	s := storagetest.OpenConfig(t, storage.Config{InMemory: true, MaxOutbox: 5})
	for _, id := range ids("e", 5) {
		mustAppend(t, s, rec("a", id, base, "", ""))
	}
	steps := []struct {
		name string
		ack  int
		recs int
		want error
	}{
		{"full", 0, 1, storage.ErrOutboxFull},
		{"batch does not fit", 1, 2, storage.ErrOutboxFull},
		{"fits after ack", 0, 1, nil},
		{"full again", 0, 1, storage.ErrOutboxFull},
	}
	for i, st := range steps {
		if st.ack > 0 {
			items, err := s.Outbox(context.Background(), st.ack)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.AckOutbox([][]byte{items[0].Key}); err != nil {
				t.Fatal(err)
			}
		}
		recs := make([]storage.Record, st.recs)
		for j := range recs {
			recs[j] = rec("a", fmt.Sprintf("s%d-%d", i, j), base, "", "")
		}
		if _, err := s.Append(context.Background(), recs); !errors.Is(err, st.want) {
			t.Fatalf("%s: err %v, want %v", st.name, err, st.want)
		}
	}
	if s.OutboxLen() != 5 {
		t.Fatalf("OutboxLen %d, want 5", s.OutboxLen())
	}
}

func TestEventsPagination(t *testing.T) {
	s := storagetest.OpenConfig(t, storage.Config{InMemory: true, MaxGroup: 7})
	var recs []storage.Record
	var wantA []string
	for i, id := range ids("a", 25) {
		at := base.Add(time.Duration(i/2) * time.Second) // pairs share a millisecond
		recs = append(recs, rec("a", id, at, "", ""))
		wantA = append(wantA, "event:a:"+id)
	}
	for i, id := range ids("b", 5) {
		recs = append(recs, rec("b", id, base.Add(time.Duration(i)*time.Hour), "", ""))
	}
	recs = append(recs, rec("ab", "x", base, "", "")) // a site whose name extends "a"
	// Insert in shuffled order; reads must sort by time.
	for i := range recs {
		j := (i * 7) % len(recs)
		recs[i], recs[j] = recs[j], recs[i]
	}
	mustAppend(t, s, recs...)
	slices.Reverse(wantA)
	for _, limit := range []int{1, 7, 10, 25, 100} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			var got []string
			cursor, pages := "", 0
			for {
				evs, next, err := s.Events(context.Background(), "a", limit, cursor)
				if err != nil {
					t.Fatal(err)
				}
				if len(evs) > limit || (next != "" && len(evs) != limit) {
					t.Fatalf("page of %d with limit %d, next %q", len(evs), limit, next)
				}
				for _, e := range evs {
					got = append(got, string(e))
				}
				pages++
				if next == "" {
					break
				}
				cursor = next
			}
			if !slices.Equal(got, wantA) {
				t.Fatalf("got %v\nwant %v", got, wantA)
			}
			if wantPages := (25 + limit - 1) / limit; pages != wantPages {
				t.Fatalf("%d pages, want %d", pages, wantPages)
			}
		})
	}
	if got := allEvents(t, s, "b"); len(got) != 5 || got[0] != "event:b:b0004" {
		t.Fatalf("site b: %v", got)
	}
	for _, bad := range []string{"!!", "AAAA", "%%%"} {
		if _, _, err := s.Events(context.Background(), "a", 10, bad); !errors.Is(err, storage.ErrInvalidKey) {
			t.Fatalf("cursor %q: err %v", bad, err)
		}
	}
}

func TestAppendSplitsTooBigTransactions(t *testing.T) {
	// Values kept in the LSM tree count fully towards Badger's transaction size.
	s := storagetest.OpenConfig(t, storage.Config{MaxGroup: 1000, ValueThreshold: 1 << 20})
	big := bytes.Repeat([]byte("x"), 600<<10)
	var recs []storage.Record
	for i, id := range ids("big", 20) { // 12 MB: several Badger transactions
		r := rec("a", id, base.Add(time.Duration(i)*time.Millisecond), "subj", id)
		r.Data = append([]byte(id), big...)
		recs = append(recs, r)
	}
	recs = append(recs, rec("a", "dupOfFirst", base, "", "big0000"))
	dups := mustAppend(t, s, recs...)
	if slices.Index(dups, true) != 20 || slices.Contains(dups[:20], true) {
		t.Fatalf("dups %v: want only the last", dups)
	}
	st, err := s.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Events["a"] != 20 || st.Commits < 3 {
		t.Fatalf("%d events in %d commits; want 20 in >= 3", st.Events["a"], st.Commits)
	}
	items, err := s.Outbox(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	if got := eventIDs(items); !slices.Equal(got, ids("big", 20)) {
		t.Fatalf("outbox order %v", got)
	}
}

func TestCloseDrainsPendingAppends(t *testing.T) {
	dir, key := t.TempDir(), newKey()
	s := openDir(t, storage.Config{Dir: dir, VaultKey: key, MaxGroup: 4})
	const n = 200
	var wg sync.WaitGroup
	results := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, results[i] = s.Append(context.Background(), []storage.Record{rec("a", fmt.Sprintf("%04d", i), base, "", "")})
		})
	}
	close(start)
	runtime.Gosched()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if _, err := s.Append(context.Background(), []storage.Record{rec("a", "late", base, "", "")}); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	s = openDir(t, storage.Config{Dir: dir, VaultKey: key})
	stored := map[string]bool{}
	for _, e := range allEvents(t, s, "a") {
		stored[strings.TrimPrefix(e, "event:a:")] = true
	}
	ok := 0
	for i, err := range results {
		id := fmt.Sprintf("%04d", i)
		switch {
		case err == nil:
			ok++
			if !stored[id] {
				t.Fatalf("acknowledged append %s lost", id)
			}
		case errors.Is(err, storage.ErrClosed):
			if stored[id] {
				t.Fatalf("rejected append %s was stored", id)
			}
		default:
			t.Fatalf("append %s: %v", id, err)
		}
	}
	t.Logf("%d of %d appends acknowledged before close", ok, n)
}

func TestAppendContextCancelled(t *testing.T) {
	s := storagetest.OpenConfig(t, storage.Config{InMemory: true})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Append(ctx, []storage.Record{rec("a", "1", base, "", "")}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	dir, key := t.TempDir(), newKey()
	s := openDir(t, storage.Config{Dir: dir, VaultKey: key})
	r := rec("a", "1", base, "subj", "m")
	r.Vault = []byte(`{"name":"Ada"}`)
	mustAppend(t, s, r, rec("b", "2", base, "subj", ""), rec("a", "3", base.Add(time.Second), "", ""))
	snapshot := func(s *storage.Store) string {
		st, err := s.Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		sub, err := s.SubjectEvents(context.Background(), "subj")
		if err != nil {
			t.Fatal(err)
		}
		tr, err := s.VaultTraits("subj", "a")
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%v|%d|%q|%q|%s|%v", st.Events, st.OutboxDepth, sub, allEvents(t, s, "a"), tr, allEvents(t, s, "b"))
	}
	before := snapshot(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDir(t, storage.Config{Dir: dir, VaultKey: key})
	if after := snapshot(s); after != before {
		t.Fatalf("after reopen:\n%s\nbefore:\n%s", after, before)
	}
	if d := mustAppend(t, s, rec("a", "4", base, "", "m")); !d[0] {
		t.Fatal("dedup lost on reopen")
	}
	// Another vault key cannot read the traits nor reuse the data key.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDir(t, storage.Config{Dir: dir, VaultKey: newKey()})
	if _, err := s.VaultTraits("subj", "a"); !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("traits under another key: %v, want ErrCorrupt", err)
	}
	r2 := rec("a", "5", base, "subj", "")
	r2.Vault = []byte(`{}`)
	if _, err := s.Append(context.Background(), []storage.Record{r2}); !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("append traits under another key: %v, want ErrCorrupt", err)
	}
}

// TestListEventsQuery: the time bounds seek (From inclusive, To exclusive,
// combined with a cursor), Keep filters, and MaxScan stops a rare filter
// with a cursor that resumes where it stopped.
func TestListEventsQuery(t *testing.T) {
	s := storagetest.OpenConfig(t, storage.Config{InMemory: true})
	var recs []storage.Record
	for i := range 20 { // one event a minute, ids e00…e19
		recs = append(recs, rec("a", fmt.Sprintf("e%02d", i), base.Add(time.Duration(i)*time.Minute), "", ""))
	}
	recs = append(recs, rec("ab", "x", base.Add(5*time.Minute), "", ""))
	mustAppend(t, s, recs...)
	at := func(min int) time.Time { return base.Add(time.Duration(min) * time.Minute) }
	names := func(evs [][]byte) string {
		var out []string
		for _, e := range evs {
			out = append(out, strings.TrimPrefix(string(e), "event:a:"))
		}
		return strings.Join(out, ",")
	}
	odd := func(b []byte) bool { return (b[len(b)-1]-'0')%2 == 1 }
	for _, c := range []struct {
		name     string
		q        storage.EventQuery
		want     string
		wantNext bool
	}{
		{"all, newest first", storage.EventQuery{Limit: 3}, "e19,e18,e17", true},
		{"from inclusive", storage.EventQuery{From: at(17)}, "e19,e18,e17", false},
		{"to exclusive", storage.EventQuery{To: at(3)}, "e02,e01,e00", false},
		{"to between two events", storage.EventQuery{To: at(3).Add(time.Second)}, "e03,e02,e01,e00", false},
		{"range", storage.EventQuery{From: at(4), To: at(7)}, "e06,e05,e04", false},
		{"range, limit", storage.EventQuery{From: at(4), To: at(7), Limit: 2}, "e06,e05", true},
		{"empty range", storage.EventQuery{From: at(7), To: at(7)}, "", false},
		{"keep", storage.EventQuery{From: at(10), Keep: odd}, "e19,e17,e15,e13,e11", false},
		{"keep, limit", storage.EventQuery{Keep: odd, Limit: 2}, "e19,e17", true},
		{"max scan", storage.EventQuery{Keep: odd, MaxScan: 5}, "e19,e17,e15", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			evs, next, err := s.ListEvents(context.Background(), "a", c.q)
			if err != nil {
				t.Fatal(err)
			}
			if got := names(evs); got != c.want || (next != "") != c.wantNext {
				t.Fatalf("got %q next %q, want %q (next: %v)", got, next, c.want, c.wantNext)
			}
		})
	}
	// Paging a filtered, bounded listing with its cursors visits every
	// match once, also when MaxScan stops pages early.
	var got []string
	q := storage.EventQuery{From: at(2), To: at(18), Keep: odd, MaxScan: 4, Limit: 3}
	for pages := 0; ; pages++ {
		evs, next, err := s.ListEvents(context.Background(), "a", q)
		if err != nil {
			t.Fatal(err)
		}
		if n := names(evs); n != "" {
			got = append(got, n)
		}
		if next == "" {
			break
		}
		if pages > 20 {
			t.Fatal("cursor does not advance")
		}
		q.Before = next
	}
	if all := strings.Join(got, ","); all != "e17,e15,e13,e11,e09,e07,e05,e03" {
		t.Fatalf("paged: %s", all)
	}
}

// TestStatsSizes: Stats reports the space Badger's files take now, not
// Badger's own size figures (refreshed once a minute, and always 0 with
// its metrics off as Vigie runs it), and not the apparent size of its
// sparse preallocated files (a 64 MiB value-log file is mapped at twice
// that).
func TestStatsSizes(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, storage.Config{Dir: dir, VaultKey: newKey()})
	var recs []storage.Record
	for i, id := range ids("big", 2000) {
		r := rec("a", id, base.Add(time.Duration(i)*time.Millisecond), "", "")
		r.Data = bytes.Repeat([]byte{byte(i)}, 2048) // in the value log
		recs = append(recs, r)
	}
	mustAppend(t, s, recs...)
	st, err := s.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	const written = 2000 * 2048
	if st.VLogBytes < written || st.VLogBytes > 4*written {
		t.Errorf("vlog_bytes = %d, want about the %d bytes written", st.VLogBytes, written)
	}
	if st.LSMBytes <= 0 || st.LSMBytes > 16<<20 {
		t.Errorf("lsm_bytes = %d, want the keys' few hundred KiB", st.LSMBytes)
	}
}
