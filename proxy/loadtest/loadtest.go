// Package loadtest is `vigie bench`: it starts a temporary Vigie in this
// process, drives it over loopback HTTP with keep-alive connections, and
// measures it against two baselines taken in the same run on the same
// machine — a bare net/http handler that reads the body and answers 204,
// and a handler that only decodes the batch with collect.DecodeBatch.
//
// Phases, in order (each --duration long, on --workers connections):
//
//  1. bare: single track events to the bare handler (requests/s);
//  2. decode-only: batches to the decode-only handler (events/s);
//  3. full batch: batches to Vigie's /v1/batch, then wait until the outbox
//     is empty, i.e. every event was acknowledged by JetStream; events/s is
//     events / (load time + drain time);
//  4. full track: single events to /v1/track, measured the same way;
//  5. paced: /v1/track at a constant rate of half the full-track rate
//     (open loop), reporting the latency percentiles.
//
// The resident memory reported is the whole process: server and client.
package loadtest

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vigie-dev/vigie/proxy"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/keyring"
)

// defaultWorkers is the number of keep-alive connections per phase. On the
// 2-core reference machine 16, 32 and 64 were tried; 16 gave the highest
// full-path throughput in both series (more connections only queue in the
// storage committer and lengthen the drain; see BENCHMARKS.md).
const defaultWorkers = 16

// drainTimeout bounds the wait for the outbox to empty after a phase.
const drainTimeout = 5 * time.Minute

// options are the parsed command-line flags.
type options struct {
	duration       time.Duration
	eventsPerBatch int
	json           bool
	syncWrites     bool
	workers        int
	events         uint64
	cpuProfile     string
	memProfile     string
}

func parseFlags(args []string, out io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("vigie bench", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of each load phase")
	fs.IntVar(&o.eventsPerBatch, "events-per-batch", 15, "events in each /v1/batch request")
	fs.BoolVar(&o.json, "json", false, "also print the results as one JSON object on the last line")
	fs.BoolVar(&o.syncWrites, "sync-writes", false, "turn Badger SyncWrites on (fsync every commit)")
	fs.IntVar(&o.workers, "workers", defaultWorkers, "concurrent keep-alive connections per phase")
	fs.Uint64Var(&o.events, "events", 0, "soak mode: run the full /v1/batch phase until this many events (e.g. 5000000) instead of --duration, sampling memory every 10s")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the full-path phases (batch, track) to this file")
	fs.StringVar(&o.memProfile, "memprofile", "", "write a heap profile to this file after the full /v1/batch phase")
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("%w: %w", ErrUsage, err)
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("%w: unexpected argument %q", ErrUsage, fs.Arg(0))
	case o.duration <= 0:
		return o, fmt.Errorf("%w: --duration must be positive", ErrUsage)
	case o.eventsPerBatch < 1 || o.eventsPerBatch > config.Default().Limits.MaxBatchEvents:
		return o, fmt.Errorf("%w: --events-per-batch must be 1..%d", ErrUsage, config.Default().Limits.MaxBatchEvents)
	case o.workers < 1:
		return o, fmt.Errorf("%w: --workers must be at least 1", ErrUsage)
	}
	return o, nil
}

// report is the JSON line; the first eight fields are the tracked ones.
type report struct {
	FullBatchEPS  float64 `json:"full_batch_eps"`
	DecodeOnlyEPS float64 `json:"decode_only_eps"`
	RatioBatch    float64 `json:"ratio_batch"`
	TrackRPS      float64 `json:"track_rps"`
	BareRPS       float64 `json:"bare_rps"`
	RatioTrack    float64 `json:"ratio_track"`
	P99MS         float64 `json:"p99_ms"`
	RSSMB         float64 `json:"rss_mb"`

	PacedRPS       int     `json:"paced_rps"`
	EventsPerBatch int     `json:"events_per_batch"`
	Workers        int     `json:"workers"`
	SyncWrites     bool    `json:"sync_writes"`
	BatchEvents    uint64  `json:"batch_events"`
	BatchDrainMS   float64 `json:"batch_drain_ms"`
	TrackDrainMS   float64 `json:"track_drain_ms"`
	PeakRSSMB      float64 `json:"peak_rss_mb"`
	RSSAnonMB      float64 `json:"rss_anon_mb"`
	RSSFileMB      float64 `json:"rss_file_mb"`
	GoHeapMB       float64 `json:"go_heap_mb"`
	Failed         uint64  `json:"failed_requests"`
	GoMaxProcs     int     `json:"gomaxprocs"`
}

