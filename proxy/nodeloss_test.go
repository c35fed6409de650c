package proxy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/keyring"
	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// vigieProcess is a Vigie node run as a real `vigie` process (built by the
// test), so that it can be killed without a graceful shutdown: SIGKILL to
// its process group, the server and its plugin processes at once, as when
// its machine or container dies.
type vigieProcess struct {
	t          *testing.T
	bin, conf  string
	url        string
	adminToken string
	env        []string
	cmd        *exec.Cmd
	log        *lockedBuffer
}

// lockedBuffer collects a process's output; safe to read while it runs.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// gatedProxy forwards TCP connections to a NATS server; paused, it stops
// forwarding (a node cut off from NATS without its connection dropping),
// and cut closes every connection it holds.
type gatedProxy struct {
	l      net.Listener
	target string
	paused atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
}

func startGatedProxy(t *testing.T, target string) *gatedProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gatedProxy{l: l, target: target}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			g.mu.Lock()
			g.conns = append(g.conns, c, s)
			g.mu.Unlock()
			g.wg.Add(2)
			go g.pipe(s, c)
			go g.pipe(c, s)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		g.paused.Store(false)
		g.cut()
		g.wg.Wait()
	})
	return g
}

// pipe copies from src to dst, holding what it read while paused.
func (g *gatedProxy) pipe(dst, src net.Conn) {
	defer g.wg.Done()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		for g.paused.Load() {
			time.Sleep(5 * time.Millisecond)
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (g *gatedProxy) url() string { return "nats://" + g.l.Addr().String() }

// cut closes every connection the proxy holds.
func (g *gatedProxy) cut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.conns {
		c.Close()
	}
	g.conns = nil
}

// buildVigie starts building the vigie command into a temp dir and
// returns a function, to call on the test's goroutine, that waits for the
// build and returns the binary's path.
func buildVigie(t *testing.T) func() string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "vigie")
	var out []byte
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		out, err = exec.Command("go", "build", "-o", bin, "./cmd/vigie").CombinedOutput()
	}()
	t.Cleanup(func() { <-done })
	return func() string {
		t.Helper()
		<-done
		if err != nil {
			t.Fatalf("go build ./cmd/vigie: %v\n%s", err, out)
		}
		return bin
	}
}

// startVigieProcess starts node id, on the NATS cluster at natsURL, as the
// vigie process bin, publishing at most maxInFlight messages unacknowledged
// with a YAML configuration, sharing the keyring, master key and admin
// token of node first (as an operator copies them); extra is appended to
// the YAML.
func startVigieProcess(t *testing.T, bin, natsURL, id string, maxInFlight int, first *proxytest.Instance, extra ...string) *vigieProcess {
	t.Helper()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	kr, err := os.ReadFile(filepath.Join(first.Config.DataDir, keyring.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, keyring.FileName), kr, 0o600); err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	conf := fmt.Sprintf(`listen: %q
data_dir: %q
log_level: debug
keys:
  secrets_dir: %q
nats:
  url: %q
  max_in_flight: %d
cluster:
  node_id: %q
`, listen, dataDir, filepath.Join(dir, "secrets"), natsURL, maxInFlight, id) + strings.Join(extra, "")
	p := &vigieProcess{
		t: t, bin: bin, conf: filepath.Join(dir, "vigie.yaml"),
		url: "http://" + listen, adminToken: first.AdminToken(), log: &lockedBuffer{},
	}
	if err := os.WriteFile(p.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VIGIE_") {
			p.env = append(p.env, kv)
		}
	}
	p.env = append(p.env, config.EnvMasterKey+"="+first.MasterKey(), config.EnvAdminToken+"="+first.AdminToken())
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("vigie %s output:\n%s", id, lastLines(p.log.String(), 40))
		}
	})
	p.start()
	return p
}

// start runs the process and waits until it is ready.
func (p *vigieProcess) start() {
	p.t.Helper()
	if err := p.run(); err != nil {
		p.t.Fatal(err)
	}
}

// run starts the process and waits until it is ready (for use off the
// test's goroutine).
func (p *vigieProcess) run() error {
	p.cmd = exec.Command(p.bin, "--config", p.conf)
	p.cmd.Env = p.env
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		p.cmd = nil
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := p.outboxDepth(); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("vigie process not ready: %w\n%s", err, lastLines(p.log.String(), 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// outboxDepth is the node's outbox depth, as its /readyz reports it.
func (p *vigieProcess) outboxDepth() (int, error) {
	resp, err := http.Get(p.url + "/readyz")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		OutboxDepth int `json:"outbox_depth"`
	}
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("readyz: %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, err
	}
	return r.OutboxDepth, nil
}

// kill kills the process group with SIGKILL and waits for the server.
func (p *vigieProcess) kill() {
	if p.cmd == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	_ = p.cmd.Wait()
	p.cmd = nil
}

// stop stops the process gracefully (SIGTERM), killing its group after
// 20 s or if a plugin process outlives it.
func (p *vigieProcess) stop() {
	if p.cmd == nil {
		return
	}
	pid := p.cmd.Process.Pid
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		p.t.Errorf("vigie process did not stop within 20 s")
	}
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		p.t.Errorf("kill process group: %v", err)
	}
	<-done
	p.cmd = nil
}

