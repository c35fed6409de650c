package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
)

func mac(b byte) []byte { return bytes.Repeat([]byte{b}, storage.MACLen) }

func TestBlindIndexAndLinks(t *testing.T) {
	s := openDir(t, storage.Config{Dir: t.TempDir(), VaultKey: newKey()})
	ctx := context.Background()
	r := rec("a", "e1", base, "userP", "")
	r.Index = []storage.IndexEntry{{Kind: "email", MAC: mac(1)}, {Kind: "user_id", MAC: mac(2)}}
	r.Links = []string{"anonP"}
	r2 := rec("a", "e2", base, "otherP", "")
	r2.Index = []storage.IndexEntry{{Kind: "email", MAC: mac(1)}} // a shared address
	mustAppend(t, s, r, r2)

	got, err := s.BlindLookup(ctx, "a", storage.IndexEntry{Kind: "email", MAC: mac(1)})
	if err != nil || !slices.Equal(got, []string{"otherP", "userP"}) {
		t.Fatalf("email lookup = %v, %v", got, err)
	}
	if got, _ := s.BlindLookup(ctx, "b", storage.IndexEntry{Kind: "email", MAC: mac(1)}); len(got) != 0 {
		t.Fatalf("another site's index answered: %v", got)
	}
	if got, _ := s.BlindLookup(ctx, "a", storage.IndexEntry{Kind: "phone", MAC: mac(1)}); len(got) != 0 {
		t.Fatalf("another kind's index answered: %v", got)
	}
	for subj, want := range map[string]string{"userP": "anonP", "anonP": "userP"} {
		if got, err := s.SubjectLinks(ctx, "a", subj); err != nil || !slices.Equal(got, []string{want}) {
			t.Fatalf("links of %s = %v, %v", subj, got, err)
		}
	}
	if got, _ := s.SubjectIndex(ctx, "a", "userP"); len(got) != 2 {
		t.Fatalf("subject index = %v", got)
	}

	bad := []storage.Record{
		func() storage.Record { r := rec("a", "x1", base, "", ""); r.Index = r2.Index; return r }(),
		func() storage.Record {
			r := rec("a", "x2", base, "p", "")
			r.Index = []storage.IndexEntry{{Kind: "email", MAC: []byte("short")}}
			return r
		}(),
		func() storage.Record { r := rec("a", "x3", base, "p", ""); r.Links = []string{"a\x00b"}; return r }(),
	}
	for i, b := range bad {
		if _, err := s.Append(ctx, []storage.Record{b}); err == nil {
			t.Errorf("bad record %d accepted", i)
		}
	}
}