// Main runs `vigie bench` with args (the flags after "bench"), printing a
// table and, with --json, the JSON line to stdout. It returns an error
// wrapping ErrUsage for bad flags, ErrDrainTimeout when the outbox does not
// empty, and ErrRequestsFailed (after printing) when requests failed.
func Main(args []string, stdout io.Writer) error {
	o, err := parseFlags(args, stdout)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, o, stdout)
}

// runState carries what the phases share.
type runState struct {
	o     options
	out   io.Writer
	gen   *generator
	peak  float64
	phase map[string]phase
}

func run(ctx context.Context, o options, out io.Writer) error {
	cfg := config.Default()
	st := &runState{o: o, out: out, gen: newGenerator(cfg.Sites[0].WriteKeys[0], time.Now()), phase: map[string]phase{}}
	batchBody := func(dst []byte) []byte { return st.gen.appendBatch(dst, o.eventsPerBatch) }

	fmt.Fprintf(out, "vigie bench: %d events/batch, %d keep-alive connections, %s per phase, SyncWrites %s, GOMAXPROCS %d\n",
		o.eventsPerBatch, o.workers, o.duration, onOff(o.syncWrites), runtime.GOMAXPROCS(0))
	fmt.Fprintf(out, "\n%-36s %10s %10s %9s %11s %11s\n", "phase", "requests", "events", "time", "req/s", "events/s")

	// Baselines.
	bare, err := st.baselinePhase(ctx, bareHandler(), "/v1/track", 1, st.gen.appendEvent)
	if err != nil {
		return err
	}
	printRow(out, "baseline bare 204 (track body)", bare)
	dec, err := st.baselinePhase(ctx, decodeHandler(cfg.Limits), "/v1/batch", o.eventsPerBatch, batchBody)
	if err != nil {
		return err
	}
	printRow(out, fmt.Sprintf("baseline decode-only (batch of %d)", o.eventsPerBatch), dec)

	// The full path.
	dir, err := os.MkdirTemp("", "vigie-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.LogLevel = "warn"
	cfg.Storage.SyncWrites = o.syncWrites
	// A throwaway master key: the temporary instance leaves no secret behind.
	mk, err := keyring.NewMasterKey()
	if err != nil {
		return err
	}
	cfg.Keys.MasterKey = config.Secret(mk.Encode())
	srv, err := proxy.New(cfg, slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	base := "http://" + srv.Addr()

	stopProfile := func() {}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return err
		}
		stopProfile = func() { pprof.StopCPUProfile(); f.Close() }
	}
	batchStop := stopRule{duration: o.duration, maxEvents: o.events, progress: new(atomic.Uint64)}
	var sampler *rssSampler
	if o.events > 0 {
		sampler = startSampler(out, 10*time.Second, batchStop.progress.Load, srv.Store().OutboxLen)
	}
	full, err := st.fullPhase(ctx, srv, target{url: base + "/v1/batch", auth: st.gen.auth, events: o.eventsPerBatch, body: batchBody}, batchStop)
	if sampler != nil {
		st.peak = max(st.peak, sampler.stop())
	}
	if o.memProfile != "" {
		if err := writeHeapProfile(o.memProfile); err != nil {
			stopProfile()
			return err
		}
	}
	if err != nil {
		stopProfile()
		return err
	}
	printRow(out, fmt.Sprintf("full /v1/batch (%d) + drain %s", o.eventsPerBatch, full.drain.Round(time.Millisecond)), full)
	track, err := st.fullPhase(ctx, srv, target{url: base + "/v1/track", auth: st.gen.auth, events: 1, body: st.gen.appendEvent}, stopRule{duration: o.duration})
	stopProfile()
	if err != nil {
		return err
	}
	printRow(out, fmt.Sprintf("full /v1/track + drain %s", track.drain.Round(time.Millisecond)), track)

	// Latency at half the maximum track rate.
	runtime.GC()
	pc := openLoop(ctx, o.workers, target{url: base + "/v1/track", auth: st.gen.auth, events: 1, body: st.gen.appendEvent},
		max(1, int(track.rps()/2)), o.duration)
	if _, err := waitDrain(ctx, srv, drainTimeout); err != nil {
		return err
	}
	mem := readMem()
	st.peak = max(st.peak, mem.rss)

	r := report{
		FullBatchEPS: full.eps(), DecodeOnlyEPS: dec.eps(), RatioBatch: ratio(full.eps(), dec.eps()),
		TrackRPS: track.rps(), BareRPS: bare.rps(), RatioTrack: ratio(track.rps(), bare.rps()),
		P99MS: ms(pc.p99), RSSMB: mem.rss,
		PacedRPS: pc.rate, EventsPerBatch: o.eventsPerBatch, Workers: o.workers, SyncWrites: o.syncWrites,
		BatchEvents: full.events, BatchDrainMS: ms(full.drain), TrackDrainMS: ms(track.drain), PeakRSSMB: st.peak,
		RSSAnonMB: mem.anon, RSSFileMB: mem.file, GoHeapMB: mem.heap,
		Failed:     bare.failed + dec.failed + full.failed + track.failed + pc.failed,
		GoMaxProcs: runtime.GOMAXPROCS(0),
	}
	printSummary(out, o, pc, r)
	if o.json {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s\n", b)
	}
	if r.Failed > 0 {
		first := ""
		for _, p := range []phase{bare, dec, full, track, {firstErr: pc.firstErr}} {
			if p.firstErr != "" {
				first = p.firstErr
				break
			}
		}
		return fmt.Errorf("%w: %d, first: %s", ErrRequestsFailed, r.Failed, first)
	}
	return ctx.Err()
}

