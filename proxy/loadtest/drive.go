package loadtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// target is what a phase sends: one URL and a body builder giving a fresh
// body (new messageIds) on every call.
type target struct {
	url string
	// urls, when set, replace url for a closed loop: connection i drives
	// urls[i%len(urls)] (`vigie bench --target`, several nodes).
	urls   []string
	auth   string
	events int // events per request
	body   func(dst []byte) []byte
}

// phase is what one load phase measured.
type phase struct {
	requests uint64
	events   uint64
	failed   uint64
	firstErr string
	elapsed  time.Duration // load time (+ drain time once added)
	drain    time.Duration
	// perURL are the events answered 2xx by each of target.urls.
	perURL []uint64
}

func (p phase) rps() float64 { return rate(p.requests, p.elapsed) }
func (p phase) eps() float64 { return rate(p.events, p.elapsed) }

func rate(n uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// newTransport is a keep-alive transport with exactly conns connections to
// the one host under test.
func newTransport(conns int) *http.Transport {
	return &http.Transport{
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
}

// stopRule ends a closed-loop phase after a duration or, if maxEvents > 0,
// once that many events were sent.
type stopRule struct {
	duration  time.Duration
	maxEvents uint64
	// progress, if set, counts the events answered 2xx as they come in.
	progress *atomic.Uint64
}

// closedLoop drives tg with workers keep-alive connections, each sending
// its next request as soon as the previous answer is read, until the stop
// rule fires. The phase ends when the last in-flight answer is in.
func closedLoop(ctx context.Context, workers int, tg target, stop stopRule) phase {
	tr := newTransport(workers)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	var (
		done                       atomic.Bool
		reqs, evs, failed, claimed atomic.Uint64
		errOnce                    sync.Once
		firstErr                   string
		wg                         sync.WaitGroup
	)
	fail := func(msg string) {
		failed.Add(1)
		errOnce.Do(func() { firstErr = msg })
	}
	urls := tg.urls
	if len(urls) == 0 {
		urls = []string{tg.url}
	}
	perURL := make([]atomic.Uint64, len(urls))
	start := time.Now()
	if stop.maxEvents == 0 {
		t := time.AfterFunc(stop.duration, func() { done.Store(true) })
		defer t.Stop()
	}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			rd := new(bytes.Reader)
			for !done.Load() && ctx.Err() == nil {
				if stop.maxEvents > 0 && claimed.Add(uint64(tg.events)) > stop.maxEvents {
					done.Store(true)
					return
				}
				buf = tg.body(buf[:0])
				rd.Reset(buf)
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, urls[w%len(urls)], rd)
				if err != nil {
					fail(err.Error())
					return
				}
				req.ContentLength = int64(len(buf))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", tg.auth)
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						fail(err.Error())
					}
					continue
				}
				ok := resp.StatusCode >= 200 && resp.StatusCode < 300
				if !ok {
					b, _ := io.ReadAll(io.LimitReader(resp.Body, 160))
					fail(fmt.Sprintf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(b)))
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if ok {
					reqs.Add(1)
					evs.Add(uint64(tg.events))
					perURL[w%len(urls)].Add(uint64(tg.events))
					if stop.progress != nil {
						stop.progress.Add(uint64(tg.events))
					}
				}
			}
		}()
	}
	wg.Wait()
	p := phase{requests: reqs.Load(), events: evs.Load(), failed: failed.Load(), firstErr: firstErr, elapsed: time.Since(start)}
	if len(tg.urls) > 0 {
		for i := range perURL {
			p.perURL = append(p.perURL, perURL[i].Load())
		}
	}
	return p
}

// paced is the open-loop phase: requests leave at a constant rate whatever
// the answers' latency (vegeta's constant pacer), so queueing shows up in
// the latency instead of slowing the sender.
type paced struct {
	rate     int
	achieved float64
	requests uint64
	failed   uint64
	firstErr string
	p50, p99 time.Duration
	max      time.Duration
	// server is the server's own latency histogram of the phase.
	server histogram
	// sched is the server's scheduler latency histogram of the phase.
	sched histogram
}

func openLoop(ctx context.Context, workers int, tg target, perSecond int, d time.Duration) paced {
	tr := newTransport(workers * 4)
	defer tr.CloseIdleConnections()
	atk := vegeta.NewAttacker(
		vegeta.Client(&http.Client{Transport: tr, Timeout: 30 * time.Second}),
		vegeta.Workers(uint64(workers)),
		vegeta.MaxWorkers(uint64(workers*4)),
	)
	hdr := http.Header{"Content-Type": {"application/json"}, "Authorization": {tg.auth}}
	targeter := func(t *vegeta.Target) error {
		t.Method, t.URL, t.Header = http.MethodPost, tg.url, hdr
		t.Body = tg.body(nil)
		return nil
	}
	stopped := context.AfterFunc(ctx, func() { atk.Stop() })
	defer stopped()

	out := paced{rate: perSecond}
	lat := make([]time.Duration, 0, perSecond*int(d/time.Second+1))
	start := time.Now()
	for res := range atk.Attack(targeter, vegeta.Rate{Freq: perSecond, Per: time.Second}, d, "") {
		if res.Error != "" || res.Code < 200 || res.Code >= 300 {
			out.failed++
			if out.firstErr == "" {
				out.firstErr = res.Error
			}
			continue
		}
		out.requests++
		lat = append(lat, res.Latency)
	}
	out.achieved = rate(out.requests, time.Since(start))
	if len(lat) > 0 {
		slices.Sort(lat)
		out.p50 = lat[len(lat)*50/100]
		out.p99 = lat[min(len(lat)-1, len(lat)*99/100)]
		out.max = lat[len(lat)-1]
	}
	return out
}
