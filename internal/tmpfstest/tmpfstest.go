// Package tmpfstest mounts small tmpfs filesystems for tests that need a
// real disk to fill up (the disk-full tests of storage, proxy and the vigie
// command). Mounting needs root: without it, or where the kernel refuses the
// mount (an unprivileged container), the test is skipped with a message
// saying so.
package tmpfstest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// Mount mounts a tmpfs of size bytes on a new directory under t.TempDir()
// and unmounts it when the test ends. It skips the test when not running as
// root or when the mount is refused.
func Mount(t testing.TB, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("tmpfstest: mounting a tmpfs needs root; run the tests as root (CI does)")
	}
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.FormatInt(size, 10)); err != nil {
		t.Skipf("tmpfstest: mount -t tmpfs refused (%v); this environment cannot run the real-disk test", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("tmpfstest: unmount %s: %v", dir, err)
		}
	})
	return dir
}

// Free returns the bytes available on the filesystem holding dir.
func Free(t testing.TB, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatalf("tmpfstest: statfs %s: %v", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// Fill creates (or grows) the file name in dir until the filesystem has
// about leave bytes free (never fewer, to the page), and returns its path.
// Removing the file gives the space back.
func Fill(t testing.TB, dir, name string, leave int64) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		n := Free(t, dir) - leave
		if n < int64(os.Getpagesize()) {
			return p
		}
		if _, err := f.Write(buf[:min(n, int64(len(buf)))]); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("tmpfstest: filesystem full while filling: %v", err)
			}
			t.Fatal(fmt.Errorf("tmpfstest: fill: %w", err))
		}
	}
}