// baselinePhase serves h on its own loopback port and drives it.
func (st *runState) baselinePhase(ctx context.Context, h http.Handler, path string, events int, body func([]byte) []byte) (phase, error) {
	b, err := startBaseline(h)
	if err != nil {
		return phase{}, err
	}
	defer b.close()
	runtime.GC()
	return closedLoop(ctx, st.o.workers, target{url: b.url + path, auth: st.gen.auth, events: events, body: body}, stopRule{duration: st.o.duration}), nil
}

// fullPhase drives Vigie, then waits for the outbox to empty and counts
// that wait in the phase's time.
func (st *runState) fullPhase(ctx context.Context, srv *proxy.Server, tg target, stop stopRule) (phase, error) {
	runtime.GC()
	p := closedLoop(ctx, st.o.workers, tg, stop)
	d, err := waitDrain(ctx, srv, drainTimeout)
	p.drain = d
	p.elapsed += d
	return p, err
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// waitDrain waits until every stored event was acknowledged by JetStream.
func waitDrain(ctx context.Context, srv *proxy.Server, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for srv.Store().OutboxLen() > 0 {
		if time.Since(start) > timeout {
			return time.Since(start), fmt.Errorf("%w: %d events left after %s", ErrDrainTimeout, srv.Store().OutboxLen(), timeout)
		}
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-t.C:
		}
	}
	return time.Since(start), nil
}

