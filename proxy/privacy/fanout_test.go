package privacy

import "testing"

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
