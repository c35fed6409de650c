//go:build !(linux || darwin || freebsd)

package storage

// statfsFree is not implemented here: the disk-full guard logs once that
// it cannot measure, and stays off.
func statfsFree(string) (uint64, error) { return 0, errFreeSpaceUnsupported }
