package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vigie-dev/vigie/proxy"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/keyring"
)

// ServeSubcommand is the hidden `vigie bench serve`: the server side of
// `vigie bench --external`, run by re-executing the running binary.
const ServeSubcommand = "serve"

// endpoints are the base URLs the load client drives.
type endpoints struct {
	Vigie      string `json:"vigie"`
	Bare       string `json:"bare"`
	Decode     string `json:"decode"`
	JSONDecode string `json:"json_decode"`
	Control    string `json:"control,omitempty"`
	PID        int    `json:"pid"`
}

// serverStats is what the server side reports during and after a phase.
type serverStats struct {
	// Outbox is the number of committed outbox entries not yet
	// acknowledged by JetStream.
	Outbox int64 `json:"outbox"`
	// EnrichLag and SegmentLag are the messages the enrich stage's
	// consumer and the segmenters' consumers (replay twins included) have
	// not acknowledged yet: pending plus in flight.
	EnrichLag  uint64 `json:"enrich_lag"`
	SegmentLag uint64 `json:"segment_lag"`
	// SegmentProcessed is the events the segmenters have handled.
	SegmentProcessed int64 `json:"segment_processed"`
	// PluginErrors counts the plugins' handling errors, restarts and dead
	// letters: a run is only valid while it stays 0.
	PluginErrors int64   `json:"plugin_errors"`
	Mem          memInfo `json:"mem"`
	// CPUSeconds is the CPU time (user + system) the server process has
	// used since it started; plugin processes are not counted.
	CPUSeconds float64 `json:"cpu_seconds"`
	// Sched is the server process's scheduler latency histogram so far:
	// how long runnable goroutines waited for a CPU.
	Sched histogram `json:"sched"`
}

// serverSide is the server of a bench run: a Vigie with the default
// configuration (built-in plugins on) in a temporary data dir, and the
// baseline handlers, each on its own loopback port. It runs in the bench
// process, or alone in a `vigie bench serve` process with --external.
type serverSide struct {
	srv       *proxy.Server
	dir       string
	baselines []*baseline
	ep        endpoints

	profMu  sync.Mutex
	profile *os.File
	trace   *os.File
}

// benchConfig is the configuration of the server under test: what a first
// run of `vigie` without a configuration file gets (demo site, built-in
// plugins geoip and segments), on a random loopback port, with a temporary
// data dir, a throwaway master key and warnings only.
func benchConfig(dataDir string, so serverOptions) (config.Config, error) {
	cfg, err := config.Load("", nil)
	if err != nil {
		return cfg, err
	}
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = dataDir
	cfg.LogLevel = "warn"
	cfg.Storage.SyncWrites = so.syncWrites
	if so.noPlugins {
		cfg.Plugins = []config.Plugin{}
	}
	if so.pluginBatch > 0 {
		cfg.PluginRuntime.BatchSize = so.pluginBatch
	}
	// A throwaway master key: the temporary instance leaves no secret behind.
	mk, err := keyring.NewMasterKey()
	if err != nil {
		return cfg, err
	}
	cfg.Keys.MasterKey = config.Secret(mk.Encode())
	return cfg, nil
}

// serverOptions are the flags that shape the server under test.
type serverOptions struct {
	syncWrites bool // Badger SyncWrites on
	noPlugins  bool // no plugins (the default has the built-in ones)
	// pluginBatch, when positive, is plugin_runtime.batch_size.
	pluginBatch int
}

// startServerSide starts the baselines and Vigie.
func startServerSide(ctx context.Context, so serverOptions, log *slog.Logger) (_ *serverSide, err error) {
	s := &serverSide{ep: endpoints{PID: os.Getpid()}}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	lim := config.Default().Limits
	for _, b := range []struct {
		h   http.Handler
		url *string
	}{{bareHandler(), &s.ep.Bare}, {decodeHandler(lim), &s.ep.Decode}, {jsonDecodeHandler(lim), &s.ep.JSONDecode}} {
		bl, err := startBaseline(b.h)
		if err != nil {
			return nil, err
		}
		s.baselines = append(s.baselines, bl)
		*b.url = bl.url
	}
	if s.dir, err = os.MkdirTemp("", "vigie-bench-"); err != nil {
		return nil, err
	}
	cfg, err := benchConfig(filepath.Join(s.dir, "data"), so)
	if err != nil {
		return nil, err
	}
	srv, err := proxy.New(cfg, log)
	if err != nil {
		return nil, err
	}
	if err := srv.Start(ctx); err != nil {
		return nil, err
	}
	s.srv = srv
	s.ep.Vigie = "http://" + srv.Addr()
	return s, nil
}

// outboxLen is the committed outbox entries not yet published.
func (s *serverSide) outboxLen() int64 { return s.srv.Store().OutboxLen() }

