// Package builtin is the registry of the plugins compiled into the vigie
// binary. Vigie runs each one as a separate process by re-executing itself
// as "vigie plugin <name>", so that `go run ./proxy/cmd/vigie` needs no
// extra build and a crashing plugin cannot take the proxy down.
package builtin

import (
	"fmt"
	"os"
	"os/exec"
	"sort"
	"sync"

	"github.com/vigie-dev/vigie/plugins/geoip"
	"github.com/vigie-dev/vigie/plugins/response"
	"github.com/vigie-dev/vigie/plugins/segments"
	"github.com/vigie-dev/vigie/sdk"
)

// Subcommand is the hidden vigie subcommand that runs a built-in plugin.
const Subcommand = "plugin"

var (
	mu    sync.RWMutex
	mains = map[string]func(){
		"geoip":    geoip.Main,
		"response": response.Main,
		"segments": segments.Main,
	}
)

// described are the built-ins whose manifest can be read without starting
// them (Manifest): those of the vigie binary.
var described = map[string]func() sdk.Plugin{
	"geoip":    geoip.Plugin,
	"response": response.Plugin,
	"segments": segments.Plugin,
}

// Manifest returns the manifest built-in plugin name declares when it
// starts, read without starting it (`vigie register` uses it); false for a
// name that is not a built-in of the vigie binary.
func Manifest(name string) (sdk.Manifest, bool) {
	d, ok := described[name]
	if !ok {
		return sdk.Manifest{}, false
	}
	m, err := d().Describe()
	return m, err == nil
}

// Register adds a built-in plugin (tests use it to run test plugins from
// the test binary). The main function serves the plugin and never returns.
func Register(name string, main func()) {
	mu.Lock()
	defer mu.Unlock()
	mains[name] = main
}

// Names lists the built-in plugins.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]string, 0, len(mains))
	for n := range mains {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Has reports whether name is a built-in plugin.
func Has(name string) bool {
	mu.RLock()
	defer mu.RUnlock()
	_, ok := mains[name]
	return ok
}

// Run serves the built-in plugin name; it returns only when there is no
// such plugin.
func Run(name string) error {
	mu.RLock()
	main, ok := mains[name]
	mu.RUnlock()
	if !ok {
		return fmt.Errorf("builtin: no built-in plugin %q (have %v)", name, Names())
	}
	main()
	return nil
}

// MaybeRun runs a built-in plugin when args (os.Args) ask for one
// ("<prog> plugin <name>") and exits; otherwise it returns. Call it first
// thing in main, or in TestMain of tests that start Vigie with plugins.
func MaybeRun(args []string) {
	if len(args) < 3 || args[1] != Subcommand {
		return
	}
	if err := Run(args[2]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Exit(0)
}

// Command returns the command that starts built-in plugin name: the
// running executable with the hidden subcommand.
func Command(name string) (*exec.Cmd, error) {
	if !Has(name) {
		return nil, fmt.Errorf("builtin: no built-in plugin %q (have %v)", name, Names())
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("builtin: %w", err)
	}
	return exec.Command(exe, Subcommand, name), nil
}
