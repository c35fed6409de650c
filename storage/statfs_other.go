//go:build !(linux || darwin || freebsd)

package storage

import "os"

// statfsFree is not implemented here: the disk-full guard logs once that
// it cannot measure, and stays off.
func statfsFree(string) (uint64, error) { return 0, errFreeSpaceUnsupported }

// diskUsage is the file's size here (allocated blocks are not known).
func diskUsage(info os.FileInfo) int64 { return info.Size() }
