package storage

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// TestPurgeIdleProfiles: a profile without an update for ProfileTTL is
// deleted by PurgeExpired with its segment exits recorded for publication
// and the segment sizes following, as for a consent withdrawal; a profile
// updated since stays; before the TTL nothing goes.
func TestPurgeIdleProfiles(t *testing.T) {
	ctx := context.Background()
	s, err := Open(Config{Dir: t.TempDir(), VaultKey: bytes.Repeat([]byte{3}, 32), ProfileTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	for _, subj := range []string{"idle", "busy"} {
		observe(t, s, subj)
		if _, _, err := s.ApplySegment(ctx, SegmentOutcome{Plugin: "seg", Site: "site", Subject: subj, EventID: "enter-" + subj,
			Changes: []*vigiev1.SegmentChange{{Site: "site", Subject: subj, Segment: "vip", Transition: vigiev1.Transition_TRANSITION_ENTERED}}}); err != nil {
			t.Fatal(err)
		}
	}
	pend, _ := s.PendingChanges(ctx, 100)
	_ = s.AckPendingChanges(pendingKeys(pend))
	if sizes, _ := s.SegmentSizes(ctx, "site"); sizes["vip"] != 2 {
		t.Fatalf("sizes %v", sizes)
	}
	// Before the TTL: nothing.
	if rep, err := s.PurgeExpired(ctx, time.Now().Add(50*time.Minute)); err != nil || rep[prefixProfile] != 0 {
		t.Fatalf("purge before the TTL: %v %v", rep, err)
	}
	// "busy" is updated in the future, as if an event came an hour later.
	s.cfg.ProfileTTL = 3 * time.Hour
	if _, _, err := s.ObserveEvent(ctx, pev("again", "busy", "track", "x", profBase.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	rep, err := s.PurgeExpired(ctx, time.Now().Add(61*time.Minute))
	if err != nil || rep[prefixProfile] != 1 {
		t.Fatalf("purge after the TTL: %v %v, want one profile", rep, err)
	}
	if _, err := s.Profile(ctx, "site", "idle"); err == nil {
		t.Fatal("the idle profile is still there")
	}
	if _, err := s.Profile(ctx, "site", "busy"); err != nil {
		t.Fatalf("the updated profile went: %v", err)
	}
	pend, _ = s.PendingChanges(ctx, 100)
	if got := changeStrings(pendingChanges(pend)); len(got) != 1 || got[0] != "site/idle:vip:EXITED@"+ReasonIdle {
		t.Fatalf("pending exits %v", got)
	}
	if sizes, _ := s.SegmentSizes(ctx, "site"); sizes["vip"] != 1 {
		t.Fatalf("sizes after the purge %v, want vip 1", sizes)
	}
}

func pendingKeys(ps []PendingChange) [][]byte {
	out := make([][]byte, len(ps))
	for i, p := range ps {
		out[i] = p.Key
	}
	return out
}

func pendingChanges(ps []PendingChange) []*vigiev1.SegmentChange {
	out := make([]*vigiev1.SegmentChange, len(ps))
	for i, p := range ps {
		out[i] = p.Change
	}
	return out
}
