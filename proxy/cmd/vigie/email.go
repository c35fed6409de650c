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
	"github.com/vigie-dev/vigie/proxy/email"
	"github.com/vigie-dev/vigie/proxy/keyring"
)

const emailUsage = `usage: vigie email rewrite --campaign NAME --base URL [--site ID]
                           (--recipient USER_ID | --merge-tag TAG [--preference-merge-tag TAG])
                           [--headers FILE] [--sent-at RFC3339] [--expires 90d] [--honeypot=false]
                           [--config FILE] [--data-dir DIR] < campaign.html > tracked.html
       vigie email tokens [--site ID] [--expires-in 365d] [--column user_id]
                          [--server URL] [--config FILE] [--data-dir DIR] < recipients.csv > tokens.csv`

// emailCmd runs "vigie email rewrite" and "vigie email tokens".
func emailCmd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "rewrite":
			return emailRewrite(ctx, args[1:], stdin, stdout, stderr)
		case "tokens":
			return emailTokens(ctx, args[1:], stdin, stdout, stderr)
		}
	}
	if wantsHelp(args) {
		return showUsage(stdout, emailUsage)
	}
	return errors.New(emailUsage)
}

// emailRewrite runs "vigie email rewrite": the campaign's HTML on stdin
// comes back on stdout with the open pixel added and its links wrapped,
// signed with the keyring of the data directory (the same keys the server
// verifies with).
func emailRewrite(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("email rewrite", emailUsage, args, stdout, stderr)
	site := fs.String("site", "", "site id (default: the first configured site)")
	campaign := fs.String("campaign", "", "campaign name (required)")
	base := fs.String("base", "", "Vigie's public URL, e.g. https://shop.example/t/ (default: public_url)")
	recipient := fs.String("recipient", "", "the recipient's user id (as identify's userId)")
	mergeTag := fs.String("merge-tag", "", "the ESP's placeholder for the vigie_token contact attribute instead, e.g. *|VIGIE|*")
	sentAt := fs.String("sent-at", "", "when the campaign goes out (RFC 3339)")
	expires := fs.String("expires", "", "stop counting hits after this long (e.g. 90d)")
	honeypot := fs.Bool("honeypot", true, "add a hidden link that catches link scanners")
	prefTag := fs.String("preference-merge-tag", "", "with --merge-tag: the ESP's placeholder for the vigie_preference contact attribute, e.g. *|VIGIE_PREF|*")
	headers := fs.String("headers", "", "write the List-Unsubscribe and List-Unsubscribe-Post headers to this file")
	cfg, err := loadConfig(fs, args)
	if err != nil {
		return err
	}
	if *campaign == "" || (*recipient == "") == (*mergeTag == "") || (*prefTag != "" && *mergeTag == "") {
		return errors.New(emailUsage)
	}
	if *headers != "" && *recipient == "" && *prefTag == "" {
		return errors.New("vigie email rewrite: --headers with --merge-tag needs --preference-merge-tag (the ESP's placeholder for vigie_preference)")
	}
	if *site == "" && len(cfg.Sites) > 0 {
		*site = cfg.Sites[0].ID
	}
	if *base == "" {
		*base = cfg.PublicURL
	}
	if *base == "" {
		return errors.New("vigie email rewrite: --base (or public_url in the configuration) is required")
	}
	if !knownSite(cfg, *site) {
		return fmt.Errorf("vigie email rewrite: unknown site %q", *site)
	}
	kr, err := emailKeyring(ctx, cfg, stderr, "rewrite")
	if err != nil {
		return err
	}
	signer, err := proxy.EmailSigner(kr)
	if err != nil {
		return err
	}
	opt := email.RewriteOptions{Base: *base, Signer: signer, Site: *site, Campaign: *campaign, MergeTag: *mergeTag, AddHoneypot: *honeypot}
	if *recipient != "" {
		if p := email.UserIDProblem(*recipient); p != "" {
			return fmt.Errorf("vigie email rewrite: --recipient: %s", p)
		}
		pseudonym, err := proxy.RecipientPseudonymizer(kr)
		if err != nil {
			return err
		}
		opt.Recipient = pseudonym(*site, *recipient)
	}
	if *headers != "" {
		tok := *prefTag
		if opt.Recipient != "" {
			if tok, err = signer.SignPreference(*site, opt.Recipient, time.Time{}); err != nil {
				return err
			}
		}
		h, err := email.UnsubscribeHeaders(*base, tok)
		if err != nil {
			return fmt.Errorf("vigie email rewrite: --headers: %w", err)
		}
		lines := "List-Unsubscribe: " + h.ListUnsubscribe + "\r\nList-Unsubscribe-Post: " + h.ListUnsubscribePost + "\r\n"
		if err := os.WriteFile(*headers, []byte(lines), 0o644); err != nil {
			return fmt.Errorf("vigie email rewrite: --headers: %w", err)
		}
	}
	if *sentAt != "" {
		if opt.SentAt, err = time.Parse(time.RFC3339, *sentAt); err != nil {
			return fmt.Errorf("vigie email rewrite: --sent-at: %w", err)
		}
	}
	if *expires != "" {
		d, err := config.ParseDuration(*expires)
		if err != nil || d <= 0 {
			return fmt.Errorf("vigie email rewrite: --expires: want a positive duration such as 90d")
		}
		from := opt.SentAt
		if from.IsZero() {
			from = time.Now()
		}
		opt.Expires = from.Add(d)
	}
	return email.RewriteCommand(ctx, stdin, stdout, opt)
}

