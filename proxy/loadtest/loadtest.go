// Package loadtest is `vigie bench`: it starts a temporary Vigie with the
// default configuration (built-in plugins on), drives it over loopback HTTP
// with keep-alive connections, and measures it against baselines taken in
// the same run on the same machine — a bare net/http handler that reads the
// body and answers 204, a handler that only decodes the batch with
// collect.DecodeBatch (Vigie's own decoder), and one that decodes it with
// encoding/json (what any collector can do).
//
// Phases, in order (each --duration long, on --connections connections):
//
//  1. bare: single track events to the bare handler (requests/s);
//  2. decode-only: batches to the collect.DecodeBatch handler (events/s);
//  3. encoding/json decode-only: batches to the encoding/json handler;
//  4. full batch: batches to Vigie's /v1/batch, then wait until the outbox
//     is empty, i.e. every event was acknowledged by JetStream; events/s is
//     events / (load time + drain time). With --soak N (or --events N) it runs
//     until N events and reports the rate per minute, the segment stage's
//     consumer lag and the server's memory every 10 s;
//  5. full track: single events to /v1/track, measured the same way;
//  6. paced: /v1/track at a constant rate of half the full-track rate
//     (open loop), reporting the latency percentiles.
//
// The track and paced phases start once the plugin stages (enrich and
// segment consumers) have caught up with the previous phase; the wait is
// reported, not counted. --no-plugins runs the ingestion path alone.
//
// By default the server runs in this process, so the memory reported is
// the server's and the client's together. With --external the server (and
// the baselines) run in a child process, `vigie bench serve` (the running
// binary re-executed), so client and server do not share a Go runtime; the
// memory and the CPU profile are then the server process's alone (plugin
// processes are not counted in either mode).
//
// With --target URL[,URL…] it drives Vigie nodes already running instead
// (e.g. the nodes of a cluster, see scripts/cluster-bench.sh): only the full
// /v1/batch phase, its connections spread round-robin over the nodes, the
// rate counted until every node's outbox (vigie_outbox_depth in /metrics)
// is empty.
package loadtest

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vigie-dev/vigie/proxy/config"
)

// defaultConnections is the number of keep-alive connections per phase:
// the shape of issue 13's measurements (10-event batches, 32 connections).
const defaultConnections = 32

// defaultEventsPerBatch is the events per /v1/batch request.
const defaultEventsPerBatch = 10

// drainTimeout bounds the wait for the outbox to empty after a phase.
const drainTimeout = 5 * time.Minute

// catchUpTimeout bounds the wait, after a soak, for the segment stage to
// handle what it has not yet.
const catchUpTimeout = 20 * time.Minute

// options are the parsed command-line flags.
type options struct {
	duration       time.Duration
	eventsPerBatch int
	json           bool
	syncWrites     bool
	noPlugins      bool
	pluginBatch    int
	connections    int
	events         uint64
	external       bool
	cpuProfile     string
	trace          string
	memProfile     string
	// targets are the --target base URLs (running nodes), writeKey the
	// write key sent to them.
	targets  []string
	writeKey string
}

func newFlagSet(name string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	return fs
}

