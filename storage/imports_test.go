package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/vigie-dev/vigie/storage"
	"github.com/vigie-dev/vigie/storage/storagetest"
)

// TestImportJobs: a job, its per-row errors (replaced per row, paginated
// in row order) and its idempotency record are stored with the job's TTL.
func TestImportJobs(t *testing.T) {
	s := storagetest.Open(t)
	ctx := context.Background()
	if _, err := s.ImportJob(ctx, "j1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("missing job: %v", err)
	}
	w := storage.ImportWrite{Job: []byte(`{"v":1}`), IdemKey: []byte("h1"), IdemValue: []byte("j1")}
	for r := uint64(1); r <= 5; r++ {
		w.Errors = append(w.Errors, storage.ImportRowError{Row: r * 10, Value: fmt.Appendf(nil, "e%d", r)})
	}
	if err := s.PutImportJob(ctx, "j1", w); err != nil {
		t.Fatal(err)
	}
	// Written again (a batch after a restart): replaced, not added.
	w.Job = []byte(`{"v":2}`)
	w.Errors[0].Value = []byte("again")
	if err := s.PutImportJob(ctx, "j1", w); err != nil {
		t.Fatal(err)
	}
	if err := s.PutImportJob(ctx, "j2", storage.ImportWrite{Job: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if v, err := s.ImportJob(ctx, "j1"); err != nil || string(v) != `{"v":2}` {
		t.Fatalf("job: %s %v", v, err)
	}
	var ids []string
	if err := s.ImportJobs(ctx, func(id string, _ []byte) error { ids = append(ids, id); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ids) != "[j1 j2]" {
		t.Fatalf("jobs: %v", ids)
	}
	page, err := s.ImportErrors(ctx, "j1", 0, 2)
	if err != nil || len(page) != 2 || page[0].Row != 10 || string(page[0].Value) != "again" || page[1].Row != 20 {
		t.Fatalf("first page: %+v %v", page, err)
	}
	page, err = s.ImportErrors(ctx, "j1", page[1].Row, 10)
	if err != nil || len(page) != 3 || page[0].Row != 30 || page[2].Row != 50 {
		t.Fatalf("second page: %+v %v", page, err)
	}
	if page, _ := s.ImportErrors(ctx, "j2", 0, 10); len(page) != 0 {
		t.Fatalf("j2 has j1's errors: %+v", page)
	}
	if v, err := s.ImportIdempotency(ctx, []byte("h1")); err != nil || string(v) != "j1" {
		t.Fatalf("idempotency: %s %v", v, err)
	}
	// Every key expires within ImportJobTTL.
	max := uint64(time.Now().Add(storage.ImportJobTTL + time.Minute).Unix())
	n := 0
	err = s.DB().View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if !bytes.HasPrefix(k, []byte("i")) {
				continue
			}
			n++
			if e := it.Item().ExpiresAt(); e == 0 || e > max {
				t.Errorf("%q expires at %d", k, e)
			}
		}
		return nil
	})
	if err != nil || n != 8 {
		t.Fatalf("%d import keys, %v", n, err)
	}
	for _, bad := range []storage.ImportWrite{{}, {Job: []byte("x"), Errors: []storage.ImportRowError{{Row: 0}}}} {
		if err := s.PutImportJob(ctx, "j3", bad); !errors.Is(err, storage.ErrInvalidRecord) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
	if err := s.PutImportJob(ctx, "a\x00b", w); !errors.Is(err, storage.ErrInvalidKey) {
		t.Errorf("NUL id: %v", err)
	}
}

// TestKeepDedup: a record with KeepDedup keeps its dedup key as long as
// itself, not the dedup window; one without keeps it the window.
func TestKeepDedup(t *testing.T) {
	s := storagetest.OpenConfig(t, storage.Config{DedupWindow: time.Hour})
	ttl := 200 * 24 * time.Hour
	kept := rec("s1", "01A", base, "u1", "import:k")
	kept.KeepDedup, kept.TTL = true, ttl
	plain := rec("s1", "01B", base, "u1", "plain")
	plain.TTL = ttl
	mustAppend(t, s, kept, plain)
	exp := map[string]uint64{}
	err := s.DB().View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("d/")})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			exp[string(k[bytes.IndexByte(k, 0)+1:])] = it.Item().ExpiresAt()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	near := func(e uint64, d time.Duration) bool {
		want := now.Add(d).Unix()
		return int64(e) > want-60 && int64(e) < want+60
	}
	if !near(exp["import:k"], ttl) {
		t.Errorf("KeepDedup key expires %v, want about %v", time.Unix(int64(exp["import:k"]), 0), now.Add(ttl))
	}
	if !near(exp["plain"], time.Hour) {
		t.Errorf("plain key expires %v, want about %v", time.Unix(int64(exp["plain"]), 0), now.Add(time.Hour))
	}
	if dups := mustAppend(t, s, kept); !dups[0] {
		t.Error("the same import key again is not a duplicate")
	}
}