// emailTokens runs "vigie email tokens": user ids on stdin (one per line,
// or a CSV with a user_id column) come back on stdout as CSV with each
// recipient's vigie_token, to import into the ESP as a contact attribute.
// It signs from the data directory's keyring, or asks the running server
// given with --server (admin token in VIGIE_ADMIN_TOKEN).
func emailTokens(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("email tokens", emailUsage, args, stdout, stderr)
	site := fs.String("site", "", "site id (default: the first configured site)")
	expires := fs.String("expires-in", "", "the values stop identifying anyone after this long (e.g. 365d; default never)")
	column := fs.String("column", email.DefaultUserIDColumn, "header of the user id column of a CSV input")
	server := fs.String("server", "", "ask this running Vigie (e.g. https://track.example/) instead of signing from --data-dir; admin token in VIGIE_ADMIN_TOKEN")
	cfg, err := loadConfig(fs, args)
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return errors.New(emailUsage)
	}
	if *site == "" && len(cfg.Sites) > 0 {
		*site = cfg.Sites[0].ID
	}
	var exp time.Time
	if *expires != "" {
		d, err := config.ParseDuration(*expires)
		if err != nil || d <= 0 {
			return fmt.Errorf("vigie email tokens: --expires-in: want a positive duration such as 365d")
		}
		exp = time.Now().Add(d)
	}
	opt := email.TokensOptions{Column: *column}
	if *server != "" {
		tok := os.Getenv("VIGIE_ADMIN_TOKEN")
		if tok == "" {
			return errors.New("vigie email tokens: --server needs the admin token in VIGIE_ADMIN_TOKEN")
		}
		opt.Issue, opt.Preferences = remoteTokens(*server, tok, *site, *expires)
	} else {
		if !knownSite(cfg, *site) {
			return fmt.Errorf("vigie email tokens: unknown site %q", *site)
		}
		kr, err := emailKeyring(ctx, cfg, stderr, "tokens")
		if err != nil {
			return err
		}
		signer, err := proxy.EmailSigner(kr)
		if err != nil {
			return err
		}
		pseudonym, err := proxy.RecipientPseudonymizer(kr)
		if err != nil {
			return err
		}
		opt.Issue = func(_ context.Context, ids []string) ([]string, error) {
			return signer.SignRecipients(*site, ids, func(id string) string { return pseudonym(*site, id) }, exp)
		}
		opt.Preferences = func(_ context.Context, ids []string) ([]string, error) {
			out := make([]string, len(ids))
			for i, id := range ids {
				if out[i], err = signer.SignPreference(*site, pseudonym(*site, id), exp); err != nil {
					return nil, err
				}
			}
			return out, nil
		}
	}
	if err := email.TokensCommand(ctx, stdin, stdout, opt); err != nil {
		return fmt.Errorf("vigie email tokens: %w", err)
	}
	return nil
}

// remoteTokens asks POST /admin/v1/email/tokens of the server at base:
// issue makes the request for a batch, prefs returns the preference tokens
// of the batch issue fetched last (TokensCommand calls them in turn).
func remoteTokens(base, adminToken, site, expiresIn string) (issue, prefs func(context.Context, []string) ([]string, error)) {
	client := &http.Client{Timeout: time.Minute}
	endpoint := strings.TrimSuffix(base, "/") + "/admin/v1/email/tokens"
	var last []string
	prefs = func(_ context.Context, ids []string) ([]string, error) {
		if len(last) != len(ids) {
			return nil, fmt.Errorf("the server's answer has %d preference tokens for %d user ids", len(last), len(ids))
		}
		return last, nil
	}
	issue = func(ctx context.Context, ids []string) ([]string, error) {
		body, _ := json.Marshal(map[string]any{"site": site, "user_ids": ids, "expires_in": expiresIn})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("--server: %w", err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("asking the server: %w", err)
		}
		defer resp.Body.Close()
		var out struct {
			Tokens []struct {
				VigieToken      string `json:"vigie_token"`
				VigiePreference string `json:"vigie_preference"`
			} `json:"tokens"`
			Error string `json:"error"`
		}
		if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&out); err != nil && resp.StatusCode == http.StatusOK {
			return nil, fmt.Errorf("the server's answer is not valid JSON: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			if out.Error == "" {
				out.Error = http.StatusText(resp.StatusCode)
			}
			return nil, fmt.Errorf("the server answered %d: %s", resp.StatusCode, out.Error)
		}
		vals := make([]string, len(out.Tokens))
		last = make([]string, len(out.Tokens))
		for i, t := range out.Tokens {
			vals[i], last[i] = t.VigieToken, t.VigiePreference
		}
		return vals, nil
	}
	return issue, prefs
}

// knownSite reports whether site is configured.
func knownSite(cfg config.Config, site string) bool {
	for _, s := range cfg.Sites {
		if s.ID == site {
			return true
		}
	}
	return false
}

// emailKeyring opens the data directory's keyring as the server does,
// warning on stderr when there was none: what is signed with a new keyring
// verifies on no server that runs with another data directory.
func emailKeyring(ctx context.Context, cfg config.Config, stderr io.Writer, cmd string) (*keyring.Keyring, error) {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	kr, opened, err := proxy.OpenKeyring(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	if opened.Created {
		fmt.Fprintf(stderr, "vigie email %s: no keyring in %s, created one: a server with another data directory will not accept what this signs (use --data-dir or --config)\n", cmd, cfg.DataDir)
	}
	return kr, nil
}

// stdin is the command's standard input (a variable for tests).
var stdin io.Reader = os.Stdin
