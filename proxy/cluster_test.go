package proxy_test

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigie-dev/vigie/internal/canarytest"
	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// natsCluster is three real nats-server processes on loopback forming one
// JetStream cluster.
type natsCluster struct {
	t       *testing.T
	servers []*clusterServer
}

// clusterServer is one member of a natsCluster.
type clusterServer struct {
	name string
	port int
	conf string
	cmd  *exec.Cmd
	log  strings.Builder
}

// startNATSCluster starts a natsCluster for t. Every test that starts one
// runs in parallel with the others (t.Parallel, at most -parallel, by
// default GOMAXPROCS, at a time): each has its own servers, ports, store
// and data dirs, and spends most of its time waiting for them, so two at a
// time halve the package's time on 2 cores.
func startNATSCluster(t *testing.T) *natsCluster {
	t.Helper()
	bin := needNATSServer(t)
	nc := &natsCluster{t: t}
	dir := t.TempDir()
	var routes []string
	cports := make([]int, 3)
	for i := range cports {
		cports[i] = freePort(t)
		routes = append(routes, fmt.Sprintf("%q", fmt.Sprintf("nats-route://127.0.0.1:%d", cports[i])))
	}
	for i := range 3 {
		s := &clusterServer{name: fmt.Sprintf("nats%d", i+1), port: freePort(t)}
		s.conf = filepath.Join(dir, s.name+".conf")
		conf := fmt.Sprintf(`server_name: %q
listen: "127.0.0.1:%d"
jetstream { store_dir: %q }
cluster { name: "vigie-test", listen: "127.0.0.1:%d", routes: [%s] }
`, s.name, s.port, filepath.Join(dir, s.name), cports[i], strings.Join(routes, ", "))
		if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		s.cmd = exec.Command(bin, "-c", s.conf)
		s.cmd.Stdout, s.cmd.Stderr = &s.log, &s.log
		if err := s.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		nc.servers = append(nc.servers, s)
	}
	t.Cleanup(nc.stop)
	// Ready when JetStream answers with a meta leader on every server.
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range nc.servers {
		for {
			if err := jsReady(s.url()); err == nil {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("nats cluster not ready: %v\n%s", err, s.log.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nc
}

func jsReady(url string) error {
	c, err := nats.Connect(url)
	if err != nil {
		return err
	}
	defer c.Close()
	js, err := jetstream.New(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err
}

func (s *clusterServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

// urls is the comma-separated client URL of every server (nats.url).
func (nc *natsCluster) urls() string {
	var u []string
	for _, s := range nc.servers {
		u = append(u, s.url())
	}
	return strings.Join(u, ",")
}

// kill kills server i (SIGKILL).
func (nc *natsCluster) kill(i int) {
	s := nc.servers[i]
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
	s.cmd = nil
}

// storeDir is where server s keeps its JetStream store.
func (s *clusterServer) storeDir() string { return filepath.Join(filepath.Dir(s.conf), s.name) }

// scanStores runs the canary scanner over every server's store files (raw
// bytes), with the test's own canaries extra; a server with no store file
// fails the test (the scan looked in the wrong place).
func (nc *natsCluster) scanStores(t *testing.T, extra ...string) {
	t.Helper()
	for _, s := range nc.servers {
		if canarytest.ScanDir(t, s.storeDir(), extra...) == 0 {
			t.Errorf("no store file for %s", s.name)
		}
	}
}

// eachStoreFile calls fn with the path and bytes of every file of every
// server's store and returns how many it read.
func (nc *natsCluster) eachStoreFile(t *testing.T, fn func(path string, data []byte)) int {
	t.Helper()
	n := 0
	for _, s := range nc.servers {
		err := filepath.WalkDir(s.storeDir(), func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			n++
			fn(path, data)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return n
}

func (nc *natsCluster) stop() {
	for _, s := range nc.servers {
		if s.cmd == nil || s.cmd.Process == nil {
			continue
		}
		_ = s.cmd.Process.Signal(os.Interrupt)
	}
	for _, s := range nc.servers {
		if s.cmd == nil {
			continue
		}
		done := make(chan struct{})
		go func() { _ = s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-done
		}
		s.cmd = nil
	}
}

// jetStream connects to the cluster (every URL) for the test's own reads.
func (nc *natsCluster) jetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	c, err := nats.Connect(nc.urls(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	js, err := jetstream.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// startVigieNodes starts n Vigie nodes in cluster mode on nc, sharing the
// first node's keyring and master key (as an operator copies them).
func startVigieNodes(t *testing.T, nc *natsCluster, n int, opts ...proxytest.Option) []*proxytest.Instance {
	t.Helper()
	first := proxytest.Start(t, append([]proxytest.Option{func(c *config.Config) {
		c.NATS.URL = nc.urls()
		c.Cluster.NodeID = "v1"
	}}, opts...)...)
	nodes := []*proxytest.Instance{first}
	for i := 2; i <= n; i++ {
		nodes = append(nodes, startExtraNode(t, nc, first, fmt.Sprintf("v%d", i), opts...))
	}
	return nodes
}

// clusterBatch is the body of batch b of 10 numbered events n<10b>..
func clusterBatch(b int) string {
	var s strings.Builder
	s.WriteString(`{"batch":[`)
	for j := b * 10; j < b*10+10; j++ {
		if j > b*10 {
			s.WriteString(",")
		}
		fmt.Fprintf(&s, `{"type":"track","event":"n%d","anonymousId":"a%d","messageId":"msg-%d"}`, j, j%7, j)
	}
	s.WriteString(`]}`)
	return s.String()
}

// postUntilOK posts batch b, starting at node first and moving to the next
// node after each failure (a 503, a refused connection), as a load
// balancer with retries does, until one answers 200.
func postUntilOK(t *testing.T, nodes []*proxytest.Instance, first, b int) {
	var urls []string
	for _, in := range nodes {
		urls = append(urls, in.URL)
	}
	postUntilOKAt(t, urls, first, b)
}

// postUntilOKAt is postUntilOK on the nodes at base URLs urls; it returns
// the index of the node that accepted the batch (-1 if none did).
func postUntilOKAt(t *testing.T, urls []string, first, b int) int {
	body := clusterBatch(b)
	deadline := time.Now().Add(40 * time.Second)
	last := "" // the last refusal, for the failure message
	for i := first; ; i++ {
		url := urls[i%len(urls)]
		req, _ := http.NewRequest("POST", url+"/v1/batch", strings.NewReader(body))
		req.SetBasicAuth("demo", "")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			last = fmt.Sprintf("node %d: %v", i%len(urls), err)
		} else {
			answer, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return i % len(urls)
			}
			if resp.StatusCode != 503 {
				t.Errorf("batch %d at node %d: %d %s", b, i%len(urls), resp.StatusCode, answer)
				return -1
			}
			last = fmt.Sprintf("node %d: 503 %s", i%len(urls), answer)
		}
		if time.Now().After(deadline) {
			t.Errorf("batch %d never accepted; last answer %s", b, last)
			return -1
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// storedOnNodes counts the events stored in every node's Badger.
func storedOnNodes(t *testing.T, nodes []*proxytest.Instance) int {
	n := 0
	for _, in := range nodes {
		n += len(adminEvents(t, in, "site=demo"))
	}
	return n
}

// waitClusterStream waits for want messages in VIGIE_EVENTS (a little
// longer, for a late duplicate) and returns them.
func waitClusterStream(t *testing.T, js jetstream.JetStream, nodes []*proxytest.Instance, want int) []streamMsg {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	held := func() (uint64, error) { // tolerates a stream leader election
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, streams.Events)
		if err != nil {
			return 0, err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return 0, err
		}
		return info.State.Msgs, nil
	}
	for {
		n, err := held()
		if err == nil && n >= uint64(want) {
			break
		}
		if time.Now().After(deadline) {
			for i, in := range nodes {
				t.Logf("node %d: outbox %d\n%s", i+1, in.Server.Store().OutboxLen(), lastLines(in.Logs(), 15))
			}
			t.Fatalf("VIGIE_EVENTS holds %d events, want %d (%v)", n, want, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	return readStream(t, js)
}

// TestClusterStoresEachMessageIDOnce: three Vigie nodes on a three-server
// NATS cluster; batches spread over the nodes, each then retried on
// another node with the same messageIds: every event is stored and
// published exactly once.
func TestClusterStoresEachMessageIDOnce(t *testing.T) {
	t.Parallel()
	nc := startNATSCluster(t)
	nodes := startVigieNodes(t, nc, 3)
	const batches = 15
	var wg sync.WaitGroup
	for b := range batches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			postUntilOK(t, nodes, b, b)   // first attempt
			postUntilOK(t, nodes, b+1, b) // the retry, to another node
		}()
	}
	wg.Wait()
	exactlyOnce(t, waitClusterStream(t, nc.jetStream(t), nodes, batches*10), batches*10)
	if n := storedOnNodes(t, nodes); n != batches*10 {
		t.Fatalf("the nodes' stores hold %d events, want %d", n, batches*10)
	}
}

// TestClusterSurvivesNATSServerLoss: one NATS server is killed while three
// senders keep posting: ingestion continues and no accepted event is lost
// or published twice.
func TestClusterSurvivesNATSServerLoss(t *testing.T) {
	t.Parallel()
	nc := startNATSCluster(t)
	nodes := startVigieNodes(t, nc, 3)
	const batches = 30
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				b := int(next.Add(1)) - 1
				if b >= batches {
					return
				}
				if b == batches/3 { // a third of the way: NATS server 2 dies
					nc.kill(1)
				}
				postUntilOK(t, nodes, b, b)
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	exactlyOnce(t, waitClusterStream(t, nc.jetStream(t), nodes, batches*10), batches*10)
	if n := storedOnNodes(t, nodes); n != batches*10 {
		t.Fatalf("the nodes' stores hold %d events, want %d", n, batches*10)
	}
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// TestClusterWithdrawalReachesEveryNode: a withdrawal recorded on one node
// applies to the subject's next event on another node, sent a second
// later, that carries no consent signal of its own.
func TestClusterWithdrawalReachesEveryNode(t *testing.T) {
	t.Parallel()
	nc := startNATSCluster(t)
	nodes := startVigieNodes(t, nc, 3)
	a, b := nodes[0], nodes[1]
	track := func(in *proxytest.Instance, event, consentJSON string) {
		t.Helper()
		body := fmt.Sprintf(`{"event":%q,"userId":"u9"`, event)
		if consentJSON != "" {
			body += `,"context":{"consent":` + consentJSON + `}`
		}
		if code, resp := in.Post("/v1/track", "demo", body+"}"); code != 200 {
			t.Fatalf("%s: %d %s", event, code, resp)
		}
	}
	// mode is how node in stored event: "" for not at all, "anonymous"
	// without consent, else with the subject.
	mode := func(in *proxytest.Instance, event string) string {
		for _, e := range adminEvents(t, in, "site=demo") {
			if e["name"] == event {
				m, _ := e["mode"].(string)
				return m
			}
		}
		return ""
	}
	track(a, "Grant", `{"analytics":true,"personalization":true,"marketing":true}`)
	i := 0
	waitUntil(t, "node 2 to apply the grant made on node 1", 10*time.Second, func() bool {
		i++
		track(b, fmt.Sprintf("Before%d", i), "")
		return mode(b, fmt.Sprintf("Before%d", i)) != "anonymous"
	})
	track(a, "Withdraw", `{"analytics":false,"personalization":false,"marketing":false}`)
	time.Sleep(time.Second)
	track(b, "After", "")
	if m := mode(b, "After"); m != "" && m != "anonymous" {
		t.Fatalf("node 2 stored an event (mode %s) of a subject who withdrew consent on node 1 a second earlier", m)
	}
}

// TestClusterErasureReachesEveryNode: an erasure requested on one node
// erases the person's events stored by another node too.
func TestClusterErasureReachesEveryNode(t *testing.T) {
	t.Parallel()
	nc := startNATSCluster(t)
	nodes := startVigieNodes(t, nc, 3)
	a, b := nodes[0], nodes[1]
	track := func(in *proxytest.Instance, event, consentJSON string) {
		t.Helper()
		body := fmt.Sprintf(`{"event":%q,"userId":"u7"`, event)
		if consentJSON != "" {
			body += `,"context":{"consent":` + consentJSON + `}`
		}
		if code, resp := in.Post("/v1/track", "demo", body+"}"); code != 200 {
			t.Fatalf("%s: %d %s", event, code, resp)
		}
	}
	// withSubject counts in's events stored with the person's pseudonym.
	withSubject := func(in *proxytest.Instance) int {
		n := 0
		for _, e := range adminEvents(t, in, "site=demo") {
			if e["mode"] != "anonymous" {
				n++
			}
		}
		return n
	}
	track(a, "Grant", `{"analytics":true,"personalization":true,"marketing":true}`)
	i := 0
	waitUntil(t, "node 2 to store the person's events", 10*time.Second, func() bool {
		i++
		track(b, fmt.Sprintf("Seen%d", i), "")
		return withSubject(b) > 0
	})
	id := privacyRequest(t, a, `{"type":"erase","site":"demo","identifier":{"kind":"user_id","value":"u7"}}`)
	if v := waitRequest(t, a, id); v.Status != "done" {
		t.Fatalf("erasure: %+v", v.Raw)
	}
	if n := withSubject(a); n != 0 {
		t.Fatalf("node 1 still holds %d events of the person", n)
	}
	waitUntil(t, "node 2 to erase the person's events", 10*time.Second, func() bool { return withSubject(b) == 0 })
	// The person comes back on node 2 (a new choice, which replaces the
	// tombstone); its restart does not apply the erasure again.
	track(b, "Back", `{"analytics":true,"personalization":true,"marketing":true}`)
	if withSubject(b) != 1 {
		t.Fatalf("node 2 did not store the person's new event: %v", adminEvents(t, b, "site=demo"))
	}
	b.Restart()
	time.Sleep(time.Second)
	if n := withSubject(b); n != 1 {
		t.Fatalf("after its restart node 2 holds %d events of the person, want 1", n)
	}
}
