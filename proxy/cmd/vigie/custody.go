package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/vigie-dev/vigie/proxy"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/keyring"
)

// isTerminal reports whether w is a terminal (a variable for tests): a
// secret is printed only there, never to a file, a pipe or a log.
var isTerminal = func(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// showNewAdminToken shows the admin token made at first start, on a
// terminal only.
func showNewAdminToken(stdout io.Writer, tok string) {
	if isTerminal(stdout) {
		fmt.Fprintf(stdout, "\nVigie admin token (shown once; only its hash is kept):\n\n    %s\n\n", tok)
		return
	}
	fmt.Fprintln(stdout, "An admin token was made; it is shown only on a terminal. Get a new one with "+
		"`vigie admin token reset` in a terminal, or choose it at first start with VIGIE_ADMIN_TOKEN.")
}

// openKeyring opens the data directory's keyring as the server does,
// warnings to stderr.
func openKeyring(ctx context.Context, cfg config.Config, stderr io.Writer) (*keyring.Keyring, error) {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	kr, _, err := proxy.OpenKeyring(ctx, cfg, log)
	return kr, err
}

const keysUsage = `usage: vigie keys list | rotate | retire ID   [--config FILE] [--data-dir DIR]
       vigie keys master new [--out FILE]
       vigie keys rewrap --new-key-file FILE|-     [--config FILE] [--data-dir DIR]`

// keysCmd runs "vigie keys": pseudonymization keys (list, rotate, retire)
// and the master key (master new, rewrap).
func keysCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(keysUsage)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "master":
		return masterNewCmd(rest, stdout, stderr)
	case "list", "rotate", "retire", "rewrap":
	default:
		if helpFlags[cmd] {
			return showUsage(stdout, keysUsage)
		}
		return fmt.Errorf("unknown keys command %q\n%s", cmd, keysUsage)
	}
	fs := newFlags("keys "+cmd, keysUsage, rest, stdout, stderr)
	id := ""
	if cmd == "retire" && !wantsHelp(rest) {
		if len(rest) == 0 {
			return errors.New("usage: vigie keys retire ID")
		}
		id, rest = rest[0], rest[1:]
	}
	newKeyFile := ""
	if cmd == "rewrap" {
		fs.StringVar(&newKeyFile, "new-key-file", "", "file holding the new master key (- for stdin)")
	}
	cfg, err := loadConfig(fs, rest)
	if err != nil {
		return err
	}
	var next keyring.MasterKey
	if cmd == "rewrap" {
		if next, err = readNewMasterKey(newKeyFile); err != nil {
			return err
		}
	}
	if cfg.Cluster.Enabled() {
		switch cmd {
		case "rewrap":
			return errors.New("vigie keys rewrap: not available in cluster mode: the shared keyring (KV VIGIE_KEYRING) is sealed under the master key " +
				"every node reads, and re-sealing it here would lock the other nodes out")
		case "rotate", "retire":
			return sharedKeysCmd(ctx, cfg, cmd, id, stdout, stderr)
		}
	}
	kr, err := openKeyring(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	switch cmd {
	case "rotate":
		k, err := kr.Rotate()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "new active key %s; restart vigie to use it\n", k.ID)
	case "retire":
		if err := kr.Retire(id); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "key %s retired; restart vigie to apply\n", id)
	case "list":
		for _, k := range kr.Keys {
			state := "active"
			if k.Retired != nil {
				state = "retired"
			}
			fmt.Fprintf(stdout, "%s\t%s\t%s\n", k.ID, k.Created.Format(time.RFC3339), state)
		}
	case "rewrap":
		prev := kr.MasterKeyID()
		if next.ID() == prev {
			return fmt.Errorf("vigie keys rewrap: the new master key is the current one (%s)", prev)
		}
		if err := kr.Rewrap(next); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "keyring re-sealed under %s (was %s); no data was re-encrypted.\n"+
			"Now make the new key the one Vigie reads (keys.master_key_file, keys.master_key_command or VIGIE_MASTER_KEY) "+
			"before the next start: %s no longer opens the keyring.\n", next.ID(), prev, prev)
	}
	return nil
}

// sharedKeysCmd is "vigie keys rotate" and "retire" in cluster mode: the
// cluster's shared keyring (KV VIGIE_KEYRING) is changed by a
// compare-and-set, then this node's copy.
func sharedKeysCmd(ctx context.Context, cfg config.Config, cmd, id string, stdout, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var made string
	_, err := proxy.ChangeSharedKeys(ctx, cfg, log, func(kr *keyring.Keyring) error {
		if cmd == "retire" {
			return kr.Retire(id)
		}
		k, err := kr.Rotate()
		made = k.ID
		return err
	})
	if err != nil {
		return err
	}
	if cmd == "retire" {
		fmt.Fprintf(stdout, "key %s retired in the cluster's shared keyring; restart every node to apply\n", id)
	} else {
		fmt.Fprintf(stdout, "new active key %s in the cluster's shared keyring; restart every node to use it (each adopts it at its start)\n", made)
	}
	return nil
}

