package storage_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
	"github.com/vigie-dev/vigie/storage/storagetest"
)

func TestAddSiteNeverReplaces(t *testing.T) {
	s := storagetest.Open(t)
	ctx := t.Context()
	if err := s.AddSite(ctx, "shop", []byte(`{"id":"shop","v":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.AddSite(ctx, "shop", []byte(`{"id":"shop","v":2}`)); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("second AddSite: %v, want ErrExists", err)
	}
	if err := s.AddSite(ctx, "blog", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "a\x00b"} {
		if err := s.AddSite(ctx, bad, []byte(`{}`)); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("AddSite(%q): %v, want ErrInvalidKey", bad, err)
		}
	}
	got, err := s.Sites(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || string(got["shop"]) != `{"id":"shop","v":1}` || string(got["blog"]) != `{}` {
		t.Fatalf("Sites: %q", got)
	}
}

func TestSegmentMembers(t *testing.T) {
	s := storagetest.Open(t)
	ctx := t.Context()
	enter := func(site, subject, seg, ev string, tr vigiev1.Transition) {
		t.Helper()
		e := &vigiev1.Event{Id: ev, Site: site, Subject: subject, Type: "track", Name: "Buy",
			TimestampMs: time.Now().UnixMilli(), Mode: vigiev1.Mode_MODE_PSEUDONYMOUS}
		if _, _, err := s.ObserveEvent(ctx, e); err != nil {
			t.Fatal(err)
		}
		res, err := s.ApplySegments(ctx, []storage.SegmentOutcome{{Plugin: "rules", Site: site, Subject: subject, EventID: ev,
			Changes: []*vigiev1.SegmentChange{{Segment: seg, Transition: tr}}}})
		if err != nil || res[0].Err != nil {
			t.Fatal(err, res[0].Err)
		}
	}
	enter("site", "u1", "vip", "e1", vigiev1.Transition_TRANSITION_ENTERED)
	enter("site", "u2", "vip", "e2", vigiev1.Transition_TRANSITION_ENTERED)
	enter("site", "u3", "other", "e3", vigiev1.Transition_TRANSITION_ENTERED)
	enter("site", "u2", "vip", "e4", vigiev1.Transition_TRANSITION_EXITED)
	enter("site2", "u4", "vip", "e5", vigiev1.Transition_TRANSITION_ENTERED)
	got, err := s.SegmentMembers(ctx, "site", "vip", 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"u1"}) {
		t.Fatalf("members of vip on site: %q, want [u1]", got)
	}
	if got, _ := s.SegmentMembers(ctx, "site", "other", 10, 0); !slices.Equal(got, []string{"u3"}) {
		t.Fatalf("members of other: %q", got)
	}
	// The scan bound: one profile read finds u1 only if it comes first.
	if got, _ := s.SegmentMembers(ctx, "site", "other", 10, 1); len(got) != 0 {
		t.Fatalf("a scan of one profile found %q", got)
	}
}
