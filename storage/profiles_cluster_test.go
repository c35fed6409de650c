package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// openPortable opens a store whose profiles carry their markers.
func openPortable(t *testing.T, deleted *[]string) *Store {
	t.Helper()
	s, err := Open(Config{Dir: t.TempDir(), VaultKey: bytes.Repeat([]byte{7}, 32), PortableProfiles: true,
		OnProfileDelete: func(_ context.Context, site, subject, _ string) { *deleted = append(*deleted, site+"/"+subject) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestPortableProfileMovesWithItsMarkers: a profile copied from node A to
// node B (ProfileValue, PutProfileValue) counts an event delivered again
// on B once, and an outcome applied again there is a duplicate; B's own
// older copy is replaced, and DropProfiles forgets it.
func TestPortableProfileMovesWithItsMarkers(t *testing.T) {
	ctx := context.Background()
	var deleted []string
	a, b := openPortable(t, &deleted), openPortable(t, &deleted)
	at := time.Now()
	e1, e2, e3 := pev("e1", "s1", "track", "x", at), pev("e2", "s1", "track", "x", at), pev("e3", "s1", "track", "x", at)
	// B once held an older copy (it owned the partition before).
	if _, err := b.ObserveEvents(ctx, []*vigiev1.Event{pev("e0", "s1", "track", "x", at)}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ObserveEvents(ctx, []*vigiev1.Event{e1, e2}); err != nil {
		t.Fatal(err)
	}
	o := SegmentOutcome{Plugin: "segments", Site: "site", Subject: "s1", EventID: "e2", ScoreDelta: 5}
	if _, err := a.ApplySegments(ctx, []SegmentOutcome{o}); err != nil {
		t.Fatal(err)
	}
	v, err := a.ProfileValue(ctx, "site", "s1")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.PutProfileValue(ctx, "site", "s1", v); err != nil {
		t.Fatal(err)
	}
	// e2 comes again (it was not acknowledged before the move), then e3.
	res, err := b.ObserveEvents(ctx, []*vigiev1.Event{e2, e3})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Observed || !res[1].Observed {
		t.Fatalf("observed e2 %v (want false: it travelled), e3 %v (want true)", res[0].Observed, res[1].Observed)
	}
	ap, err := b.ApplySegments(ctx, []SegmentOutcome{o})
	if err != nil || !ap[0].Dup {
		t.Fatalf("outcome applied again on B: dup %v, err %v", ap[0].Dup, err)
	}
	p, err := b.Profile(ctx, "site", "s1")
	if err != nil {
		t.Fatal(err)
	}
	if n := p.Count("track", "*", time.Hour, at.UnixMilli()); n != 3 || p.Score != 5 {
		t.Fatalf("profile on B counts %d events with score %d, want 3 and 5", n, p.Score)
	}
	// The markers survive the binary form and stay bounded.
	for i := range MaxPortableMarkers + 10 {
		if _, err := b.ObserveEvents(ctx, []*vigiev1.Event{pev(fmt.Sprint("m", i), "s1", "track", "x", at)}); err != nil {
			t.Fatal(err)
		}
	}
	v, _ = b.ProfileValue(ctx, "site", "s1")
	q, err := DecodeProfileValue(v, "site", "s1")
	if err != nil || len(q.Events) != MaxPortableMarkers || len(q.Outcomes) != 1 {
		t.Fatalf("decoded markers: %d events, %d outcomes, err %v", len(q.Events), len(q.Outcomes), err)
	}
	// DropProfiles forgets the local copy without segment changes.
	n, err := b.DropProfiles(ctx, func(site, subject string) bool { return subject == "s1" })
	if err != nil || n != 1 {
		t.Fatalf("dropped %d, err %v", n, err)
	}
	if _, err := b.Profile(ctx, "site", "s1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("profile after drop: %v", err)
	}
	if len(deleted) != 0 {
		t.Fatalf("dropping a cached copy reported deletions %v", deleted)
	}
	// A deletion is reported, with or without a local copy.
	if _, err := a.DeleteProfile(ctx, "site", "s1", "consent-withdrawn"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.DeleteProfile(ctx, "site", "s9", "consent-withdrawn"); err != nil {
		t.Fatal(err)
	}
	if want := "[site/s1 site/s9]"; fmt.Sprint(deleted) != want {
		t.Fatalf("deletions reported %v, want %s", deleted, want)
	}
}

// TestSingleNodeProfilesKeepNoMarkers: without PortableProfiles the stored
// form carries no marker (single-node profiles are unchanged).
func TestSingleNodeProfilesKeepNoMarkers(t *testing.T) {
	ctx := context.Background()
	s := openProfiles(t, t.TempDir())
	if _, err := s.ObserveEvents(ctx, []*vigiev1.Event{pev("e1", "s1", "track", "x", time.Now())}); err != nil {
		t.Fatal(err)
	}
	v, err := s.ProfileValue(ctx, "site", "s1")
	if err != nil {
		t.Fatal(err)
	}
	p, err := DecodeProfileValue(v, "site", "s1")
	if err != nil || len(p.Events) != 0 {
		t.Fatalf("single-node profile keeps markers %v (err %v)", p.Events, err)
	}
}

// TestOnProfileDeleteMayWriteToTheStore: OnProfileDelete runs with no
// lock of the store held, whichever deletion calls it, so it may commit
// to the outbox (cluster mode's shared copy delete). EraseSubjects and
// ShredSubject called it under their exclusive write lock: a deadlock.
func TestOnProfileDeleteMayWriteToTheStore(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		delete func(s *Store) error
	}{
		{"DeleteProfile", func(s *Store) error { _, err := s.DeleteProfile(ctx, "site", "s1", "consent-withdrawn"); return err }},
		{"DeleteProfiles", func(s *Store) error {
			_, err := s.DeleteProfiles(ctx, []ProfileRef{{"site", "s1"}, {"site", "s1"}}, "consent-withdrawn")
			return err
		}},
		{"EraseSubjects", func(s *Store) error { _, err := s.EraseSubjects(ctx, "site", []string{"s1"}); return err }},
		{"ShredSubject", func(s *Store) error { return s.ShredSubject(ctx, "s1") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s *Store
			calls := 0
			s, err := Open(Config{Dir: t.TempDir(), VaultKey: bytes.Repeat([]byte{7}, 32), PortableProfiles: true,
				OnProfileDelete: func(ctx context.Context, _, subject, _ string) {
					calls++
					if err := s.Enqueue(ctx, Message{Topic: "$KV.VIGIE_PROFILES.0.site." + subject, ID: "del-" + subject, KVDelete: true}); err != nil {
						t.Errorf("enqueue from OnProfileDelete: %v", err)
					}
				}})
			if err != nil {
				t.Fatal(err)
			}
			stuck := false
			t.Cleanup(func() {
				if !stuck { // a deadlocked store would never close
					_ = s.Close()
				}
			})
			if _, err := s.ObserveEvents(ctx, []*vigiev1.Event{pev("e1", "s1", "track", "x", time.Now())}); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- tc.delete(s) }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				stuck = true
				t.Fatal("deadlock: the deletion did not return")
			}
			if calls != 1 || s.OutboxLen() != 1 {
				t.Fatalf("OnProfileDelete called %d times, outbox %d; want 1 and 1", calls, s.OutboxLen())
			}
		})
	}
}

// TestObserveEventsForReportsTheOutcomesApplied: ObserveEventsFor says,
// for an event observed before, whether the segmenter's own outcome for
// it was applied, with the markers of a single node (Badger keys) and of
// a portable profile (inside the profile, so that it travels with it to
// the partition's next owner); never for a first delivery, nor for
// another segmenter's outcome.
func TestObserveEventsForReportsTheOutcomesApplied(t *testing.T) {
	ctx := context.Background()
	for _, portable := range []bool{false, true} {
		t.Run(fmt.Sprintf("portable=%v", portable), func(t *testing.T) {
			s, err := Open(Config{Dir: t.TempDir(), VaultKey: bytes.Repeat([]byte{7}, 32), PortableProfiles: portable})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			at := time.Now()
			e1, e2 := pev("e1", "s1", "track", "x", at), pev("e2", "s1", "track", "x", at)
			applied := func(plugin string, evs ...*vigiev1.Event) []bool {
				t.Helper()
				res, err := s.ObserveEventsFor(ctx, plugin, evs)
				if err != nil {
					t.Fatal(err)
				}
				var out []bool
				for _, r := range res {
					if r.Err != nil {
						t.Fatal(r.Err)
					}
					out = append(out, r.Applied)
				}
				return out
			}
			if got := applied("response", e1, e2); got[0] || got[1] {
				t.Fatalf("first delivery: applied %v, want none", got)
			}
			if _, err := s.ApplySegments(ctx, []SegmentOutcome{{Plugin: "response", Site: "site", Subject: "s1", EventID: "e1"}}); err != nil {
				t.Fatal(err)
			}
			if got := applied("response", e1, e2); !got[0] || got[1] {
				t.Fatalf("again after e1's outcome: applied %v, want e1 only", got)
			}
			if got := applied("segments", e1); got[0] {
				t.Fatal("another segmenter's delivery was taken as decided")
			}
			if got := applied("", e1); got[0] {
				t.Fatal("ObserveEvents (no segmenter) reported an outcome")
			}
		})
	}
}