// stats reads the outbox, the plugin consumers and this process's memory.
func (s *serverSide) stats(ctx context.Context) serverStats {
	st := serverStats{Outbox: s.outboxLen(), Mem: readMem(), CPUSeconds: processCPUSeconds(), Sched: schedHistogram()}
	rt := s.srv.Plugins()
	if rt == nil {
		return st
	}
	enrichSeen := false
	for _, p := range rt.Status(ctx) {
		st.PluginErrors += p.Errors + p.Restarts + int64(p.DeadLetters)
		segmenter, enricher := false, false
		for _, c := range p.Consumers {
			lag := c.Pending + uint64(c.AckPending)
			switch {
			case c.Name == "enrich" || strings.HasPrefix(c.Name, "enrich-"):
				// Listed with every enricher: counted once.
				if !enrichSeen {
					st.EnrichLag += lag
					enricher = true
				}
			case strings.HasPrefix(c.Name, "segment-"):
				st.SegmentLag += lag
				segmenter = true
			}
		}
		enrichSeen = enrichSeen || enricher
		if segmenter {
			st.SegmentProcessed += p.Processed
		}
	}
	return st
}

// startCPUProfile starts profiling this process into path.
func (s *serverSide) startCPUProfile(path string) error {
	s.profMu.Lock()
	defer s.profMu.Unlock()
	if s.profile != nil {
		return errors.New("bench: a CPU profile is already running")
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return err
	}
	s.profile = f
	return nil
}

// stopCPUProfile stops the running profile, if any.
func (s *serverSide) stopCPUProfile() error {
	s.profMu.Lock()
	defer s.profMu.Unlock()
	if s.profile == nil {
		return nil
	}
	pprof.StopCPUProfile()
	err := s.profile.Close()
	s.profile = nil
	return err
}

// startTrace starts an execution trace of this process into path.
func (s *serverSide) startTrace(path string) error {
	s.profMu.Lock()
	defer s.profMu.Unlock()
	if s.trace != nil {
		return errors.New("bench: a trace is already running")
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := trace.Start(f); err != nil {
		f.Close()
		return err
	}
	s.trace = f
	return nil
}

// stopTrace stops the running trace, if any.
func (s *serverSide) stopTrace() error {
	s.profMu.Lock()
	defer s.profMu.Unlock()
	if s.trace == nil {
		return nil
	}
	trace.Stop()
	err := s.trace.Close()
	s.trace = nil
	return err
}

// close stops everything and removes the data dir.
func (s *serverSide) close() {
	_ = s.stopCPUProfile()
	if s.srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_ = s.srv.Shutdown(sctx)
		cancel()
	}
	for _, b := range s.baselines {
		b.close()
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}

// backend is the server of a run as the load client sees it: in this
// process (local) or in a child process (remote).
type backend interface {
	endpoints() endpoints
	outboxLen(ctx context.Context) (int64, error)
	stats(ctx context.Context) (serverStats, error)
	startCPUProfile(ctx context.Context, path string) error
	stopCPUProfile(ctx context.Context) error
	writeHeapProfile(ctx context.Context, path string) error
	startTrace(ctx context.Context, path string) error
	stopTrace(ctx context.Context) error
	close() error
}

// local is the server side in this process.
type local struct{ s *serverSide }

func (l local) endpoints() endpoints { return l.s.ep }
func (l local) outboxLen(context.Context) (int64, error) {
	return l.s.outboxLen(), nil
}
func (l local) stats(ctx context.Context) (serverStats, error) { return l.s.stats(ctx), nil }
func (l local) startCPUProfile(_ context.Context, path string) error {
	return l.s.startCPUProfile(path)
}
func (l local) stopCPUProfile(context.Context) error { return l.s.stopCPUProfile() }
func (l local) writeHeapProfile(_ context.Context, path string) error {
	return writeHeapProfile(path)
}
func (l local) startTrace(_ context.Context, path string) error { return l.s.startTrace(path) }
func (l local) stopTrace(context.Context) error                 { return l.s.stopTrace() }
func (l local) close() error                                    { l.s.close(); return nil }

// remote is a `vigie bench serve` child process, driven over its loopback
// control port.
type remote struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	ep     endpoints
	client *http.Client
	done   chan error
}

