package loadtest

import (
	"context"
	"fmt"
	"io"
	"time"
)

// samplesPerMinute is how many soak samples (one every 10 s) make a minute.
const samplesPerMinute = 6

// soakSample is the state of the server at one moment of a soak.
type soakSample struct {
	at     time.Duration // since the soak started
	events uint64        // events answered 2xx so far
	st     serverStats
}

// segmentHandled is how many of the events answered 2xx the segment stage
// has handled and acknowledged: every event goes through the outbox, the
// enrich stage and the segment stage's consumer, so what is in none of
// them has passed (the segmenter's own Processed counts only the events
// it profiles).
func (x soakSample) segmentHandled() uint64 {
	inFlight := uint64(max(x.st.Outbox, 0)) + x.st.EnrichLag + x.st.SegmentLag
	if inFlight >= x.events {
		return 0
	}
	return x.events - inFlight
}

// soakReport is what a soak run (--soak) measured.
type soakReport struct {
	// MinuteEPS is the ingestion rate (events answered 2xx per second) of
	// each whole minute; SegmentMinuteEPS the segment stage's rate (events
	// it handled and acknowledged, profiled or not) and
	// SegmentLagByMinute its lag at the end of each minute.
	MinuteEPS          []float64 `json:"minute_eps"`
	SegmentMinuteEPS   []float64 `json:"segment_minute_eps"`
	SegmentLagByMinute []uint64  `json:"segment_lag_by_minute"`
	AnonMBByMinute     []float64 `json:"anon_mb_by_minute"`
	// FirstMinuteEPS and LastMinuteEPS are the rates of the first and the
	// last 60 s of the load; DecayRatio is last / first.
	FirstMinuteEPS float64 `json:"first_minute_eps"`
	LastMinuteEPS  float64 `json:"last_minute_eps"`
	MinMinuteEPS   float64 `json:"min_minute_eps"`
	DecayRatio     float64 `json:"decay_ratio"`
	// MaxSegmentLag is the largest lag of the segment stage seen during
	// the load, and MaxSegmentLagSeconds the same in seconds of the
	// average ingestion rate.
	MaxSegmentLag        uint64  `json:"max_segment_lag"`
	MaxSegmentLagSeconds float64 `json:"max_segment_lag_seconds"`
	MaxEnrichLag         uint64  `json:"max_enrich_lag"`
	// MaxStageLag is the largest backlog of the segment stage counted from
	// ingestion: events published but not yet segmented (the enrich
	// consumer's lag plus the segment consumer's), and MaxStageLagSeconds
	// the same in seconds of the average ingestion rate: the figure the
	// "plugins keep up" target bounds.
	MaxStageLag        uint64  `json:"max_stage_lag"`
	MaxStageLagSeconds float64 `json:"max_stage_lag_seconds"`
	// SegmentCatchUpMS is how long the stages took, after the load, to
	// handle what they had not yet.
	SegmentCatchUpMS float64 `json:"segment_catch_up_ms"`
	MaxOutbox        int64   `json:"max_outbox"`
	// Anonymous memory of the server process (of both in one process
	// without --external): first sample, last, largest.
	FirstAnonMB float64 `json:"first_anon_mb"`
	LastAnonMB  float64 `json:"last_anon_mb"`
	MaxAnonMB   float64 `json:"max_anon_mb"`
	PeakRSSMB   float64 `json:"peak_rss_mb"`
	AvgEPS      float64 `json:"avg_eps"`

	samples []soakSample
}

// soakSampler samples the server every period during a soak.
type soakSampler struct {
	stopc chan struct{}
	done  chan *soakReport
}

// startSoak starts sampling be every period, printing a line each time.
func startSoak(ctx context.Context, out io.Writer, be backend, every time.Duration, events func() uint64) *soakSampler {
	s := &soakSampler{stopc: make(chan struct{}), done: make(chan *soakReport, 1)}
	start := time.Now()
	go func() {
		r := &soakReport{samples: []soakSample{{}}}
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-s.stopc:
				r.finish()
				s.done <- r
				return
			case <-t.C:
			}
			st, err := be.stats(ctx)
			if err != nil {
				fmt.Fprintf(out, "  soak: reading the server's state: %v\n", err)
				continue
			}
			cur := soakSample{at: time.Since(start), events: events(), st: st}
			prev := r.samples[len(r.samples)-1]
			r.samples = append(r.samples, cur)
			dt := (cur.at - prev.at).Seconds()
			fmt.Fprintf(out, "  soak %6s %9d events %7.0f/s  outbox %6d  lag enrich %7d segment %8d (segment %7.0f/s)  anon %6.1f MB  file %7.1f MB  heap %6.1f MB\n",
				cur.at.Round(time.Second), cur.events, float64(cur.events-prev.events)/dt, st.Outbox, st.EnrichLag, st.SegmentLag,
				(float64(cur.segmentHandled())-float64(prev.segmentHandled()))/dt, st.Mem.Anon, st.Mem.File, st.Mem.Heap)
		}
	}()
	return s
}

// stop ends sampling and returns the report.
func (s *soakSampler) stop() *soakReport {
	close(s.stopc)
	return <-s.done
}

