package delivery

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"
)

func TestRetryableStatus(t *testing.T) {
	tests := []struct {
		status int
		want   bool
	}{
		{100, false}, {200, false}, {301, false}, {302, false}, {307, false},
		{400, false}, {401, false}, {403, false}, {404, false}, {405, false},
		{408, true}, {409, false}, {410, false}, {413, false}, {422, false},
		{423, true}, {429, true},
		{500, true}, {501, false}, {502, true}, {503, true}, {504, true},
		{505, true}, {511, true}, {599, true},
	}
	for _, tt := range tests {
		if got := RetryableStatus(tt.status); got != tt.want {
			t.Errorf("RetryableStatus(%d) = %v, want %v", tt.status, got, tt.want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		value string
		want  time.Duration
	}{
		{"", 0},
		{"120", 120 * time.Second},
		{" 7 ", 7 * time.Second},
		{"0", 0},
		{"-5", 0},
		{"soon", 0},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second},
		{"Sun, 01 Mar 2026 12:01:00 GMT", time.Minute},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"999999999", MaxRetryAfter},
		{now.Add(100 * time.Hour).Format(http.TimeFormat), MaxRetryAfter},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.value != "" {
			h.Set("Retry-After", tt.value)
		}
		if got := ParseRetryAfter(h, now); got != tt.want {
			t.Errorf("ParseRetryAfter(%q) = %v, want %v", tt.value, got, tt.want)
		}
	}
}

// TestBackoff: the delay doubles from MinBackoff, stays within [base/2,
// base] (equal jitter) and never exceeds MaxBackoff.
func TestBackoff(t *testing.T) {
	p := Policy{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	for n := 1; n <= 12; n++ {
		base := min(100*time.Millisecond<<(n-1), time.Second)
		for range 50 {
			d := p.Backoff(n)
			if d < base/2 || d > base {
				t.Fatalf("Backoff(%d) = %v, want in [%v, %v]", n, d, base/2, base)
			}
		}
	}
	// Jitter: not always the same value.
	seen := map[time.Duration]bool{}
	for range 20 {
		seen[p.Backoff(3)] = true
	}
	if len(seen) < 2 {
		t.Error("Backoff has no jitter")
	}
}

func TestPolicyDelay(t *testing.T) {
	p := Policy{MaxAttempts: 3, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, MaxInlineWait: 2 * time.Second}
	retryable := &HTTPError{Op: "x", Status: 503, Retryable: true}
	withAfter := &HTTPError{Op: "x", Status: 429, Retryable: true, RetryAfter: time.Second}
	tooLong := &HTTPError{Op: "x", Status: 429, Retryable: true, RetryAfter: time.Minute}
	final := &HTTPError{Op: "x", Status: 400}
	short, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	tests := []struct {
		name   string
		ctx    context.Context
		n      int
		err    error
		want   time.Duration
		wantOK bool
	}{
		{"backoff", context.Background(), 1, retryable, -1, true},
		{"retry-after honoured", context.Background(), 1, withAfter, time.Second, true},
		{"final", context.Background(), 1, final, 0, false},
		{"attempts used up", context.Background(), 3, retryable, 0, false},
		{"wait longer than inline", context.Background(), 1, tooLong, 0, false},
		{"past the deadline", short, 1, withAfter, 0, false},
		{"invalid change", context.Background(), 1, fmt.Errorf("%w: x", ErrInvalidChange), 0, false},
	}
	for _, tt := range tests {
		d, ok := p.Delay(tt.ctx, tt.n, tt.err)
		if ok != tt.wantOK || (tt.want >= 0 && d != tt.want) || (tt.want < 0 && (d < 5*time.Millisecond || d > 10*time.Millisecond)) {
			t.Errorf("%s: Delay = %v, %v; want %v, %v", tt.name, d, ok, tt.want, tt.wantOK)
		}
	}
}

func TestClassify(t *testing.T) {
	until := time.Now().Add(time.Hour)
	tests := []struct {
		name      string
		err       error
		retryable bool
		status    int
		after     bool
	}{
		{"http 400", &HTTPError{Status: 400}, false, 400, false},
		{"http 429", &HTTPError{Status: 429, Retryable: true, RetryAfter: time.Second}, true, 429, true},
		{"wrapped http", fmt.Errorf("batch: %w", &HTTPError{Status: 502, Retryable: true}), true, 502, false},
		{"timeout", newNetError("x", context.DeadlineExceeded), true, 0, false},
		{"refused address", newNetError("x", &forbiddenError{class: "loopback"}), false, 0, false},
		{"paused", &PausedError{Until: until, Reason: "daily"}, true, 0, true},
		{"invalid", fmt.Errorf("%w: no email", ErrInvalidChange), false, 0, false},
		{"unknown", errors.New("decode"), true, 0, false},
	}
	for _, tt := range tests {
		c := Classify(tt.err)
		if c.Retryable != tt.retryable || c.Status != tt.status || (c.RetryAfter > 0) != tt.after {
			t.Errorf("%s: Classify = %+v", tt.name, c)
		}
	}
	if !errors.Is(&PausedError{}, ErrPaused) {
		t.Error("PausedError does not match ErrPaused")
	}
}

func TestFailedResult(t *testing.T) {
	c := Change{Kind: KindUpsert, Site: "s", Subject: "p", EventID: "e", Email: "a@b.example"}
	r := FailedResult(c, &HTTPError{Op: "hubspot batch upsert", Status: 503, Retryable: true, RetryAfter: 3 * time.Second, Excerpt: "busy"})
	want := Result{ID: c.ID(), Outcome: Failed, Retryable: true, RetryAfter: 3 * time.Second, Status: 503, Reason: "hubspot batch upsert: HTTP 503: busy"}
	if r != want {
		t.Fatalf("FailedResult = %+v, want %+v", r, want)
	}
	if r := FailedResult(c, &HTTPError{Status: 400, RetryAfter: time.Second}); r.RetryAfter != 0 {
		t.Errorf("final failure carries RetryAfter %v", r.RetryAfter)
	}
}
