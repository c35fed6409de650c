package proxy

import (
	"bytes"
	"fmt"
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

// lockDataDir creates dir if needed and takes its lock; the returned
// file holds it until closed. Where flock is not available nothing is
// locked (Badger's own lock still refuses a second process).
func lockDataDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("proxy: data dir: %w", err)
	}
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("proxy: data dir lock: %w", err)
	}
	held, err := tryLock(f)
	if err != nil {
		f.Close()
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
	return f, nil
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
