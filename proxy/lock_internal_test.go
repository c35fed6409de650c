package proxy

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// TestLockAgainWhileChildrenFork: a data directory released by this
// process is locked again at once, even while other goroutines start
// processes (plugins, nats-servers), whose children hold a copy of the
// lock's descriptor until they exec. Before the wait for that window, a
// restart in a process starting children failed about one time in four
// with ErrAlreadyRunning naming its own pid (seen in CI: a cluster test's
// node restart). A second lock while this process holds the directory is
// still refused at once.
func TestLockAgainWhileChildrenFork(t *testing.T) {
	true_, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true(1) to start")
	}
	dir := filepath.Join(t.TempDir(), "data")
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				_ = exec.CommandContext(ctx, true_).Run()
			}
		}()
	}
	defer wg.Wait()
	defer cancel()

	for i := range 300 {
		l, err := lockDataDir(dir)
		if err != nil {
			t.Fatalf("lock %d after the release: %v", i, err)
		}
		if i == 0 {
			if _, err := lockDataDir(dir); !errors.Is(err, ErrAlreadyRunning) {
				t.Fatalf("a second lock while held: %v, want ErrAlreadyRunning", err)
			}
		}
		if err := l.release(false); err != nil {
			t.Fatal(err)
		}
	}
}
