package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/vigie-dev/vigie/proxy"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/email"
	"github.com/vigie-dev/vigie/proxy/pseudonymize"
)

const emailUsage = `usage: vigie email rewrite --campaign NAME --base URL [--site ID]
                           (--recipient USER_ID | --merge-tag TAG)
                           [--sent-at RFC3339] [--expires 90d] [--honeypot=false]
                           [--config FILE] [--data-dir DIR] < campaign.html > tracked.html`

// emailCmd runs "vigie email rewrite": the campaign's HTML on stdin comes
// back on stdout with the open pixel added and its links wrapped, signed
// with the keyring of the data directory (the same keys the server
// verifies with).
func emailCmd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "rewrite" {
		return errors.New(emailUsage)
	}
	fs := flag.NewFlagSet("email rewrite", flag.ContinueOnError)
	fs.SetOutput(stderr)
	site := fs.String("site", "", "site id (default: the first configured site)")
	campaign := fs.String("campaign", "", "campaign name (required)")
	base := fs.String("base", "", "Vigie's public URL, e.g. https://shop.example/t/ (default: public_url)")
	recipient := fs.String("recipient", "", "the recipient's user id (as identify's userId)")
	mergeTag := fs.String("merge-tag", "", "the ESP's recipient placeholder instead, e.g. *|ID|*")
	sentAt := fs.String("sent-at", "", "when the campaign goes out (RFC 3339)")
	expires := fs.String("expires", "", "stop counting hits after this long (e.g. 90d)")
	honeypot := fs.Bool("honeypot", true, "add a hidden link that catches link scanners")
	cfg, err := loadConfig(fs, args[1:])
	if err != nil {
		return err
	}
	if *campaign == "" || (*recipient == "") == (*mergeTag == "") {
		return errors.New(emailUsage)
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
	known := false
	for _, s := range cfg.Sites {
		known = known || s.ID == *site
	}
	if !known {
		return fmt.Errorf("vigie email rewrite: unknown site %q", *site)
	}
	kr, err := openKeyring(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	signer, err := proxy.EmailSigner(kr)
	if err != nil {
		return err
	}
	opt := email.RewriteOptions{Base: *base, Signer: signer, Site: *site, Campaign: *campaign, MergeTag: *mergeTag, AddHoneypot: *honeypot}
	if *recipient != "" {
		var keys []pseudonymize.Key
		for _, k := range kr.Active() {
			keys = append(keys, pseudonymize.Key{ID: k.ID, Secret: k.Secret})
		}
		ps, err := pseudonymize.New(pseudonymize.Config{Keys: keys})
		if err != nil {
			return err
		}
		opt.Recipient = ps.ID(*site, pseudonymize.UserID, *recipient)
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

// stdin is the command's standard input (a variable for tests).
var stdin io.Reader = os.Stdin
