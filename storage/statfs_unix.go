//go:build linux || darwin || freebsd

package storage

import "golang.org/x/sys/unix"

// statfsFree returns f_bavail × f_bsize for the filesystem holding dir.
func statfsFree(dir string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}
