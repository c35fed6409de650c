//go:build !(linux || darwin || freebsd)

package proxy

import "os"

// tryLock does not lock where flock is not available: Badger's own lock
// still refuses a second process, with its own message.
func tryLock(*os.File) (held bool, err error) { return false, nil }
