// Package proxytest starts a whole Vigie server for tests: random loopback
// port, Badger and the embedded NATS server in a temp dir, like
// nats-server's RunServer with port -1. Each instance has its own master
// key (as VIGIE_MASTER_KEY would give it, so outside its data dir) and
// chooses its admin token (as VIGIE_ADMIN_TOKEN would).
package proxytest

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/proxy"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/keyring"
)

// Instance is a running server.
type Instance struct {
	// Server is the running server.
	Server *proxy.Server
	// Config it was started with.
	Config config.Config
	// URL is its base URL, e.g. http://127.0.0.1:41234.
	URL  string
	logs *syncWriter
	// adminToken is the chosen token, or the one the server generated.
	adminToken string

	t testing.TB
}

// Option changes the configuration before start.
type Option func(*config.Config)

// Start starts a server on 127.0.0.1:0 with its data in a new temp dir and
// stops it when the test ends.
func Start(t testing.TB, opts ...Option) *Instance {
	t.Helper()
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.Keys.SecretsDir = filepath.Join(t.TempDir(), "secrets")
	mk, err := keyring.NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Keys.MasterKey = config.Secret(mk.Encode())
	cfg.Keys.AdminToken = config.Secret("vigie_test_" + rand.Text())
	for _, o := range opts {
		o(&cfg)
	}
	in := &Instance{Config: cfg, logs: &syncWriter{}, t: t, adminToken: cfg.Keys.AdminToken.Reveal()}
	in.start()
	t.Cleanup(func() {
		in.Stop()
		in.logFailure()
	})
	return in
}

// logFailure gives a failed test the server's warnings and errors and
// its partition lease changes (at most the last 60), so that a failure in
// CI says what the server saw.
func (in *Instance) logFailure() {
	if !in.t.Failed() {
		return
	}
	var lines []string
	for _, l := range strings.Split(in.Logs(), "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") || strings.Contains(l, `msg="partitions `) {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return
	}
	if len(lines) > 60 {
		lines = lines[len(lines)-60:]
	}
	in.t.Logf("proxytest: the server's last warnings, errors and partition changes:\n%s", strings.Join(lines, "\n"))
}

func (in *Instance) start() {
	in.t.Helper()
	log := slog.New(slog.NewTextHandler(in.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := proxy.New(in.Config, log)
	if err != nil {
		in.t.Fatalf("proxytest: new: %v", err)
	}
	if err := srv.Start(context.Background()); err != nil {
		in.t.Fatalf("proxytest: start: %v", err)
	}
	in.Server = srv
	if tok := srv.NewAdminToken(); tok != "" {
		in.adminToken = tok
	}
	in.URL = "http://" + srv.Addr()
	// Keep the same port across restarts.
	in.Config.Listen = srv.Addr()
}

// Stop shuts the server down (idempotent).
func (in *Instance) Stop() {
	if in.Server == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := in.Server.Shutdown(ctx); err != nil {
		in.t.Errorf("proxytest: shutdown: %v", err)
	}
	in.Server = nil
}

// Restart stops the server and starts it again on the same data dir.
func (in *Instance) Restart() {
	in.t.Helper()
	in.Stop()
	in.start()
}

// AdminToken is the admin API token: the one the test chose
// (Config.Keys.AdminToken), or the one the server generated.
func (in *Instance) AdminToken() string { return in.adminToken }

// MasterKey is the text of the instance's master key ("" if a test option
// removed it).
func (in *Instance) MasterKey() string { return in.Config.Keys.MasterKey.Reveal() }

// Do sends a request and returns the status and body.
func (in *Instance) Do(method, path string, body []byte, hdr http.Header) (int, []byte) {
	in.t.Helper()
	req, err := http.NewRequest(method, in.URL+path, bytes.NewReader(body))
	if err != nil {
		in.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if req.Header.Get("Content-Type") == "" && body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		in.t.Fatalf("proxytest: %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		in.t.Fatal(err)
	}
	return resp.StatusCode, b
}

// Post sends a JSON body with the write key as Basic auth user.
func (in *Instance) Post(path, writeKey, body string) (int, []byte) {
	in.t.Helper()
	h := http.Header{}
	if writeKey != "" {
		r, _ := http.NewRequest("POST", "/", nil)
		r.SetBasicAuth(writeKey, "")
		h.Set("Authorization", r.Header.Get("Authorization"))
	}
	return in.Do("POST", path, []byte(body), h)
}

// Admin sends an authenticated GET to the admin API.
func (in *Instance) Admin(path string) (int, []byte) {
	in.t.Helper()
	return in.Do("GET", path, nil, http.Header{"Authorization": {"Bearer " + in.AdminToken()}})
}

// DataFiles returns the contents of every regular file under the data dir.
func (in *Instance) DataFiles() map[string][]byte {
	in.t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(in.Config.DataDir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out[p] = b
		return nil
	})
	if err != nil {
		in.t.Fatalf("proxytest: read data dir: %v", err)
	}
	return out
}

// Logs returns everything the server logged so far (debug level).
func (in *Instance) Logs() string {
	in.logs.mu.Lock()
	defer in.logs.mu.Unlock()
	return in.logs.buf.String()
}

type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}