func parseFlags(args []string, out io.Writer) (options, error) {
	var o options
	fs := newFlagSet("vigie bench", out)
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of each load phase")
	fs.IntVar(&o.eventsPerBatch, "events-per-batch", defaultEventsPerBatch, "events in each /v1/batch request")
	fs.BoolVar(&o.json, "json", false, "also print the results as one JSON object on the last line")
	fs.BoolVar(&o.syncWrites, "sync-writes", false, "turn Badger SyncWrites on (fsync every commit)")
	fs.BoolVar(&o.noPlugins, "no-plugins", false, "run Vigie without the default built-in plugins (the ingestion path alone)")
	fs.IntVar(&o.pluginBatch, "plugin-batch", 0, "set plugin_runtime.batch_size, the most events per plugin call and per consumer fetch (0: the default)")
	fs.IntVar(&o.connections, "connections", defaultConnections, "concurrent keep-alive connections per phase")
	fs.IntVar(&o.connections, "workers", defaultConnections, "same as --connections")
	fs.BoolVar(&o.external, "external", false, "run the server in a separate process (`vigie bench serve`), so client and server do not share a Go runtime")
	fs.Uint64Var(&o.events, "soak", 0, "soak mode: run the full /v1/batch phase until this many events (e.g. 5000000) instead of --duration; rate per minute, segment lag and memory every 10s")
	fs.Uint64Var(&o.events, "events", 0, "same as --soak")
	fs.StringVar(&o.trace, "trace", "", "write an execution trace of the server during the paced /v1/track phase to this file (go tool trace)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the server during the full-path phases (batch, track) to this file")
	fs.StringVar(&o.memProfile, "memprofile", "", "write a heap profile of the server to this file after the full /v1/batch phase")
	targets := fs.String("target", "", "drive running Vigie nodes instead (comma-separated base URLs, e.g. http://127.0.0.1:8081,http://127.0.0.1:8082): only the full /v1/batch phase, connections spread over them, rate counted until their outboxes are empty")
	fs.StringVar(&o.writeKey, "write-key", config.DemoSite().WriteKeys[0], "with --target: the site's write key")
	if len(args) > 0 && args[0] == ServeSubcommand {
		return o, fmt.Errorf("%w: %s is run by --external", ErrUsage, ServeSubcommand)
	}
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if *targets != "" {
		var err error
		if o.targets, err = splitTargets(*targets); err != nil {
			return o, err
		}
		if o.external || o.cpuProfile != "" || o.memProfile != "" || o.trace != "" || o.noPlugins || o.syncWrites || o.pluginBatch != 0 {
			return o, fmt.Errorf("%w: --target drives running nodes: --external, --cpuprofile, --memprofile, --trace, --no-plugins, --sync-writes and --plugin-batch do not apply", ErrUsage)
		}
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("%w: unexpected argument %q", ErrUsage, fs.Arg(0))
	case o.duration <= 0:
		return o, fmt.Errorf("%w: --duration must be positive", ErrUsage)
	case o.eventsPerBatch < 1 || o.eventsPerBatch > config.Default().Limits.MaxBatchEvents:
		return o, fmt.Errorf("%w: --events-per-batch must be 1..%d", ErrUsage, config.Default().Limits.MaxBatchEvents)
	case o.pluginBatch < 0:
		return o, fmt.Errorf("%w: --plugin-batch must not be negative", ErrUsage)
	case o.connections < 1:
		return o, fmt.Errorf("%w: --connections must be at least 1", ErrUsage)
	}
	return o, nil
}

// report is the JSON line; the first fields are the tracked ones.
type report struct {
	FullBatchEPS   float64 `json:"full_batch_eps"`
	DecodeOnlyEPS  float64 `json:"decode_only_eps"`
	RatioBatch     float64 `json:"ratio_batch"`
	JSONDecodeEPS  float64 `json:"json_decode_eps"`
	RatioBatchJSON float64 `json:"ratio_batch_json"`
	TrackRPS       float64 `json:"track_rps"`
	BareRPS        float64 `json:"bare_rps"`
	RatioTrack     float64 `json:"ratio_track"`
	P99MS          float64 `json:"p99_ms"`
	// ServerP99MS is the paced phase's p99 inside the server, from request
	// to durable commit (its /metrics histogram, interpolated in the
	// bucket): what P99MS would be without the client, the loopback and
	// the scheduler.
	ServerP99MS float64 `json:"server_p99_ms"`
	RSSMB       float64 `json:"rss_mb"`
	RSSAnonMB   float64 `json:"rss_anon_mb"`

	PacedRPS       int     `json:"paced_rps"`
	EventsPerBatch int     `json:"events_per_batch"`
	Connections    int     `json:"connections"`
	External       bool    `json:"external"`
	SyncWrites     bool    `json:"sync_writes"`
	BatchEvents    uint64  `json:"batch_events"`
	BatchDrainMS   float64 `json:"batch_drain_ms"`
	TrackDrainMS   float64 `json:"track_drain_ms"`
	PeakRSSMB      float64 `json:"peak_rss_mb"`
	RSSFileMB      float64 `json:"rss_file_mb"`
	GoHeapMB       float64 `json:"go_heap_mb"`
	Failed         uint64  `json:"failed_requests"`
	PluginErrors   int64   `json:"plugin_errors"`
	// BatchCPUUSPerEvent is the server process's CPU time (user + system,
	// plugin processes not counted; without --external the client's too)
	// during the full /v1/batch phase and
	// its drain, per event, in microseconds: unlike the rates it does not
	// depend on what else runs on the machine.
	BatchCPUUSPerEvent float64 `json:"batch_cpu_us_per_event"`
	// BatchAllCPUUSPerEvent is the same until the plugin stages caught up
	// with the phase: all the server's work per event, whichever part of
	// it the stages did during the phase or after.
	BatchAllCPUUSPerEvent float64 `json:"batch_all_cpu_us_per_event"`
	// BatchCatchUpMS and TrackCatchUpMS are how long the plugin stages
	// took, after the batch and the track phase had drained, to handle
	// the rest: the next phase starts after.
	BatchCatchUpMS float64 `json:"batch_catch_up_ms"`
	TrackCatchUpMS float64 `json:"track_catch_up_ms"`
	NoPlugins      bool    `json:"no_plugins"`
	PluginBatch    int     `json:"plugin_batch,omitempty"`
	GoMaxProcs     int     `json:"gomaxprocs"`

	Soak *soakReport `json:"soak,omitempty"`
}

