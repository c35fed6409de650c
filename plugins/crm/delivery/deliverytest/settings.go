package deliverytest

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/plugins/crm/delivery"
)

// LogBuffer collects a connector's log output; safe for concurrent use.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is everything written.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Settings are the connectors' test settings: private addresses allowed
// (the fake servers listen on 127.0.0.1), a 2 s timeout, a rate limit
// that never waits, retries within milliseconds, and JSON logs at debug
// level into logs.
func Settings(logs *LogBuffer) delivery.Settings {
	return delivery.Settings{
		AllowPrivate: true,
		Timeout:      delivery.Duration(2 * time.Second),
		RateLimit:    delivery.RateLimit{PerSecond: 1000, Burst: 100},
		Retry:        delivery.Policy{MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, MaxInlineWait: 3 * time.Second},
		Logger:       slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// Deliver delivers changes through c and checks that there is one result
// per change, in order.
func Deliver(t testing.TB, c delivery.Connector, changes ...delivery.Change) []delivery.Result {
	t.Helper()
	res, err := c.Deliver(context.Background(), changes)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(changes) {
		t.Fatalf("%d results for %d changes", len(res), len(changes))
	}
	for i, r := range res {
		if r.ID != changes[i].ID() {
			t.Fatalf("result %d has id %s, want %s", i, r.ID, changes[i].ID())
		}
	}
	return res
}

// AllDone fails the test unless every result is done.
func AllDone(t testing.TB, res []delivery.Result) {
	t.Helper()
	for i, r := range res {
		if r.Outcome != delivery.Done {
			t.Fatalf("change %d: %+v", i, r)
		}
	}
}
