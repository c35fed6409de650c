// Command vigie runs the Vigie tracking proxy.
//
//	vigie [--config FILE] [--listen ADDR] [--data-dir DIR]   run the server
//	vigie version                                            print the version
//	vigie keys list|rotate|retire ID [--data-dir DIR]        manage pseudonymization keys
//	vigie keys master new [--out FILE]                       make a master key
//	vigie keys rewrap --new-key-file FILE|-                  re-seal the keyring under a new master key
//	vigie admin token reset [--print]                        make a new admin token
//	vigie tokens create --role R [--name N] | list | revoke ID  API tokens with roles
//	vigie sites add ID [--origin O]...                       add a site (stored next to the YAML ones)
//	vigie check [--config FILE]                              check the configuration and key custody
//	vigie email rewrite ... < campaign.html                  add the open pixel, wrap the links
//	vigie email tokens [--site ID] < recipients.csv          per-recipient values for an ESP's merge fields
//	vigie register [--format markdown|json] [--server URL]    the register of processing (Art. 30)
//	vigie import FILE --map map.yaml [--dry-run] [--server URL] import a CSV or NDJSON file
//	vigie cluster nodes|remove NODE [--server URL]          a cluster's members; remove a dead one
//	vigie bench [--duration 10s] [--events-per-batch 15] [--json]
//	                                                         load-test a temporary instance
//	vigie help [COMMAND]                                     the commands, or a command's flags
//
// `vigie help COMMAND` and `vigie COMMAND --help` print a command's usage
// and flags and start or change nothing.
//
// With no configuration file it starts a working demo setup: 127.0.0.1:8080,
// data in ./vigie-data, a trial master key in ./vigie-secrets, embedded
// NATS, the demo site (write key "demo").
//
// Exit status: 0 after a clean stop, 75 when it cannot start because the
// disk is full (less free space than storage.min_free_bytes), 1 on any
// other error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/vigie-dev/vigie/plugins/builtin"
	"github.com/vigie-dev/vigie/proxy"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/loadtest"
	"github.com/vigie-dev/vigie/storage"
)

// defaultMemoryLimit is the Go heap's soft limit when GOMEMLIMIT is not
// set: it keeps the server's anonymous memory under 300 MB under sustained
// load while leaving the GC enough headroom for p99 latency (see
// BENCHMARKS.md). Set GOMEMLIMIT to change it.
const defaultMemoryLimit = 384 << 20

// Exit statuses: 1 for any error, except exitDiskFull when vigie cannot
// start because the data dir's filesystem has less free space than
// storage.min_free_bytes (or none at all to create the keyring). It is 75, EX_TEMPFAIL of sysexits.h ("try again
// later"), so that a supervisor can tell it from a crash or a bad
// configuration (systemd: RestartPreventExitStatus=75 stops the restarts,
// or RestartSec spaces them until space is freed).
const exitDiskFull = 75

func main() {
	// "vigie plugin <name>" runs a built-in plugin: Vigie starts its
	// built-ins as separate processes by re-executing itself.
	builtin.MaybeRun(os.Args)
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, storage.ErrDiskFull) || errors.Is(err, syscall.ENOSPC) {
		fmt.Fprintln(os.Stderr, "vigie: cannot start, the disk is full:", err)
		fmt.Fprintln(os.Stderr, "vigie: free space on that filesystem (or lower storage.min_free_bytes), then start again")
		os.Exit(exitDiskFull)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "vigie:", err)
		os.Exit(1)
	}
}

// run runs the command in args; the server stops when ctx is done. Help
// (`vigie help [COMMAND]`, -h, --help anywhere) prints the usage and
// flags and succeeds, having started and changed nothing.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	for len(args) > 0 && args[0] == "help" {
		// `vigie help keys rotate` is `vigie keys rotate --help`.
		args = append(append([]string{}, args[1:]...), "--help")
	}
	err := dispatch(ctx, args, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "version", "--version", "-version":
			if wantsHelp(args[1:]) {
				return showUsage(stdout, "usage: vigie version")
			}
			fmt.Fprintln(stdout, "vigie", proxy.Version)
			return nil
		case "keys":
			return keysCmd(ctx, args[1:], stdout, stderr)
		case "admin":
			return adminCmd(ctx, args[1:], stdout, stderr)
		case "tokens":
			return tokensCmd(ctx, args[1:], stdout, stderr)
		case "sites":
			return sitesCmd(ctx, args[1:], stdout, stderr)
		case "check":
			return checkCmd(ctx, args[1:], stdout, stderr)
		case "bench":
			return loadtest.Main(args[1:], stdout)
		case "email":
			return emailCmd(ctx, args[1:], stdin, stdout, stderr)
		case "register":
			return registerCmd(ctx, args[1:], stdout, stderr)
		case "import":
			return importCmd(ctx, args[1:], stdout, stderr)
		case "cluster":
			return clusterCmd(ctx, args[1:], stdout, stderr)
		}
	}
	return serve(ctx, args, stdout, stderr)
}

// loadConfig reads --config, the environment and the common flags.
func loadConfig(fs *flag.FlagSet, args []string) (config.Config, error) {
	cfgPath := fs.String("config", "", "YAML configuration file (default: none, demo setup)")
	listen := fs.String("listen", "", "listen address (default 127.0.0.1:8080)")
	dataDir := fs.String("data-dir", "", "data directory (default ./vigie-data)")
	if err := fs.Parse(args); err != nil {
		return config.Config{}, err
	}
	cfg, err := config.Load(*cfgPath, os.Environ())
	if err != nil && !errors.Is(err, config.ErrInvalid) {
		return cfg, err
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	// An invalid configuration comes back too, for `vigie check` to report.
	return cfg, err
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("vigie", usage, args, stdout, stderr)
	cfg, err := loadConfig(fs, args)
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unknown command %q: `vigie help` lists the commands", fs.Arg(0))
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	srv, err := proxy.New(cfg, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Starting Vigie %s (data in %s): keys, storage, NATS, plugins…\n", proxy.Version, cfg.DataDir)
	if err := srv.Start(ctx); err != nil {
		return err
	}
	if tok := srv.NewAdminToken(); tok != "" {
		showNewAdminToken(stdout, tok)
	}
	printReady(stdout, srv, cfg)
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// printReady tells where to go once the server is up: its URL, the
// console and the demo site.
func printReady(stdout io.Writer, srv *proxy.Server, cfg config.Config) {
	fmt.Fprintf(stdout, "Vigie %s listening on %s — Ctrl-C stops.\n", proxy.Version, srv.URL(""))
	fmt.Fprintf(stdout, "  Console:  %s\n", srv.URL(proxy.ConsolePath))
	if cfg.DemoPath != "off" {
		fmt.Fprintf(stdout, "  Demo:     %s  (a shop whose hits go to this Vigie)\n", srv.URL(cfg.DemoPath))
	}
	if wk := firstWriteKey(cfg); wk != "" {
		fmt.Fprintf(stdout, "  Send events with write key %q; see them in the console (sign in with your token).\n", wk)
	}
}

func firstWriteKey(cfg config.Config) string {
	if len(cfg.Sites) > 0 && len(cfg.Sites[0].WriteKeys) > 0 {
		return cfg.Sites[0].WriteKeys[0]
	}
	return ""
}