// Main runs `vigie bench` with args (the flags after "bench"), printing a
// table and, with --json, the JSON line to stdout. It returns an error
// wrapping ErrUsage for bad flags, ErrDrainTimeout when the outbox does not
// empty, and ErrRequestsFailed (after printing) when requests failed.
// `vigie bench serve` (args[0] == ServeSubcommand) is the server process of
// --external: it reads stdin and stops when it closes.
func Main(args []string, stdout io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(args) > 0 && args[0] == ServeSubcommand {
		return serveMain(ctx, args[1:], os.Stdin, stdout, os.Stderr)
	}
	o, err := parseFlags(args, stdout)
	if err != nil {
		return err
	}
	if len(o.targets) > 0 {
		return runTargets(ctx, o, stdout)
	}
	return run(ctx, o, stdout)
}

func (o options) serverOptions() serverOptions {
	return serverOptions{syncWrites: o.syncWrites, noPlugins: o.noPlugins, pluginBatch: o.pluginBatch}
}

// openBackend starts the server side: here, or in a child process.
func openBackend(ctx context.Context, o options) (backend, error) {
	if o.external {
		return startRemote(ctx, o.serverOptions(), os.Stderr)
	}
	s, err := startServerSide(ctx, o.serverOptions(), slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return nil, err
	}
	return local{s}, nil
}

// runState carries what the phases share.
type runState struct {
	o    options
	out  io.Writer
	gen  *generator
	be   backend
	peak float64
}

