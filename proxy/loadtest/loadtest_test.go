package loadtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/plugins/builtin"
	"github.com/vigie-dev/vigie/proxy/collect"
	"github.com/vigie-dev/vigie/proxy/config"
)

// TestMain lets the test binary serve as the built-in plugins and as the
// server process of --external, as the vigie binary does.
func TestMain(m *testing.M) {
	builtin.MaybeRun(os.Args)
	if len(os.Args) > 2 && os.Args[1] == "bench" && os.Args[2] == ServeSubcommand {
		if err := Main(os.Args[2:], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestMainJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and runs six load phases")
	}
	for _, external := range []bool{false, true} {
		t.Run(fmt.Sprintf("external=%v", external), func(t *testing.T) {
			testMainJSON(t, external)
		})
	}
}

func testMainJSON(t *testing.T, external bool) {
	var out bytes.Buffer
	args := []string{"--duration", "300ms", "--events-per-batch", "10", "--connections", "8", "--json"}
	if external {
		args = append(args, "--external")
	}
	if err := Main(args, &out); err != nil {
		t.Fatalf("Main: %v\n%s", err, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	last := lines[len(lines)-1]
	var got map[string]any
	if err := json.Unmarshal([]byte(last), &got); err != nil {
		t.Fatalf("last line is not JSON: %v\n%s", err, last)
	}
	for _, f := range []string{"full_batch_eps", "decode_only_eps", "ratio_batch", "json_decode_eps", "ratio_batch_json", "track_rps", "bare_rps", "ratio_track", "p99_ms", "rss_mb", "rss_anon_mb"} {
		v, ok := got[f].(float64)
		if !ok || v <= 0 {
			t.Errorf("%s = %v, want a positive number", f, got[f])
		}
	}
	if r, b, d := got["ratio_batch"].(float64), got["full_batch_eps"].(float64), got["decode_only_eps"].(float64); d > 0 && abs(r-b/d) > 1e-9 {
		t.Errorf("ratio_batch %v != full_batch_eps/decode_only_eps %v", r, b/d)
	}
	if r, b, d := got["ratio_batch_json"].(float64), got["full_batch_eps"].(float64), got["json_decode_eps"].(float64); d > 0 && abs(r-b/d) > 1e-9 {
		t.Errorf("ratio_batch_json %v != full_batch_eps/json_decode_eps %v", r, b/d)
	}
	if got["events_per_batch"].(float64) != 10 || got["connections"].(float64) != 8 || got["external"] != external {
		t.Errorf("flags not applied: %v", last)
	}
	if ev := got["batch_events"].(float64); ev <= 0 || int(ev)%10 != 0 {
		t.Errorf("batch_events = %v, want a positive multiple of 10", ev)
	}
	if got["plugin_errors"].(float64) != 0 {
		t.Errorf("plugin errors: %v", last)
	}
	for _, want := range []string{"baseline decode-only", "baseline encoding/json decode", "default configuration with its built-in plugins"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in the human table before the JSON line:\n%s", want, out.String())
		}
	}
	if external && strings.Contains(out.String(), fmt.Sprintf("in process %d ", os.Getpid())) {
		t.Errorf("--external ran the server in the test process:\n%s", out.String())
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
			return o.duration == 10*time.Second && o.eventsPerBatch == 10 && o.connections == 32 && !o.json && !o.syncWrites && o.events == 0 && !o.external
		}},
		{[]string{"--duration", "2s", "--events-per-batch", "20", "--json", "--sync-writes", "--connections", "16", "--events", "5000000", "--external"}, false, func(o options) bool {
			return o.duration == 2*time.Second && o.eventsPerBatch == 20 && o.json && o.syncWrites && o.connections == 16 && o.events == 5_000_000 && o.external
		}},
		{[]string{"--workers", "4"}, false, func(o options) bool { return o.connections == 4 }},
		{[]string{"--soak", "1000000"}, false, func(o options) bool { return o.events == 1_000_000 }},
		{[]string{"--no-plugins"}, false, func(o options) bool { return o.noPlugins && o.serverOptions().noPlugins }},
		{[]string{"--plugin-batch", "500"}, false, func(o options) bool { return o.serverOptions().pluginBatch == 500 }},
		{[]string{"--plugin-batch", "-1"}, true, nil},
		{[]string{"--connections", "0"}, true, nil},
		{[]string{"serve"}, true, nil},
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
		{"json ok", jsonDecodeHandler(config.Default().Limits), g.appendBatch(nil, 15), http.StatusOK},
		{"json bad", jsonDecodeHandler(config.Default().Limits), []byte(`{"batch":`), http.StatusBadRequest},
		{"json empty", jsonDecodeHandler(config.Default().Limits), []byte(`{"batch":[]}`), http.StatusBadRequest},
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
	if m.RSS <= 1 || m.RSS > 1<<20 || m.Heap <= 0 {
		t.Fatalf("readMem = %+v", m)
	}
	if d := m.RSS - m.Anon - m.File; d < -1 || d > 1+m.RSS/10 {
		t.Errorf("RSS %.1f MB is not anon %.1f + file %.1f (+shmem)", m.RSS, m.Anon, m.File)
	}
}

// The soak report's minutes, decay ratio and segment-stage figures come
// from the samples as documented.
func TestSoakReport(t *testing.T) {
	sample := func(sec int, events uint64, outbox int64, enrich, segment uint64, anon float64) soakSample {
		return soakSample{at: time.Duration(sec) * time.Second, events: events,
			st: serverStats{Outbox: outbox, EnrichLag: enrich, SegmentLag: segment, Mem: memInfo{Anon: anon, RSS: anon + 10}}}
	}
	tests := []struct {
		name                             string
		samples                          []soakSample
		minutes                          []float64
		segMinutes                       []float64
		first, last, decay, lagSec, maxA float64
		stageSec                         float64
	}{
		{
			name: "steady, stage keeps up",
			samples: []soakSample{{}, sample(10, 1000, 0, 0, 100, 100), sample(20, 2000, 0, 0, 100, 110), sample(30, 3000, 0, 0, 100, 100),
				sample(40, 4000, 0, 0, 100, 100), sample(50, 5000, 0, 0, 100, 100), sample(60, 6000, 0, 0, 100, 100),
				sample(70, 7000, 0, 0, 100, 100)},
			minutes: []float64{100}, segMinutes: []float64{(6000.0 - 100) / 60},
			first: 100, last: 100, decay: 1, lagSec: 1, maxA: 110, stageSec: 1,
		},
		{
			name: "slows down by half, stage falls behind",
			samples: []soakSample{{}, sample(10, 1200, 0, 0, 0, 100), sample(20, 2400, 0, 0, 0, 100), sample(30, 3600, 0, 0, 0, 100),
				sample(40, 4800, 0, 0, 0, 100), sample(50, 6000, 0, 0, 0, 100), sample(60, 7200, 0, 0, 0, 100),
				sample(70, 7800, 10, 3590, 600, 100), sample(80, 8400, 0, 0, 1200, 100), sample(90, 9000, 0, 0, 1800, 100),
				sample(100, 9600, 0, 0, 2400, 100), sample(110, 10200, 0, 0, 3000, 100), sample(120, 10800, 0, 0, 3600, 100),
				// The load ended; the outbox drains: not part of the rates.
				sample(130, 10800, 500, 0, 3600, 100), sample(140, 10800, 0, 0, 3600, 100)},
			minutes: []float64{120, 60}, segMinutes: []float64{120, 0},
			first: 120, last: 60, decay: 0.5, lagSec: 3600 / 90.0, maxA: 100, stageSec: 4190 / 90.0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &soakReport{samples: tt.samples}
			r.finish()
			near := func(a, b float64) bool { return abs(a-b) < 1e-6 }
			if len(r.MinuteEPS) != len(tt.minutes) {
				t.Fatalf("minutes %v, want %v", r.MinuteEPS, tt.minutes)
			}
			for i := range tt.minutes {
				if !near(r.MinuteEPS[i], tt.minutes[i]) || !near(r.SegmentMinuteEPS[i], tt.segMinutes[i]) {
					t.Errorf("minute %d: ingest %v segment %v, want %v %v", i, r.MinuteEPS[i], r.SegmentMinuteEPS[i], tt.minutes[i], tt.segMinutes[i])
				}
			}
			if !near(r.FirstMinuteEPS, tt.first) || !near(r.LastMinuteEPS, tt.last) || !near(r.DecayRatio, tt.decay) {
				t.Errorf("first %v last %v decay %v, want %v %v %v", r.FirstMinuteEPS, r.LastMinuteEPS, r.DecayRatio, tt.first, tt.last, tt.decay)
			}
			if !near(r.MaxSegmentLagSeconds, tt.lagSec) || !near(r.MaxStageLagSeconds, tt.stageSec) || !near(r.MaxAnonMB, tt.maxA) {
				t.Errorf("lag %v s, max anon %v; want %v, %v", r.MaxSegmentLagSeconds, r.MaxAnonMB, tt.lagSec, tt.maxA)
			}
		})
	}
}
