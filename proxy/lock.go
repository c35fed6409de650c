package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// lockFileName is the data directory's lock file: it holds the pid of the
// Vigie process that has the directory, locked with flock(2), so that a
// second Vigie says so before Badger refuses with its own error. The lock
// goes with the process: a crashed Vigie leaves the file but no lock, and
// the next start takes it over.
const lockFileName = "vigie.lock"

// dirLock is a held data directory lock.
type dirLock struct {
	f                       *os.File
	dir                     string
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
	held, err := tryLock(f)
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
	return l, nil
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
