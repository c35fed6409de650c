package streams

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

func TestIsMissing(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"no stream response", jetstream.ErrNoStreamResponse, true},
		{"wrapped no stream response", fmt.Errorf("bus: publish: %w", jetstream.ErrNoStreamResponse), true},
		{"no responders", nats.ErrNoResponders, true},
		{"stream not found", jetstream.ErrStreamNotFound, true},
		{"stream not found API answer", &jetstream.APIError{Code: 404, ErrorCode: jetstream.JSErrCodeStreamNotFound, Description: "stream not found"}, true},
		{"consumer not found API answer", fmt.Errorf("info: %w", &jetstream.APIError{Code: 404, ErrorCode: jetstream.JSErrCodeConsumerNotFound}), true},
		{"consumer does not exist", jetstream.ErrConsumerDoesNotExist, true},
		{"consumer deleted", jetstream.ErrConsumerDeleted, true},
		{"no heartbeat", jetstream.ErrNoHeartbeat, true},
		{"timeout", nats.ErrTimeout, false},
		{"deadline", context.DeadlineExceeded, false},
		{"connection closed", nats.ErrConnectionClosed, false},
		{"jetstream not enabled", jetstream.ErrJetStreamNotEnabled, false},
		{"stream name in use", jetstream.ErrStreamNameAlreadyInUse, false},
		{"other API error", &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeBadRequest}, false},
		{"unrelated", errors.New("no response from plugin"), false},
	} {
		if got := IsMissing(tc.err); got != tc.want {
			t.Errorf("%s: IsMissing(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

func TestEverySubjectBelongsToItsStream(t *testing.T) {
	for _, tc := range []struct{ subject, stream string }{
		{EventSubject("demo", "track"), Events},
		{PrivacySubject(&vigiev1.PrivacyEvent{Site: "demo", Action: vigiev1.PrivacyAction_PRIVACY_ACTION_CONSENT_CHANGED}), Privacy},
		{PrivacySubject(&vigiev1.PrivacyEvent{Site: "demo", Action: vigiev1.PrivacyAction_PRIVACY_ACTION_ERASURE}), Privacy},
		{EnrichedSubject("demo", "page"), Enriched},
		{SegmentSubject(&vigiev1.SegmentChange{Site: "demo", Segment: "buyers"}), Segments},
		{DeadSubject("crm"), Dead},
		{ReplaySubject("sync-crm-privacy"), Dead},
		{SyncSubject("crm-hubspot", "demo"), Dead},
		{"other.subject", ""},
	} {
		if got := StreamOf(tc.subject); got != tc.stream {
			t.Errorf("StreamOf(%q) = %q, want %q", tc.subject, got, tc.stream)
		}
		// The stream's configuration captures the subject.
		for _, c := range Configs(Settings{}, tc.stream) {
			if tc.stream == "" {
				t.Fatalf("Configs(%q) returned %s", tc.stream, c.Name)
			}
			if !slices.ContainsFunc(c.Subjects, func(f string) bool { return matchSubject(f, tc.subject) }) {
				t.Errorf("stream %s (%v) does not capture %q", c.Name, c.Subjects, tc.subject)
			}
		}
	}
	if got := PrivacySubject(&vigiev1.PrivacyEvent{Site: "demo", Action: vigiev1.PrivacyAction_PRIVACY_ACTION_CONSENT_CHANGED}); got != "vigie.privacy.demo.consent" {
		t.Errorf("consent subject %q", got)
	}
	e := &vigiev1.PrivacyEvent{Site: "demo", Subject: "p1", Action: vigiev1.PrivacyAction_PRIVACY_ACTION_CONSENT_CHANGED, RequestId: "01J"}
	if a, b := PrivacyMsgID(e), PrivacyMsgID(e); a != b || a == PrivacyMsgID(&vigiev1.PrivacyEvent{Site: "demo", RequestId: "01K"}) {
		t.Errorf("privacy message ids not deterministic and distinct: %q %q", a, b)
	}
}

// matchSubject reports whether NATS filter f (literal tokens, "*", ">")
// matches subject s.
func matchSubject(f, s string) bool {
	ft, st := strings.Split(f, "."), strings.Split(s, ".")
	for i, tok := range ft {
		if tok == ">" {
			return len(st) > i
		}
		if i >= len(st) || (tok != "*" && tok != st[i]) {
			return false
		}
	}
	return len(ft) == len(st)
}

func TestConfigsApplySettings(t *testing.T) {
	cs := Configs(Settings{Replicas: 3, DuplicateWindow: time.Minute, MaxAge: time.Hour})
	if len(cs) != len(All()) {
		t.Fatalf("%d configs for %d streams", len(cs), len(All()))
	}
	for _, c := range cs {
		if c.Replicas != 3 || c.Storage != jetstream.FileStorage {
			t.Errorf("%s: replicas %d storage %v", c.Name, c.Replicas, c.Storage)
		}
		switch {
		case (c.Name == Events || c.Name == Enriched) && c.Duplicates != time.Minute,
			c.Name == Privacy && c.Duplicates != derivedDuplicates:
			t.Errorf("%s: duplicates %s", c.Name, c.Duplicates)
		case c.MaxAge != time.Hour:
			t.Errorf("%s: max age %s", c.Name, c.MaxAge)
		}
	}
	d := Configs(Settings{}, Events)[0]
	if d.Replicas != DefaultReplicas || d.Duplicates != DefaultDuplicateWindow {
		t.Errorf("defaults: %+v", d)
	}
}

// startJS runs an embedded JetStream server for the test.
func startJS(t *testing.T) jetstream.JetStream {
	t.Helper()
	srv, err := server.NewServer(&server.Options{JetStream: true, StoreDir: t.TempDir(), DontListen: true, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close(); srv.Shutdown(); srv.WaitForShutdown() })
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestRealMissingErrorsAreClassified checks IsMissing against what a real
// server answers once a stream and its consumer are gone.
func TestRealMissingErrorsAreClassified(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js := startJS(t)
	d := NewDeclarer(Settings{}, Events)
	if err := d.Ensure(ctx, js); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, Events, jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(ctx, Events); err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(EventSubject("demo", "track"))
	_, err = js.PublishMsg(ctx, msg, jetstream.WithExpectStream(Events))
	if !IsMissing(err) {
		t.Errorf("publish to a deleted stream: %v not classified as missing", err)
	}
	f, err := js.PublishMsgAsync(msg, jetstream.WithExpectStream(Events))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-f.Ok():
		t.Error("async publish to a deleted stream acknowledged")
	case err := <-f.Err():
		if !IsMissing(err) {
			t.Errorf("async publish to a deleted stream: %v not classified as missing", err)
		}
	case <-ctx.Done():
		t.Fatal("no answer to the async publish")
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
	if err == nil {
		for range batch.Messages() {
		}
		err = batch.Error()
	}
	if !IsMissing(err) {
		t.Errorf("fetch from a deleted consumer: %v not classified as missing", err)
	}
	if _, err := cons.Info(ctx); !IsMissing(err) {
		t.Errorf("info of a deleted consumer: %v not classified as missing", err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, Events, jetstream.ConsumerConfig{Durable: "c"}); !IsMissing(err) {
		t.Errorf("consumer on a deleted stream: %v not classified as missing", err)
	}
}

func TestDeclarerIsRateLimited(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js := startJS(t)
	d := NewDeclarer(Settings{}, Events, Privacy)
	d.Interval = 300 * time.Millisecond
	if err := d.Ensure(ctx, js); err != nil {
		t.Fatal(err)
	}
	if err := d.Ensure(ctx, js); err != nil || d.rounds != 1 {
		t.Fatalf("second Ensure: %v, %d rounds, want 1", err, d.rounds)
	}
	for _, st := range []string{Events, Privacy} {
		if err := js.DeleteStream(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	// A burst of "missing" errors right after a declaration: one round.
	for i := 0; i < 20; i++ {
		if ran, _ := d.Redeclare(ctx, js); ran {
			t.Fatalf("Redeclare %d ran within the interval", i)
		}
	}
	time.Sleep(d.Interval)
	ran, err := d.Redeclare(ctx, js)
	if !ran || err != nil {
		t.Fatalf("Redeclare after the interval: ran %v, %v", ran, err)
	}
	for _, st := range []string{Events, Privacy} {
		if _, err := js.Stream(ctx, st); err != nil {
			t.Errorf("%s not declared again: %v", st, err)
		}
	}
	if d.rounds != 2 {
		t.Errorf("%d rounds, want 2", d.rounds)
	}
	// A failed declaration is not retried within the interval either.
	f := NewDeclarer(Settings{Replicas: 5}, Events) // more replicas than servers
	f.Interval = time.Hour
	if err := f.Ensure(ctx, js); err == nil {
		t.Fatal("declaration with 5 replicas on one server succeeded")
	}
	if err := f.Ensure(ctx, js); !errors.Is(err, ErrRateLimited) || f.rounds != 1 {
		t.Fatalf("retry within the interval: %v, %d rounds", err, f.rounds)
	}
}

// TestEveryStreamGetsMaxAge: declaring the streams over ones made without a
// MaxAge (Vigie before nats.max_age) gives every stream the configured one,
// and a message older than it is gone.
func TestEveryStreamGetsMaxAge(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js := startJS(t)
	for _, c := range Configs(Settings{}) {
		c.MaxAge = 0
		if _, err := js.CreateStream(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	const age = 2 * time.Second
	if err := NewDeclarer(Settings{MaxAge: age, DuplicateWindow: time.Second}).Ensure(ctx, js); err != nil {
		t.Fatal(err)
	}
	for _, name := range All() {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.CachedInfo().Config.MaxAge; got != age {
			t.Errorf("%s: MaxAge %s, want %s", name, got, age)
		}
	}
	if _, err := js.Publish(ctx, EventSubject("demo", "track"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, err := js.Stream(ctx, Events)
		if err != nil {
			t.Fatal(err)
		}
		if st.CachedInfo().State.Msgs == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a message older than MaxAge is still in VIGIE_EVENTS")
		}
		time.Sleep(200 * time.Millisecond)
	}
}
