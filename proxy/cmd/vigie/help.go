package main

import (
	"flag"
	"fmt"
	"io"
)

// usage is the help of vigie itself (`vigie help`, `vigie --help`),
// followed by the server's flags.
const usage = `Vigie: a privacy-first, first-party tracking proxy.

Usage:
  vigie [--config FILE] [--listen ADDR] [--data-dir DIR]   run the server
  vigie COMMAND [ARGUMENTS]                                 run a command

Commands:
  version                      print the version
  check                        check the configuration and key custody under the production rules
  keys list|rotate|retire ID   list, rotate or retire the pseudonymization keys
  keys master new              make a master key
  keys rewrap                  re-seal the keyring under a new master key
  admin token reset            replace the admin token
  tokens create|list|revoke    API tokens with roles (admin, marketer, dpo) for the console and the admin API
  sites add ID                 add a site, stored next to the configuration file's
  email rewrite                add the open pixel and wrap the links of a campaign's HTML
  email tokens                 make per-recipient values for an e-mail service's merge fields
  import FILE --map map.yaml   import a CSV or NDJSON file (orders, subscriptions, scores) into a running Vigie
  cluster nodes|remove NODE    list a cluster's nodes, or remove one that is down for good
  bench                        load-test a temporary instance
  help [COMMAND]               show this, or a command's usage and flags

"vigie help COMMAND" and "vigie COMMAND --help" show a command's usage and
flags; neither starts or changes anything.

With no configuration file the server runs a demo setup on 127.0.0.1:8080
(data in ./vigie-data, a trial master key in ./vigie-secrets, the demo site
at /demo/ with write key "demo").`

// helpFlags are the arguments that ask for help, as the flag package
// reads them.
var helpFlags = map[string]bool{"-h": true, "-help": true, "--h": true, "--help": true}

// wantsHelp reports whether args ask for help (before any "--").
func wantsHelp(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if helpFlags[a] {
			return true
		}
	}
	return false
}

// newFlags returns the flag set of a command. Its usage text (for -h,
// --help and `vigie help COMMAND`) is usage followed by the flags: on
// stdout when args ask for help, else (a wrong flag) on stderr. Parsing
// -h or --help returns flag.ErrHelp, which run turns into success: a
// command returns it before doing anything.
func newFlags(name, usage string, args []string, stdout, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	if wantsHelp(args) {
		fs.SetOutput(stdout)
	}
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), usage)
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintln(fs.Output(), "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// showUsage prints a command's usage on stdout for `vigie COMMAND --help`
// when the command takes a subcommand first, and returns flag.ErrHelp.
func showUsage(stdout io.Writer, usage string) error {
	fmt.Fprintln(stdout, usage)
	return flag.ErrHelp
}
