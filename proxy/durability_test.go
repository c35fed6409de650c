package proxy_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// natsServer is a real nats-server process (Debian package nats-server).
type natsServer struct {
	t    *testing.T
	port int
	dir  string
	cmd  *exec.Cmd
	log  bytes.Buffer
}

func needNATSServer(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("nats-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("nats-server is not installed (.ci/run installs the Debian package)")
		}
		t.Skip("nats-server not installed: apt-get install nats-server")
	}
	return p
}

// givenPorts are the ports freePort has returned in this process: the
// kernel may hand a port just closed out again at the next bind to port 0
// (a cluster test once got the same port for two nats-servers' routes).
var givenPorts struct {
	sync.Mutex
	m map[int]bool
}

// freePort returns a loopback TCP port that was free just now and that it
// has not returned before in this process.
func freePort(t *testing.T) int {
	t.Helper()
	givenPorts.Lock()
	defer givenPorts.Unlock()
	if givenPorts.m == nil {
		givenPorts.m = make(map[int]bool)
	}
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !givenPorts.m[port] {
			givenPorts.m[port] = true
			return port
		}
	}
	t.Fatal("no free port not given before")
	return 0
}

func startNATS(t *testing.T) *natsServer {
	t.Helper()
	ns := &natsServer{t: t, port: freePort(t), dir: filepath.Join(t.TempDir(), "js")}
	ns.start()
	t.Cleanup(ns.stop)
	return ns
}

func (ns *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", ns.port) }

func (ns *natsServer) start() {
	ns.t.Helper()
	bin := needNATSServer(ns.t)
	ns.cmd = exec.Command(bin, "-js", "-a", "127.0.0.1", "-p", fmt.Sprint(ns.port), "-sd", ns.dir)
	ns.cmd.Stdout, ns.cmd.Stderr = &ns.log, &ns.log
	if err := ns.cmd.Start(); err != nil {
		ns.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		nc, err := nats.Connect(ns.url())
		if err == nil {
			nc.Close()
			return
		}
		if time.Now().After(deadline) {
			ns.t.Fatalf("nats-server did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (ns *natsServer) stop() {
	if ns.cmd == nil || ns.cmd.Process == nil {
		return
	}
	_ = ns.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = ns.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = ns.cmd.Process.Kill()
		<-done
	}
	ns.cmd = nil
}

// kill kills the server (SIGKILL) and waits for it.
func (ns *natsServer) kill() {
	if ns.cmd == nil || ns.cmd.Process == nil {
		return
	}
	_ = ns.cmd.Process.Kill()
	_ = ns.cmd.Wait()
	ns.cmd = nil
}

// externalStream reads VIGIE_EVENTS from the external server directly.
func externalStream(t *testing.T, ns *natsServer, want int) []streamMsg {
	t.Helper()
	nc, err := nats.Connect(ns.url())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		msgs := readStream(t, js)
		if len(msgs) >= want || time.Now().After(deadline) {
			return msgs
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func sendNumbered(t *testing.T, in *proxytest.Instance, from, n int) {
	t.Helper()
	for i := from; i < from+n; i += 10 {
		var b strings.Builder
		b.WriteString(`{"batch":[`)
		for j := i; j < i+10 && j < from+n; j++ {
			if j > i {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `{"type":"track","event":"n%d","anonymousId":"a","messageId":"msg-%d"}`, j, j)
		}
		b.WriteString(`]}`)
		if code, body := in.Post("/v1/batch", "demo", b.String()); code != 200 {
			t.Fatalf("batch from %d: %d %s", i, code, body)
		}
	}
}

// exactlyOnce checks that the stream holds events n0..n(total-1) once each.
func exactlyOnce(t *testing.T, msgs []streamMsg, total int) {
	t.Helper()
	seen := map[string]int{}
	ids := map[string]bool{}
	for _, m := range msgs {
		seen[m.Event.GetName()]++
		if ids[m.MsgID] {
			t.Errorf("message id %s twice in the stream", m.MsgID)
		}
		ids[m.MsgID] = true
	}
	for i := 0; i < total; i++ {
		if c := seen[fmt.Sprintf("n%d", i)]; c != 1 {
			t.Errorf("event n%d is in the stream %d times", i, c)
		}
	}
	if len(msgs) != total {
		t.Errorf("stream holds %d messages, want %d", len(msgs), total)
	}
}

func TestDurabilityWithExternalNATSOutage(t *testing.T) {
	ns := startNATS(t)
	in := proxytest.Start(t, func(c *config.Config) { c.NATS.URL = ns.url() })

	sendNumbered(t, in, 0, 50)
	exactlyOnce(t, externalStream(t, ns, 50), 50)

	// NATS goes away mid-stream: ingestion keeps answering 200.
	ns.stop()
	sendNumbered(t, in, 50, 50)
	if d := in.Server.Store().OutboxLen(); d == 0 {
		t.Fatal("outbox empty while NATS is down")
	}
	ns.start()
	exactlyOnce(t, externalStream(t, ns, 100), 100)

	// Restart Vigie between ingestion and publishing.
	ns.stop()
	sendNumbered(t, in, 100, 30)
	in.Stop()
	ns.start()
	in.Restart()
	exactlyOnce(t, externalStream(t, ns, 130), 130)
	if n := len(adminEvents(t, in, "site=demo")); n != 130 {
		t.Fatalf("badger holds %d events, want 130", n)
	}
}

func TestRestartKeepsEverythingEmbedded(t *testing.T) {
	in := proxytest.Start(t)
	sendNumbered(t, in, 0, 40)
	in.Restart()
	sendNumbered(t, in, 40, 20)
	in.Restart()
	exactlyOnce(t, waitStream(t, in, 60), 60)
	if n := len(adminEvents(t, in, "site=demo")); n != 60 {
		t.Fatalf("badger holds %d events, want 60", n)
	}
}

func TestFullBacklogAnswers503WithRetryAfter(t *testing.T) {
	// NATS is unreachable from the start: events wait in the outbox, up to
	// storage.max_outbox, then ingestion pushes back.
	down := fmt.Sprintf("nats://127.0.0.1:%d", freePort(t))
	in := proxytest.Start(t, func(c *config.Config) {
		c.NATS.URL = down
		c.Storage.MaxOutbox = 5
	})
	for i := 0; i < 5; i++ {
		if code, body := in.Post("/v1/track", "demo", fmt.Sprintf(`{"event":"E","anonymousId":"a","messageId":"b%d"}`, i)); code != 200 {
			t.Fatalf("event %d: %d %s", i, code, body)
		}
	}
	req, _ := http.NewRequest("POST", in.URL+"/v1/track", strings.NewReader(`{"event":"E","anonymousId":"a","messageId":"b5"}`))
	req.SetBasicAuth("demo", "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("full backlog: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	decodeErr(t, body)
	if code, body := in.Do("GET", "/readyz", nil, nil); code != 200 || !strings.Contains(string(body), `"nats_connected":false`) {
		t.Fatalf("readyz: %d %s", code, body)
	}
	if n := len(adminEvents(t, in, "site=demo")); n != 5 {
		t.Fatalf("stored %d, want 5", n)
	}
}
