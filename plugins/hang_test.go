package plugins_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/plugins"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/proxytest"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// hangCallTimeout is the call_timeout of the hang tests: the runtime must
// call a plugin hung once a call or a ping has waited this long.
const hangCallTimeout = time.Second

// withRecorder runs the recorder test plugin (registered by TestMain as
// enricher and segmenter in one process, so that a hang stalls both stages)
// writing to file, with a short call_timeout.
func withRecorder(file string) proxytest.Option {
	return func(c *config.Config) {
		withPlugins(config.Plugin{Name: "recorder", Config: map[string]any{"file": file}})(c)
		c.PluginRuntime.CallTimeout = config.Duration(hangCallTimeout)
	}
}

// sendSteps sends track events with property n from..to-1, each from its
// own visitor, with the consent that profiles it.
func sendSteps(t *testing.T, in *proxytest.Instance, from, to int) {
	t.Helper()
	for n := from; n < to; n++ {
		body := fmt.Sprintf(`{"type":"track","event":"Step","anonymousId":"v-%d","properties":{"n":%d},
		 "context":{"consent":{"analytics":true,"personalization":true}}}`, n, n)
		if code, b := in.Post("/v1/track", "demo", body); code != 200 {
			t.Fatalf("track: %d %s", code, b)
		}
	}
}

// onePID waits for the single running process of plugin name.
func onePID(t *testing.T, name string) int {
	t.Helper()
	var pids []int
	waitFor(t, "one "+name+" process", 20*time.Second, func() bool {
		pids = pluginPIDs(t, name)
		return len(pids) == 1
	})
	return pids[0]
}

// gone reports whether pid no longer exists at all: killed and reaped (a
// zombie still has its /proc entry).
func gone(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return errors.Is(err, os.ErrNotExist)
}

// sigstop stops pid for good (it is never continued) and makes sure it
// does not outlive the test if the runtime fails to kill it.
func sigstop(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !gone(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

// TestHungPluginKilledAndReplaced stops the plugin process with SIGSTOP
// (never undone) and checks that the runtime calls it hung, whether a call
// or a ping notices first, kills and reaps it, starts a new process, and
// that every event, including the batch in flight at the stopped process,
// is enriched and segmented exactly once.
func TestHungPluginKilledAndReplaced(t *testing.T) {
	for _, c := range []struct {
		name string
		// inFlight: events are sent right after SIGSTOP, so a call is in
		// flight at the stopped process and times out; otherwise a ping
		// is the first to time out.
		inFlight bool
	}{
		{"call times out", true},
		{"ping times out", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := filepath.Join(t.TempDir(), "recorder.txt")
			in := proxytest.Start(t, withRecorder(rec))
			const warm, total = 5, 25
			sendSteps(t, in, 0, warm)
			waitFor(t, "warm-up events enriched and segmented", 20*time.Second, func() bool {
				return status(t, in, "recorder").Processed == 2*warm
			})
			old := onePID(t, "recorder")
			sigstop(t, old)
			stopped := time.Now()
			if c.inFlight {
				sendSteps(t, in, warm, total)
			}

			// Within call_timeout (plus a ping interval when only a ping
			// can notice) and a few seconds, the stopped process is
			// killed and reaped and a new one runs.
			waitFor(t, "the stopped process killed and reaped", 15*time.Second, func() bool { return gone(old) })
			t.Logf("stopped process gone %s after SIGSTOP", time.Since(stopped).Round(10*time.Millisecond))
			if pid := onePID(t, "recorder"); pid == old {
				t.Fatalf("replacement has the stopped process's pid %d", pid)
			}
			// Called hung and killed outright: no graceful shutdown was
			// tried (it would have waited out its grace period).
			logs := in.Logs()
			if st := status(t, in, "recorder"); st.Restarts < 1 || !strings.Contains(logs, "(hung)") ||
				strings.Contains(logs, "did not stop within its grace period") {
				t.Fatalf("not killed outright as hung (restarts %d):\n%s", st.Restarts, logs)
			}
			if !c.inFlight {
				sendSteps(t, in, warm, total)
			}

			// Every event is enriched and segmented, exactly once, by the
			// replacement.
			waitFor(t, "every event enriched and segmented", 20*time.Second, func() bool {
				return status(t, in, "recorder").Processed >= 2*total
			})
			time.Sleep(300 * time.Millisecond) // let a duplicate show up
			if p := status(t, in, "recorder").Processed; p != 2*total {
				t.Fatalf("processed %d, want %d (each event enriched and segmented once)", p, 2*total)
			}
			ids := eventIDs(t, in)
			enriched := map[string]int{}
			for _, m := range streamMsgs(t, in, streams.Enriched, "vigie.enriched.demo.track") {
				var ev vigiev1.Event
				if err := proto.Unmarshal(m.Data, &ev); err != nil {
					t.Fatal(err)
				}
				enriched[ev.GetId()]++
			}
			b, err := os.ReadFile(rec)
			if err != nil {
				t.Fatal(err)
			}
			got := string(b)
			for n := 0; n < total; n++ {
				id := ids[n]
				if id == "" || enriched[id] != 1 {
					t.Errorf("event %d (%q) on %s %d times, want 1", n, id, streams.Enriched, enriched[id])
				}
				// The recorder writes each event once when enriching and
				// once when segmenting (a profile holds no event id).
				if k := strings.Count(got, `"`+id+`"`); k != 2 {
					t.Errorf("event %d reached the recorder %d times, want 2 (enrich, segment)", n, k)
				}
			}

			// Vigie stops without waiting on anything of the dead process.
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			if err := in.Server.Shutdown(ctx); err != nil {
				t.Fatalf("shutdown: %v", err)
			}
			if pids := pluginPIDs(t, "recorder"); len(pids) > 0 {
				t.Fatalf("plugin processes %v left after shutdown", pids)
			}
		})
	}
}

// TestStopDoesNotHangOnStoppedPlugin stops Vigie while its plugin is
// SIGSTOPped with a call in flight: the shutdown completes before its
// deadline and leaves no process behind, not even a zombie.
func TestStopDoesNotHangOnStoppedPlugin(t *testing.T) {
	rec := filepath.Join(t.TempDir(), "recorder.txt")
	in := proxytest.Start(t, withRecorder(rec), func(c *config.Config) {
		// A call_timeout longer than the test, so that the runtime does
		// not notice the hang before it is asked to stop.
		c.PluginRuntime.CallTimeout = config.Duration(time.Minute)
	})
	pid := onePID(t, "recorder")
	sigstop(t, pid)
	sendSteps(t, in, 0, 3)
	time.Sleep(300 * time.Millisecond) // the batch reaches the stopped process
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := in.Server.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with a stopped plugin: %v", err)
	}
	t.Logf("shutdown took %s", time.Since(start).Round(10*time.Millisecond))
	if !gone(pid) {
		t.Fatalf("stopped plugin process %d still exists after shutdown", pid)
	}
	// It was asked to stop first (a plugin at shutdown is not known to be
	// hung), then killed once its grace period ran out.
	if !strings.Contains(in.Logs(), "did not stop within its grace period") {
		t.Fatalf("stopped plugin not killed after its grace period:\n%s", in.Logs())
	}
}

