package delivery

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLimiterPause: a paused limiter refuses at once with the pause's
// end, and the status says paused until then.
func TestLimiterPause(t *testing.T) {
	l := NewLimiter(RateLimit{PerSecond: 100})
	until := time.Now().Add(time.Hour)
	l.PauseUntil(until, "daily limit reached")
	start := time.Now()
	err := l.Wait(context.Background())
	var pe *PausedError
	if !errors.As(err, &pe) || !pe.Until.Equal(until) || !errors.Is(err, ErrPaused) {
		t.Fatalf("Wait = %v, want PausedError until %v", err, until)
	}
	if time.Since(start) > 100*time.Millisecond {
		t.Error("Wait slept while paused")
	}
	if c := Classify(err); !c.Retryable || c.RetryAfter < 59*time.Minute {
		t.Errorf("pause classified %+v", c)
	}
	var s Status
	l.Apply(&s)
	if s.State != StatePaused || !s.PausedUntil.Equal(until) || s.Reason != "daily limit reached" {
		t.Errorf("status %+v", s)
	}
	// A disabled destination stays disabled.
	s = Status{State: StateDisabled}
	l.Apply(&s)
	if s.State != StateDisabled {
		t.Errorf("Apply overrode disabled: %s", s.State)
	}
}

// TestLimiterObserve: headers lower the rate to what the destination
// allows, never above the configured rate, and an exhausted window holds
// requests until its reset.
func TestLimiterObserve(t *testing.T) {
	l := NewLimiter(RateLimit{PerSecond: 50, Burst: 5})
	l.Observe(Observation{Limit: 100, Remaining: 80, Window: 10 * time.Second})
	if st := l.State(); st.PerSecond != 10 || st.Limit != 100 || st.Remaining != 80 {
		t.Fatalf("after HubSpot-like headers: %+v", st)
	}
	l.Observe(Observation{Limit: 1000, Remaining: 999, Window: time.Second})
	if st := l.State(); st.PerSecond != 50 {
		t.Fatalf("rate above configured: %+v", st)
	}
	l.Observe(Observation{Limit: 10, Remaining: 0, Window: -1, Reset: 40 * time.Millisecond})
	st := l.State()
	if st.Remaining != 0 || st.ThrottledUntil.IsZero() || st.ResetAt.IsZero() {
		t.Fatalf("after exhausted window: %+v", st)
	}
	var s Status
	l.Apply(&s)
	if s.State != StateThrottled {
		t.Errorf("state %s, want throttled", s.State)
	}
	start := time.Now()
	if err := l.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Errorf("Wait returned after %v, before the reset", d)
	}
}

// TestLimiterHoldLongerThanInline: a hold longer than the inline wait is
// not slept but returned as a retryable error.
func TestLimiterHoldLongerThanInline(t *testing.T) {
	l := NewLimiter(RateLimit{PerSecond: 100})
	l.Hold(time.Minute, "HTTP 429")
	start := time.Now()
	err := l.Wait(context.Background())
	if !errors.Is(err, ErrPaused) || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("Wait = %v after %v", err, time.Since(start))
	}
	if c := Classify(err); !c.Retryable || c.RetryAfter < 50*time.Second {
		t.Errorf("hold classified %+v", c)
	}
}

