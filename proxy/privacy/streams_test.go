package privacy

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/proxy/blind"
	"github.com/vigie-dev/vigie/proxy/ledger"
	"github.com/vigie-dev/vigie/proxy/pipeline"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage/storagetest"
)

// stopAfterConsumer is the bus with a hook: right after the scan's
// ordered consumer is created, it stops the NATS server (the outage starts
// before the scan's first Fetch).
type stopAfterConsumer struct {
	jetstream.JetStream
	stop func()
}

func (j stopAfterConsumer) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	st, err := j.JetStream.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	return stopAfterConsumerStream{st, j.stop}, nil
}

type stopAfterConsumerStream struct {
	jetstream.Stream
	stop func()
}

func (s stopAfterConsumerStream) OrderedConsumer(ctx context.Context, cfg jetstream.OrderedConsumerConfig) (jetstream.Consumer, error) {
	c, err := s.Stream.OrderedConsumer(ctx, cfg)
	s.stop()
	return c, err
}

// runNATS starts a NATS server with JetStream on port (-1: any) and store
// dir, stopped at the test's end.
func runNATS(t *testing.T, port int, dir string) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv
}

// eventsStream connects to srv (reconnecting for ever) and declares
// VIGIE_EVENTS there.
func eventsStream(t *testing.T, srv *server.Server) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := streams.NewDeclarer(streams.Settings{}, streams.Events).Ensure(context.Background(), js); err != nil {
		t.Fatal(err)
	}
	return js
}

// TestStreamStepFailsWhileNATSIsDown: NATS goes down while an erasure's
// stream step scans VIGIE_EVENTS (its consumer created, before the first
// Fetch). The step returns an error (the runner retries it; a stop is
// not held) and, once NATS is back, its next run deletes the erased
// subject's messages and only those. On the code before, the ordered
// consumer's Fetch retried creating itself for ever, without a context:
// the step never returned.
func TestStreamStepFailsWhileNATSIsDown(t *testing.T) {
	dir := t.TempDir()
	srv := runNATS(t, -1, dir)
	port := srv.Addr().(*net.TCPAddr).Port
	js := eventsStream(t, srv)
	ctx := context.Background()
	for i, subj := range []string{"s-erased", "s-kept", "s-erased", "s-kept", "s-erased"} {
		b, err := proto.Marshal(&vigiev1.Event{Id: string(rune('a' + i)), Site: "demo", Type: "track", Subject: subj})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(ctx, "vigie.events.demo.track", b); err != nil {
			t.Fatal(err)
		}
	}

	st := storagetest.Open(t)
	idx, err := blind.New(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() { once.Do(func() { srv.Shutdown(); srv.WaitForShutdown() }) }
	svc, err := New(Config{Store: st, Ledger: ledger.New(ledger.Config{Backend: st}), Blind: idx,
		Sites: map[string]*pipeline.Site{"demo": {}}, JetStream: stopAfterConsumer{js, stop}, Streams: []string{streams.Events}})
	if err != nil {
		t.Fatal(err)
	}
	step := "stream:" + streams.Events
	r := &Request{ID: "01M8SZ0000000000000000STEP", Type: TypeErase, Site: "demo", Status: StatusRunning, CreatedAt: time.Now(),
		Deadline: Deadline(time.Now()), Subjects: []string{"s-erased"}, SubjectCount: 1,
		Steps: []Step{{Name: step, Status: StatusPending}, {Name: "receipt", Status: StatusPending}}}
	if err := svc.save(ctx, r); err != nil {
		t.Fatal(err)
	}

	// Not a speed bound: the step either returns (bounded resets: about
	// 20 s) or never does.
	res := make(chan error, 1)
	go func() { res <- svc.runStep(ctx, r, step) }()
	select {
	case err := <-res:
		if err == nil {
			t.Fatal("the stream step succeeded while NATS was down")
		}
		t.Logf("the stream step failed while NATS was down: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("the stream step did not return while NATS was down")
	}
	if got, err := svc.Get(ctx, r.ID); err != nil {
		t.Fatal(err)
	} else if s := got.step(step); s.Status.terminal() {
		t.Fatalf("the failed stream step is %s, want it run again", s.Status)
	}

	// NATS back (the same store): the step's next run, as the runner's
	// retry does it, deletes the erased subject's messages.
	runNATS(t, port, dir)
	waitConnected := time.Now().Add(30 * time.Second)
	for !js.Conn().IsConnected() && time.Now().Before(waitConnected) {
		time.Sleep(50 * time.Millisecond)
	}
	if err := svc.runStep(ctx, r, step); err != nil {
		t.Fatalf("the stream step once NATS is back: %v", err)
	}
	got, err := svc.Get(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if s := got.step(step); s.Status != StatusDone || got.Summary["stream_messages"] != 3 {
		t.Fatalf("stream step %s (%s), %d message(s) deleted, want done and 3", s.Status, s.Detail, got.Summary["stream_messages"])
	}
	stream, err := js.Stream(ctx, streams.Events)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Fatalf("%d message(s) left in %s, want the kept subject's 2", info.State.Msgs, streams.Events)
	}
}

// TestAlreadyDeleted: deleting a message that is gone already (another
// node's step for the same subjects deleted it) answers JetStream's "no
// message found" delete failure, which the stream step takes as done;
// another failure is not.
func TestAlreadyDeleted(t *testing.T) {
	js := eventsStream(t, runNATS(t, -1, t.TempDir()))
	ctx := context.Background()
	ack, err := js.Publish(ctx, "vigie.events.demo.track", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, streams.Events)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SecureDeleteMsg(ctx, ack.Sequence); err != nil {
		t.Fatal(err)
	}
	again := st.SecureDeleteMsg(ctx, ack.Sequence)
	if again == nil || !alreadyDeleted(again) {
		t.Fatalf("deleting a deleted message: %v, want an error alreadyDeleted accepts", again)
	}
	if _, err := js.Stream(ctx, "VIGIE_NO_SUCH_STREAM"); err == nil || alreadyDeleted(err) {
		t.Fatalf("a missing stream: %v, want an error alreadyDeleted refuses", err)
	}
}
