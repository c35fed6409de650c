package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// lockFileName is the data directory's lock file: it holds the pid of the
// Vigie process that has the directory, locked with flock(2), so that a
// second Vigie says so before Badger refuses with its own error. The lock
// goes with the process: a crashed Vigie leaves the file but no lock, and
// the next start takes it over.
const lockFileName = "vigie.lock"

// forkWindow bounds how long lockDataDir waits for a lock that this
// process released but a child of it still holds. flock(2) belongs to the
// open file description, and a child forked by another goroutine (a plugin
// process, a nats-server) holds a copy of every descriptor until it execs,
// when close-on-exec drops them: for that short while the lock this
// process just let go of is still taken.
const forkWindow = 5 * time.Second

// heldDirs are the data directories this process holds a lock on (their
// absolute paths), so that a second start in the same process is told at
// once, and a lock held only by a child's copy is waited for.
var heldDirs sync.Map

// dirLock is a held data directory lock.
type dirLock struct {
	f                       *os.File
	dir                     string
	abs                     string // the key in heldDirs, once held
	createdDir, createdFile bool
}

// lockDataDir creates dir if needed and takes its lock, held until
// release. Where flock is not available nothing is locked (Badger's own
// lock still refuses a second process).
func lockDataDir(dir string) (*dirLock, error) {
	l := &dirLock{dir: dir}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		l.createdDir = true
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("proxy: data dir: %w", err)
	}
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	l.createdFile = err == nil
	if errors.Is(err, fs.ErrExist) {
		f, err = os.OpenFile(path, os.O_RDWR, 0o600)
	}
	if err != nil {
		l.undo()
		return nil, fmt.Errorf("proxy: data dir lock: %w", err)
	}
	l.f = f
	abs, absErr := filepath.Abs(dir)
	if absErr != nil {
		abs = dir
	}
	held, err := tryLock(f)
	for deadline := time.Now().Add(forkWindow); err == nil && held && ownLock(f, abs) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		held, err = tryLock(f)
	}
	if err != nil {
		l.release(true)
		return nil, fmt.Errorf("proxy: data dir lock: %w", err)
	}
	if held {
		pid := readPID(f)
		f.Close()
		if pid > 0 {
			return nil, fmt.Errorf("%w (pid %d): %s", ErrAlreadyRunning, pid, dir)
		}
		return nil, fmt.Errorf("%w: %s", ErrAlreadyRunning, dir)
	}
	// The pid is for the message above only: failing to write it (a full
	// disk) does not stop the start.
	if f.Truncate(0) == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	l.abs = abs
	heldDirs.Store(abs, struct{}{})
	return l, nil
}

// ownLock reports whether a held lock on the file f of directory abs is
// this process's released one, still held by a child's copy of the
// descriptor: the file names this process, which does not hold the
// directory.
func ownLock(f *os.File, abs string) bool {
	if _, ok := heldDirs.Load(abs); ok {
		return false
	}
	return readPID(f) == os.Getpid()
}

// release lets the lock go. After a start that failed (undo), what
// lockDataDir created goes too, so that a refused start leaves the data
// directory as it was: the lock file is removed while still held (a
// process that opened it meanwhile found it locked and gave up), then the
// directory if it is empty.
func (l *dirLock) release(undo bool) error {
	if l == nil || l.f == nil {
		return nil
	}
	if undo {
		l.undo()
	}
	if l.abs != "" { // before the close: a start meanwhile waits, not refuses
		heldDirs.Delete(l.abs)
	}
	err := l.f.Close()
	l.f = nil
	return err
}

func (l *dirLock) undo() {
	if l.createdFile {
		_ = os.Remove(filepath.Join(l.dir, lockFileName))
	}
	if l.createdDir {
		_ = os.Remove(l.dir) // only if empty
	}
}

// readPID reads the pid a lock file holds, 0 if none.
func readPID(f *os.File) int {
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:n])))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}