func run(ctx context.Context, o options, out io.Writer) (err error) {
	cfg := config.Default()
	st := &runState{o: o, out: out, gen: newGenerator(cfg.Sites[0].WriteKeys[0], time.Now())}
	batchBody := func(dst []byte) []byte { return st.gen.appendBatch(dst, o.eventsPerBatch) }

	be, err := openBackend(ctx, o)
	if err != nil {
		return err
	}
	st.be = be
	defer func() {
		if cerr := be.close(); err == nil && cerr != nil && ctx.Err() == nil {
			err = fmt.Errorf("bench: server process: %w", cerr)
		}
	}()
	ep := be.endpoints()
	where := "in this process"
	if o.external {
		where = fmt.Sprintf("in process %d (--external)", ep.PID)
	}
	plugins := "default configuration with its built-in plugins"
	if o.noPlugins {
		plugins = "default configuration without plugins (--no-plugins)"
	}
	fmt.Fprintf(out, "vigie bench: server %s, %s; %d events/batch, %d keep-alive connections, %s per phase, SyncWrites %s, GOMAXPROCS %d\n",
		where, plugins, o.eventsPerBatch, o.connections, o.duration, onOff(o.syncWrites), runtime.GOMAXPROCS(0))
	fmt.Fprintf(out, "\n%-40s %10s %10s %9s %11s %11s\n", "phase", "requests", "events", "time", "req/s", "events/s")

	// Baselines.
	bare := st.baselinePhase(ctx, ep.Bare+"/v1/track", 1, st.gen.appendEvent)
	printRow(out, "baseline bare 204 (track body)", bare)
	dec := st.baselinePhase(ctx, ep.Decode+"/v1/batch", o.eventsPerBatch, batchBody)
	printRow(out, fmt.Sprintf("baseline decode-only (batch of %d)", o.eventsPerBatch), dec)
	jdec := st.baselinePhase(ctx, ep.JSONDecode+"/v1/batch", o.eventsPerBatch, batchBody)
	printRow(out, fmt.Sprintf("baseline encoding/json decode (%d)", o.eventsPerBatch), jdec)

	// The full path.
	stopProfile := func() error { return nil }
	if o.cpuProfile != "" {
		if err := be.startCPUProfile(ctx, o.cpuProfile); err != nil {
			return err
		}
		stopProfile = func() error { return be.stopCPUProfile(context.Background()) }
	}
	defer func() { _ = stopProfile() }()
	batchStop := stopRule{duration: o.duration, maxEvents: o.events, progress: new(atomic.Uint64)}
	var sampler *soakSampler
	if o.events > 0 {
		sampler = startSoak(ctx, out, be, 10*time.Second, batchStop.progress.Load)
	}
	cpu0, cerr := be.stats(ctx)
	if cerr != nil {
		return cerr
	}
	full, err := st.fullPhase(ctx, target{url: ep.Vigie + "/v1/batch", auth: st.gen.auth, events: o.eventsPerBatch, body: batchBody}, batchStop)
	var batchCPU float64
	if cpu1, cerr := be.stats(ctx); cerr == nil && full.events > 0 {
		batchCPU = (cpu1.CPUSeconds - cpu0.CPUSeconds) / float64(full.events) * 1e6
	}
	var soak *soakReport
	if sampler != nil {
		soak = sampler.stop()
		st.peak = max(st.peak, soak.PeakRSSMB)
	}
	if o.memProfile != "" {
		if err := be.writeHeapProfile(ctx, o.memProfile); err != nil {
			return err
		}
	}
	if err != nil {
		return err
	}
	printRow(out, fmt.Sprintf("full /v1/batch (%d) + drain %s", o.eventsPerBatch, full.drain.Round(time.Millisecond)), full)
	var batchCatchUp time.Duration
	if soak != nil {
		if err := soak.catchUp(ctx, out, be, catchUpTimeout); err != nil {
			return err
		}
		batchCatchUp = time.Duration(soak.SegmentCatchUpMS * float64(time.Millisecond))
		soak.print(out)
	} else if batchCatchUp, err = waitStages(ctx, out, be, catchUpTimeout); err != nil {
		return err
	}
	var allCPU float64
	if cpu2, cerr := be.stats(ctx); cerr == nil && full.events > 0 {
		allCPU = (cpu2.CPUSeconds - cpu0.CPUSeconds) / float64(full.events) * 1e6
	}
	// Each phase starts once the plugin stages have caught up with the
	// previous one, so that it is not measured against their backlog.
	fmt.Fprintf(out, "%-40s %s\n", "  plugin stages caught up after", batchCatchUp.Round(time.Millisecond))
	track, err := st.fullPhase(ctx, target{url: ep.Vigie + "/v1/track", auth: st.gen.auth, events: 1, body: st.gen.appendEvent}, stopRule{duration: o.duration})
	if perr := stopProfile(); err == nil {
		err = perr
	}
	stopProfile = func() error { return nil }
	if err != nil {
		return err
	}
	printRow(out, fmt.Sprintf("full /v1/track + drain %s", track.drain.Round(time.Millisecond)), track)
	trackCatchUp, err := waitStages(ctx, out, be, catchUpTimeout)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%-40s %s\n", "  plugin stages caught up after", trackCatchUp.Round(time.Millisecond))

	// Latency at half the maximum track rate.
	runtime.GC()
	before, err := serverHistogram(ctx, ep.Vigie, "/v1/track")
	if err != nil {
		return err
	}
	schedBefore, err := be.stats(ctx)
	if err != nil {
		return err
	}
	if o.trace != "" {
		if err := be.startTrace(ctx, o.trace); err != nil {
			return err
		}
	}
	pc := openLoop(ctx, o.connections, target{url: ep.Vigie + "/v1/track", auth: st.gen.auth, events: 1, body: st.gen.appendEvent},
		max(1, int(track.rps()/2)), o.duration)
	if o.trace != "" {
		if err := be.stopTrace(ctx); err != nil {
			return err
		}
	}
	after, err := serverHistogram(ctx, ep.Vigie, "/v1/track")
	if err != nil {
		return err
	}
	pc.server = after.since(before)
	schedAfter, err := be.stats(ctx)
	if err != nil {
		return err
	}
	pc.sched = schedAfter.Sched.since(schedBefore.Sched)
	if _, err := waitDrain(ctx, be, drainTimeout); err != nil {
		return err
	}
	sst, err := be.stats(ctx)
	if err != nil {
		return err
	}
	mem := sst.Mem
	st.peak = max(st.peak, mem.RSS)

	r := report{
		FullBatchEPS: full.eps(), DecodeOnlyEPS: dec.eps(), RatioBatch: ratio(full.eps(), dec.eps()),
		JSONDecodeEPS: jdec.eps(), RatioBatchJSON: ratio(full.eps(), jdec.eps()),
		TrackRPS: track.rps(), BareRPS: bare.rps(), RatioTrack: ratio(track.rps(), bare.rps()),
		P99MS: ms(pc.p99), ServerP99MS: 1000 * pc.server.quantile(0.99), RSSMB: mem.RSS, RSSAnonMB: mem.Anon,
		PacedRPS: pc.rate, EventsPerBatch: o.eventsPerBatch, Connections: o.connections, External: o.external, SyncWrites: o.syncWrites,
		BatchEvents: full.events, BatchDrainMS: ms(full.drain), TrackDrainMS: ms(track.drain), PeakRSSMB: st.peak,
		RSSFileMB: mem.File, GoHeapMB: mem.Heap,
		Failed:       bare.failed + dec.failed + jdec.failed + full.failed + track.failed + pc.failed,
		PluginErrors: sst.PluginErrors, BatchCPUUSPerEvent: batchCPU, BatchAllCPUUSPerEvent: allCPU,
		BatchCatchUpMS: ms(batchCatchUp), TrackCatchUpMS: ms(trackCatchUp), NoPlugins: o.noPlugins, PluginBatch: o.pluginBatch,
		GoMaxProcs: runtime.GOMAXPROCS(0),
		Soak:       soak,
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
		for _, p := range []phase{bare, dec, jdec, full, track, {firstErr: pc.firstErr}} {
			if p.firstErr != "" {
				first = p.firstErr
				break
			}
		}
		return fmt.Errorf("%w: %d, first: %s", ErrRequestsFailed, r.Failed, first)
	}
	return ctx.Err()
}