// memInfo is the process's memory in MB: resident set (VmRSS of
// /proc/self/status, split into anonymous and file-backed pages, the latter
// mostly Badger's and JetStream's mmapped files) and the Go heap in use.
type memInfo struct{ rss, anon, file, heap float64 }

// readMem reads memInfo; the /proc fields are 0 where /proc is missing.
func readMem() memInfo {
	var m memInfo
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.heap = float64(ms.HeapInuse) / (1 << 20)
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return m
	}
	for line := range strings.Lines(string(b)) {
		name, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		if err != nil {
			continue
		}
		switch name {
		case "VmRSS":
			m.rss = kb / 1024
		case "RssAnon":
			m.anon = kb / 1024
		case "RssFile":
			m.file = kb / 1024
		}
	}
	return m
}

// rssSampler prints the resident memory periodically during a soak run.
type rssSampler struct {
	stopc chan struct{}
	done  chan float64
}

// startSampler prints, every period, the events accepted so far, the
// outbox backlog and the memory.
func startSampler(out io.Writer, every time.Duration, events func() uint64, outbox func() int64) *rssSampler {
	s := &rssSampler{stopc: make(chan struct{}), done: make(chan float64, 1)}
	start := time.Now()
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		peak := 0.0
		for {
			select {
			case <-s.stopc:
				s.done <- peak
				return
			case <-t.C:
				m := readMem()
				peak = max(peak, m.rss)
				fmt.Fprintf(out, "  soak %6s  %9d events  outbox %8d  rss %6.1f MB (anon %6.1f, file %6.1f)  go heap %6.1f MB\n",
					time.Since(start).Round(time.Second), events(), outbox(), m.rss, m.anon, m.file, m.heap)
			}
		}
	}()
	return s
}

func (s *rssSampler) stop() float64 {
	close(s.stopc)
	return <-s.done
}

// printRow prints one phase's line of the table as soon as it is done.
func printRow(out io.Writer, name string, p phase) {
	fmt.Fprintf(out, "%-36s %10d %10d %9s %11.0f %11.0f\n", name, p.requests, p.events, p.elapsed.Round(time.Millisecond), p.rps(), p.eps())
}

// printSummary prints the paced phase and the targets.
func printSummary(out io.Writer, o options, pc paced, r report) {
	fmt.Fprintf(out, "paced /v1/track at %d/s (achieved %.0f/s): p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
		pc.rate, pc.achieved, ms(pc.p50), ms(pc.p99), ms(pc.max))
	fmt.Fprintf(out, "\n%-44s %9s  %-10s %s\n", "target", "value", "goal", "")
	fmt.Fprintf(out, "%-44s %9.3f  %-10s %s\n", "batch: full / decode-only events/s", r.RatioBatch, ">= 0.70", verdict(r.RatioBatch >= 0.7))
	fmt.Fprintf(out, "%-44s %9.3f  %-10s %s\n", "track: full / bare requests/s", r.RatioTrack, ">= 0.25", verdict(r.RatioTrack >= 0.25))
	fmt.Fprintf(out, "%-44s %9.2f  %-10s %s\n", "p99 ms at half the max track rate", r.P99MS, "< 10", verdict(r.P99MS < 10))
	note := "run --events 5000000 for the target"
	if o.events > 0 {
		note = verdict(r.RSSMB < 300)
	}
	fmt.Fprintf(out, "%-44s %9.1f  %-10s %s\n", "RSS MB, server+client in one process", r.RSSMB, "< 300", note)
	fmt.Fprintf(out, "  (anon %.1f MB, file-backed %.1f MB, Go heap in use %.1f MB, peak RSS %.1f MB)\n", r.RSSAnonMB, r.RSSFileMB, r.GoHeapMB, r.PeakRSSMB)
	if r.Failed > 0 {
		fmt.Fprintf(out, "FAILED requests: %d\n", r.Failed)
	}
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