// TestApplySegmentCreatePurposes: attributes with CreatePurposes create a
// missing profile (purposes, first and last seen at AtMs); without, a
// missing profile is ErrNotFound.
func TestApplySegmentCreatePurposes(t *testing.T) {
	s := storagetest.Open(t)
	ctx := context.Background()
	o := storage.SegmentOutcome{Plugin: "import:attributes", Site: "s1", Subject: "u1", EventID: "r1",
		Attributes: []byte(`{"score":7}`), AtMs: base.UnixMilli()}
	if _, _, err := s.ApplySegment(ctx, o); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("without CreatePurposes: %v", err)
	}
	o.CreatePurposes = []string{"marketing"}
	if _, _, err := s.ApplySegment(ctx, o); err != nil {
		t.Fatal(err)
	}
	p, err := s.Profile(ctx, "s1", "u1")
	if err != nil {
		t.Fatal(err)
	}
	if string(p.Attributes) != `{"score":7}` || fmt.Sprint(p.Purposes) != "[marketing]" ||
		p.FirstSeenMs != base.UnixMilli() || p.LastSeenMs != base.UnixMilli() {
		t.Fatalf("created profile: %+v", p)
	}
	// An existing profile is patched, not replaced.
	o.EventID, o.Attributes, o.AtMs = "r2", []byte(`{"tier":"gold"}`), base.Add(time.Hour).UnixMilli()
	if _, _, err := s.ApplySegment(ctx, o); err != nil {
		t.Fatal(err)
	}
	p, _ = s.Profile(ctx, "s1", "u1")
	if string(p.Attributes) != `{"score":7,"tier":"gold"}` || p.FirstSeenMs != base.UnixMilli() {
		t.Fatalf("patched profile: %+v %s", p, p.Attributes)
	}
}

// TestIndexKeepsLongerExpiry: a blind-index entry or link written again by
// a shorter-lived event (an import of an old row for a person the site
// identified) keeps the longer expiry, so it finds every event it indexes;
// a longer-lived one extends it.
func TestIndexKeepsLongerExpiry(t *testing.T) {
	s := storagetest.Open(t)
	mac := bytes.Repeat([]byte{9}, storage.MACLen)
	long := rec("s1", "01A", base, "u1", "")
	long.TTL = 300 * 24 * time.Hour
	long.Index = []storage.IndexEntry{{Kind: "email", MAC: mac}}
	long.Links = []string{"a1"}
	short := long
	short.ID, short.TTL = "01B", 10*24*time.Hour
	mustAppend(t, s, long)
	mustAppend(t, s, short)
	exps := func() map[string]uint64 {
		out := map[string]uint64{}
		_ = s.DB().View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.DefaultIteratorOptions)
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				k := string(it.Item().Key())
				for _, p := range []string{"bi/", "sb/", "sl/"} {
					if strings.HasPrefix(k, p) {
						out[k] = it.Item().ExpiresAt()
					}
				}
			}
			return nil
		})
		return out
	}
	want := uint64(time.Now().Add(long.TTL).Unix())
	got := exps()
	if len(got) != 4 {
		t.Fatalf("index keys: %d", len(got))
	}
	for k, e := range got {
		if e+60 < want {
			t.Errorf("%q expires %v, want about %v", k, time.Unix(int64(e), 0), time.Unix(int64(want), 0))
		}
	}
	longer := long
	longer.ID, longer.TTL = "01C", 600*24*time.Hour
	mustAppend(t, s, longer)
	want = uint64(time.Now().Add(longer.TTL).Unix())
	for k, e := range exps() {
		if e+60 < want {
			t.Errorf("after a longer event %q expires %v, want about %v", k, time.Unix(int64(e), 0), time.Unix(int64(want), 0))
		}
	}
}
