// Package builtin is the registry of the plugins compiled into the vigie
// binary. Vigie runs each one as a separate process by re-executing itself
// as "vigie plugin <name>", so that `go run ./proxy/cmd/vigie` needs no
// extra build and a crashing plugin cannot take the proxy down.
package builtin

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"

	"github.com/vigie-dev/vigie/plugins/crm"
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
		crm.Name:   crm.Main,
		"geoip":    geoip.Main,
		"response": response.Main,
		"segments": segments.Main,
	}
)

// described are the built-ins whose manifest can be read without starting
// them (Manifest): those of the vigie binary.
var described = map[string]func() sdk.Plugin{
	crm.Name:   crm.Plugin,
	"geoip":    geoip.Plugin,
	"response": response.Plugin,
	"segments": segments.Plugin,
}

// Configured is what a built-in's configuration adds to its manifest and
// needs from its plugin entry.
type Configured struct {
	// Purposes are added to the manifest's (plugins.Spec.Purposes): a
	// CRM destination's.
	Purposes []string
	// Env are the environment variables the configuration reads secrets
	// from: the plugin entry's env must pass them on.
	Env []string
}

// checks validate the configuration of the built-ins that check theirs
// before they start.
var checks = map[string]func(config []byte) (Configured, error){
	crm.Name: func(config []byte) (Configured, error) {
		c, err := crm.Parse(config)
		if err != nil {
			// The message names the field, after crm's own prefix.
			return Configured{}, errors.New(strings.TrimPrefix(err.Error(), crm.ErrConfig.Error()+": "))
		}
		return Configured{Purposes: c.Purposes, Env: c.EnvSecrets()}, nil
	},
}

// Check validates config (JSON; nil: none) for built-in name, as far as it
// can be without starting the plugin: an error's message starts with the
// field it is about (fields.company: …). A built-in without such a check
// accepts anything here.
func Check(name string, config []byte) (Configured, error) {
	mu.RLock()
	check := checks[name]
	mu.RUnlock()
	if check == nil {
		return Configured{}, nil
	}
	return check(config)
}

// Manifest returns the manifest built-in plugin name declares when it
// starts, read without starting it (`vigie register` uses it); false for a
// name that is not a built-in of the vigie binary.
func Manifest(name string) (sdk.Manifest, bool) {
	mu.RLock()
	d, ok := described[name]
	mu.RUnlock()
	if !ok {
		return sdk.Manifest{}, false
	}
	m, err := d().Describe()
	return m, err == nil
}

// Register adds a built-in plugin (tests use it to run test plugins from
// the test binary), replacing one of the same name with its description
// and configuration check. The main function serves the plugin and never
// returns.
func Register(name string, main func()) {
	mu.Lock()
	defer mu.Unlock()
	mains[name] = main
	delete(described, name)
	delete(checks, name)
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
