package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/keyring"
)

// startSingleVigie starts a real vigie process in single-node mode
// (embedded NATS, its JetStream store in the data dir) whose embedded
// server also listens on a loopback port for the test's reads.
func startSingleVigie(t *testing.T, bin string) (*vigieProcess, string) {
	t.Helper()
	dir := t.TempDir()
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	natsListen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	conf := fmt.Sprintf(`listen: %q
data_dir: %q
log_level: debug
keys:
  secrets_dir: %q
nats:
  listen: %q
`, listen, filepath.Join(dir, "data"), filepath.Join(dir, "secrets"), natsListen)
	mk, err := keyring.NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	p := &vigieProcess{t: t, bin: bin, conf: filepath.Join(dir, "vigie.yaml"), url: "http://" + listen,
		adminToken: "vigie_test_kill_nine_admin", log: &lockedBuffer{}}
	if err := os.WriteFile(p.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VIGIE_") {
			p.env = append(p.env, kv)
		}
	}
	p.env = append(p.env, config.EnvMasterKey+"="+mk.Encode(), config.EnvAdminToken+"="+p.adminToken)
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("vigie output:\n%s", lastLines(p.log.String(), 40))
		}
	})
	p.start()
	return p, "nats://" + natsListen
}

// postOnce posts batch b to url once: whether it was answered 200.
func postOnce(url string, b int) bool {
	req, _ := http.NewRequest("POST", url+"/v1/batch", strings.NewReader(clusterBatch(b)))
	req.SetBasicAuth("demo", "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == 200
}

// TestSingleNodeSurvivesKillNine: a single-node vigie process (embedded
// NATS) is loaded with batches by four senders and SIGKILLed while they
// post; it restarts on the same data dir, the batches that got no 200 are
// sent again (some may have been committed before the kill: their retry
// is a duplicate), and so are a few that did. Every event is then stored
// exactly once and published exactly once on VIGIE_EVENTS, whose embedded
// store (data_dir/jetstream) survived the kill.
func TestSingleNodeSurvivesKillNine(t *testing.T) {
	p, natsURL := startSingleVigie(t, buildVigie(t)())
	const batches, killAfter = 60, 20
	var (
		next    atomic.Int64
		ackedN  atomic.Int64
		killed  atomic.Bool
		mu      sync.Mutex
		acked   = map[int]bool{}
		failed  int
		killing sync.Once
	)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !killed.Load() {
				b := int(next.Add(1)) - 1
				if b >= batches {
					return
				}
				ok := postOnce(p.url, b)
				mu.Lock()
				if ok {
					acked[b] = true
				} else {
					failed++
				}
				mu.Unlock()
				if ok && ackedN.Add(1) == killAfter {
					killing.Do(func() {
						go func() { // SIGKILL while the other senders post
							defer close(done)
							p.kill()
							killed.Store(true)
						}()
					})
				}
			}
		}()
	}
	wg.Wait()
	<-done
	t.Logf("killed with %d batches answered 200 and %d failed requests (sent until then: %d)", len(acked), failed, min(int(next.Load()), batches))
	if err := p.run(); err != nil {
		t.Fatalf("restart: %v", err)
	}
	// Every batch not answered 200 is sent again until it is, and the
	// last few acknowledged ones are retried too (an answer lost on the
	// way): the store and the stream must not double any.
	retried := 0
	for b := range batches {
		if !acked[b] {
			if postUntilOKAt(t, []string{p.url}, 0, b) < 0 {
				t.Fatalf("batch %d never accepted after the restart", b)
			}
			retried++
		} else if b >= killAfter-5 && b < killAfter {
			if !postOnce(p.url, b) {
				t.Fatalf("retry of acknowledged batch %d refused", b)
			}
		}
	}
	if retried == 0 {
		t.Fatal("every batch was acknowledged before the kill: the test did not kill under load")
	}
	waitUntil(t, "the outbox to drain after the restart", 20*time.Second, func() bool {
		d, err := p.outboxDepth()
		return err == nil && d == 0
	})

	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // a late duplicate would show
	exactlyOnce(t, readStream(t, js), batches*10)
	stored := map[string]int{}
	for _, n := range eventNames(t, p.url, p.adminToken) {
		stored[n]++
	}
	for i := range batches * 10 {
		if c := stored[fmt.Sprintf("n%d", i)]; c != 1 {
			t.Errorf("event n%d is stored %d times", i, c)
		}
	}
	if len(stored) != batches*10 {
		t.Errorf("the store holds %d distinct events, want %d", len(stored), batches*10)
	}
}
