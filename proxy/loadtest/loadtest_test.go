package loadtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/proxy/collect"
	"github.com/vigie-dev/vigie/proxy/config"
)

func TestMainJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and runs five load phases")
	}
	var out bytes.Buffer
	if err := Main([]string{"--duration", "300ms", "--events-per-batch", "10", "--workers", "8", "--json"}, &out); err != nil {
		t.Fatalf("Main: %v\n%s", err, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	last := lines[len(lines)-1]
	var got map[string]any
	if err := json.Unmarshal([]byte(last), &got); err != nil {
		t.Fatalf("last line is not JSON: %v\n%s", err, last)
	}
	for _, f := range []string{"full_batch_eps", "decode_only_eps", "ratio_batch", "track_rps", "bare_rps", "ratio_track", "p99_ms", "rss_mb"} {
		v, ok := got[f].(float64)
		if !ok || v <= 0 {
			t.Errorf("%s = %v, want a positive number", f, got[f])
		}
	}
	if r, b, d := got["ratio_batch"].(float64), got["full_batch_eps"].(float64), got["decode_only_eps"].(float64); d > 0 && abs(r-b/d) > 1e-9 {
		t.Errorf("ratio_batch %v != full_batch_eps/decode_only_eps %v", r, b/d)
	}
	if got["events_per_batch"].(float64) != 10 || got["workers"].(float64) != 8 {
		t.Errorf("flags not applied: %v", last)
	}
	if ev := got["batch_events"].(float64); ev <= 0 || int(ev)%10 != 0 {
		t.Errorf("batch_events = %v, want a positive multiple of 10", ev)
	}
	if !strings.Contains(out.String(), "baseline decode-only") {
		t.Errorf("no human table before the JSON line:\n%s", out.String())
	}
}

func abs(f float64) float64 { return max(f, -f) }

func TestParseFlags(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr bool
		check   func(options) bool
	}{
		{nil, false, func(o options) bool {
			return o.duration == 10*time.Second && o.eventsPerBatch == 15 && o.workers == defaultWorkers && !o.json && !o.syncWrites && o.events == 0
		}},
		{[]string{"--duration", "2s", "--events-per-batch", "20", "--json", "--sync-writes", "--workers", "16", "--events", "5000000"}, false, func(o options) bool {
			return o.duration == 2*time.Second && o.eventsPerBatch == 20 && o.json && o.syncWrites && o.workers == 16 && o.events == 5_000_000
		}},
		{[]string{"--duration", "0s"}, true, nil},
		{[]string{"--events-per-batch", "0"}, true, nil},
		{[]string{"--events-per-batch", "2501"}, true, nil},
		{[]string{"--workers", "0"}, true, nil},
		{[]string{"--nope"}, true, nil},
		{[]string{"extra"}, true, nil},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			o, err := parseFlags(tt.args, io.Discard)
			if tt.wantErr {
				if !errors.Is(err, ErrUsage) {
					t.Fatalf("err = %v, want ErrUsage", err)
				}
				return
			}
			if err != nil || !tt.check(o) {
				t.Fatalf("parseFlags = %+v, %v", o, err)
			}
		})
	}
}

// The generated traffic must be what the benchmark claims: valid Segment
// batches of realistic size, every messageId distinct, the write key in
// Basic auth, analytics consent present.
func TestGeneratorBatches(t *testing.T) {
	lim := config.Default().Limits
	for _, n := range []int{1, 15, 100} {
		g := newGenerator("demo", time.Now())
		seen := map[string]bool{}
		for range 3 {
			body := g.appendBatch(nil, n)
			b, err := collect.DecodeBatch(body, lim.MaxBatchEvents, lim.MaxEventBytes)
			if err != nil || len(b.Messages) != n || len(b.Errors) != 0 {
				t.Fatalf("n=%d: DecodeBatch: %v, %d messages, %v", n, err, len(b.Messages), b.Errors)
			}
			for i := range b.Messages {
				m := &b.Messages[i]
				if err := m.Validate(); err != nil {
					t.Fatalf("invalid event: %v", err)
				}
				if seen[m.MessageID] {
					t.Fatalf("messageId %q repeated", m.MessageID)
				}
				seen[m.MessageID] = true
				if m.AnonymousID == "" || m.Context.UserAgent == "" || m.Context.IP == "" || !bytes.Contains(m.Context.Consent, []byte(`"analytics":true`)) {
					t.Fatalf("event lacks id, UA, IP or consent: %+v", m)
				}
			}
		}
		r, _ := http.NewRequest("POST", "/", nil)
		r.Header.Set("Authorization", g.auth)
		if u, _, ok := r.BasicAuth(); !ok || u != "demo" {
			t.Errorf("auth header carries %q, want write key demo", u)
		}
	}
	// Events average ~600 bytes.
	g, total := newGenerator("demo", time.Now()), 0
	for range 60 {
		total += len(g.appendEvent(nil))
	}
	if avg := total / 60; avg < 550 || avg > 700 {
		t.Errorf("events average %d bytes, want ~600", avg)
	}
	// Two runs never share messageIds.
	a, b := newGenerator("demo", time.Now()), newGenerator("demo", time.Now())
	ma, _ := collect.DecodeMessage(a.appendEvent(nil), "track")
	mb, _ := collect.DecodeMessage(b.appendEvent(nil), "track")
	if ma.MessageID == mb.MessageID {
		t.Errorf("two runs produced the same messageId %q", ma.MessageID)
	}
}

func TestBaselineHandlers(t *testing.T) {
	g := newGenerator("demo", time.Now())
	tests := []struct {
		name string
		h    http.Handler
		body []byte
		want int
	}{
		{"bare", bareHandler(), g.appendEvent(nil), http.StatusNoContent},
		{"decode ok", decodeHandler(config.Default().Limits), g.appendBatch(nil, 15), http.StatusOK},
		{"decode bad", decodeHandler(config.Default().Limits), []byte(`{"batch":`), http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			tt.h.ServeHTTP(w, httptest.NewRequest("POST", "/v1/batch", bytes.NewReader(tt.body)))
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d", w.Code, tt.want)
			}
		})
	}
}

func TestClosedLoopCountsFailures(t *testing.T) {
	g := newGenerator("demo", time.Now())
	var n int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		n++ // one worker: no race
		if n%2 == 0 {
			http.Error(w, "nope", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	p := closedLoop(t.Context(), 1, target{url: srv.URL, auth: g.auth, events: 3, body: g.appendEvent}, stopRule{maxEvents: 30})
	if p.requests+p.failed != 10 || p.failed != 5 || p.events != 15 {
		t.Fatalf("requests %d failed %d events %d; want 5 ok, 5 failed, 15 events", p.requests, p.failed, p.events)
	}
	if !strings.Contains(p.firstErr, "503") {
		t.Errorf("firstErr = %q, want the 503", p.firstErr)
	}
}

func TestRSS(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	m := readMem()
	if m.rss <= 1 || m.rss > 1<<20 || m.heap <= 0 {
		t.Fatalf("readMem = %+v", m)
	}
	if d := m.rss - m.anon - m.file; d < -1 || d > 1+m.rss/10 {
		t.Errorf("RSS %.1f MB is not anon %.1f + file %.1f (+shmem)", m.rss, m.anon, m.file)
	}
}
