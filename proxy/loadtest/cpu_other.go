//go:build !unix

package loadtest

// processCPUSeconds is 0 where getrusage does not exist.
func processCPUSeconds() float64 { return 0 }