func TestEraseSubjects(t *testing.T) {
	dir, key := t.TempDir(), newKey()
	s := openDir(t, storage.Config{Dir: dir, VaultKey: key})
	ctx := context.Background()
	victims := []string{"victimUserPseudonym001", "victimAnonPseudonym002"}
	const bystander = "bystanderPseudonym0003"
	write := func(i int) {
		for j, subj := range append(slices.Clone(victims), bystander) {
			r := rec("a", fmt.Sprintf("ev%d-%03d", j, i), base.Add(time.Duration(i)*time.Minute), subj, "")
			r.Data = bytes.Repeat([]byte("body of "+subj+" "), 30) // in the value log
			if subj == victims[0] {
				r.Index = []storage.IndexEntry{{Kind: "email", MAC: mac(7)}}
				r.Links = []string{victims[1]}
				r.Vault = []byte(`{"email":"victim@example.org"}`)
			}
			mustAppend(t, s, r)
			ev := &vigiev1.Event{Id: r.ID, Site: "a", Type: "track", Name: "x", Subject: subj,
				Mode: vigiev1.Mode_MODE_PSEUDONYMOUS, TimestampMs: r.Time.UnixMilli(), Purposes: []string{"analytics", "marketing"}}
			if _, _, err := s.ObserveEvent(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range 5 {
		write(i)
	}
	for j, subj := range append(slices.Clone(victims), bystander) {
		if _, _, err := s.ApplySegment(ctx, storage.SegmentOutcome{Plugin: "seg", Site: "a", Subject: subj, EventID: fmt.Sprintf("ev%d-000", j),
			Changes: []*vigiev1.SegmentChange{{Site: "a", Subject: subj, Segment: "hot", Transition: vigiev1.Transition_TRANSITION_ENTERED}}}); err != nil {
			t.Fatal(err)
		}
		if err := s.PutConsent(ctx, "a", subj, storage.ConsentEntry{Granted: []string{"analytics"}, AtMs: base.UnixMilli()}); err != nil {
			t.Fatal(err)
		}
		if err := s.AddSyncHistory(ctx, "a", subj, storage.SyncRecord{Plugin: "crm", Kind: "identify"}, 0); err != nil {
			t.Fatal(err)
		}
	}
	// Older versions in SST files, newer ones in the memtable.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDir(t, storage.Config{Dir: dir, VaultKey: key})
	write(5)
	if h, _ := s.ConsentHistory(ctx, "a", victims[0]); len(h) != 1 {
		t.Fatalf("consent history before erasure: %v", h)
	}
	if sizes, _ := s.SegmentSizes(ctx, "a"); sizes["hot"] != 3 {
		t.Fatalf("segment size before erasure: %v", sizes)
	}

	rep, err := s.EraseSubjects(ctx, "a", victims)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Events != 12 || rep.SubjectIndex != 12 || rep.Profiles != 2 || rep.Segments != 2 || rep.Vault < 2 ||
		rep.Ledger != 2 || rep.History != 4 || rep.BlindIndex != 2 || rep.Links != 4 || rep.SegmentLog < 2 {
		t.Errorf("report %+v", rep)
	}
	if sizes, _ := s.SegmentSizes(ctx, "a"); sizes["hot"] != 1 {
		t.Errorf("segment size after erasure: %v", sizes)
	}
	if rep, err := s.EraseSubjects(ctx, "a", victims); err != nil || rep.Total() != 0 {
		t.Errorf("second erasure found %+v, %v", rep, err)
	}
	// Every version of every key: nothing names a victim, nor holds the MAC.
	for _, v := range victims {
		if err := s.DB().Flatten(1); err != nil {
			t.Fatal(err)
		}
		err := s.ScanAllVersions(func(k, val []byte) error {
			if bytes.Contains(k, []byte(v)) || bytes.Contains(val, []byte(v)) || bytes.Contains(k, mac(7)) {
				return fmt.Errorf("version of %q still names or indexes %s", k, v)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// The bystander keeps everything.
	if evs, _ := s.SubjectEvents(ctx, bystander); len(evs) != 6 {
		t.Errorf("bystander has %d events", len(evs))
	}
	if _, err := s.Profile(ctx, "a", bystander); err != nil {
		t.Errorf("bystander profile: %v", err)
	}
	if got, _ := s.BlindLookup(ctx, "a", storage.IndexEntry{Kind: "email", MAC: mac(7)}); len(got) != 0 {
		t.Errorf("blind index still answers %v", got)
	}
	if _, err := s.VaultTraits(victims[0], "a"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("vault after erasure: %v", err)
	}
	// The raw files: once the value log's GC has rewritten the files
	// written before (the one being written never is; a restart starts a
	// new one), no byte of the victims is left.
	needles := [][]byte{[]byte(victims[0]), []byte(victims[1]), []byte("victim@example.org"), mac(7)}
	if found := grepFiles(t, dir, needles[:2]); len(found) == 0 {
		t.Fatal("victims not in the raw value log before its GC: the raw check would prove nothing")
	}
	compact(t, s, dir, key)
	if found := grepFiles(t, dir, needles); len(found) > 0 {
		t.Fatalf("needles %v found in raw files after erasure and GC", found)
	}
}

// compact closes s, reopens dir, flattens the tree and runs the value-log
// GC until it has nothing left to rewrite, then closes it.
func compact(t *testing.T, s *storage.Store, dir string, key []byte) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := storage.Open(storage.Config{Dir: dir, VaultKey: key})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.DB().Flatten(1); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if s2.DB().RunValueLogGC(0.0001) != nil {
			break
		}
	}
}

func TestPrivacyRequestsAndSuppressions(t *testing.T) {
	s := openDir(t, storage.Config{Dir: t.TempDir(), VaultKey: newKey()})
	ctx := context.Background()
	msg := storage.Message{Topic: "vigie.privacy.a.erase", ID: "privacy:a:2:r1", Data: []byte("x")}
	if err := s.PutPrivacyRequest(ctx, "r1", []byte(`{"id":"r1"}`), msg); err != nil {
		t.Fatal(err)
	}
	if err := s.PutPrivacyRequest(ctx, "r2", []byte(`{"id":"r2"}`)); err != nil {
		t.Fatal(err)
	}
	if v, err := s.PrivacyRequest(ctx, "r1"); err != nil || string(v) != `{"id":"r1"}` {
		t.Fatalf("request = %s, %v", v, err)
	}
	if _, err := s.PrivacyRequest(ctx, "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("missing request: %v", err)
	}
	var seen []string
	_ = s.PrivacyRequests(ctx, func(id string, _ []byte) error { seen = append(seen, id); return nil })
	if !slices.Equal(seen, []string{"r1", "r2"}) {
		t.Fatalf("requests %v", seen)
	}
	out, _ := s.Outbox(ctx, 10)
	if len(out) != 1 || out[0].Topic != msg.Topic || out[0].MsgID != msg.ID {
		t.Fatalf("outbox %+v: the message is committed with the request", out)
	}
	if err := s.PutSuppressions(ctx, "a", []storage.IndexEntry{{Kind: "email", MAC: mac(3)}}, storage.Suppression{RequestID: "r1", AtMs: 5}); err != nil {
		t.Fatal(err)
	}
	n := 0
	_ = s.Suppressions(ctx, func(site string, e storage.IndexEntry, sup storage.Suppression) {
		n++
		if site != "a" || e.Kind != "email" || !bytes.Equal(e.MAC, mac(3)) || sup.RequestID != "r1" {
			t.Errorf("suppression %s %+v %+v", site, e, sup)
		}
	})
	if n != 1 {
		t.Fatalf("%d suppressions", n)
	}
}