// TestLimiterRate: the bucket paces requests at the configured rate.
func TestLimiterRate(t *testing.T) {
	l := NewLimiter(RateLimit{PerSecond: 100, Burst: 1})
	start := time.Now()
	for range 11 {
		if err := l.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d < 90*time.Millisecond {
		t.Errorf("11 requests at 100/s took %v", d)
	}
}

func TestChangeIDAndValidate(t *testing.T) {
	base := Change{Kind: KindUpsert, Site: "shop", Subject: "p1", EventID: "e1", Email: "a@example.com"}
	same := base
	same.Email, same.Properties = "other@example.com", map[string]any{"x": 1}
	if base.ID() != same.ID() {
		t.Error("ID depends on the payload, not only on the change's identity")
	}
	ids := map[string]bool{base.ID(): true}
	for _, c := range []Change{
		{Kind: KindDelete, Site: "shop", Subject: "p1", EventID: "e1"},
		{Kind: KindUpsert, Site: "shop", Subject: "p2", EventID: "e1"},
		{Kind: KindUpsert, Site: "shop", Subject: "p1", EventID: "e2"},
		{Kind: KindUpsert, Site: "blog", Subject: "p1", EventID: "e1"},
		{Kind: KindSegmentEntered, Site: "shop", Subject: "p1", EventID: "e1", Segment: "a"},
		{Kind: KindSegmentEntered, Site: "shop", Subject: "p1", EventID: "e1", Segment: "b"},
		// Fields are delimited: "ab"+"c" differs from "a"+"bc".
		{Kind: KindUpsert, Site: "shopp", Subject: "1", EventID: "e1"},
	} {
		if ids[c.ID()] {
			t.Errorf("ID collision for %+v", c)
		}
		ids[c.ID()] = true
	}
	if id := base.ID(); len(id) != 32 || slices.Contains([]byte(id), '.') {
		t.Errorf("ID %q", id)
	}
	tests := []struct {
		name string
		c    Change
		ok   bool
	}{
		{"upsert", base, true},
		{"upsert without email", Change{Kind: KindUpsert, Site: "s", Subject: "p", EventID: "e"}, false},
		{"delete without email", Change{Kind: KindDelete, Site: "s", Subject: "p", EventID: "e"}, false},
		{"segment", Change{Kind: KindSegmentExited, Site: "s", Subject: "p", EventID: "e", Segment: "x"}, true},
		{"segment without name", Change{Kind: KindSegmentEntered, Site: "s", Subject: "p", EventID: "e"}, false},
		{"consent", Change{Kind: KindConsentChanged, Site: "s", Subject: "p", EventID: "e"}, true},
		{"no subject", Change{Kind: KindConsentChanged, Site: "s", EventID: "e"}, false},
		{"no site", Change{Kind: KindConsentChanged, Subject: "p", EventID: "e"}, false},
		{"no event", Change{Kind: KindConsentChanged, Site: "s", Subject: "p"}, false},
		{"unknown kind", Change{Kind: "merge", Site: "s", Subject: "p", EventID: "e"}, false},
	}
	for _, tt := range tests {
		err := tt.c.Validate()
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrInvalidChange)) {
			t.Errorf("%s: Validate = %v", tt.name, err)
		}
	}
}

// TestForEachOrdered: one key's calls run in order, never two at once;
// different keys run in parallel.
func TestForEachOrdered(t *testing.T) {
	keys := []string{"a", "b", "a", "c", "b", "a", "d", "c"}
	var (
		mu      sync.Mutex
		order   = map[string][]int{}
		running = map[string]bool{}
		active  atomic.Int32
		peak    atomic.Int32
	)
	ForEachOrdered(context.Background(), len(keys), 4, func(i int) string { return keys[i] }, func(_ context.Context, i int) {
		k := keys[i]
		mu.Lock()
		if running[k] {
			t.Errorf("two calls of key %s at once", k)
		}
		running[k] = true
		mu.Unlock()
		n := active.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
		active.Add(-1)
		mu.Lock()
		running[k] = false
		order[k] = append(order[k], i)
		mu.Unlock()
	})
	want := map[string][]int{"a": {0, 2, 5}, "b": {1, 4}, "c": {3, 7}, "d": {6}}
	for k, w := range want {
		if !slices.Equal(order[k], w) {
			t.Errorf("key %s order %v, want %v", k, order[k], w)
		}
	}
	if peak.Load() < 2 {
		t.Errorf("peak concurrency %d, want parallel keys", peak.Load())
	}
}
