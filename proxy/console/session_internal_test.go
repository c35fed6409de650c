package console

import (
	"fmt"
	"testing"
	"time"
)

func TestSessionLifetimes(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	s := newSessions(12*time.Hour, 7*24*time.Hour, 3, clock)
	v, _ := s.create("t1")
	for _, tc := range []struct {
		after time.Duration
		alive bool
	}{
		{11 * time.Hour, true}, // slides the idle expiry
		{11 * time.Hour, true},
		{12*time.Hour + time.Second, false}, // idle too long
	} {
		now = now.Add(tc.after)
		if _, ok := s.lookup(v); ok != tc.alive {
			t.Fatalf("after %s more: alive %v, want %v", tc.after, ok, tc.alive)
		}
	}
	// Used every 11 hours, a session still ends 7 days after sign-in.
	v, _ = s.create("t1")
	for i := 0; i < 15; i++ {
		now = now.Add(11 * time.Hour)
		_, ok := s.lookup(v)
		if want := time.Duration(i+1)*11*time.Hour <= 7*24*time.Hour; ok != want {
			t.Fatalf("after %d×11h: alive %v, want %v", i+1, ok, want)
		}
		if !ok {
			break
		}
	}
	// At most 3 live: the least recently used goes.
	var vs []string
	for i := range 4 {
		v, _ := s.create(fmt.Sprint("t", i))
		vs = append(vs, v)
	}
	if _, ok := s.lookup(vs[0]); ok || s.len() != 3 {
		t.Fatalf("oldest of 4 sessions kept (len %d)", s.len())
	}
	s.removeToken("t3")
	if _, ok := s.lookup(vs[3]); ok {
		t.Fatal("removeToken left the token's session")
	}
	if _, ok := s.lookup(""); ok {
		t.Fatal("empty cookie value found a session")
	}
}

func TestDecisionLogRing(t *testing.T) {
	l := NewDecisionLog(3)
	for i := range 5 {
		l.Add("s", Decision{Kind: KindStored, EventID: fmt.Sprint("e", i), Reason: "r"})
	}
	l.Add(NoSite, Decision{Kind: KindRejected, Reason: "write_key", Count: 2})
	got := l.Recent("s")
	if len(got) != 3 || got[0].EventID != "e4" || got[2].EventID != "e2" {
		t.Fatalf("ring: %+v", got)
	}
	l.Mark("s", "e3", KindDuplicate, "messageId already stored")
	l.Mark("s", "e0", KindFailed, "") // fell out of the ring: nothing to mark
	if got := l.Recent("s"); got[1].Kind != KindDuplicate || got[1].Reason != "messageId already stored" {
		t.Fatalf("mark: %+v", got[1])
	}
	sum := Summary(append(l.Recent("s"), l.Recent(NoSite)...))
	want := []ReasonCount{{Kind: KindRejected, Reason: "write_key", Count: 2}, {Kind: KindStored, Reason: "r", Count: 2}, {Kind: KindDuplicate, Reason: "messageId already stored", Count: 1}}
	if fmt.Sprint(sum) != fmt.Sprint(want) {
		t.Fatalf("summary %+v, want %+v", sum, want)
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/console/live?site=a": "/console/live?site=a",
		"":                     "/console/",
		"https://evil.example": "/console/",
		"//evil.example":       "/console/",
		"/console/\\evil":      "/console/",
		"/admin/v1/events":     "/console/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}
