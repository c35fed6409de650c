package proxy_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vigie-dev/vigie/proxy"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// TestSecondVigieOnSameDataDir: a second Vigie on a data directory in use
// says so, naming the first one's pid, before Badger refuses with its own
// error; and it starts changing nothing. A lock file left by a process
// that is gone (a crash) does not stop the next start.
func TestSecondVigieOnSameDataDir(t *testing.T) {
	first := startLean(t)
	cfg := first.Config
	cfg.Listen = "127.0.0.1:0"
	second, err := proxy.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = second.Start(context.Background())
	if err == nil {
		_ = second.Shutdown(context.Background())
		t.Fatal("a second Vigie started on the same data directory")
	}
	want := "Vigie is already running with this data directory (pid " + strconv.Itoa(os.Getpid()) + ")"
	if !errors.Is(err, proxy.ErrAlreadyRunning) || !strings.Contains(err.Error(), want) {
		t.Fatalf("second start: %v\nwant an error containing %q", err, want)
	}
	if status, _ := first.Do("GET", "/readyz", nil, nil); status != 200 {
		t.Fatalf("the first Vigie after the second's attempt: readyz %d", status)
	}

	// The first stops: its lock goes with it, the pid file stays.
	first.Stop()
	lock := filepath.Join(cfg.DataDir, "vigie.lock")
	if _, err := os.Stat(lock); err != nil {
		t.Fatalf("lock file: %v", err)
	}
	again, err := proxy.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Start(context.Background()); err != nil {
		t.Fatalf("start after the first stopped: %v", err)
	}
	_ = again.Shutdown(context.Background())
}

// TestStaleLockFile: a lock file naming a pid, but locked by nobody (the
// process crashed), is taken over.
func TestStaleLockFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "vigie.lock"), []byte("999999999\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	in := proxytest.Start(t, func(c *config.Config) { c.DataDir = dir; c.Plugins = []config.Plugin{} })
	b, err := os.ReadFile(filepath.Join(dir, "vigie.lock"))
	if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Fatalf("lock file after start: %q %v", b, err)
	}
	if status, _ := in.Do("GET", "/readyz", nil, nil); status != 200 {
		t.Fatalf("readyz %d", status)
	}
}
