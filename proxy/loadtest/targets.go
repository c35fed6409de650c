package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// outboxMetric is the Prometheus gauge of a node's committed events not yet
// acknowledged by JetStream (GET /metrics).
const outboxMetric = "vigie_outbox_depth"

// targetReport is the JSON line of `vigie bench --target`.
type targetReport struct {
	Targets        []string  `json:"targets"`
	EventsPerBatch int       `json:"events_per_batch"`
	Connections    int       `json:"connections"`
	Events         uint64    `json:"events"`
	LoadMS         float64   `json:"load_ms"`
	DrainMS        float64   `json:"drain_ms"`
	EPS            float64   `json:"eps"`
	PerTargetEPS   []float64 `json:"per_target_eps"`
	Failed         uint64    `json:"failed_requests"`
	GoMaxProcs     int       `json:"gomaxprocs"`
}

// splitTargets parses --target: comma-separated base URLs of running Vigie
// nodes, each http(s)://host:port with no path.
func splitTargets(s string) ([]string, error) {
	var out []string
	for u := range strings.SplitSeq(s, ",") {
		u = strings.TrimRight(strings.TrimSpace(u), "/")
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return nil, fmt.Errorf("%w: --target %q is not an http:// or https:// base URL", ErrUsage, u)
		}
		out = append(out, u)
	}
	return out, nil
}

// runTargets is `vigie bench --target URL[,URL…]`: the full /v1/batch phase
// alone, against Vigie nodes already running (several nodes of a cluster,
// or one started by hand), the connections spread round-robin over them.
// The rate counts the wait until every node's outbox is empty again (read
// from its /metrics), like the full phase of a normal run.
func runTargets(ctx context.Context, o options, out io.Writer) error {
	gen := newGenerator(o.writeKey, time.Now())
	urls := make([]string, len(o.targets))
	for i, t := range o.targets {
		urls[i] = t + "/v1/batch"
	}
	fmt.Fprintf(out, "vigie bench: %d running node(s) %s; %d events/batch, %d keep-alive connections spread over them, GOMAXPROCS %d (this client)\n",
		len(o.targets), strings.Join(o.targets, ", "), o.eventsPerBatch, o.connections, runtime.GOMAXPROCS(0))
	p := closedLoop(ctx, o.connections, target{urls: urls, auth: gen.auth, events: o.eventsPerBatch,
		body: func(dst []byte) []byte { return gen.appendBatch(dst, o.eventsPerBatch) }},
		stopRule{duration: o.duration, maxEvents: o.events})
	load := p.elapsed
	drain, derr := waitTargetsDrain(ctx, o.targets, drainTimeout)
	p.drain = drain
	p.elapsed += drain
	r := targetReport{Targets: o.targets, EventsPerBatch: o.eventsPerBatch, Connections: o.connections,
		Events: p.events, LoadMS: ms(load), DrainMS: ms(drain), EPS: p.eps(), Failed: p.failed, GoMaxProcs: runtime.GOMAXPROCS(0)}
	fmt.Fprintf(out, "\n%-40s %10s %11s\n", "target", "events", "events/s")
	for i, t := range o.targets {
		r.PerTargetEPS = append(r.PerTargetEPS, rate(p.perURL[i], p.elapsed))
		fmt.Fprintf(out, "%-40s %10d %11.0f\n", t, p.perURL[i], r.PerTargetEPS[i])
	}
	fmt.Fprintf(out, "%-40s %10d %11.0f  (load %s + drain %s)\n", "total", p.events, r.EPS, load.Round(time.Millisecond), drain.Round(time.Millisecond))
	if o.json {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s\n", b)
	}
	if derr != nil {
		return derr
	}
	if p.failed > 0 {
		return fmt.Errorf("%w: %d, first: %s", ErrRequestsFailed, p.failed, p.firstErr)
	}
	return ctx.Err()
}

// waitTargetsDrain waits until every node's outbox is empty.
func waitTargetsDrain(ctx context.Context, bases []string, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	client := &http.Client{Timeout: 5 * time.Second}
	for {
		var left float64
		for _, b := range bases {
			n, err := outboxDepth(ctx, client, b)
			if err != nil {
				return time.Since(start), err
			}
			left += n
		}
		if left == 0 {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout {
			return time.Since(start), fmt.Errorf("%w: %.0f events left after %s", ErrDrainTimeout, left, timeout)
		}
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// outboxDepth reads outboxMetric from base's /metrics.
func outboxDepth(ctx context.Context, client *http.Client, base string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("bench: %s/metrics: %w", base, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), outboxMetric+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("bench: %s/metrics: %w", base, err)
	}
	return 0, fmt.Errorf("bench: %s/metrics has no %s", base, outboxMetric)
}
