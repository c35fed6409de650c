package sdk

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal makes the kernel kill the plugin if the host dies,
// unless the caller configured the process attributes itself.
func setParentDeathSignal(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}
}
