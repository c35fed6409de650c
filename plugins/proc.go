package plugins

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"crypto/sha256"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/vigie-dev/vigie/sdk"
)

// State is a plugin's lifecycle state.
type State string

// Plugin states.
const (
	StateStarting   State = "starting"
	StateRunning    State = "running"
	StateRestarting State = "restarting"
	StateFailed     State = "failed"
	StateStopped    State = "stopped"
)

// Bounds of taking a plugin process down (see terminate).
const (
	// stopGrace is how long a plugin asked to shut down (go-plugin's
	// graceful Kill) has before it is sent SIGKILL. A healthy plugin exits
	// in milliseconds; go-plugin itself waits 2 s, but only once the
	// plugin has answered the shutdown request, which a stopped or
	// deadlocked one never does.
	stopGrace = 2 * time.Second
	// reapWait bounds the wait, after SIGKILL, for go-plugin to reap the
	// process and end its goroutines (it reads the plugin's stdout and
	// stderr to their end, which a grandchild holding them can delay).
	reapWait = 5 * time.Second
)

// proc supervises one plugin process: it starts it, checks its manifest,
// watches it (Exited, Ping) and restarts it with backoff when it crashes or
// hangs. go-plugin itself never restarts a plugin.
type proc struct {
	rt   *Runtime
	spec Spec
	log  *slog.Logger
	host *hostServices

	crash  chan fault // a call saw the process die or hang
	stderr *tail

	mu       sync.Mutex
	state    State
	pc       *plugin.Client
	process  *os.Process // pc's process, to SIGKILL it
	client   *sdk.Client
	manifest sdk.Manifest
	// passThrough: the process's Configure answered that its Enrich
	// returns events unchanged (sdk.PassThrougher).
	passThrough bool
	ready       chan struct{} // closed while running; replaced when not
	crashes     int           // consecutive crashes without a successful call
	lastErr     string
	since       time.Time

	restarts  atomic.Int64
	processed atomic.Int64
	errors    atomic.Int64
}

// newProc returns the supervisor of spec; nothing starts yet.
func newProc(rt *Runtime, spec Spec) *proc {
	p := &proc{
		rt: rt, spec: spec,
		log:    rt.log.With("plugin", spec.Name),
		crash:  make(chan fault, 1),
		state:  StateStarting,
		ready:  make(chan struct{}),
		since:  time.Now(),
		stderr: &tail{},
	}
	p.host = &hostServices{rt: rt, p: p}
	return p
}

// permanent marks start errors that restarting cannot fix.
var errPermanent = errors.New("permanent")

// run starts the plugin and keeps it running until ctx is done.
func (p *proc) run(ctx context.Context) {
	defer p.stop(StateStopped)
	for ctx.Err() == nil {
		err := p.start(ctx)
		if err == nil {
			p.watch(ctx)
		} else if ctx.Err() == nil {
			p.noteCrash(err.Error())
			p.log.Error("plugin did not start", "err", err)
		}
		if ctx.Err() != nil {
			return
		}
		delay := p.restartDelay(errors.Is(err, errPermanent))
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		p.restarts.Add(1)
		p.rt.metrics.restarts.WithLabelValues(p.spec.Name).Inc()
	}
}

// restartDelay returns how long to wait before the next start and sets the
// state accordingly.
func (p *proc) restartDelay(permanent bool) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if permanent || p.crashes >= p.rt.cfg.MaxRestarts {
		if p.state != StateFailed {
			p.log.Error("plugin marked failed; retrying periodically", "crashes", p.crashes, "retry", p.rt.cfg.FailedRetry)
		}
		p.setStateLocked(StateFailed)
		return p.rt.cfg.FailedRetry
	}
	p.setStateLocked(StateRestarting)
	d := p.rt.cfg.RestartBackoff
	for i := 1; i < p.crashes && d < p.rt.cfg.MaxRestartBackoff; i++ {
		d *= 2
	}
	return min(d, p.rt.cfg.MaxRestartBackoff)
}

