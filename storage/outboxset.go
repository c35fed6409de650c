package storage

// seqSet is the set of outbox sequence numbers committed and not yet
// deleted: a bitmap from base (a multiple of 64) upwards. Sequences are
// assigned in order and mostly deleted in order, so the window stays about
// as wide as the outbox (one bit per entry: 125 KB for a million). It lets
// deleteOutbox keep Store.outboxLen exact without looking each
// acknowledged key up in Badger.
type seqSet struct {
	base  uint64
	words []uint64
}

// addRange adds the sequences lo..hi-1.
func (s *seqSet) addRange(lo, hi uint64) {
	for q := lo; q < hi; q++ {
		s.add(q)
	}
}

// add adds seq.
func (s *seqSet) add(seq uint64) {
	if len(s.words) == 0 {
		s.base = seq &^ 63
	}
	if seq < s.base { // older than the window: widen it downwards
		n := (s.base - seq&^63) / 64
		s.words = append(make([]uint64, n, int(n)+len(s.words)), s.words...)
		s.base = seq &^ 63
	}
	i := (seq - s.base) / 64
	for uint64(len(s.words)) <= i {
		s.words = append(s.words, 0)
	}
	s.words[i] |= 1 << (seq % 64)
}

// remove removes seq and reports whether it was in the set.
func (s *seqSet) remove(seq uint64) bool {
	if seq < s.base {
		return false
	}
	i := (seq - s.base) / 64
	if i >= uint64(len(s.words)) || s.words[i]&(1<<(seq%64)) == 0 {
		return false
	}
	s.words[i] &^= 1 << (seq % 64)
	for len(s.words) > 0 && s.words[0] == 0 {
		s.words = s.words[1:]
		s.base += 64
	}
	return true
}

// removeRange removes the sequences lo..hi-1.
func (s *seqSet) removeRange(lo, hi uint64) {
	for q := lo; q < hi; q++ {
		s.remove(q)
	}
}
