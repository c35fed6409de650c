package rollup

import (
	"time"

	"github.com/axiomhq/hyperloglog"
)

// The live count covers liveSlots slots of liveSlot: the current one and
// the 29 before it, between 4 min 50 s and 5 min.
const (
	liveSlots = 30
	liveSlot  = 10 * time.Second
)

// liveRing counts the events received in the last five minutes, by
// reception time, in memory only.
type liveRing struct {
	slots [liveSlots]liveSlotState
}

type liveSlotState struct {
	idx    int64 // slot number since the epoch; 0: unused
	events uint64
	hll    *hyperloglog.Sketch
}

// add counts an event received at rxMs (subject hash h when hasSubj).
func (r *liveRing) add(rxMs int64, h uint64, hasSubj bool, now time.Time) {
	if rxMs <= 0 {
		return
	}
	idx := rxMs / liveSlot.Milliseconds()
	cur := now.UnixMilli() / liveSlot.Milliseconds()
	if idx > cur && idx <= cur+1 {
		idx = cur // a clock a little ahead
	}
	if idx > cur || idx <= cur-liveSlots {
		return
	}
	s := &r.slots[idx%liveSlots]
	if s.idx != idx {
		s.idx, s.events = idx, 0
		if s.hll != nil {
			s.hll.Reset()
		}
	}
	s.events++
	if hasSubj {
		if s.hll == nil {
			s.hll, _ = hyperloglog.NewSketch(hllPrecision, true)
		}
		s.hll.InsertHash(h)
	}
}

// sum returns the events and the estimated identified visitors of the
// window ending at now, and the window's start.
func (r *liveRing) sum(now time.Time) (events, visitors uint64, since time.Time) {
	cur := now.UnixMilli() / liveSlot.Milliseconds()
	var hll *hyperloglog.Sketch
	for i := range r.slots {
		s := &r.slots[i]
		if s.idx <= cur-liveSlots || s.idx > cur {
			continue
		}
		events += s.events
		if s.hll != nil {
			if hll == nil {
				hll, _ = hyperloglog.NewSketch(hllPrecision, true)
			}
			_ = hll.Merge(s.hll)
		}
	}
	if hll != nil {
		visitors = hll.Estimate()
	}
	return events, visitors, time.UnixMilli((cur - liveSlots + 1) * liveSlot.Milliseconds()).UTC()
}