// baselinePhase drives one baseline handler.
func (st *runState) baselinePhase(ctx context.Context, url string, events int, body func([]byte) []byte) phase {
	runtime.GC()
	return closedLoop(ctx, st.o.connections, target{url: url, auth: st.gen.auth, events: events, body: body}, stopRule{duration: st.o.duration})
}

// fullPhase drives Vigie, then waits for the outbox to empty and counts
// that wait in the phase's time.
func (st *runState) fullPhase(ctx context.Context, tg target, stop stopRule) (phase, error) {
	runtime.GC()
	p := closedLoop(ctx, st.o.connections, tg, stop)
	d, err := waitDrain(ctx, st.be, drainTimeout)
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
func waitDrain(ctx context.Context, be backend, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		n, err := be.outboxLen(ctx)
		if err != nil {
			return time.Since(start), err
		}
		if n == 0 {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout {
			return time.Since(start), fmt.Errorf("%w: %d events left after %s", ErrDrainTimeout, n, timeout)
		}
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-t.C:
		}
	}
}

// memInfo is a process's memory in MB: resident set (VmRSS of
// /proc/self/status, split into anonymous and file-backed pages, the latter
// mostly Badger's and JetStream's mmapped files) and the Go heap in use.
type memInfo struct {
	RSS  float64 `json:"rss_mb"`
	Anon float64 `json:"anon_mb"`
	File float64 `json:"file_mb"`
	Heap float64 `json:"heap_mb"`
}

