package privacy

import (
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
)

// TestNextWaitsForNodesOnlyAtTheReceipt: the steps waiting for other
// nodes hold the receipt, not the steps after them.
func TestNextWaitsForNodesOnlyAtTheReceipt(t *testing.T) {
	steps := func(ss ...Step) *Request { return &Request{Steps: ss} }
	p := func(name string) Step { return Step{Name: name, Status: StatusPending} }
	d := func(name string) Step { return Step{Name: name, Status: StatusDone} }
	tests := []struct {
		name string
		r    *Request
		want string
	}{
		{"a node pending, a stream step after it", steps(d("resolve"), p("node:b"), p("stream:X"), p("receipt")), "stream:X"},
		{"a node pending, only the receipt left", steps(d("resolve"), p("node:b"), d("stream:X"), p("receipt")), ""},
		{"every node done", steps(d("resolve"), d("node:b"), Step{Name: "node:c", Status: StatusSkipped}, p("receipt")), "receipt"},
		{"no node step", steps(d("resolve"), p("collect"), p("receipt")), "collect"},
		{"over", steps(d("resolve"), d("receipt")), ""},
	}
	for _, tc := range tests {
		got := ""
		if st := tc.r.next(); st != nil {
			got = st.Name
		}
		if got != tc.want {
			t.Errorf("%s: next %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestSharedExpired: a request's cluster entries outlive its retention
// once its view says it completed before the cutoff; without a view, once
// its id (a ULID) was made before it.
func TestSharedExpired(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	s := &Service{cfg: Config{Retention: 24 * time.Hour}}
	id := func(at time.Time) string { return ulid.MustNew(ulid.Timestamp(at), ulid.DefaultEntropy()).String() }
	view := func(done string) []byte { return []byte(`{"status":"done","completed_at":` + done + `}`) }
	old, recent := now.Add(-25*time.Hour), now.Add(-23*time.Hour)
	tests := []struct {
		name string
		id   string
		view []byte
		want bool
	}{
		{"completed before the retention", id(old), view(`"` + old.Format(time.RFC3339) + `"`), true},
		{"completed within it", id(old), view(`"` + recent.Format(time.RFC3339) + `"`), false},
		{"not completed", id(old), []byte(`{"status":"running"}`), false},
		{"unreadable view", id(old), []byte(`{`), false},
		{"no view, made before the retention", id(old), nil, true},
		{"no view, made within it", id(recent), nil, false},
		{"no view, not a request id", "not-a-ulid", nil, false},
	}
	expired := s.sharedExpired(now)
	for _, tc := range tests {
		if got := expired(tc.id, tc.view); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
