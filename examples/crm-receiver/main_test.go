package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testSecret is spec vector A's secret.
const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// node returns the node binary, skipping the test when there is none
// (failing instead when CI is set).
func node(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("node is required in CI")
		}
		t.Skip("node not installed")
	}
	return path
}

type vector struct {
	Name  string `json:"name"`
	Valid bool   `json:"valid"`
	Error string `json:"error"`
}

// TestNodeVectors: verify.mjs gives every vector of testdata/vectors.json
// (the spec's and the derived ones) its expected result.
func TestNodeVectors(t *testing.T) {
	out, err := exec.Command(node(t), "verify.mjs", "--vectors", "testdata/vectors.json").Output()
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	var got []vector
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("node output %q: %v", out, err)
	}
	b, _ := os.ReadFile("testdata/vectors.json")
	var doc struct{ Vectors []vector }
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(doc.Vectors) {
		t.Fatalf("node checked %d vectors, want %d", len(got), len(doc.Vectors))
	}
	for i, want := range doc.Vectors {
		if got[i] != want {
			t.Errorf("vector %q: node says valid=%v error=%q, want valid=%v error=%q",
				want.Name, got[i].Valid, got[i].Error, want.Valid, want.Error)
		}
	}
}

// sign makes Standard Webhooks headers for body.
func sign(id, body string, at time.Time) http.Header {
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(testSecret, "whsec_"))
	ts := strconv.FormatInt(at.Unix(), 10)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "." + body))
	h := http.Header{}
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", ts)
	h.Set("webhook-signature", "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	h.Set("Content-Type", "application/json")
	return h
}

// post sends body with h to url and returns the status.
func post(t *testing.T, url, body string, h http.Header) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header = h
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

const message = `{"type":"segment.entered","timestamp":"2026-03-01T12:00:00.000Z","data":{"site":"shop","subject":"p1","segment":"hot-lead"}}`

// receiverCases are the requests both receivers must answer alike.
func receiverCases(t *testing.T, url string) {
	t.Helper()
	stale := sign("msg_old", message, time.Now().Add(-10*time.Minute))
	forged := sign("msg_forged", message, time.Now())
	forged.Set("webhook-signature", "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=")
	for _, c := range []struct {
		name string
		h    http.Header
		want int
	}{
		{"new", sign("msg_1", message, time.Now()), http.StatusNoContent},
		{"duplicate", sign("msg_1", message, time.Now()), http.StatusOK},
		{"forged", forged, http.StatusUnauthorized},
		{"stale", stale, http.StatusUnauthorized},
		{"no headers", http.Header{}, http.StatusBadRequest},
	} {
		if got := post(t, url, message, c.h); got != c.want {
			t.Errorf("%s: status %d, want %d", c.name, got, c.want)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestGoReceiver runs the Go server: the verified message is printed
// once, forged, stale and malformed requests are refused.
func TestGoReceiver(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-addr", "127.0.0.1:0"}, testSecret, &out, ready) }()
	addr := <-ready
	receiverCases(t, "http://"+addr+"/")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], `"id":"msg_1"`) || !strings.Contains(lines[0], `"segment":"hot-lead"`) {
		t.Fatalf("printed %q", out.String())
	}
}

// TestNodeReceiver runs `node verify.mjs` as a server: same answers as the
// Go receiver.
func TestNodeReceiver(t *testing.T) {
	bin := node(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "verify.mjs")
	cmd.Env = append(os.Environ(), "WEBHOOK_SECRET="+testSecret, "PORT="+strconv.Itoa(port))
	var out syncBuffer
	cmd.Stdout = &out
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	listening := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "listening") {
				listening <- true
			}
		}
		close(listening)
	}()
	select {
	case ok := <-listening:
		if !ok {
			t.Fatal("node receiver exited")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("node receiver did not start")
	}
	receiverCases(t, "http://127.0.0.1:"+strconv.Itoa(port)+"/")
	if s := out.String(); strings.Count(s, "\n") != 1 || !strings.Contains(s, `"id":"msg_1"`) {
		t.Fatalf("node printed %q", s)
	}
}