// finish computes the report from the samples.
func (r *soakReport) finish() {
	ss := r.samples
	for i, x := range ss[1:] {
		r.MaxSegmentLag = max(r.MaxSegmentLag, x.st.SegmentLag)
		r.MaxEnrichLag = max(r.MaxEnrichLag, x.st.EnrichLag)
		r.MaxStageLag = max(r.MaxStageLag, x.st.EnrichLag+x.st.SegmentLag)
		r.MaxOutbox = max(r.MaxOutbox, x.st.Outbox)
		r.MaxAnonMB = max(r.MaxAnonMB, x.st.Mem.Anon)
		r.PeakRSSMB = max(r.PeakRSSMB, x.st.Mem.RSS)
		if i == 0 {
			r.FirstAnonMB = x.st.Mem.Anon
		}
		r.LastAnonMB = x.st.Mem.Anon
	}
	// The rates are the load's: samples taken after it ended (while the
	// outbox drained) are left out of them.
	for len(ss) > 2 && ss[len(ss)-1].events == ss[len(ss)-2].events {
		ss = ss[:len(ss)-1]
	}
	rate := func(a, b soakSample) float64 { return float64(b.events-a.events) / (b.at - a.at).Seconds() }
	segRate := func(a, b soakSample) float64 {
		return (float64(b.segmentHandled()) - float64(a.segmentHandled())) / (b.at - a.at).Seconds()
	}
	for i := samplesPerMinute; i < len(ss); i += samplesPerMinute {
		a, b := ss[i-samplesPerMinute], ss[i]
		r.MinuteEPS = append(r.MinuteEPS, rate(a, b))
		r.SegmentMinuteEPS = append(r.SegmentMinuteEPS, segRate(a, b))
		r.SegmentLagByMinute = append(r.SegmentLagByMinute, b.st.SegmentLag)
		r.AnonMBByMinute = append(r.AnonMBByMinute, b.st.Mem.Anon)
	}
	last := len(ss) - 1
	if last > 0 {
		r.AvgEPS = rate(ss[0], ss[last])
	}
	if last >= samplesPerMinute {
		r.FirstMinuteEPS = r.MinuteEPS[0]
		r.LastMinuteEPS = rate(ss[last-samplesPerMinute], ss[last])
		r.MinMinuteEPS = r.LastMinuteEPS
		for _, m := range r.MinuteEPS {
			r.MinMinuteEPS = min(r.MinMinuteEPS, m)
		}
		r.DecayRatio = ratio(r.LastMinuteEPS, r.FirstMinuteEPS)
	}
	if r.AvgEPS > 0 {
		r.MaxSegmentLagSeconds = float64(r.MaxSegmentLag) / r.AvgEPS
		r.MaxStageLagSeconds = float64(r.MaxStageLag) / r.AvgEPS
	}
}

// catchUp waits, after the load, until the enrich and segment stages have
// handled everything, and records how long it took.
func (r *soakReport) catchUp(ctx context.Context, out io.Writer, be backend, timeout time.Duration) error {
	d, err := waitStages(ctx, out, be, timeout)
	r.SegmentCatchUpMS = ms(d)
	return err
}

// waitStages waits until the plugin stages (enrich and segment consumers)
// have handled every event, up to timeout (past it, it says so on out and
// returns nil: the lag is then part of what was measured), and returns how
// long it waited.
func waitStages(ctx context.Context, out io.Writer, be backend, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	for {
		st, err := be.stats(ctx)
		if err != nil {
			return time.Since(start), err
		}
		if st.SegmentLag == 0 && st.EnrichLag == 0 {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout {
			fmt.Fprintf(out, "  the plugin stages still lag by %d (enrich) and %d (segment) events after %s\n", st.EnrichLag, st.SegmentLag, timeout)
			return time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// print prints the soak's minutes.
func (r *soakReport) print(out io.Writer) {
	fmt.Fprintf(out, "\nsoak by minute: %-8s %12s %12s %12s %10s\n", "minute", "ingest/s", "segment/s", "segment lag", "anon MB")
	for i, m := range r.MinuteEPS {
		fmt.Fprintf(out, "                %-8d %12.0f %12.0f %12d %10.1f\n", i+1, m, r.SegmentMinuteEPS[i], r.SegmentLagByMinute[i], r.AnonMBByMinute[i])
	}
	fmt.Fprintf(out, "soak: first minute %.0f/s, last minute %.0f/s (ratio %.3f), slowest minute %.0f/s, average %.0f/s; max outbox %d\n",
		r.FirstMinuteEPS, r.LastMinuteEPS, r.DecayRatio, r.MinMinuteEPS, r.AvgEPS, r.MaxOutbox)
	fmt.Fprintf(out, "soak: not yet segmented (enrich + segment consumer lag) max %d = %.1f s of ingestion; segment consumer lag max %d, enrich lag max %d; caught up %.1f s after the load\n",
		r.MaxStageLag, r.MaxStageLagSeconds, r.MaxSegmentLag, r.MaxEnrichLag, r.SegmentCatchUpMS/1000)
	fmt.Fprintf(out, "soak: anonymous memory first %.1f MB, last %.1f MB, max %.1f MB; peak VmRSS %.1f MB\n\n",
		r.FirstAnonMB, r.LastAnonMB, r.MaxAnonMB, r.PeakRSSMB)
}