// startRemote re-executes the running binary as `vigie bench serve` and
// reads the endpoints it prints.
func startRemote(ctx context.Context, so serverOptions, stderr io.Writer) (*remote, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "bench", ServeSubcommand, "--sync-writes="+strconv.FormatBool(so.syncWrites),
		"--no-plugins="+strconv.FormatBool(so.noPlugins), "--plugin-batch="+strconv.Itoa(so.pluginBatch))
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r := &remote{cmd: cmd, stdin: stdin, done: make(chan error, 1),
		client: &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 2}}}
	hello := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadBytes('\n')
		if err == nil {
			err = json.Unmarshal(line, &r.ep)
		}
		hello <- err
		_, _ = io.Copy(io.Discard, stdout)
		r.done <- cmd.Wait()
	}()
	select {
	case err = <-hello:
	case <-ctx.Done():
		err = ctx.Err()
	case <-time.After(2 * time.Minute):
		err = errors.New("bench: the server process did not start within 2 minutes")
	}
	if err != nil {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("bench: start the server process: %w", err)
	}
	return r, nil
}

func (r *remote) endpoints() endpoints { return r.ep }

func (r *remote) call(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, r.ep.Control+path, nil)
	if err != nil {
		return err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("bench: server process: %s %s: %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func (r *remote) outboxLen(ctx context.Context) (int64, error) {
	var n int64
	err := r.call(ctx, http.MethodGet, "/outbox", &n)
	return n, err
}

func (r *remote) stats(ctx context.Context) (serverStats, error) {
	var st serverStats
	err := r.call(ctx, http.MethodGet, "/stats", &st)
	return st, err
}

func (r *remote) startCPUProfile(ctx context.Context, path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	return r.call(ctx, http.MethodPost, "/cpuprofile/start?path="+url.QueryEscape(abs), nil)
}

func (r *remote) stopCPUProfile(ctx context.Context) error {
	return r.call(ctx, http.MethodPost, "/cpuprofile/stop", nil)
}

func (r *remote) startTrace(ctx context.Context, path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	return r.call(ctx, http.MethodPost, "/trace/start?path="+url.QueryEscape(abs), nil)
}

func (r *remote) stopTrace(ctx context.Context) error {
	return r.call(ctx, http.MethodPost, "/trace/stop", nil)
}

func (r *remote) writeHeapProfile(ctx context.Context, path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	return r.call(ctx, http.MethodPost, "/heapprofile?path="+url.QueryEscape(abs), nil)
}

// close asks the server process to stop (its stdin closes) and waits for
// it, killing it after a minute.
func (r *remote) close() error {
	_ = r.stdin.Close()
	select {
	case err := <-r.done:
		return err
	case <-time.After(time.Minute):
		_ = r.cmd.Process.Kill()
		return <-r.done
	}
}

// serveMain is `vigie bench serve`: it starts the server side, prints its
// endpoints as one JSON line on stdout, serves the control API on a
// loopback port and stops when stdin closes (the load client exited) or on
// SIGINT/SIGTERM (ctx).
func serveMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("vigie bench serve", stderr)
	var so serverOptions
	fs.BoolVar(&so.syncWrites, "sync-writes", false, "turn Badger SyncWrites on (fsync every commit)")
	fs.BoolVar(&so.noPlugins, "no-plugins", false, "run without the built-in plugins")
	fs.IntVar(&so.pluginBatch, "plugin-batch", 0, "plugin_runtime.batch_size (0: the default)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		cancel()
	}()
	s, err := startServerSide(ctx, so, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return err
	}
	defer s.close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	s.ep.Control = "http://" + ln.Addr().String()
	ctl := &http.Server{Handler: controlHandler(s), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = ctl.Serve(ln) }()
	defer ctl.Close()
	line, err := json.Marshal(s.ep)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n", line)
	<-ctx.Done()
	return nil
}

// controlHandler is the server process's control API (loopback only).
func controlHandler(s *serverSide) http.Handler {
	mux := http.NewServeMux()
	writeJSON := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	fail := func(w http.ResponseWriter, err error) {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
	mux.HandleFunc("GET /outbox", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, s.outboxLen()) })
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, s.stats(r.Context())) })
	mux.HandleFunc("POST /cpuprofile/start", func(w http.ResponseWriter, r *http.Request) {
		if err := s.startCPUProfile(r.URL.Query().Get("path")); err != nil {
			fail(w, err)
		}
	})
	mux.HandleFunc("POST /cpuprofile/stop", func(w http.ResponseWriter, r *http.Request) {
		if err := s.stopCPUProfile(); err != nil {
			fail(w, err)
		}
	})
	mux.HandleFunc("POST /trace/start", func(w http.ResponseWriter, r *http.Request) {
		if err := s.startTrace(r.URL.Query().Get("path")); err != nil {
			fail(w, err)
		}
	})
	mux.HandleFunc("POST /trace/stop", func(w http.ResponseWriter, r *http.Request) {
		if err := s.stopTrace(); err != nil {
			fail(w, err)
		}
	})
	mux.HandleFunc("POST /heapprofile", func(w http.ResponseWriter, r *http.Request) {
		runtime.GC()
		if err := writeHeapProfile(r.URL.Query().Get("path")); err != nil {
			fail(w, err)
		}
	})
	return mux
}
