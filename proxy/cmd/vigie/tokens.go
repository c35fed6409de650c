package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/vigie-dev/vigie/proxy"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/console"
	"github.com/vigie-dev/vigie/proxy/keyring"
)

const tokensUsage = `usage: vigie tokens create --role admin|marketer|dpo [--name NAME] [--print]   [--config FILE] [--data-dir DIR]
       vigie tokens list                                                     [--config FILE] [--data-dir DIR]
       vigie tokens revoke ID                                                [--config FILE] [--data-dir DIR]

A running Vigie applies a created or revoked token within a second (it
watches the keyring file); a revoked token's console sessions end with it.
In cluster mode (cluster.node_id) the tokens are the cluster's: a change
goes to the shared keyring (KV VIGIE_KEYRING) and every node applies it
within seconds, running or at its next start; with NATS unreachable
nothing is changed.`

// tokensCmd runs "vigie tokens": API tokens with roles, for the admin API
// and the console. create prints the new token once, on a terminal only
// (or with --print), like `vigie admin token reset`.
func tokensCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(tokensUsage)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "create", "list", "revoke":
	default:
		if helpFlags[cmd] {
			return showUsage(stdout, tokensUsage)
		}
		return fmt.Errorf("unknown tokens command %q\n%s", cmd, tokensUsage)
	}
	fs := newFlags("tokens "+cmd, tokensUsage, rest, stdout, stderr)
	id := ""
	if cmd == "revoke" && !wantsHelp(rest) {
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			return errors.New("usage: vigie tokens revoke ID (`vigie tokens list` shows the ids)")
		}
		id, rest = rest[0], rest[1:]
	}
	var role, name *string
	var printTok *bool
	if cmd == "create" {
		role = fs.String("role", "", "the token's role: "+strings.Join(keyring.Roles(), ", "))
		name = fs.String("name", "", "whose token it is (shown by `vigie tokens list`)")
		printTok = fs.Bool("print", false, "print the token even when stdout is not a terminal")
	}
	cfg, err := loadConfig(fs, rest)
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q\n%s", fs.Arg(0), tokensUsage)
	}
	tty := isTerminal(stdout)
	if cmd == "create" {
		if !keyring.ValidRole(*role) {
			return fmt.Errorf("vigie tokens create: --role must be one of %s", strings.Join(keyring.Roles(), ", "))
		}
		if !tty && !*printTok {
			return errors.New("vigie tokens create: stdout is not a terminal, so the new token would land in a file or a log; " +
				"run it in a terminal, or add --print to print it anyway (nothing was changed)")
		}
	}
	if cfg.Cluster.Enabled() {
		return clusterTokensCmd(ctx, cfg, cmd, id, role, name, tty, stdout, stderr)
	}
	kr, err := openKeyring(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	switch cmd {
	case "create":
		tok, t, err := kr.CreateToken(*role, *name)
		if err != nil {
			return err
		}
		printNewToken(stdout, tty, tok, t, "")
	case "list":
		printTokens(stdout, kr.Tokens)
	case "revoke":
		if err := kr.RevokeToken(id); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "token %s revoked; a running Vigie stops accepting it within a second\n", id)
	}
	return nil
}

// clusterTokensCmd is tokensCmd in cluster mode: the cluster's tokens,
// in the shared keyring.
func clusterTokensCmd(ctx context.Context, cfg config.Config, cmd, id string, role, name *string, tty bool, stdout, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	switch cmd {
	case "create":
		var tok string
		var t keyring.Token
		_, err := proxy.ChangeSharedTokens(ctx, cfg, log, func(kr *keyring.Keyring) error {
			var err error
			tok, t, err = kr.CreateToken(*role, *name)
			return err
		})
		if err != nil {
			return err
		}
		printNewToken(stdout, tty, tok, t, " for every node of the cluster")
	case "list":
		tokens, err := proxy.SharedTokens(ctx, cfg, log)
		if errors.Is(err, proxy.ErrSharedKeyringUnavailable) {
			kr, kerr := openKeyring(ctx, cfg, stderr)
			if kerr != nil {
				return kerr
			}
			fmt.Fprintln(stderr, "warning: the cluster's shared keyring cannot be reached; this is the list this node last knew")
			tokens, err = kr.Tokens, nil
		}
		if err != nil {
			return err
		}
		printTokens(stdout, tokens)
	case "revoke":
		if _, err := proxy.ChangeSharedTokens(ctx, cfg, log, func(kr *keyring.Keyring) error { return kr.RevokeToken(id) }); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "token %s revoked on every node of the cluster; the running ones stop accepting it within seconds\n", id)
	}
	return nil
}