// setStateLocked changes the state; p.mu is held.
func (p *proc) setStateLocked(s State) {
	if p.state == s {
		return
	}
	if p.state == StateRunning {
		p.ready = make(chan struct{})
	}
	p.state = s
	p.since = time.Now()
	if s == StateRunning {
		close(p.ready)
	}
	p.rt.metrics.up.WithLabelValues(p.spec.Name).Set(boolFloat(s == StateRunning))
}

// command returns the command that starts the plugin.
func (p *proc) command() (*exec.Cmd, *plugin.SecureConfig, error) {
	if p.spec.Path == "" {
		cmd, err := p.rt.cfg.Builtin(p.spec.builtinName())
		if err != nil {
			return nil, nil, fmt.Errorf("%w: built-in %q: %w", errPermanent, p.spec.builtinName(), err)
		}
		cmd.Env = p.spec.Env
		return cmd, nil, nil
	}
	sum, _ := hex.DecodeString(p.spec.SHA256)
	cmd := exec.Command(p.spec.Path)
	cmd.Env = p.spec.Env
	return cmd, &plugin.SecureConfig{Checksum: sum, Hash: sha256.New()}, nil
}

// start launches the process, checks the manifest and configures it.
func (p *proc) start(ctx context.Context) error {
	p.mu.Lock()
	if p.state != StateFailed {
		p.setStateLocked(StateStarting)
	}
	p.mu.Unlock()
	cmd, secure, err := p.command()
	if err != nil {
		return err
	}
	out := &lineLog{log: p.log, tail: p.stderr}
	pc := plugin.NewClient(sdk.NewClientConfig(sdk.ClientConfig{
		Cmd:          cmd,
		Host:         p.host,
		SecureConfig: secure,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name: "go-plugin", Level: hclog.Warn, Output: out, DisableTime: true,
		}),
		Stderr:       out,
		StartTimeout: 30 * time.Second,
	}))
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := sdk.Connect(sctx, pc)
	// Connect started cmd (go-plugin runs the exec.Cmd it is given), unless
	// it failed before; it does not change after.
	process := cmd.Process
	if err != nil {
		p.terminate(pc, process, false)
		if errors.Is(err, sdk.ErrProtocolVersion) || errors.Is(err, plugin.ErrChecksumsDoNotMatch) ||
			strings.Contains(err.Error(), "checksum") {
			return fmt.Errorf("%w: %w", errPermanent, err)
		}
		return err
	}
	m := effective(p.spec, c.Manifest())
	if err := p.rt.checkManifest(p.spec, m); err != nil {
		p.terminate(pc, process, false)
		return fmt.Errorf("%w: %w", errPermanent, err)
	}
	if err := c.Configure(sctx, p.spec.Config); err != nil && !errors.Is(err, sdk.ErrNotImplemented) {
		p.terminate(pc, process, false)
		return fmt.Errorf("%w: configure: %w", errPermanent, err)
	}
	p.mu.Lock()
	p.pc, p.process, p.client, p.manifest = pc, process, c, m
	p.passThrough = c.EnrichPassThrough()
	p.lastErr = ""
	p.setStateLocked(StateRunning)
	p.mu.Unlock()
	p.log.Info("plugin started", "version", m.Version, "kinds", m.Kinds)
	return nil
}

// fault is why a plugin process is taken down; the zero value is none.
type fault struct {
	reason string
	// hung: a call or a ping got no answer within CallTimeout. The
	// process is alive but not serving (deadlocked, stopped, swapping):
	// it is SIGKILLed at once instead of being asked to shut down.
	hung bool
}

// watch returns when the process exits, stops answering pings, a call
// reports a crash, or ctx is done; the process is killed on return.
func (p *proc) watch(ctx context.Context) {
	t := time.NewTicker(p.rt.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-p.crash:
			p.noteCrash(f.reason)
			p.kill(f.hung)
			return
		case <-t.C:
			if f := p.check(ctx); f.reason != "" {
				p.noteCrash(f.reason)
				p.kill(f.hung)
				return
			}
		}
	}
}

