package storage

import (
	"slices"
	"testing"
)

// TestSeqSet checks the pending-sequence set that keeps the outbox counter
// exact: membership after adds and removes in and out of order, a removal
// reported once, and adds below the window.
func TestSeqSet(t *testing.T) {
	members := func(s *seqSet) []uint64 {
		var out []uint64
		for i, w := range s.words {
			for b := range uint64(64) {
				if w&(1<<b) != 0 {
					out = append(out, s.base+uint64(i)*64+b)
				}
			}
		}
		return out
	}
	tests := []struct {
		name     string
		add      [][2]uint64 // ranges lo..hi-1
		remove   []uint64
		removed  []bool // remove's answers
		want     []uint64
		maxWords int
	}{
		{name: "empty", want: nil},
		{name: "in order", add: [][2]uint64{{5, 10}}, remove: []uint64{5, 6}, removed: []bool{true, true}, want: []uint64{7, 8, 9}, maxWords: 1},
		{name: "twice", add: [][2]uint64{{0, 3}}, remove: []uint64{1, 1, 7}, removed: []bool{true, false, false}, want: []uint64{0, 2}, maxWords: 1},
		{name: "window slides", add: [][2]uint64{{0, 200}}, remove: seqs(0, 190), want: seqs(190, 200), maxWords: 2},
		{name: "old one kept", add: [][2]uint64{{0, 300}}, remove: seqs(1, 300), want: []uint64{0}, maxWords: 5},
		{name: "add below window", add: [][2]uint64{{1000, 1002}, {3, 4}}, remove: []uint64{1000, 2}, removed: []bool{true, false}, want: []uint64{3, 1001}, maxWords: 16},
		{name: "out of order", add: [][2]uint64{{60, 70}}, remove: []uint64{69, 60, 64}, removed: []bool{true, true, true}, want: []uint64{61, 62, 63, 65, 66, 67, 68}, maxWords: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s seqSet
			for _, r := range tt.add {
				s.addRange(r[0], r[1])
			}
			for i, q := range tt.remove {
				got := s.remove(q)
				if tt.removed != nil && got != tt.removed[i] {
					t.Errorf("remove(%d) = %v, want %v", q, got, tt.removed[i])
				}
			}
			if got := members(&s); !slices.Equal(got, tt.want) {
				t.Errorf("members %v, want %v", got, tt.want)
			}
			if tt.maxWords > 0 && len(s.words) > tt.maxWords {
				t.Errorf("%d words, want at most %d", len(s.words), tt.maxWords)
			}
		})
	}
}

// seqs returns lo..hi-1.
func seqs(lo, hi uint64) []uint64 {
	var out []uint64
	for q := lo; q < hi; q++ {
		out = append(out, q)
	}
	return out
}
