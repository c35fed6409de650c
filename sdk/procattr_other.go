//go:build !linux

package sdk

import "os/exec"

// setParentDeathSignal is a no-op where the kernel has no such signal.
func setParentDeathSignal(*exec.Cmd) {}