// check pings the process; it returns why it is unhealthy, or no fault
// (also when ctx is done first).
func (p *proc) check(ctx context.Context) fault {
	p.mu.Lock()
	pc := p.pc
	p.mu.Unlock()
	if pc == nil {
		return fault{}
	}
	if pc.Exited() {
		return fault{reason: p.exitReason("plugin process exited")}
	}
	rpc, err := pc.Client()
	if err != nil {
		return fault{reason: "plugin connection lost: " + err.Error()}
	}
	// Ping has no deadline of its own; a ping left waiting on a hung
	// process ends when the kill closes the connection.
	done := make(chan error, 1)
	go func() { done <- rpc.Ping() }()
	t := time.NewTimer(p.rt.cfg.CallTimeout)
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil {
			return fault{reason: p.exitReason("plugin does not answer ping")}
		}
	case <-t.C:
		return fault{reason: fmt.Sprintf("plugin did not answer a ping within %s (hung)", p.rt.cfg.CallTimeout), hung: true}
	case <-ctx.Done():
	}
	return fault{}
}

// exitReason names why the process died, using its last stderr lines (a
// Go panic message when there is one).
func (p *proc) exitReason(what string) string {
	if line := p.stderr.panicLine(); line != "" {
		return what + ": " + line
	}
	return what
}

// noteCrash records a crash.
func (p *proc) noteCrash(reason string) {
	p.mu.Lock()
	p.crashes++
	p.lastErr = reason
	n := p.crashes
	if p.state == StateRunning {
		p.setStateLocked(StateRestarting)
	}
	p.mu.Unlock()
	p.log.Warn("plugin crashed", "reason", reason, "consecutive", n)
}

// kill takes the process down (see terminate); hung kills it outright.
func (p *proc) kill(hung bool) {
	p.mu.Lock()
	pc, process := p.pc, p.process
	p.pc, p.process, p.client = nil, nil, nil
	p.mu.Unlock()
	if pc != nil {
		p.terminate(pc, process, hung)
	}
}

// terminate takes a plugin process down and returns once go-plugin has
// reaped it, or after at most stopGrace+reapWait.
//
// go-plugin's Kill first asks the plugin to shut down over gRPC and waits
// for the answer with no deadline, so on a hung process (stopped,
// deadlocked) it would block until the process woke up. A hung process is
// therefore sent SIGKILL first; Kill then only cleans up go-plugin's side
// (the shutdown request fails with the connection, the process is reaped,
// its goroutines end). Any other process (one that exited, or a healthy
// one at shutdown) gets go-plugin's graceful Kill, and SIGKILL if it has
// not exited within stopGrace.
//
// The signal goes through os.Process (a pidfd on Linux), so it can never
// reach another process that reused the pid after go-plugin reaped this
// one.
func (p *proc) terminate(pc *plugin.Client, process *os.Process, hung bool) {
	if hung {
		p.sigkill(process)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		pc.Kill()
	}()
	if !hung {
		grace := time.NewTimer(stopGrace)
		defer grace.Stop()
		select {
		case <-done:
			return
		case <-grace.C:
		}
		p.log.Warn("plugin did not stop within its grace period; killing it", "grace", stopGrace)
		p.sigkill(process)
	}
	reap := time.NewTimer(reapWait)
	defer reap.Stop()
	select {
	case <-done:
	case <-reap.C:
		p.log.Error("plugin process killed but not yet released by go-plugin", "waited", reapWait)
	}
}

// sigkill sends SIGKILL to process (nil: never started).
func (p *proc) sigkill(process *os.Process) {
	if process == nil {
		return
	}
	if err := process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.log.Warn("could not kill plugin process", "err", err)
	}
}

// stop takes the process down and sets the final state.
func (p *proc) stop(s State) {
	p.kill(false)
	p.mu.Lock()
	p.setStateLocked(s)
	p.mu.Unlock()
}

// waitReady blocks until the plugin runs or ctx is done.
func (p *proc) waitReady(ctx context.Context) (*sdk.Client, error) {
	for {
		p.mu.Lock()
		c, ready := p.client, p.ready
		running := p.state == StateRunning
		p.mu.Unlock()
		if running && c != nil {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrNotRunning, ctx.Err())
		case <-ready:
		}
	}
}