// printNewToken prints a token just created: alone when stdout is not a
// terminal (--print), else with how to use it; where says for whom.
func printNewToken(stdout io.Writer, tty bool, tok string, t keyring.Token, where string) {
	if !tty {
		fmt.Fprintln(stdout, tok)
		return
	}
	fmt.Fprintf(stdout, "\nNew %s token %s%s (shown once; only its hash is kept):\n\n    %s\n\nSign in to the console with it, or send it as \"Authorization: Bearer …\".\n\n", t.Role, t.ID, where, tok)
}

// printTokens lists tokens, one a line: id, role, creation time, name.
func printTokens(stdout io.Writer, tokens []keyring.Token) {
	for _, t := range tokens {
		fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\n", t.ID, t.Role, t.Created.Format(time.RFC3339), t.Name)
	}
}

const sitesUsage = `usage: vigie sites add ID [--origin ORIGIN]... [--write-key KEY] [--server URL]   [--config FILE] [--data-dir DIR]

Adds a site, stored in Vigie's database next to the configuration file's
(which stays the source of what it declares). With Vigie stopped it writes
the data directory; while Vigie runs there it goes through the admin API
(--server, default the configured listen address; admin token in
VIGIE_ADMIN_TOKEN). A write key is made unless --write-key gives one.`

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// sitesCmd runs "vigie sites add".
func sitesCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "add" {
		if wantsHelp(args) {
			return showUsage(stdout, sitesUsage)
		}
		return errors.New(sitesUsage)
	}
	rest := args[1:]
	fs := newFlags("sites add", sitesUsage, rest, stdout, stderr)
	var ns console.NewSite
	if !wantsHelp(rest) {
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			return errors.New("usage: vigie sites add ID [--origin ORIGIN]...")
		}
		ns.ID, rest = rest[0], rest[1:]
	}
	var origins stringList
	fs.Var(&origins, "origin", "an origin allowed for browser hits (repeatable), e.g. https://shop.example")
	fs.StringVar(&ns.WriteKey, "write-key", "", "the site's write key (default: a random one)")
	server := fs.String("server", "", "the running Vigie's URL (default http://LISTEN)")
	cfg, err := loadConfig(fs, rest)
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q\n%s", fs.Arg(0), sitesUsage)
	}
	ns.Origins = origins
	st, err := proxy.AddSiteOffline(ctx, cfg, ns)
	if errors.Is(err, proxy.ErrAlreadyRunning) {
		base := *server
		if base == "" {
			base = "http://" + cfg.Listen
		}
		st, err = remoteAddSite(ctx, base, ns)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "site %s added, write key %s\n", st.ID, strings.Join(st.WriteKeys, ", "))
	return nil
}

// remoteAddSite adds ns through POST /admin/v1/sites of the server at base.
func remoteAddSite(ctx context.Context, base string, ns console.NewSite) (console.Site, error) {
	tok := os.Getenv("VIGIE_ADMIN_TOKEN")
	if tok == "" {
		return console.Site{}, errors.New("vigie sites add: Vigie is running with this data directory; " +
			"give an admin token in VIGIE_ADMIN_TOKEN to add the site through its admin API, or add it from the console")
	}
	body, _ := json.Marshal(ns)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(base, "/")+"/admin/v1/sites", bytes.NewReader(body))
	if err != nil {
		return console.Site{}, fmt.Errorf("vigie sites add: --server: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return console.Site{}, fmt.Errorf("vigie sites add: asking the running Vigie: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusCreated {
		var e struct{ Error string }
		_ = json.Unmarshal(b, &e)
		return console.Site{}, fmt.Errorf("vigie sites add: the server answered %d: %s", resp.StatusCode, e.Error)
	}
	var st console.Site
	if err := json.Unmarshal(b, &st); err != nil {
		return console.Site{}, fmt.Errorf("vigie sites add: the server's answer does not decode: %w", err)
	}
	return st, nil
}
