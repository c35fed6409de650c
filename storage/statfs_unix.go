//go:build linux || darwin || freebsd

package storage

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// statfsFree returns f_bavail × f_bsize for the filesystem holding dir.
func statfsFree(dir string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}

// diskUsage is the space a file takes on disk: its allocated blocks (a
// sparse file takes less than its size), or its size if unknown.
func diskUsage(info os.FileInfo) int64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return info.Size()
}
