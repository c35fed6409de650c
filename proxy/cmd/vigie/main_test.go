package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/internal/tmpfstest"
	"github.com/vigie-dev/vigie/plugins/builtin"
)

// TestMain lets the test binary serve the built-in plugins, as vigie does:
// run() with the default configuration re-executes this binary as
// "<binary> plugin <name>".
//
// With VIGIE_TEST_RUN_MAIN=1 it is vigie itself: main() with the
// arguments, for the tests of exit statuses.
func TestMain(m *testing.M) {
	builtin.MaybeRun(os.Args)
	if os.Getenv("VIGIE_TEST_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "vigie ") {
		t.Fatalf("version printed %q", out.String())
	}
}

var listening = regexp.MustCompile(`listening on (http://\S+)`)

// serveOnce runs the server with args until it accepted one event and
// then (if set) ran also(url), then stops it.
func serveOnce(t *testing.T, args []string, also func(url string)) (stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuf
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"--listen", "127.0.0.1:0"}, args...), &out, &errOut)
	}()
	deadline := time.Now().Add(30 * time.Second)
	var url string
	for url == "" {
		if m := listening.FindStringSubmatch(out.String()); m != nil {
			url = m[1]
		}
		select {
		case err := <-done:
			t.Fatalf("vigie exited: %v\n%s", err, errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("vigie did not start:\n%s\n%s", out.String(), errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	req, _ := http.NewRequest("POST", url+"/v1/track", strings.NewReader(`{"event":"E","anonymousId":"a"}`))
	req.SetBasicAuth("demo", "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("track: %d", resp.StatusCode)
	}
	if also != nil {
		also(url)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	return out.String(), errOut.String()
}

// adminStatus is the status of an admin API call with tok.
func adminStatus(t *testing.T, url, tok string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url+"/admin/v1/stats", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// onTerminal makes the command's stdout count as a terminal (or not).
func onTerminal(t *testing.T, tty bool) {
	prev := isTerminal
	isTerminal = func(io.Writer) bool { return tty }
	t.Cleanup(func() { isTerminal = prev })
}

var tokenPattern = regexp.MustCompile(`vigie_[A-Za-z0-9_-]{40,}`)

// TestFirstRunIsOneCommand: with no configuration, the first start makes a
// trial master key in ./vigie-secrets (never inside the data dir), says so
// once, and shows the admin token on a terminal only.
func TestFirstRunIsOneCommand(t *testing.T) {
	t.Chdir(t.TempDir())
	onTerminal(t, true)
	first, logs := serveOnce(t, nil, nil)
	tok := tokenPattern.FindString(first)
	if tok == "" {
		t.Fatalf("first start printed no admin token:\n%s", first)
	}
	if strings.Contains(logs, tok) {
		t.Fatal("admin token written to the log")
	}
	if n := strings.Count(logs, "trial master key"); n != 1 {
		t.Fatalf("trial key notice %d times, want once:\n%s", n, logs)
	}
	if !strings.Contains(logs, "vigie stopped") {
		t.Fatalf("no clean stop in logs:\n%s", logs)
	}
	for path, want := range map[string]os.FileMode{"vigie-secrets": 0o700, "vigie-secrets/master.key": 0o600} {
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != want {
			t.Fatalf("%s: %v, want mode %v", path, err, want)
		}
	}
	files, _ := filepath.Glob("vigie-data/*")
	for _, f := range files {
		if strings.HasSuffix(f, ".key") {
			t.Fatalf("key file in the data dir: %s", f)
		}
	}
	second, logs2 := serveOnce(t, nil, func(url string) {
		if code := adminStatus(t, url, tok); code != 200 {
			t.Errorf("admin API with the printed token: %d", code)
		}
	})
	if strings.Contains(second, tok) || strings.Contains(second, "admin token") {
		t.Fatalf("token printed again on second start:\n%s", second)
	}
	if strings.Contains(logs2, "trial master key") {
		t.Fatalf("trial key notice repeated on second start:\n%s", logs2)
	}
}

func TestFirstStartWithoutTerminalShowsNoToken(t *testing.T) {
	t.Chdir(t.TempDir())
	onTerminal(t, false)
	out, logs := serveOnce(t, nil, nil)
	if tokenPattern.MatchString(out) || tokenPattern.MatchString(logs) {
		t.Fatalf("token printed to a non-terminal stdout or the log:\n%s\n%s", out, logs)
	}
	if !strings.Contains(out, "vigie admin token reset") || !strings.Contains(out, "VIGIE_ADMIN_TOKEN") {
		t.Fatalf("no hint on how to get a token:\n%s", out)
	}
}

func TestChosenAdminTokenAtFirstStart(t *testing.T) {
	t.Chdir(t.TempDir())
	onTerminal(t, true)
	const tok = "chosen-by-the-harness-0123456789"
	t.Setenv("VIGIE_ADMIN_TOKEN", tok)
	out, logs := serveOnce(t, nil, func(url string) {
		if code := adminStatus(t, url, tok); code != 200 {
			t.Errorf("admin API with the chosen token: %d", code)
		}
		if code := adminStatus(t, url, tok+"x"); code != 401 {
			t.Errorf("admin API with another token: %d", code)
		}
	})
	if strings.Contains(out, "admin token") || strings.Contains(out+logs, tok) {
		t.Fatalf("chosen token echoed:\n%s\n%s", out, logs)
	}
}

func TestEmailRewriteCommand(t *testing.T) {
	t.Chdir(t.TempDir())
	dir := filepath.Join(t.TempDir(), "data")
	html := `<html><body><a href="https://shop.example/a">A</a><a href="mailto:x@shop.example">m</a></body></html>`
	var out, errOut bytes.Buffer
	stdin = strings.NewReader(html)
	defer func() { stdin = os.Stdin }()
	err := run(context.Background(), []string{"email", "rewrite", "--data-dir", dir, "--campaign", "spring",
		"--base", "https://track.example/", "--merge-tag", "*|ID|*"}, &out, &errOut)
	if err != nil {
		t.Fatalf("rewrite: %v %s", err, errOut.String())
	}
	got := out.String()
	if !strings.Contains(got, `src="https://track.example/e/o/`) || !strings.Contains(got, `href="https://track.example/e/c/`) ||
		!strings.Contains(got, "r=*|ID|*") || !strings.Contains(got, `href="mailto:x@shop.example"`) {
		t.Fatalf("rewritten: %s", got)
	}
	for _, bad := range [][]string{
		{"email", "rewrite", "--data-dir", dir, "--base", "https://t.example/", "--merge-tag", "x"},                                      // no campaign
		{"email", "rewrite", "--data-dir", dir, "--campaign", "c", "--base", "https://t.example/"},                                       // no recipient nor tag
		{"email", "rewrite", "--data-dir", dir, "--campaign", "c", "--base", "https://t.example/", "--merge-tag", "x", "--site", "nope"}, // unknown site
		{"email", "send"},
	} {
		stdin = strings.NewReader(html)
		if err := run(context.Background(), bad, &out, &errOut); err == nil {
			t.Errorf("%v: accepted", bad)
		}
	}
}

// TestStartOnFullDiskExitCode: vigie started on a filesystem with less free
// space than storage.min_free_bytes (the default, 576 MiB, on a 64 MiB
// tmpfs) says so and exits with exitDiskFull, rather than crashing with a
// SIGBUS inside Badger.
func TestStartOnFullDiskExitCode(t *testing.T) {
	mnt := tmpfstest.Mount(t, 64<<20)
	cmd := exec.Command(os.Args[0], "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(mnt, "data"))
	cmd.Dir = t.TempDir() // the trial master key goes there, not into the source tree
	cmd.Env = append(os.Environ(), "VIGIE_TEST_RUN_MAIN=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitDiskFull {
		t.Fatalf("vigie on a full disk: %v, want exit status %d\n%s", err, exitDiskFull, stderr.String())
	}
	out := stderr.String()
	if !strings.Contains(out, "disk is full") || !strings.Contains(out, "min_free_bytes") ||
		strings.Contains(out, "goroutine ") || strings.Contains(out, "SIGBUS") {
		t.Fatalf("vigie on a full disk printed:\n%s", out)
	}
	t.Log(out)
}
