package storage_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
)

// TestOutlook counts what ends within the horizon, per kind (events by
// the class EventClass names), with the time of the first: events by
// their TTL, profiles at the purge run after they are due.
func TestOutlook(t *testing.T) {
	ctx := context.Background()
	s := openDir(t, storage.Config{Dir: t.TempDir(), VaultKey: newKey(), ProfileTTL: 2 * 24 * time.Hour, PurgeInterval: 24 * time.Hour})
	now := time.Now()
	event := func(id string, ttl time.Duration, purposes ...string) storage.Record {
		r := rec("demo", id, now, "", "")
		r.TTL = ttl
		r.Data, _ = proto.Marshal(&vigiev1.Event{Id: id, Site: "demo", Type: "track", Purposes: purposes})
		return r
	}
	mustAppend(t, s,
		event("e1", 3*24*time.Hour, "marketing"),
		event("e2", 5*24*time.Hour, "marketing"),
		event("e3", 4*24*time.Hour, "analytics"),
		event("e4", 30*24*time.Hour, "analytics"), // beyond the horizon
	)
	for _, subj := range []string{"u1", "u2"} {
		ev := &vigiev1.Event{Id: "p-" + subj, Site: "demo", Subject: subj, Type: "track", Name: "x", TimestampMs: now.UnixMilli(),
			Mode: vigiev1.Mode_MODE_PSEUDONYMOUS, Purposes: []string{"analytics"}}
		if _, _, err := s.ObserveEvent(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	out, err := s.Outlook(ctx, storage.OutlookQuery{Now: now, EventClass: func(ev *vigiev1.Event) string { return ev.GetPurposes()[0] }})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]storage.Upcoming{}
	for _, u := range out {
		got[u.Kind+"/"+u.Class] = u
	}
	near := func(a, b time.Time) bool { d := a.Sub(b); return d > -5*time.Second && d < 5*time.Second }
	if u := got["events/marketing"]; u.Due != 2 || u.Ends != storage.EndsByTTL || !near(u.Next, now.Add(3*24*time.Hour)) {
		t.Errorf("marketing events %+v", u)
	}
	if u := got["events/analytics"]; u.Due != 1 || !near(u.Next, now.Add(4*24*time.Hour)) {
		t.Errorf("analytics events %+v", u)
	}
	// Profiles are due in 2 days (to the second); the purge runs daily
	// from Open, so the run that deletes them is the first after that.
	u := got["profiles/"]
	if u.Due != 2 || u.Ends != storage.EndsByPurge || u.Next.Before(now.Add(2*24*time.Hour)) ||
		u.Next.Sub(s.NextPurge())%(24*time.Hour) != 0 || u.Next.After(now.Add(3*24*time.Hour+time.Second)) {
		t.Errorf("profiles %+v, want 2 at the first daily run from %v after %v", u, s.NextPurge(), now.Add(2*24*time.Hour))
	}
	if u, ok := got["audit/"]; !ok || u.Due != 0 || !u.Next.IsZero() {
		t.Errorf("audit %+v (%v)", u, ok)
	}
	if s.NextPurge().IsZero() {
		t.Error("NextPurge is zero with PurgeInterval set")
	}
}

// TestNextPurgeStaysOnItsGrid: NextPurge is set as soon as Open returns,
// and the runs keep their phase (first + k × interval), so what the
// outlook computes from one reading of NextPurge agrees with a later one.
// On the code before, NextPurge could read zero right after Open, and each
// run was scheduled from its own end.
func TestNextPurgeStaysOnItsGrid(t *testing.T) {
	const every = 40 * time.Millisecond
	s := openDir(t, storage.Config{Dir: t.TempDir(), VaultKey: newKey(), PurgeInterval: every})
	first := s.NextPurge()
	if first.IsZero() {
		t.Fatal("NextPurge is zero right after Open")
	}
	seen := map[time.Time]bool{}
	for deadline := time.Now().Add(400 * time.Millisecond); time.Now().Before(deadline); time.Sleep(3 * time.Millisecond) {
		n := s.NextPurge()
		if d := n.Sub(first); d%every != 0 {
			t.Fatalf("NextPurge %v is %v after the first, not a multiple of %v", n, d, every)
		}
		seen[n] = true
	}
	if len(seen) < 3 {
		t.Fatalf("NextPurge took %d values in 400 ms with a %v interval", len(seen), every)
	}
}
