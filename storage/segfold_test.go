package storage

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// TestSharedSegmentsFold: with SharedSegments a profile write only queues
// its changes; sizes, the recent log and the mark come from
// FoldSegmentChanges (invalid changes skipped), and an erasure queues
// exits naming nobody instead of subtracting at once.
func TestSharedSegmentsFold(t *testing.T) {
	for _, tc := range []struct {
		name  string
		erase func(ctx context.Context, s *Store) error
	}{
		{"shred", func(ctx context.Context, s *Store) error { return s.ShredSubject(ctx, "u1") }},
		{"erase", func(ctx context.Context, s *Store) error {
			_, err := s.EraseSubjects(ctx, "site", []string{"u1"})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s, err := Open(Config{Dir: t.TempDir(), VaultKey: bytes.Repeat([]byte{7}, 32), SharedSegments: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			for _, subj := range []string{"u1", "u2"} {
				observe(t, s, subj)
				if _, _, err := s.ApplySegment(ctx, SegmentOutcome{Plugin: "p", Site: "site", Subject: subj, EventID: "e-" + subj,
					Changes: []*vigiev1.SegmentChange{enter("hot"), enter("warm")}}); err != nil {
					t.Fatal(err)
				}
			}
			sizes := func() map[string]int64 {
				t.Helper()
				m, err := s.SegmentSizes(ctx, "site")
				if err != nil {
					t.Fatal(err)
				}
				return m
			}
			if m := sizes(); len(m) != 0 {
				t.Fatalf("sizes %v before any fold, want none (the stream's)", m)
			}
			if log, _ := s.RecentSegmentChanges(ctx, "site", 10); len(log) != 0 {
				t.Fatalf("%d logged changes before any fold", len(log))
			}
			pend, err := s.PendingChanges(ctx, 100)
			if err != nil || len(pend) != 4 {
				t.Fatalf("%d pending changes (%v), want 4", len(pend), err)
			}
			// As read from the stream, with two a fold skips.
			var read []*vigiev1.SegmentChange
			for _, pc := range pend {
				read = append(read, pc.Change)
			}
			read = append(read, &vigiev1.SegmentChange{Site: "site", Segment: "", Transition: vigiev1.Transition_TRANSITION_ENTERED},
				&vigiev1.SegmentChange{Site: "site", Segment: "hot"})
			if err := s.FoldSegmentChanges(ctx, read, SegmentMark{Epoch: 9, Seq: 6}); err != nil {
				t.Fatal(err)
			}
			if m := sizes(); m["hot"] != 2 || m["warm"] != 2 || len(m) != 2 {
				t.Fatalf("sizes %v after the fold, want hot and warm 2", m)
			}
			if log, _ := s.RecentSegmentChanges(ctx, "site", 10); len(log) != 4 || log[0].GetSubject() != "u2" {
				t.Fatalf("recent log %v, want the 4 changes, newest first", log)
			}
			if m, err := s.ReadSegmentMark(ctx); err != nil || m != (SegmentMark{Epoch: 9, Seq: 6}) {
				t.Fatalf("mark %+v, %v", m, err)
			}
			if err := s.AckPendingChanges(keysOf(pend)); err != nil {
				t.Fatal(err)
			}
			if err := tc.erase(ctx, s); err != nil {
				t.Fatal(err)
			}
			if m := sizes(); m["hot"] != 2 {
				t.Fatalf("sizes %v right after the erasure: the stream's exits do it", m)
			}
			pend, _ = s.PendingChanges(ctx, 100)
			var exits []*vigiev1.SegmentChange
			for _, pc := range pend {
				c := pc.Change
				if c.GetSubject() != "" || c.GetTransition() != vigiev1.Transition_TRANSITION_EXITED || !strings.HasPrefix(c.GetEventId(), "erased-") {
					t.Errorf("erasure queued %v, want an exit naming nobody", c)
				}
				exits = append(exits, c)
			}
			if len(exits) != 2 || exits[0].GetEventId() == exits[1].GetEventId() {
				t.Fatalf("erasure queued %v, want one exit of hot and one of warm, with distinct ids", exits)
			}
			if err := s.FoldSegmentChanges(ctx, exits, SegmentMark{Epoch: 9, Seq: 8}); err != nil {
				t.Fatal(err)
			}
			if m := sizes(); m["hot"] != 1 || m["warm"] != 1 {
				t.Fatalf("sizes %v after the erasure's exits, want 1 and 1", m)
			}
		})
	}
}

// keysOf returns the keys of pending changes.
func keysOf(pend []PendingChange) [][]byte {
	var out [][]byte
	for _, pc := range pend {
		out = append(out, pc.Key)
	}
	return out
}

// TestSegmentSnapshotSeeds: a snapshot gives the mark and every site's
// sizes; seeding another store replaces its sizes and mark with them,
// invalid names and non-positive sizes skipped.
func TestSegmentSnapshotSeeds(t *testing.T) {
	ctx := context.Background()
	open := func() *Store {
		s, err := Open(Config{Dir: t.TempDir(), VaultKey: bytes.Repeat([]byte{7}, 32), SharedSegments: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	a, b := open(), open()
	ch := func(site, seg string, tr vigiev1.Transition) *vigiev1.SegmentChange {
		return &vigiev1.SegmentChange{Site: site, Subject: "u", Segment: seg, Transition: tr}
	}
	in, out := vigiev1.Transition_TRANSITION_ENTERED, vigiev1.Transition_TRANSITION_EXITED
	if err := a.FoldSegmentChanges(ctx, []*vigiev1.SegmentChange{ch("s1", "hot", in), ch("s1", "hot", in), ch("s2", "cold", in), ch("s2", "cold", out)},
		SegmentMark{Epoch: 3, Seq: 40}); err != nil {
		t.Fatal(err)
	}
	mark, sizes, err := a.SegmentSnapshot(ctx)
	if err != nil || mark != (SegmentMark{Epoch: 3, Seq: 40}) || len(sizes) != 1 || sizes["s1"]["hot"] != 2 {
		t.Fatalf("snapshot %+v %v %v, want mark 3/40 and s1 hot 2 only", mark, sizes, err)
	}
	if err := b.FoldSegmentChanges(ctx, []*vigiev1.SegmentChange{ch("s3", "old", in)}, SegmentMark{Epoch: 3, Seq: 2}); err != nil {
		t.Fatal(err)
	}
	sizes["bad\x00site"] = map[string]int64{"x": 1}
	sizes["s1"]["neg"] = -1
	if err := b.SeedSegmentSizes(ctx, mark, sizes); err != nil {
		t.Fatal(err)
	}
	got, gotSizes, err := b.SegmentSnapshot(ctx)
	if err != nil || got != mark || len(gotSizes) != 1 || len(gotSizes["s1"]) != 1 || gotSizes["s1"]["hot"] != 2 {
		t.Fatalf("seeded store: %+v %v %v, want mark 3/40 and s1 hot 2 only", got, gotSizes, err)
	}
}