// eventNames is the name of every event stored at the node at url.
func eventNames(t *testing.T, url, adminToken string) []string {
	t.Helper()
	req, _ := http.NewRequest("GET", url+"/admin/v1/events?limit=1000&site=demo", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("admin events: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out struct {
		Events []map[string]any `json:"events"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &out) != nil {
		t.Fatalf("admin events: %d %s", resp.StatusCode, body)
	}
	if len(out.Events) == 1000 {
		t.Fatalf("admin events: a node holds 1000 events or more; the test reads one page only")
	}
	var names []string
	for _, e := range out.Events {
		n, _ := e["name"].(string)
		names = append(names, n)
	}
	return names
}

// TestClusterSurvivesVigieNodeLoss: three senders spread batches over three
// Vigie nodes, each batch then resent to the next node with the same
// messageIds (a retry after a lost answer). Node 3 is a real vigie
// process, killed with SIGKILL under load (no drain: what it committed and
// had not yet published stays in its outbox) and started again on its
// data dir a second later. A request that fails moves to the next node.
// The other nodes keep accepting while it is down; after its restart its
// outbox drains, and every event is stored once in the nodes' stores and
// published once to VIGIE_EVENTS. (Partitioned segmentation is not built,
// so no partition moves yet.)
func TestClusterSurvivesVigieNodeLoss(t *testing.T) {
	t.Parallel()
	built := buildVigie(t) // while the NATS cluster starts
	nc := startNATSCluster(t)
	nodes := startVigieNodes(t, nc, 2)
	// Node 3 reaches NATS through proxies that the test can hold.
	var proxies []*gatedProxy
	var proxied []string
	for _, srv := range nc.servers {
		g := startGatedProxy(t, fmt.Sprintf("127.0.0.1:%d", srv.port))
		proxies, proxied = append(proxies, g), append(proxied, g.url())
	}
	// It publishes at most 2 messages unacknowledged, so that most of what
	// its outbox holds at any moment under load was not sent yet (with the
	// default 1024 it sends at once all it commits, and a kill leaves only
	// messages sent but unacknowledged, which JetStream's own Nats-Msg-Id
	// dedup would absorb without the outbox).
	const inFlight = 2
	p := startVigieProcess(t, built(), strings.Join(proxied, ","), "v3", inFlight, nodes[0])
	urls := []string{nodes[0].URL, nodes[1].URL, p.url}

	const minBatches, killAt = 45, 15
	var (
		next      atomic.Int64
		down      atomic.Bool // node 3 is dead
		back      atomic.Bool // node 3 was restarted
		whileDown atomic.Int64
		onNode3   atomic.Int64
	)
	killNow := make(chan struct{})
	restarted := make(chan struct{})
	go func() { // node 3's death and restart
		defer close(restarted)
		<-killNow
		// Cut node 3 off from NATS at a moment when its outbox holds
		// committed messages not yet sent (it does most of the time under
		// load), then kill it: those events, and their dedup marks, are published
		// only if its restart drains the outbox.
		depth := 0
		for range 50 {
			for _, g := range proxies {
				g.paused.Store(true)
			}
			time.Sleep(20 * time.Millisecond)
			if depth, _ = p.outboxDepth(); depth > inFlight {
				break
			}
			for _, g := range proxies {
				g.paused.Store(false)
			}
			time.Sleep(30 * time.Millisecond)
		}
		p.kill()
		down.Store(true)
		for _, g := range proxies {
			g.cut()
			g.paused.Store(false)
		}
		if depth <= inFlight {
			t.Errorf("node 3's outbox was never caught holding unsent messages: the test does not exercise its drain")
		}
		t.Logf("node 3 killed holding %d outbox messages", depth)
		time.Sleep(time.Second)
		if err := p.run(); err != nil {
			t.Errorf("restart node 3: %v", err)
		}
		down.Store(false)
		back.Store(true)
	}()
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if next.Load() >= minBatches && back.Load() {
					return
				}
				b := int(next.Add(1)) - 1
				if b == killAt {
					close(killNow)
				}
				for attempt := range 2 { // the first post, then the retry elsewhere
					i := postUntilOKAt(t, urls, b+attempt, b)
					if i == 2 {
						onNode3.Add(1)
					}
					if i >= 0 && down.Load() {
						whileDown.Add(1)
					}
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	<-restarted
	total := int(next.Load())
	t.Logf("%d batches; accepted %d times by node 3, %d times while it was down", total, onNode3.Load(), whileDown.Load())
	if whileDown.Load() == 0 {
		t.Errorf("no batch was accepted while node 3 was down")
	}
	if onNode3.Load() == 0 {
		t.Errorf("node 3 accepted no batch")
	}
	waitUntil(t, "node 3's outbox to drain after its restart", 20*time.Second, func() bool {
		d, err := p.outboxDepth()
		return err == nil && d == 0
	})
	exactlyOnce(t, waitClusterStream(t, nc.jetStream(t), nodes, total*10), total*10)
	stored := map[string]int{}
	for _, u := range urls {
		for _, n := range eventNames(t, u, p.adminToken) {
			stored[n]++
		}
	}
	for i := range total * 10 {
		if c := stored[fmt.Sprintf("n%d", i)]; c != 1 {
			t.Errorf("event n%d is stored %d times in the nodes' stores", i, c)
		}
	}
	if len(stored) != total*10 {
		t.Errorf("the nodes' stores hold %d distinct events, want %d", len(stored), total*10)
	}
}