// TestSlowCallKeepsItsMessagesInProgress gives the recorder an Enrich call
// three times longer than the consumers' ack wait and pulls from the
// enrich stage's durable consumer meanwhile, as another node sharing it
// would: the messages in hand are marked in progress, so none is
// delivered to that second puller, and each event is enriched once.
func TestSlowCallKeepsItsMessagesInProgress(t *testing.T) {
	const ackWait = time.Second
	rec := filepath.Join(t.TempDir(), "recorder.txt")
	in := proxytest.Start(t, func(c *config.Config) {
		withPlugins(config.Plugin{Name: "recorder", Config: map[string]any{"file": rec, "enrich_delay": "3s"}})(c)
		c.PluginRuntime.AckWait = config.Duration(ackWait)
		c.PluginRuntime.CallTimeout = config.Duration(10 * time.Second)
	})
	waitFor(t, "the recorder running", 20*time.Second, func() bool { return status(t, in, "recorder").State == plugins.StateRunning })
	const total = 5
	sendSteps(t, in, 0, total)
	enriched := func() int {
		b, _ := os.ReadFile(rec)
		return strings.Count("\n"+string(b), "\nenrich ")
	}
	ctx := context.Background()
	cons, err := in.Server.Bus().JetStream().Consumer(ctx, streams.Events, "enrich")
	if err != nil {
		t.Fatal(err)
	}
	// Every event delivered, the last batch in hand at the plugin.
	waitFor(t, "every event delivered to the enrich stage", 20*time.Second, func() bool {
		ci, err := cons.Info(ctx)
		return err == nil && ci.NumPending == 0 && ci.NumAckPending > 0 && ci.Delivered.Stream >= total
	})
	// Past the ack wait and before the call's end.
	batch, err := cons.Fetch(total, jetstream.FetchMaxWait(ackWait+time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var stolen int
	for range batch.Messages() {
		stolen++ // left unacknowledged: the test fails anyway
	}
	if stolen > 0 {
		t.Fatalf("%d messages in hand at the slow plugin were delivered again to another puller after the ack wait", stolen)
	}
	waitFor(t, "every event enriched", 30*time.Second, func() bool {
		return len(streamMsgs(t, in, streams.Enriched, streams.EnrichedPrefix)) >= total
	})
	if n := enriched(); n != total {
		t.Fatalf("the recorder was given %d events to enrich, want %d (each once)", n, total)
	}
}