// readMem reads this process's memInfo; the /proc fields are 0 where /proc
// is missing.
func readMem() memInfo {
	var m memInfo
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.Heap = float64(ms.HeapInuse) / (1 << 20)
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
			m.RSS = kb / 1024
		case "RssAnon":
			m.Anon = kb / 1024
		case "RssFile":
			m.File = kb / 1024
		}
	}
	return m
}

// printRow prints one phase's line of the table as soon as it is done.
func printRow(out io.Writer, name string, p phase) {
	fmt.Fprintf(out, "%-36s %10d %10d %9s %11.0f %11.0f\n", name, p.requests, p.events, p.elapsed.Round(time.Millisecond), p.rps(), p.eps())
}

// printSummary prints the paced phase and the targets.
func printSummary(out io.Writer, o options, pc paced, r report) {
	fmt.Fprintf(out, "paced /v1/track at %d/s (achieved %.0f/s): p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
		pc.rate, pc.achieved, ms(pc.p50), ms(pc.p99), ms(pc.max))
	fmt.Fprintf(out, "  inside the server (request to commit, from its histogram): p50 %.2f ms, p99 %.2f ms over %d requests\n",
		1000*pc.server.quantile(0.5), r.ServerP99MS, pc.server.Total)
	fmt.Fprintf(out, "  server scheduler latency (runnable to running): p99 %.2f ms, p99.9 %.2f ms\n",
		1000*pc.sched.quantile(0.99), 1000*pc.sched.quantile(0.999))
	fmt.Fprintf(out, "\n%-52s %9s  %-10s %s\n", "target", "value", "goal", "")
	row := func(name, format string, v float64, goal string, ok bool, note string) {
		if note == "" {
			note = verdict(ok)
		}
		fmt.Fprintf(out, "%-52s "+format+"  %-10s %s\n", name, v, goal, note)
	}
	row("batch: full / encoding/json decode-only events/s", "%9.3f", r.RatioBatchJSON, ">= 0.50", r.RatioBatchJSON >= 0.5, "")
	row("batch: full / own decoder decode-only events/s", "%9.3f", r.RatioBatch, "(info)", true, "-")
	row("batch: server CPU µs per event (user+system)", "%9.1f", r.BatchCPUUSPerEvent, "(info)", true, "-")
	row("batch: same, until the plugin stages caught up", "%9.1f", r.BatchAllCPUUSPerEvent, "(info)", true, "-")
	row("track: full / bare requests/s", "%9.3f", r.RatioTrack, ">= 0.25", r.RatioTrack >= 0.25, "")
	row("p99 ms at half the max track rate", "%9.2f", r.P99MS, "< 10", r.P99MS < 10, "")
	who := "server+client in one process"
	if o.external {
		who = "server process"
	}
	if s := r.Soak; s != nil {
		row("soak: last minute / first minute events/s", "%9.3f", s.DecayRatio, ">= 0.80", s.DecayRatio >= 0.8, "")
		row("soak: not yet segmented max, seconds of ingestion", "%9.1f", s.MaxStageLagSeconds, "<= 5", s.MaxStageLagSeconds <= 5, "")
		row("soak: anonymous memory max MB, "+who, "%9.1f", s.MaxAnonMB, "< 300", s.MaxAnonMB < 300, "")
	} else {
		row("anonymous memory MB, "+who, "%9.1f", r.RSSAnonMB, "< 300", r.RSSAnonMB < 300, "run --soak 5000000 for the target")
	}
	fmt.Fprintf(out, "  (VmRSS %.1f MB: anon %.1f, file-backed %.1f; Go heap in use %.1f MB; peak VmRSS %.1f MB)\n", r.RSSMB, r.RSSAnonMB, r.RSSFileMB, r.GoHeapMB, r.PeakRSSMB)
	if r.Failed > 0 {
		fmt.Fprintf(out, "FAILED requests: %d\n", r.Failed)
	}
	if r.PluginErrors > 0 {
		fmt.Fprintf(out, "PLUGIN errors, restarts or dead letters: %d\n", r.PluginErrors)
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