// call runs fn against the plugin with the per-call timeout. A call during
// which the process died or that timed out is reported as ErrCrashed (and
// the process is restarted); other errors are the plugin's own.
func (p *proc) call(ctx context.Context, fn func(context.Context, *sdk.Client) error) error {
	c, err := p.waitReady(ctx)
	if err != nil {
		return err
	}
	mark := p.stderr.mark()
	cctx, cancel := context.WithTimeout(ctx, p.rt.cfg.CallTimeout)
	err = fn(cctx, c)
	timedOut := cctx.Err() != nil && ctx.Err() == nil
	cancel()
	if err == nil {
		p.mu.Lock()
		p.crashes = 0
		p.mu.Unlock()
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %w", ErrNotRunning, ctx.Err())
	}
	var f fault
	if timedOut {
		f = fault{reason: fmt.Sprintf("plugin did not answer within %s (hung)", p.rt.cfg.CallTimeout), hung: true}
	} else {
		f = p.check(ctx)
	}
	if f.reason == "" {
		return err
	}
	if !f.hung {
		// The process's last stderr lines (a Go panic) arrive a moment
		// after the connection drops.
		f.reason = "plugin process died"
		for i := 0; i < 50; i++ {
			if line := p.stderr.panicSince(mark); line != "" {
				f.reason += ": " + line
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	select {
	case p.crash <- f:
	default:
	}
	// Wait for the supervisor to take the process down so that the next
	// call waits for the restart instead of hitting the dead process.
	for i := 0; i < 100; i++ {
		p.mu.Lock()
		gone := p.client != c
		p.mu.Unlock()
		if gone {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("%w: %s", ErrCrashed, f.reason)
}

// snapshot returns the fields shown by Status.
// enrichIdle reports whether the running process said, when configured,
// that its Enrich returns every event unchanged (sdk.PassThrougher).
func (p *proc) enrichIdle() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.passThrough
}

func (p *proc) snapshot() (State, sdk.Manifest, string, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state, p.manifest, p.lastErr, p.since
}

// tail follows what a plugin writes to stderr: how many lines, and the
// last Go panic line (a panic is followed by a long stack trace, so it is
// kept by itself rather than in a window of last lines).
type tail struct {
	mu    sync.Mutex
	total int // lines ever added
	// panic is the last "panic: …" line and panicAt its number.
	panic   string
	panicAt int
}

func (t *tail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total++
	if strings.HasPrefix(line, "panic: ") {
		t.panic, t.panicAt = line, t.total
	}
}

// mark returns a position for panicSince.
func (t *tail) mark() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total
}

// panicSince returns a "panic: …" line added after mark, if any.
func (t *tail) panicSince(mark int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.panicAt > mark {
		return t.panic
	}
	return ""
}

// panicLine returns the last "panic: …" line, if any.
func (t *tail) panicLine() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.panic
}

// lineLog is the plugin's stderr and go-plugin's logger output: each line is
// logged with the plugin's name (at the level go-plugin's JSON lines carry,
// error for a panic, else info) and counted in the tail.
type lineLog struct {
	log  *slog.Logger
	tail *tail
	mu   sync.Mutex
	buf  []byte
}

func (l *lineLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, b...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimSpace(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
		if line == "" {
			continue
		}
		l.tail.add(line)
		level, msg := stderrLevel(line)
		l.log.Log(context.Background(), level, "plugin stderr", "line", msg)
	}
	if len(l.buf) > 64<<10 {
		l.buf = l.buf[:0]
	}
	return len(b), nil
}

// stderrLevel picks the level of a plugin's stderr line: go-plugin's own
// JSON lines (hclog) carry "@level" and "@message"; Go panics are errors;
// anything else is info.
func stderrLevel(line string) (slog.Level, string) {
	if strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ") {
		return slog.LevelError, line
	}
	if strings.HasPrefix(line, "{") {
		var j struct {
			Level   string `json:"@level"`
			Message string `json:"@message"`
		}
		if json.Unmarshal([]byte(line), &j) == nil && j.Message != "" {
			switch j.Level {
			case "trace", "debug":
				return slog.LevelDebug, j.Message
			case "warn":
				return slog.LevelWarn, j.Message
			case "error":
				return slog.LevelError, j.Message
			}
			return slog.LevelInfo, j.Message
		}
	}
	return slog.LevelInfo, line
}

// boolFloat is 1 for true.
func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