// readNewMasterKey reads rewrap's new master key from a file or stdin.
func readNewMasterKey(path string) (keyring.MasterKey, error) {
	var b []byte
	var err error
	switch path {
	case "":
		return keyring.MasterKey{}, errors.New("vigie keys rewrap: --new-key-file FILE (or - for stdin) is required; make a key with `vigie keys master new --out FILE`")
	case "-":
		b, err = io.ReadAll(io.LimitReader(stdin, 4096))
	default:
		b, err = keyring.ReadSecretFile(path)
	}
	if err != nil {
		return keyring.MasterKey{}, fmt.Errorf("vigie keys rewrap: %w", err)
	}
	defer clear(b)
	mk, err := keyring.ParseMasterKey(string(b))
	if err != nil {
		return keyring.MasterKey{}, fmt.Errorf("vigie keys rewrap: --new-key-file: %w", err)
	}
	return mk, nil
}

// masterNewCmd runs "vigie keys master new": a new random master key,
// written to --out (0600, never over an existing file) or printed.
func masterNewCmd(args []string, stdout, stderr io.Writer) error {
	const masterUsage = "usage: vigie keys master new [--out FILE]"
	if len(args) == 0 || args[0] != "new" {
		if wantsHelp(args) {
			return showUsage(stdout, masterUsage)
		}
		return errors.New(masterUsage)
	}
	fs := newFlags("keys master new", masterUsage, args[1:], stdout, stderr)
	out := fs.String("out", "", "write the key to this new file (mode 0600) instead of stdout")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	mk, err := keyring.NewMasterKey()
	if err != nil {
		return err
	}
	if *out == "" {
		fmt.Fprintln(stdout, mk.Encode())
		return nil
	}
	if err := keyring.WriteKeyFile(*out, mk); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote master key %s to %s (mode 0600)\n", mk.ID(), *out)
	return nil
}

const adminUsage = "usage: vigie admin token reset [--print] [--config FILE] [--data-dir DIR]\n\n" +
	"In cluster mode (cluster.node_id) the admin tokens of every node are replaced (shared keyring, KV VIGIE_KEYRING)."

// adminCmd runs "vigie admin token reset": every admin token is replaced by
// a new one, printed once. On a stdout that is not a terminal it refuses,
// before changing anything, unless --print asks for the token alone on
// stdout (for a script that stores it).
func adminCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) < 2 || args[0] != "token" || args[1] != "reset" {
		if wantsHelp(args) {
			return showUsage(stdout, adminUsage)
		}
		return errors.New(adminUsage)
	}
	fs := newFlags("admin token reset", adminUsage, args[2:], stdout, stderr)
	printTok := fs.Bool("print", false, "print the token even when stdout is not a terminal")
	cfg, err := loadConfig(fs, args[2:])
	if err != nil {
		return err
	}
	tty := isTerminal(stdout)
	if !tty && !*printTok {
		return errors.New("vigie admin token reset: stdout is not a terminal, so the new token would land in a file or a log; " +
			"run it in a terminal, or add --print to print it anyway (nothing was changed)")
	}
	var tok string
	if cfg.Cluster.Enabled() { // the cluster's admin tokens, on every node
		log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		_, err = proxy.ChangeSharedTokens(ctx, cfg, log, func(kr *keyring.Keyring) error {
			var err error
			tok, err = kr.ResetAdminToken()
			return err
		})
	} else {
		var kr *keyring.Keyring
		if kr, err = openKeyring(ctx, cfg, stderr); err == nil {
			tok, err = kr.ResetAdminToken()
		}
	}
	if err != nil {
		return err
	}
	if !tty {
		fmt.Fprintln(stdout, tok)
		return nil
	}
	fmt.Fprintf(stdout, "\nNew Vigie admin token (shown once; a running Vigie stops accepting the old one within a second):\n\n    %s\n\n", tok)
	return nil
}

// checkCmd runs "vigie check": the configuration and key custody checks
// under the production rules, as a table; an error when one fails.
func checkCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check", "usage: vigie check [--config FILE] [--data-dir DIR]", args, stdout, stderr)
	cfg, err := loadConfig(fs, args)
	if err != nil && !errors.Is(err, config.ErrInvalid) {
		return err
	}
	rep := proxy.Check(ctx, cfg)
	if err := rep.Print(stdout); err != nil {
		return err
	}
	if n := len(rep.Failed()); n > 0 {
		names := make([]string, n)
		for i, r := range rep.Failed() {
			names[i] = r.Name
		}
		return fmt.Errorf("check: %d failed (%s)", n, strings.Join(names, ", "))
	}
	return nil
}
