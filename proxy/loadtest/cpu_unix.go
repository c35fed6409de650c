//go:build unix

package loadtest

import (
	"syscall"
	"time"
)

// processCPUSeconds is the CPU time (user + system, every thread) this
// process has used; 0 where getrusage fails.
func processCPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
